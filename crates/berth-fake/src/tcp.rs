//! Generic TCP app (electrs-like): writes a banner line on connect, then
//! answers newline-delimited JSON-RPC (a few Electrum methods).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

use crate::daemon::Shared;
use crate::sim::{Mode, View};

const MAX_LINE: usize = 64 * 1024;
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub fn banner(shared_banner: Option<&str>, name: &str) -> String {
    match shared_banner {
        Some(b) => b.replace(['\r', '\n'], " "),
        None => format!("Welcome to {name} (berth-fake electrs-like TCP server)"),
    }
}

/// Answers one request line.
pub fn answer(line: &str, banner: &str, v: &View) -> Value {
    let Ok(req) = serde_json::from_str::<Value>(line) else {
        return json!({"jsonrpc": "2.0", "error": {"code": -32700, "message": "parse error"}, "id": null});
    };
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let method = req.get("method").and_then(Value::as_str).unwrap_or("");
    let result = match method {
        "server.version" => json!([format!("berth-fake {}", crate::cli::VERSION), "1.4"]),
        "server.banner" => json!(banner),
        "server.ping" => Value::Null,
        "blockchain.headers.subscribe" => json!({"height": v.height, "hex": "00".repeat(80)}),
        _ => {
            return json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": format!("unknown method {method:?}")}, "id": id});
        }
    };
    json!({"jsonrpc": "2.0", "result": result, "id": id})
}

pub fn serve(shared: &Shared, stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(IDLE_TIMEOUT));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut w = stream;
    let v = shared.view();
    let first = match v.mode {
        Mode::Busy => "BUSY".to_string(),
        Mode::Starting => "STARTING".to_string(),
        _ => banner(shared.cfg.banner.as_deref(), &shared.cfg.name),
    };
    if writeln!(w, "{first}").is_err() || matches!(v.mode, Mode::Busy | Mode::Starting) {
        let _ = w.shutdown(std::net::Shutdown::Both);
        return;
    }
    let banner = banner(shared.cfg.banner.as_deref(), &shared.cfg.name);
    let mut r = BufReader::new(read_half.take(u64::MAX));
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bound the line length.
        r.get_mut().set_limit(MAX_LINE as u64 + 1);
        match r.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.len() > MAX_LINE || shared.is_shutdown() {
            break;
        }
        let v = shared.view();
        if v.mode != Mode::Synced && v.mode != Mode::Syncing {
            break;
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let reply = answer(text, &banner, &v);
        let mut out = serde_json::to_vec(&reply).unwrap_or_default();
        out.push(b'\n');
        if w.write_all(&out).is_err() {
            break;
        }
    }
    let _ = w.shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_electrum_methods() {
        let v = View {
            mode: Mode::Synced,
            height: 12,
            target: 12,
            rate: 0.0,
        };
        let r = answer(
            r#"{"id":1,"method":"blockchain.headers.subscribe","params":[]}"#,
            "b",
            &v,
        );
        assert_eq!(r["result"]["height"], 12);
        assert_eq!(r["id"], 1);
        assert_eq!(
            answer(r#"{"id":2,"method":"server.banner"}"#, "b", &v)["result"],
            "b"
        );
        assert_eq!(
            answer(r#"{"id":3,"method":"x"}"#, "b", &v)["error"]["code"],
            -32601
        );
        assert_eq!(answer("nope", "b", &v)["error"]["code"], -32700);
        assert_eq!(banner(Some("a\nb"), "n"), "a b");
    }
}
