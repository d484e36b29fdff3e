//! monerod-like RPC, modelled on monerod 0.18: `POST /json_rpc` (JSON-RPC
//! 2.0, methods `get_info`, `get_block_count`) and the plain-JSON "other"
//! endpoints `/get_info` (alias `/getinfo`) and `/get_height` (`/getheight`).

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
/// - synced: `synchronized` true, `target_height == height`;
/// - syncing: `synchronized` false, `busy_syncing` true, height advancing;
/// - starting: `target_height` 0, `synchronized` false, height 1, no peers;
/// - busy: `status` "BUSY".
pub fn get_info(v: &View, ctx: &Ctx) -> Value {
    let (height, target_height, synchronized, busy_syncing, peers_out) = match v.mode {
        Mode::Synced => (v.height, v.height, true, false, 12),
        Mode::Syncing => (v.height, v.target, false, true, 12),
        Mode::Starting => (1, 0, false, false, 0),
        Mode::Busy | Mode::Down => (v.height, v.target, v.height >= v.target, false, 12),
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

/// `POST /json_rpc` body → reply (monerod answers HTTP 200 even for errors).
pub fn json_rpc(body: &[u8], v: &View, ctx: &Ctx) -> Value {
    let Ok(req) = serde_json::from_slice::<Value>(body) else {
        return rpc_error(json!(0), -32700, "Parse error");
    };
    let Some(obj) = req.as_object() else {
        return rpc_error(json!(0), -32600, "Invalid Request");
    };
    let id = obj.get("id").cloned().unwrap_or(json!(0));
    let Some(method) = obj.get("method").and_then(Value::as_str) else {
        return rpc_error(id, -32600, "Invalid Request");
    };
    let result = match method {
        "get_info" | "getinfo" => get_info(v, ctx),
        "get_block_count" | "getblockcount" => json!({
            "count": reported_height(v),
            "status": status(v),
            "untrusted": false,
        }),
        _ => return rpc_error(id, -32601, "Method not found"),
    };
    json!({"id": id, "jsonrpc": "2.0", "result": result})
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
    let get_or_post = matches!(req.method.as_str(), "GET" | "POST" | "HEAD");
    match req.path.as_str() {
        "/json_rpc" => {
            if req.method != "POST" {
                return Response::new(405).with_header("Allow", "POST").into();
            }
            Response::json(200, &json_rpc(&req.body, &v, &ctx)).into()
        }
        "/get_info" | "/getinfo" if get_or_post => Response::json(200, &get_info(&v, &ctx)).into(),
        "/get_height" | "/getheight" if get_or_post => Response::json(200, &get_height(&v)).into(),
        "/get_info" | "/getinfo" | "/get_height" | "/getheight" => {
            Response::new(405).with_header("Allow", "GET, POST").into()
        }
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
        );
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
        assert_eq!(i["height"], i["target_height"]);
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

    #[test]
    fn json_rpc_errors_and_block_count() {
        let v = view(Mode::Synced, 5, 5);
        let r = json_rpc(b"{", &v, &ctx());
        assert_eq!(r["error"]["code"], -32700);
        let r = json_rpc(br#"{"jsonrpc":"2.0","id":7,"method":"nope"}"#, &v, &ctx());
        assert_eq!(
            (r["error"]["code"].as_i64(), r["id"].as_i64()),
            (Some(-32601), Some(7))
        );
        let r = json_rpc(br#"[1]"#, &v, &ctx());
        assert_eq!(r["error"]["code"], -32600);
        let r = json_rpc(
            br#"{"jsonrpc":"2.0","id":1,"method":"get_block_count"}"#,
            &v,
            &ctx(),
        );
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
