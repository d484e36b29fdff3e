//! bitcoind-like JSON-RPC over HTTP (POST /), modelled on Bitcoin Core 27:
//! legacy JSON-RPC 1.0 replies (`result`, `error`, `id`; HTTP 500 on errors,
//! 404 for unknown methods, 400 for invalid requests) and JSON-RPC 2.0
//! replies (`jsonrpc`, `result` or `error`, `id`; HTTP 200), batches,
//! basic auth, warm-up error -28, and 503 "Work queue depth exceeded".

use std::fs;
use std::io;

use base64::Engine;
use serde_json::{Value, json};

use crate::daemon::Shared;
use crate::fake_hash;
use crate::http::{Reply, Request, Response};
use crate::sim::{Mode, View};

pub const RPC_IN_WARMUP: i64 = -28;
pub const RPC_INVALID_PARAMETER: i64 = -8;
pub const RPC_TYPE_ERROR: i64 = -3;
pub const RPC_INVALID_REQUEST: i64 = -32600;
pub const RPC_METHOD_NOT_FOUND: i64 = -32601;
pub const RPC_PARSE_ERROR: i64 = -32700;
pub const WARMUP_MESSAGE: &str = "Loading block index…";

/// Static facts the replies need besides the simulated state.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub chain: String,
    pub uptime_secs: u64,
    pub now_unix: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Auth {
    /// No password file: no authentication required.
    Open,
    /// Password file present and credentials match.
    Ok,
    Denied,
}

/// Checks HTTP basic auth against the password file (read on every request
/// so it can appear or rotate while running). The password is never logged.
pub fn check_auth(
    user: Option<&str>,
    password_file: Option<&std::path::Path>,
    authorization: Option<&str>,
) -> Auth {
    let Some(path) = password_file else {
        return Auth::Open;
    };
    let password = match fs::read(path) {
        Ok(mut p) => {
            while p.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                p.pop();
            }
            p
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Auth::Open,
        // Present but unreadable: fail closed.
        Err(_) => return Auth::Denied,
    };
    let Some(header) = authorization else {
        return Auth::Denied;
    };
    let Some((scheme, creds)) = header.trim().split_once(' ') else {
        return Auth::Denied;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Auth::Denied;
    }
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(creds.trim()) else {
        return Auth::Denied;
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return Auth::Denied;
    };
    let (u, p) = (&decoded[..colon], &decoded[colon + 1..]);
    let user_ok = user.is_none_or(|want| constant_time_eq(want.as_bytes(), u));
    let pass_ok = constant_time_eq(&password, p);
    if user_ok && pass_ok {
        Auth::Ok
    } else {
        Auth::Denied
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub fn getblockchaininfo(v: &View, ctx: &Ctx) -> Value {
    let synced = v.mode == Mode::Synced;
    let headers = v.target.max(v.height);
    json!({
        "chain": ctx.chain,
        "blocks": v.height,
        "headers": headers,
        "bestblockhash": fake_hash(v.height),
        "difficulty": 79_351_228_131_136.0_f64,
        "time": ctx.now_unix.saturating_sub(300),
        "mediantime": ctx.now_unix.saturating_sub(3_000),
        "verificationprogress": v.progress(),
        "initialblockdownload": !synced,
        "chainwork": format!("{:064x}", u128::from(v.height) * 0x1_0000_0000_0000_u128),
        "size_on_disk": v.height.saturating_mul(750_000),
        "pruned": false,
        "warnings": "",
    })
}

pub fn getnetworkinfo(v: &View) -> Value {
    let connections = if v.mode == Mode::Starting { 0 } else { 10 };
    let networks: Vec<Value> = ["ipv4", "ipv6", "onion", "i2p", "cjdns"]
        .iter()
        .map(|n| {
            let clearnet = *n == "ipv4" || *n == "ipv6";
            json!({
                "name": n,
                "limited": !clearnet,
                "reachable": clearnet,
                "proxy": "",
                "proxy_randomize_credentials": false,
            })
        })
        .collect();
    json!({
        "version": 270_000,
        "subversion": "/Satoshi:27.0.0/",
        "protocolversion": 70_016,
        "localservices": "0000000000000c09",
        "localservicesnames": ["NETWORK", "WITNESS", "NETWORK_LIMITED", "P2P_V2"],
        "localrelay": true,
        "timeoffset": 0,
        "networkactive": true,
        "connections": connections,
        "connections_in": 0,
        "connections_out": connections,
        "networks": networks,
        "relayfee": 0.00001,
        "incrementalfee": 0.00001,
        "localaddresses": [],
        "warnings": "",
    })
}

/// Result of one call: `Ok(result)` or `Err((code, message))`.
pub fn dispatch(method: &str, params: &Value, v: &View, ctx: &Ctx) -> Result<Value, (i64, String)> {
    if v.mode == Mode::Starting {
        return Err((RPC_IN_WARMUP, WARMUP_MESSAGE.to_string()));
    }
    match method {
        "getblockchaininfo" => Ok(getblockchaininfo(v, ctx)),
        "getblockcount" => Ok(json!(v.height)),
        "getbestblockhash" => Ok(json!(fake_hash(v.height))),
        "getblockhash" => {
            let h = match params {
                Value::Array(a) => a.first().cloned(),
                Value::Object(o) => o.get("height").cloned(),
                _ => None,
            };
            match h.as_ref().and_then(Value::as_u64) {
                Some(h) if h <= v.height => Ok(json!(fake_hash(h))),
                Some(_) => Err((RPC_INVALID_PARAMETER, "Block height out of range".into())),
                None => Err((
                    RPC_TYPE_ERROR,
                    "JSON value is not an integer as expected".into(),
                )),
            }
        }
        "getnetworkinfo" => Ok(getnetworkinfo(v)),
        "getconnectioncount" => Ok(getnetworkinfo(v)["connections"].clone()),
        "uptime" => Ok(json!(ctx.uptime_secs)),
        "ping" => Ok(Value::Null),
        _ => Err((RPC_METHOD_NOT_FOUND, "Method not found".into())),
    }
}

/// HTTP status bitcoind uses for a legacy (1.0) error reply.
fn legacy_status(code: i64) -> u16 {
    match code {
        RPC_INVALID_REQUEST => 400,
        RPC_METHOD_NOT_FOUND => 404,
        _ => 500,
    }
}

fn error_obj(code: i64, message: &str) -> Value {
    json!({ "code": code, "message": message })
}

/// One request object → (HTTP status if sent alone, reply; None for a
/// JSON-RPC 2.0 notification).
pub fn exec_one(req: &Value, v: &View, ctx: &Ctx) -> (u16, Option<Value>) {
    let Some(obj) = req.as_object() else {
        return (
            400,
            Some(
                json!({"result": null, "error": error_obj(RPC_INVALID_REQUEST, "Invalid Request object"), "id": null}),
            ),
        );
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    let v2 = match obj.get("jsonrpc") {
        None => false,
        Some(Value::String(s)) if s == "1.0" => false,
        Some(Value::String(s)) if s == "2.0" => true,
        Some(_) => {
            return (
                400,
                Some(
                    json!({"result": null, "error": error_obj(RPC_INVALID_REQUEST, "JSON-RPC version not supported"), "id": id}),
                ),
            );
        }
    };
    let reply = |outcome: Result<Value, (i64, String)>| -> (u16, Option<Value>) {
        if v2 && !obj.contains_key("id") {
            return (204, None);
        }
        match outcome {
            Ok(result) if v2 => (
                200,
                Some(json!({"jsonrpc": "2.0", "result": result, "id": id})),
            ),
            Ok(result) => (
                200,
                Some(json!({"result": result, "error": null, "id": id})),
            ),
            Err((code, msg)) if v2 => (
                200,
                Some(json!({"jsonrpc": "2.0", "error": error_obj(code, &msg), "id": id})),
            ),
            Err((code, msg)) => (
                legacy_status(code),
                Some(json!({"result": null, "error": error_obj(code, &msg), "id": id})),
            ),
        }
    };
    let method = match obj.get("method") {
        None => return reply(Err((RPC_INVALID_REQUEST, "Missing method".into()))),
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return reply(Err((RPC_INVALID_REQUEST, "Method must be a string".into()))),
    };
    let params = obj.get("params").cloned().unwrap_or(Value::Null);
    if !matches!(params, Value::Null | Value::Array(_) | Value::Object(_)) {
        return reply(Err((
            RPC_INVALID_REQUEST,
            "Params must be an array or object".into(),
        )));
    }
    reply(dispatch(method, &params, v, ctx))
}

/// Handles a request body that passed HTTP checks and auth.
pub fn handle_body(body: &[u8], v: &View, ctx: &Ctx) -> Response {
    let parsed: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => {
            return Response::json(
                500,
                &json!({"result": null, "error": error_obj(RPC_PARSE_ERROR, "Parse error"), "id": null}),
            );
        }
    };
    match parsed {
        Value::Array(calls) => {
            let replies: Vec<Value> = calls.iter().filter_map(|c| exec_one(c, v, ctx).1).collect();
            Response::json(200, &Value::Array(replies))
        }
        Value::Object(_) => match exec_one(&parsed, v, ctx) {
            (status, Some(reply)) => Response::json(status, &reply),
            (_, None) => Response::new(204),
        },
        _ => Response::json(
            400,
            &json!({"result": null, "error": error_obj(RPC_INVALID_REQUEST, "Top-level object parse error"), "id": null}),
        ),
    }
}

pub fn handle(shared: &Shared, req: &Request) -> Reply {
    let v = shared.view();
    if v.mode == Mode::Down {
        return Reply::drop_connection();
    }
    if req.path != "/" && !req.path.starts_with("/wallet/") {
        return Response::new(404).into();
    }
    if v.mode == Mode::Busy {
        return Response::text(503, "Work queue depth exceeded").into();
    }
    if req.method != "POST" {
        return Response::text(405, "JSONRPC server handles only POST requests").into();
    }
    let cfg = &shared.cfg;
    if check_auth(
        cfg.rpc_user.as_deref(),
        cfg.rpc_password_file.as_deref(),
        req.header("authorization"),
    ) == Auth::Denied
    {
        return Response::new(401)
            .with_header("WWW-Authenticate", "Basic realm=\"jsonrpc\"")
            .into();
    }
    let ctx = Ctx {
        chain: cfg.chain.clone(),
        uptime_secs: shared.uptime_secs(),
        now_unix: crate::daemon::unix_now(),
    };
    handle_body(&req.body, &v, &ctx).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx {
            chain: "main".into(),
            uptime_secs: 42,
            now_unix: 1_700_000_000,
        }
    }

    fn view(mode: Mode, height: u64, target: u64) -> View {
        View {
            mode,
            height,
            target,
            rate: 1.0,
        }
    }

    fn call(body: &str, v: &View) -> (u16, Value) {
        let r = handle_body(body.as_bytes(), v, &ctx());
        let json = if r.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&r.body).unwrap()
        };
        (r.status, json)
    }

    #[test]
    fn getblockchaininfo_has_the_real_field_names() {
        let info = getblockchaininfo(&view(Mode::Synced, 850_000, 850_000), &ctx());
        let mut keys: Vec<&str> = info
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "bestblockhash",
                "blocks",
                "chain",
                "chainwork",
                "difficulty",
                "headers",
                "initialblockdownload",
                "mediantime",
                "pruned",
                "size_on_disk",
                "time",
                "verificationprogress",
                "warnings"
            ]
        );
        assert_eq!(info["bestblockhash"].as_str().unwrap().len(), 64);
        assert_eq!(info["chainwork"].as_str().unwrap().len(), 64);
    }

    #[test]
    fn synced_and_syncing_shapes() {
        let (s, r) = call(
            r#"{"jsonrpc":"1.0","id":"t","method":"getblockchaininfo","params":[]}"#,
            &view(Mode::Synced, 100, 100),
        );
        assert_eq!(s, 200);
        assert_eq!(r["id"], "t");
        assert_eq!(r["error"], Value::Null);
        let i = &r["result"];
        assert_eq!(
            (i["blocks"].as_u64(), i["headers"].as_u64()),
            (Some(100), Some(100))
        );
        assert_eq!(i["initialblockdownload"], false);
        assert_eq!(i["verificationprogress"], 1.0);
        assert_eq!(i["chain"], "main");

        let (_, r) = call(
            r#"{"id":1,"method":"getblockchaininfo"}"#,
            &view(Mode::Syncing, 430, 1000),
        );
        let i = &r["result"];
        assert_eq!(
            (i["blocks"].as_u64(), i["headers"].as_u64()),
            (Some(430), Some(1000))
        );
        assert_eq!(i["initialblockdownload"], true);
        assert!((i["verificationprogress"].as_f64().unwrap() - 0.43).abs() < 1e-9);
        assert_eq!(r["id"], 1);
    }

    #[test]
    fn other_methods() {
        let v = view(Mode::Synced, 7, 7);
        assert_eq!(
            call(r#"{"id":1,"method":"getblockcount"}"#, &v).1["result"],
            7
        );
        assert_eq!(call(r#"{"id":1,"method":"uptime"}"#, &v).1["result"], 42);
        let ni = call(r#"{"id":1,"method":"getnetworkinfo"}"#, &v).1;
        for k in [
            "version",
            "subversion",
            "protocolversion",
            "connections",
            "networkactive",
            "localaddresses",
            "warnings",
        ] {
            assert!(ni["result"].get(k).is_some(), "{k}");
        }
        let (_, r) = call(r#"{"id":1,"method":"getblockhash","params":[3]}"#, &v);
        assert_eq!(r["result"], fake_hash(3));
        let (s, r) = call(r#"{"id":1,"method":"getblockhash","params":[8]}"#, &v);
        assert_eq!((s, r["error"]["code"].as_i64()), (500, Some(-8)));
    }

    #[test]
    fn unknown_method_is_32601() {
        let (s, r) = call(r#"{"id":"x","method":"stop"}"#, &view(Mode::Synced, 1, 1));
        assert_eq!(s, 404);
        assert_eq!(r["error"]["code"], -32601);
        assert_eq!(r["error"]["message"], "Method not found");
        assert_eq!(r["result"], Value::Null);
        // JSON-RPC 2.0: HTTP 200, no "result" key in an error reply.
        let (s, r) = call(
            r#"{"jsonrpc":"2.0","id":"x","method":"stop"}"#,
            &view(Mode::Synced, 1, 1),
        );
        assert_eq!(s, 200);
        assert_eq!(r["jsonrpc"], "2.0");
        assert_eq!(r["error"]["code"], -32601);
        assert!(r.get("result").is_none());
    }

    #[test]
    fn starting_is_warmup_28() {
        let (s, r) = call(
            r#"{"id":1,"method":"getblockchaininfo"}"#,
            &view(Mode::Starting, 5, 100),
        );
        assert_eq!(s, 500);
        assert_eq!(r["error"]["code"], -28);
        assert_eq!(r["error"]["message"], "Loading block index…");
        let (s, r) = call(
            r#"{"jsonrpc":"2.0","id":1,"method":"getblockcount"}"#,
            &view(Mode::Starting, 5, 100),
        );
        assert_eq!((s, r["error"]["code"].as_i64()), (200, Some(-28)));
    }

    #[test]
    fn invalid_requests() {
        let v = view(Mode::Synced, 1, 1);
        let (s, r) = call("{not json", &v);
        assert_eq!((s, r["error"]["code"].as_i64()), (500, Some(-32700)));
        let (s, r) = call("42", &v);
        assert_eq!((s, r["error"]["code"].as_i64()), (400, Some(-32600)));
        let (s, r) = call(r#"{"id":1,"method":5}"#, &v);
        assert_eq!((s, r["error"]["code"].as_i64()), (400, Some(-32600)));
        let (s, r) = call(r#"{"id":1,"method":"uptime","params":"x"}"#, &v);
        assert_eq!((s, r["error"]["code"].as_i64()), (400, Some(-32600)));
        let (s, _) = call(r#"{"jsonrpc":"3.0","id":1,"method":"uptime"}"#, &v);
        assert_eq!(s, 400);
        let (s, _) = call("", &v);
        assert_eq!(s, 500);
    }

    #[test]
    fn batches_and_notifications() {
        let v = view(Mode::Synced, 9, 9);
        let (s, r) = call(
            r#"[{"id":1,"method":"getblockcount"},{"jsonrpc":"2.0","method":"uptime"},{"jsonrpc":"2.0","id":3,"method":"nope"}, 7]"#,
            &v,
        );
        assert_eq!(s, 200);
        let a = r.as_array().unwrap();
        assert_eq!(a.len(), 3);
        assert_eq!(a[0]["result"], 9);
        assert_eq!(a[1]["error"]["code"], -32601);
        assert_eq!(a[2]["error"]["code"], -32600);
        let (s, _) = call(r#"{"jsonrpc":"2.0","method":"uptime"}"#, &v);
        assert_eq!(s, 204);
    }

    #[test]
    fn auth_rules() {
        let dir = std::env::temp_dir().join(format!("berth-fake-auth-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        let basic = |u: &str, p: &str| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        };
        // No file configured or file absent: open.
        assert_eq!(check_auth(None, None, None), Auth::Open);
        assert_eq!(check_auth(Some("u"), Some(&file), None), Auth::Open);
        fs::write(&file, "s3cret:x\n").unwrap();
        assert_eq!(check_auth(Some("u"), Some(&file), None), Auth::Denied);
        assert_eq!(
            check_auth(Some("u"), Some(&file), Some(&basic("u", "s3cret:x"))),
            Auth::Ok
        );
        assert_eq!(
            check_auth(Some("u"), Some(&file), Some(&basic("v", "s3cret:x"))),
            Auth::Denied
        );
        assert_eq!(
            check_auth(Some("u"), Some(&file), Some(&basic("u", "wrong"))),
            Auth::Denied
        );
        assert_eq!(
            check_auth(Some("u"), Some(&file), Some(&basic("u", "s3cret:x\n"))),
            Auth::Denied
        );
        // Without --rpc-user any user name is accepted.
        assert_eq!(
            check_auth(None, Some(&file), Some(&basic("any", "s3cret:x"))),
            Auth::Ok
        );
        assert_eq!(
            check_auth(None, Some(&file), Some("basic   ")),
            Auth::Denied
        );
        assert_eq!(
            check_auth(None, Some(&file), Some("Bearer abc")),
            Auth::Denied
        );
        assert_eq!(
            check_auth(None, Some(&file), Some("Basic !!!notbase64")),
            Auth::Denied
        );
        assert_eq!(
            check_auth(
                None,
                Some(&file),
                Some(&format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("nocolon")
                ))
            ),
            Auth::Denied
        );
        fs::remove_dir_all(&dir).unwrap();
    }
}
