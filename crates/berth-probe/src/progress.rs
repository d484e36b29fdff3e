//! Reading the value of a progress check (`berth_core::progress` judges
//! it): the height the app's chain probe reads, a number in the JSON answer
//! of an HTTP GET, or the number a command executed in the container
//! prints last.
//!
//! Every read is bounded in time (the chain probe's own timeout, else the
//! health check's) and yields the value or one line saying why there is
//! none; the parsers (`number_at_pointer`, `number_in_output`) are pure.

use std::path::PathBuf;
use std::time::Duration;

use berth_core::model::{ProbeSpec, ProgressSource};
use berth_core::progress::ProgressReading;
use berth_engine::Engine;
use serde_json::Value;

use crate::chain::probe_chain;
use crate::health::{Target, join_host_port, resolve};
use crate::http::request;

/// Longest piece of an app's own output carried into a reason.
const SNIPPET_CHARS_MAX: usize = 60;

/// What a `probe = "height"` source needs: the app's chain probe and, for
/// a bitcoind probe with a password, the secret file to read it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainAccess {
    pub spec: ProbeSpec,
    pub password_file: Option<PathBuf>,
}

/// Read the value once. `timeout` bounds an HTTP or command read (the
/// health check's timeout); a chain probe keeps its own.
pub async fn read_progress(
    engine: &dyn Engine,
    target: &Target<'_>,
    source: &ProgressSource,
    chain: Option<&ChainAccess>,
    timeout: Duration,
) -> ProgressReading {
    match source {
        ProgressSource::Command { argv } => {
            match engine.exec(target.container, argv, timeout).await {
                Ok(out) if out.exit_code == 0 => number_in_output(&out.output),
                Ok(out) => Err(format!(
                    "command exited {}: {}",
                    out.exit_code,
                    clip(last_line(&out.output))
                )),
                Err(e) => Err(e.to_string()),
            }
        }
        ProgressSource::ProbeHeight | ProgressSource::Http { .. } => {
            let ip = resolve(engine, target).await?;
            read_progress_at(&ip, source, chain, timeout).await
        }
    }
}

/// Read a value over the network from the container at `ip`: the chain
/// probe's height, or an HTTP answer's number. (A command source runs
/// through the engine: [`read_progress`].)
pub async fn read_progress_at(
    ip: &str,
    source: &ProgressSource,
    chain: Option<&ChainAccess>,
    timeout: Duration,
) -> ProgressReading {
    match source {
        ProgressSource::ProbeHeight => {
            let Some(chain) = chain else {
                return Err("the app has no chain probe to read a height from".into());
            };
            let addr = join_host_port(ip, chain.spec.port);
            let state = probe_chain(&chain.spec, &addr, chain.password_file.as_deref()).await;
            if !state.reachable {
                return Err(state.detail);
            }
            match state.current {
                Some(height) => Ok(height as f64),
                None => Err(format!(
                    "the {} probe reports no height",
                    chain.spec.kind.name()
                )),
            }
        }
        ProgressSource::Http {
            port,
            path,
            pointer,
        } => {
            let url = format!("http://{}{}", join_host_port(ip, *port), path);
            match request("GET", &url, None, None, timeout).await {
                Ok(r) if (200..300).contains(&r.status) => {
                    number_at_pointer(&r.body, pointer).map_err(|e| format!("GET {path}: {e}"))
                }
                Ok(r) => Err(format!("GET {path} answered {}", r.status)),
                Err(e) => Err(e),
            }
        }
        ProgressSource::Command { .. } => {
            Err("a command is executed in the container through the engine".into())
        }
    }
}

/// The number at `pointer` (RFC 6901; `""` is the whole document) of a
/// JSON body: a JSON number, or a string holding one (APIs that send
/// 64-bit integers as strings).
pub fn number_at_pointer(body: &[u8], pointer: &str) -> ProgressReading {
    let doc: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "the answer is not JSON ({e}): {}",
            clip(&String::from_utf8_lossy(body))
        )
    })?;
    let shown = if pointer.is_empty() {
        "the answer".to_string()
    } else {
        format!("{pointer:?}")
    };
    match doc.pointer(pointer) {
        None => Err(format!("no value at {shown}")),
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| format!("the number at {shown} is out of range")),
        Some(Value::String(s)) => {
            parse_number(s).map_err(|_| format!("the value at {shown} is not a number: {s:?}"))
        }
        Some(other) => Err(format!(
            "the value at {shown} is {}, not a number",
            json_kind(other)
        )),
    }
}

/// The value a command printed: its last non-empty line (the engines merge
/// stdout and stderr; send noise to /dev/null).
pub fn number_in_output(output: &str) -> ProgressReading {
    let line = last_line(output);
    if line.is_empty() {
        return Err("the command printed nothing".into());
    }
    parse_number(line).map_err(|_| format!("the command printed no number: {:?}", clip(line)))
}

/// A decimal number, surrounding blanks ignored: `812345`, `-1.5`, `2e3`.
pub fn parse_number(text: &str) -> ProgressReading {
    let t = text.trim();
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(format!("not a number: {:?}", clip(t))),
    }
}

fn last_line(output: &str) -> &str {
    output
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("")
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn clip(text: &str) -> String {
    let line = text.lines().next().unwrap_or("").trim();
    if line.chars().count() > SNIPPET_CHARS_MAX {
        let cut: String = line.chars().take(SNIPPET_CHARS_MAX).collect();
        format!("{cut}...")
    } else {
        line.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_at_json_pointers() {
        let body = br#"{"result": {"blocks": 812345, "progress": 0.5, "tip": "850000",
            "big": "18446744073709551615", "name": "main", "ok": true, "none": null,
            "list": [1, 2, 3], "a/b": {"~k": 7}}}"#;
        for (pointer, want) in [
            ("/result/blocks", Ok(812_345.0)),
            ("/result/progress", Ok(0.5)),
            ("/result/tip", Ok(850_000.0)),
            ("/result/big", Ok(18_446_744_073_709_551_615.0)),
            ("/result/list/2", Ok(3.0)),
            ("/result/a~1b/~0k", Ok(7.0)),
            ("/result/headers", Err(r#"no value at "/result/headers""#)),
            (
                "/result/name",
                Err(r#"the value at "/result/name" is not a number: "main""#),
            ),
            (
                "/result/ok",
                Err(r#"the value at "/result/ok" is a boolean, not a number"#),
            ),
            (
                "/result/none",
                Err(r#"the value at "/result/none" is null, not a number"#),
            ),
            (
                "/result",
                Err(r#"the value at "/result" is an object, not a number"#),
            ),
            (
                "",
                Err("the value at the answer is an object, not a number"),
            ),
        ] {
            assert_eq!(
                number_at_pointer(body, pointer),
                want.map_err(str::to_string),
                "{pointer:?}"
            );
        }
        // A bare number is a document too.
        assert_eq!(number_at_pointer(b" 42\n", ""), Ok(42.0));
        let e = number_at_pointer(b"<html>busy</html>", "/x").unwrap_err();
        assert!(e.starts_with("the answer is not JSON ("), "{e}");
        assert!(e.ends_with("<html>busy</html>"), "{e}");
    }

    #[test]
    fn numbers_in_command_output() {
        for (output, want) in [
            ("812345\n", Ok(812_345.0)),
            ("  812345  ", Ok(812_345.0)),
            ("warning: slow disk\n812345\n\n", Ok(812_345.0)),
            ("1.5e3", Ok(1500.0)),
            ("-7", Ok(-7.0)),
            ("", Err("the command printed nothing".to_string())),
            ("\n \n", Err("the command printed nothing".to_string())),
            (
                "812345 blocks",
                Err(r#"the command printed no number: "812345 blocks""#.to_string()),
            ),
            (
                "NaN",
                Err(r#"the command printed no number: "NaN""#.to_string()),
            ),
            (
                "inf",
                Err(r#"the command printed no number: "inf""#.to_string()),
            ),
        ] {
            assert_eq!(number_in_output(output), want, "{output:?}");
        }
        let long = "x".repeat(200);
        let e = number_in_output(&long).unwrap_err();
        assert!(e.len() < 120 && e.ends_with("...\""), "{e}");
    }
}
