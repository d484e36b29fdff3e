//! Generic web app: `GET /` (an HTML page naming the app) and `GET /health`.

use crate::daemon::Shared;
use crate::http::{Reply, Request, Response};
use crate::sim::{Mode, View};

pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn page(name: &str, body: Option<&str>, v: &View) -> String {
    let name = html_escape(name);
    let text = html_escape(body.unwrap_or("A berth-fake web app."));
    format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{name}</title></head>\n\
         <body><h1>{name}</h1>\n<p id=\"body\">{text}</p>\n\
         <p id=\"state\">mode <b>{}</b>, height {}/{}</p>\n</body></html>\n",
        v.mode, v.height, v.target
    )
}

pub fn respond(path: &str, method: &str, name: &str, body: Option<&str>, v: &View) -> Response {
    if method != "GET" && method != "HEAD" {
        return Response::text(405, "method not allowed\n").with_header("Allow", "GET, HEAD");
    }
    match path {
        "/" | "/index.html" => {
            let status = if v.mode == Mode::Down { 503 } else { 200 };
            Response::html(status, page(name, body, v))
        }
        "/health" | "/healthz" => match v.mode {
            Mode::Synced | Mode::Syncing => Response::text(200, "ok\n"),
            m => Response::text(503, format!("{m}\n")),
        },
        _ => Response::text(404, "not found\n"),
    }
}

pub fn handle(shared: &Shared, req: &Request) -> Reply {
    let v = shared.view();
    respond(
        &req.path,
        &req.method,
        &shared.cfg.name,
        shared.cfg.body.as_deref(),
        &v,
    )
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(mode: Mode) -> View {
        View {
            mode,
            height: 1,
            target: 1,
            rate: 0.0,
        }
    }

    #[test]
    fn index_and_health_per_mode() {
        let r = respond(
            "/",
            "GET",
            "mempool <ui>",
            Some("hi & bye"),
            &v(Mode::Synced),
        );
        assert_eq!(r.status, 200);
        let html = String::from_utf8(r.body).unwrap();
        assert!(html.contains("<title>mempool &lt;ui&gt;</title>"));
        assert!(html.contains("hi &amp; bye"));
        assert_eq!(
            respond("/health", "GET", "x", None, &v(Mode::Synced)).body,
            b"ok\n"
        );
        assert_eq!(
            respond("/health", "GET", "x", None, &v(Mode::Syncing)).status,
            200
        );
        for m in [Mode::Busy, Mode::Down, Mode::Starting] {
            assert_eq!(
                respond("/health", "GET", "x", None, &v(m)).status,
                503,
                "{m}"
            );
        }
        assert_eq!(respond("/", "GET", "x", None, &v(Mode::Busy)).status, 200);
        assert_eq!(respond("/", "GET", "x", None, &v(Mode::Down)).status, 503);
        assert_eq!(
            respond("/nope", "GET", "x", None, &v(Mode::Synced)).status,
            404
        );
        assert_eq!(
            respond("/", "POST", "x", None, &v(Mode::Synced)).status,
            405
        );
    }
}
