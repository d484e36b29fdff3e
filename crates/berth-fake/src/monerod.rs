//! monerod-like RPC, modelled on monerod 0.18: `POST /json_rpc` (JSON-RPC
//! 2.0, methods `get_info`, `get_block_count` alias `getblockcount`) and the
//! plain-JSON "other" endpoints `/get_info` (alias `/getinfo`) and
//! `/get_height` (`/getheight`).
//!
//! Checked against Debian's real monerod 0.18 (`crates/berth-probe/tests/
//! monerod_real.rs` runs it): its HTTP server answers every method on these
//! paths (a `GET /json_rpc` has an empty body, so it is an invalid request,
//! with HTTP 200); a body that is not JSON is -32600 "Invalid Request" and
//! JSON that is not an object is -32700 "Parse error" (the reverse of the
//! JSON-RPC spec, kept as monerod has it); a request without a method, or
//! with a null id, is answered with id 0; a method that is not a string is
//! an empty HTTP 500; `getinfo` is not a JSON-RPC method (only a path).

use serde_json::{Value, json};

use crate::daemon::Shared;
use crate::fake_hash;
use crate::http::{Reply, Request, Response};
use crate::sim::{Mode, View};

#[derive(Debug, Clone)]
pub struct Ctx {
    /// mainnet | testnet | stagenet
    pub nettype: String,
    pub start_time: u64,
    pub now_unix: u64,
}

fn status(v: &View) -> &'static str {
    if v.mode == Mode::Busy { "BUSY" } else { "OK" }
}

/// The `get_info` result object, with monerod's field names.
///
/// - synced: `synchronized` true, `target_height` 0 (monerod 0.18 reports
///   no target once synchronized; the target only shows while it syncs);
/// - syncing: `synchronized` false, `busy_syncing` true, height advancing;
/// - starting: `target_height` 0, `synchronized` false, height 1, no peers;
/// - busy: `status` "BUSY".
pub fn get_info(v: &View, ctx: &Ctx) -> Value {
    let (height, target_height, synchronized, busy_syncing, peers_out) = match v.mode {
        Mode::Synced => (v.height, 0, true, false, 12),
        Mode::Syncing => (v.height, v.target, false, true, 12),
        Mode::Starting => (1, 0, false, false, 0),
        Mode::Busy | Mode::Down => {
            let synced = v.height >= v.target;
            (
                v.height,
                if synced { 0 } else { v.target },
                synced,
                false,
                12,
            )
        }
    };
    let difficulty: u64 = 300_000_000_000;
    let cumulative = u128::from(height) * u128::from(difficulty);
    json!({
        "adjusted_time": ctx.now_unix,
        "alt_blocks_count": 0,
        "block_size_limit": 600_000,
        "block_size_median": 300_000,
        "block_weight_limit": 600_000,
        "block_weight_median": 300_000,
        "bootstrap_daemon_address": "",
        "busy_syncing": busy_syncing,
        "credits": 0,
        "cumulative_difficulty": (cumulative & u128::from(u64::MAX)) as u64,
        "cumulative_difficulty_top64": (cumulative >> 64) as u64,
        "database_size": height.saturating_mul(30_000),
        "difficulty": difficulty,
        "difficulty_top64": 0,
        "free_space": 500_000_000_000_u64,
        "grey_peerlist_size": 1000,
        "height": height,
        "height_without_bootstrap": height,
        "incoming_connections_count": 0,
        "mainnet": ctx.nettype == "mainnet",
        "nettype": ctx.nettype,
        "offline": false,
        "outgoing_connections_count": peers_out,
        "restricted": false,
        "rpc_connections_count": 1,
        "stagenet": ctx.nettype == "stagenet",
        "start_time": ctx.start_time,
        "status": status(v),
        "synchronized": synchronized,
        "target": 120,
        "target_height": target_height,
        "testnet": ctx.nettype == "testnet",
        "top_block_hash": fake_hash(height.saturating_sub(1)),
        "top_hash": "",
        "tx_count": height.saturating_mul(10),
        "tx_pool_size": 0,
        "untrusted": false,
        "update_available": false,
        "version": "0.18.3.4-release",
        "was_bootstrap_ever_used": false,
        "white_peerlist_size": 500,
        "wide_cumulative_difficulty": format!("{cumulative:#x}"),
        "wide_difficulty": format!("{difficulty:#x}"),
    })
}

fn reported_height(v: &View) -> u64 {
    if v.mode == Mode::Starting {
        1
    } else {
        v.height
    }
}

pub fn get_height(v: &View) -> Value {
    let h = reported_height(v);
    json!({
        "hash": fake_hash(h.saturating_sub(1)),
        "height": h,
        "status": status(v),
        "untrusted": false,
    })
}

fn rpc_error(id: Value, code: i64, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}, "id": id, "jsonrpc": "2.0"})
}

/// `/json_rpc` body → reply, which monerod sends with HTTP 200 even for
/// errors; `None` is its empty HTTP 500 (a method that is not a string).
/// The error codes and ids are monerod's own, see the module doc.
pub fn json_rpc(body: &[u8], v: &View, ctx: &Ctx) -> Option<Value> {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return Some(rpc_error(json!(0), -32600, "Invalid Request"));
    };
    let Some(obj) = req.as_object() else {
        return Some(rpc_error(json!(0), -32700, "Parse error"));
    };
    let method = match obj.get("method") {
        None | Some(Value::Null) => return Some(rpc_error(json!(0), -32600, "Invalid Request")),
        Some(Value::String(m)) => m.as_str(),
        Some(_) => return None,
    };
    let id = match obj.get("id") {
        None | Some(Value::Null) => json!(0),
        Some(id) => id.clone(),
    };
    let result = match method {
        "get_info" => get_info(v, ctx),
        "get_block_count" | "getblockcount" => json!({
            "count": reported_height(v),
            "status": status(v),
            "untrusted": false,
        }),
        _ => return Some(rpc_error(id, -32601, "Method not found")),
    };
    Some(json!({"id": id, "jsonrpc": "2.0", "result": result}))
}

pub fn handle(shared: &Shared, req: &Request) -> Reply {
    let v = shared.view();
    if v.mode == Mode::Down {
        return Reply::drop_connection();
    }
    let ctx = Ctx {
        nettype: shared.cfg.chain.clone(),
        start_time: shared.started_unix,
        now_unix: crate::daemon::unix_now(),
    };
    // monerod's HTTP server routes by path alone: any method is answered.
    match req.path.as_str() {
        "/json_rpc" => match json_rpc(&req.body, &v, &ctx) {
            Some(reply) => Response::json(200, &reply).into(),
            None => Response::new(500).into(),
        },
        "/get_info" | "/getinfo" => Response::json(200, &get_info(&v, &ctx)).into(),
        "/get_height" | "/getheight" => Response::json(200, &get_height(&v)).into(),
        _ => Response::new(404).into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx {
            nettype: "mainnet".into(),
            start_time: 1_700_000_000,
            now_unix: 1_700_000_100,
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

    fn info(mode: Mode, h: u64, t: u64) -> Value {
        let r = json_rpc(
            br#"{"jsonrpc":"2.0","id":"0","method":"get_info"}"#,
            &view(mode, h, t),
            &ctx(),
        )
        .expect("a reply");
        assert_eq!(r["jsonrpc"], "2.0");
        assert_eq!(r["id"], "0");
        r["result"].clone()
    }

    #[test]
    fn get_info_has_the_real_field_names() {
        let i = get_info(&view(Mode::Synced, 3_200_000, 3_200_000), &ctx());
        for k in [
            "adjusted_time",
            "alt_blocks_count",
            "block_size_limit",
            "block_size_median",
            "block_weight_limit",
            "block_weight_median",
            "bootstrap_daemon_address",
            "busy_syncing",
            "credits",
            "cumulative_difficulty",
            "cumulative_difficulty_top64",
            "database_size",
            "difficulty",
            "difficulty_top64",
            "free_space",
            "grey_peerlist_size",
            "height",
            "height_without_bootstrap",
            "incoming_connections_count",
            "mainnet",
            "nettype",
            "offline",
            "outgoing_connections_count",
            "restricted",
            "rpc_connections_count",
            "stagenet",
            "start_time",
            "status",
            "synchronized",
            "target",
            "target_height",
            "testnet",
            "top_block_hash",
            "top_hash",
            "tx_count",
            "tx_pool_size",
            "untrusted",
            "update_available",
            "version",
            "was_bootstrap_ever_used",
            "white_peerlist_size",
            "wide_cumulative_difficulty",
            "wide_difficulty",
        ] {
            assert!(i.get(k).is_some(), "missing {k}");
        }
        assert_eq!(i.as_object().unwrap().len(), 43);
        assert_eq!(i["top_block_hash"].as_str().unwrap().len(), 64);
        assert!(
            i["wide_cumulative_difficulty"]
                .as_str()
                .unwrap()
                .starts_with("0x")
        );
    }

    #[test]
    fn mode_semantics() {
        let i = info(Mode::Synced, 100, 100);
        assert_eq!(
            (i["status"].as_str(), i["synchronized"].as_bool()),
            (Some("OK"), Some(true))
        );
        assert_eq!(
            (i["height"].as_u64(), i["target_height"].as_u64()),
            (Some(100), Some(0))
        );
        assert_eq!(i["busy_syncing"], false);
        assert_eq!(i["offline"], false);

        let i = info(Mode::Syncing, 40, 100);
        assert_eq!(
            (i["height"].as_u64(), i["target_height"].as_u64()),
            (Some(40), Some(100))
        );
        assert_eq!(
            (i["synchronized"].as_bool(), i["busy_syncing"].as_bool()),
            (Some(false), Some(true))
        );

        let i = info(Mode::Starting, 40, 100);
        assert_eq!(
            (i["height"].as_u64(), i["target_height"].as_u64()),
            (Some(1), Some(0))
        );
        assert_eq!(i["synchronized"], false);
        assert_eq!(i["status"], "OK");

        let i = info(Mode::Busy, 40, 100);
        assert_eq!(i["status"], "BUSY");
    }

    /// The envelope answers Debian's monerod 0.18 gave to the same bodies.
    #[test]
    fn json_rpc_errors_as_the_real_monerod_answers_them() {
        let v = view(Mode::Synced, 5, 5);
        let code_and_id = |body: &[u8]| {
            let r = json_rpc(body, &v, &ctx()).expect("a reply");
            (r["error"]["code"].as_i64(), r["id"].clone())
        };
        // Not JSON (also the empty body of a GET): "Invalid Request".
        assert_eq!(code_and_id(b"{"), (Some(-32600), json!(0)));
        assert_eq!(code_and_id(b""), (Some(-32600), json!(0)));
        // JSON but not an object: "Parse error".
        for body in [&b"[1]"[..], b"[]", b"5", b"null", br#""s""#] {
            assert_eq!(code_and_id(body), (Some(-32700), json!(0)));
        }
        // No method: invalid, and the request's id is not echoed.
        assert_eq!(code_and_id(b"{}"), (Some(-32600), json!(0)));
        assert_eq!(
            code_and_id(br#"{"jsonrpc":"2.0","id":1}"#),
            (Some(-32600), json!(0))
        );
        assert_eq!(
            code_and_id(br#"{"jsonrpc":"2.0","id":[1],"method":"nope"}"#),
            (Some(-32601), json!([1]))
        );
        // `getinfo` is a path, not a JSON-RPC method.
        assert_eq!(
            code_and_id(br#"{"jsonrpc":"2.0","id":9,"method":"getinfo"}"#),
            (Some(-32601), json!(9))
        );
        // A method that is not a string: the empty HTTP 500.
        assert!(json_rpc(br#"{"jsonrpc":"2.0","id":3,"method":5}"#, &v, &ctx()).is_none());
        // A null or missing id is answered as 0; `jsonrpc` is not checked.
        let r = json_rpc(br#"{"id":null,"method":"getblockcount"}"#, &v, &ctx()).unwrap();
        assert_eq!(
            (r["id"].clone(), r["result"]["count"].as_u64()),
            (json!(0), Some(5))
        );
    }

    #[test]
    fn block_count_and_height() {
        let v = view(Mode::Synced, 5, 5);
        let r = json_rpc(
            br#"{"jsonrpc":"2.0","id":1,"method":"get_block_count"}"#,
            &v,
            &ctx(),
        )
        .expect("a reply");
        assert_eq!(
            (
                r["result"]["count"].as_u64(),
                r["result"]["status"].as_str()
            ),
            (Some(5), Some("OK"))
        );
        let h = get_height(&v);
        assert_eq!(
            (h["height"].as_u64(), h["status"].as_str()),
            (Some(5), Some("OK"))
        );
    }
}
