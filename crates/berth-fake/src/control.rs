//! The control port: `GET/POST /control`, `GET/PUT/DELETE /marker`.

use std::fs;
use std::io;
use std::sync::Arc;

use serde_json::json;

use crate::daemon::{Shared, parse_control_body, write_atomic};
use crate::http::{Reply, Request, Response};

fn method_not_allowed(allow: &str) -> Reply {
    Response::text(405, "method not allowed\n")
        .with_header("Allow", allow)
        .into()
}

fn error(status: u16, msg: impl Into<String>) -> Reply {
    Response::json(status, &json!({ "error": msg.into() })).into()
}

pub fn handle(shared: &Arc<Shared>, req: &Request) -> Reply {
    match req.path.as_str() {
        "/" => match req.method.as_str() {
            "GET" | "HEAD" => Response::text(
                200,
                "berth-fake control port\n\
                 GET  /control   current state\n\
                 POST /control   {\"mode\":..., \"height\":N, \"target\":N, \"rate\":N, \"sync_seconds\":S, \"code\":N, \"freeze\":B, \"block_seconds\":S}\n\
                 GET|PUT|DELETE /marker\n",
            )
            .into(),
            _ => method_not_allowed("GET, HEAD"),
        },
        "/control" => match req.method.as_str() {
            "GET" | "HEAD" => Response::json(200, &shared.state_json()).into(),
            "POST" | "PUT" => {
                let update = match parse_control_body(&req.body) {
                    Ok(u) => u,
                    Err(e) => return error(400, e),
                };
                if let Some(code) = update.exit {
                    shared.log(&format!("control: exit requested with code {code}"));
                    let s = shared.clone();
                    return Reply {
                        response: Some(Response::json(
                            200,
                            &json!({ "exiting": true, "code": code }),
                        )),
                        close: true,
                        after: Some(Box::new(move || s.request_exit(code))),
                    };
                }
                shared.apply(&update);
                Response::json(200, &shared.state_json()).into()
            }
            _ => method_not_allowed("GET, HEAD, POST"),
        },
        "/marker" => marker(shared, req),
        _ => Response::text(404, "not found\n").into(),
    }
}

fn marker(shared: &Shared, req: &Request) -> Reply {
    let path = shared.marker_path();
    match req.method.as_str() {
        "GET" | "HEAD" => {
            let Some(path) = path else {
                return Response::text(404, "no marker (no --data-dir)\n").into();
            };
            match fs::read(&path) {
                Ok(data) => Response::new(200)
                    .with_header("Content-Type", "application/octet-stream")
                    .with_body(data)
                    .into(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Response::text(404, "no marker\n").into()
                }
                Err(e) => error(500, format!("cannot read marker: {e}")),
            }
        }
        "PUT" | "POST" => {
            let Some(path) = path else {
                return error(409, "no --data-dir: nowhere to write a marker");
            };
            match write_atomic(&path, &req.body) {
                Ok(()) => {
                    shared.log(&format!("marker written ({} bytes)", req.body.len()));
                    Response::json(200, &json!({ "ok": true, "bytes": req.body.len() })).into()
                }
                Err(e) => error(500, format!("cannot write marker: {e}")),
            }
        }
        "DELETE" => {
            let Some(path) = path else {
                return Response::text(404, "no marker (no --data-dir)\n").into();
            };
            match fs::remove_file(&path) {
                Ok(()) => Response::json(200, &json!({ "ok": true })).into(),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    Response::text(404, "no marker\n").into()
                }
                Err(e) => error(500, format!("cannot remove marker: {e}")),
            }
        }
        _ => method_not_allowed("GET, HEAD, PUT, POST, DELETE"),
    }
}
