//! A minimal HTTP/1.1 client over a unix socket, for the few engine calls
//! bollard cannot express: Podman's libpod pull (the compat pull cannot
//! skip TLS for a plain-HTTP registry), network creation with
//! `CheckDuplicate` (dropped from bollard's models, but Docker 20.10 creates
//! duplicate networks without it), libpod inspect, and the `/_ping` probe used
//! before any engine object exists.
//!
//! One connection per request; the connection driver runs inside the
//! request's own future (no detached task), so dropping the future closes
//! the connection.

use std::path::Path;
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Method, Request};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// Largest streamed line kept (a libpod pull reports one JSON object per
/// line); anything longer is cut, never buffered without bound.
pub(crate) const LINE_BYTES_MAX: usize = 1 << 20;
/// Largest whole answer kept by [`request`] (a container list is one JSON
/// line holding every container berth manages).
pub(crate) const RESPONSE_BYTES_MAX: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub(crate) enum RawError {
    #[error("cannot connect to {socket}: {source}")]
    Connect {
        socket: String,
        source: std::io::Error,
    },
    #[error("http error: {0}")]
    Http(#[from] hyper::Error),
    #[error("invalid request: {0}")]
    Request(#[from] hyper::http::Error),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// Send one request and feed every line of the response body to `on_line`
/// as it arrives (lines longer than `line_max` are cut). Returns the status
/// code. `timeout` bounds the connect and the wait for the response head;
/// `idle` bounds each wait for more body.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn request_lines(
    socket: &Path,
    method: Method,
    path_and_query: &str,
    json_body: Option<Vec<u8>>,
    timeout: Duration,
    idle: Duration,
    line_max: usize,
    on_line: &mut (dyn FnMut(&[u8]) + Send),
) -> Result<u16, RawError> {
    let stream = tokio::time::timeout(timeout, UnixStream::connect(socket))
        .await
        .map_err(|_| RawError::Timeout(timeout))?
        .map_err(|source| RawError::Connect {
            socket: socket.display().to_string(),
            source,
        })?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await?;
    let mut builder = Request::builder()
        .method(method)
        .uri(path_and_query)
        .header(hyper::header::HOST, "localhost");
    if json_body.is_some() {
        builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
    }
    let req = builder.body(Full::new(Bytes::from(json_body.unwrap_or_default())))?;

    let work = async move {
        let resp = tokio::time::timeout(timeout, sender.send_request(req))
            .await
            .map_err(|_| RawError::Timeout(timeout))??;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let frame = match tokio::time::timeout(idle, body.frame()).await {
                Err(_) => return Err(RawError::Timeout(idle)),
                Ok(None) => break,
                Ok(Some(frame)) => frame?,
            };
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.extend_from_slice(&data);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                on_line(&buf[..pos]);
                buf.drain(..=pos);
            }
            if buf.len() > line_max {
                on_line(&buf[..line_max]);
                buf.clear();
            }
        }
        if !buf.is_empty() {
            on_line(&buf);
        }
        Ok(status)
    };
    tokio::pin!(work);
    tokio::pin!(conn);
    tokio::select! {
        biased;
        result = &mut work => result,
        conn_result = &mut conn => {
            // The connection ended first: either cleanly (the response is
            // complete and `work` finishes now) or with an error.
            conn_result?;
            work.await
        }
    }
}

/// Send one request and collect the whole body (at most
/// `RESPONSE_BYTES_MAX`). Returns (status, body).
pub(crate) async fn request(
    socket: &Path,
    method: Method,
    path_and_query: &str,
    json_body: Option<Vec<u8>>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), RawError> {
    let mut body = Vec::new();
    let status = request_lines(
        socket,
        method,
        path_and_query,
        json_body,
        timeout,
        timeout,
        RESPONSE_BYTES_MAX,
        &mut |line: &[u8]| {
            if body.len() < RESPONSE_BYTES_MAX {
                body.extend_from_slice(line);
                body.push(b'\n');
            }
        },
    )
    .await?;
    Ok((status, body))
}

/// API versions an engine announces in the headers of `GET /_ping`:
/// `Api-Version` (Docker and Podman's compat API) and `Libpod-Api-Version`
/// (Podman only). One cheap call instead of `/version`, which Podman answers
/// by running `conmon --version` and `runc --version` (about half a second).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PingVersions {
    pub api: Option<String>,
    pub libpod: Option<String>,
}

pub(crate) async fn ping_versions(
    socket: &Path,
    timeout: Duration,
) -> Result<(u16, PingVersions), RawError> {
    let stream = tokio::time::timeout(timeout, UnixStream::connect(socket))
        .await
        .map_err(|_| RawError::Timeout(timeout))?
        .map_err(|source| RawError::Connect {
            socket: socket.display().to_string(),
            source,
        })?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Full<Bytes>>(TokioIo::new(stream)).await?;
    let req = Request::builder()
        .method(Method::GET)
        .uri("/_ping")
        .header(hyper::header::HOST, "localhost")
        .body(Full::new(Bytes::new()))?;
    let work = async move {
        let resp = tokio::time::timeout(timeout, sender.send_request(req))
            .await
            .map_err(|_| RawError::Timeout(timeout))??;
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let versions = PingVersions {
            api: header("api-version"),
            libpod: header("libpod-api-version"),
        };
        Ok::<_, RawError>((resp.status().as_u16(), versions))
    };
    tokio::pin!(work);
    tokio::pin!(conn);
    tokio::select! {
        biased;
        result = &mut work => result,
        conn_result = &mut conn => {
            conn_result?;
            work.await
        }
    }
}

/// Whether an engine answers `GET /_ping` on `socket` within `timeout`.
pub(crate) async fn ping(socket: &Path, timeout: Duration) -> bool {
    matches!(
        request(socket, Method::GET, "/_ping", None, timeout).await,
        Ok((200, _))
    )
}

/// Percent-encode a query-string value (RFC 3986 unreserved kept).
pub(crate) fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_escaped() {
        assert_eq!(
            query_escape("127.0.0.1:5000/a/b:latest"),
            "127.0.0.1%3A5000%2Fa%2Fb%3Alatest"
        );
        assert_eq!(query_escape("x@sha256:ab"), "x%40sha256%3Aab");
    }
}
