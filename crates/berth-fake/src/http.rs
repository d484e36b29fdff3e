//! A deliberately small HTTP/1.1 server: request parsing with hard limits,
//! response writing, and a per-connection keep-alive loop.
//!
//! Rules it follows:
//! - request line + headers are bounded ([`MAX_HEAD_BYTES`], [`MAX_HEADERS`]);
//! - bodies come from `Content-Length` or `Transfer-Encoding: chunked` and are
//!   bounded by [`MAX_BODY_BYTES`] (413 beyond it);
//! - `Expect: 100-continue` is answered before the body is read;
//! - HTTP/1.1 keeps the connection alive unless `Connection: close`;
//!   HTTP/1.0 closes unless `Connection: keep-alive`;
//! - every response carries `Content-Length` (except 1xx/204/304), so
//!   keep-alive framing is always correct;
//! - malformed input gets a 400 (or 413/431/501/505) and the connection is
//!   closed; nothing in here panics on input.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Maximum size of the request line plus all header lines.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Maximum number of header fields.
pub const MAX_HEADERS: usize = 100;
/// Maximum decoded request body size.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long one request (including waiting for it on a kept-alive
/// connection) may take before the connection is dropped.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// After an error response, how long and how much unread input is drained
/// before closing.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Socket write timeout.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The raw request-target, e.g. `/json_rpc?x=1`.
    pub target: String,
    /// The path part of the target (before `?`).
    pub path: String,
    pub query: Option<String>,
    pub version: Version,
    /// Header fields in order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn connection_has(&self, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("connection"))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// Whether the client wants the connection kept open after this request.
    pub fn keep_alive(&self) -> bool {
        match self.version {
            Version::Http11 => !self.connection_has("close"),
            Version::Http10 => self.connection_has("keep-alive"),
        }
    }

    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Why a request could not be read.
#[derive(Debug)]
pub enum ParseError {
    /// Socket error or timeout: drop the connection without a response.
    Io(io::Error),
    /// The peer closed the connection in the middle of a request.
    UnexpectedEof,
    /// Syntax error: 400.
    Malformed(&'static str),
    /// Request line + headers too large or too many headers: 431.
    HeadTooLarge,
    /// Body larger than [`MAX_BODY_BYTES`]: 413.
    BodyTooLarge,
    /// Not HTTP/1.0 or HTTP/1.1: 505.
    UnsupportedVersion,
    /// Transfer coding other than chunked: 501.
    NotImplemented(&'static str),
    /// `Expect` other than `100-continue`: 417.
    ExpectationFailed,
}

impl ParseError {
    /// The response to send before closing, if any.
    pub fn response(&self) -> Option<Response> {
        let (status, msg) = match self {
            ParseError::Io(_) | ParseError::UnexpectedEof => return None,
            ParseError::Malformed(why) => (400, format!("bad request: {why}\n")),
            ParseError::HeadTooLarge => (431, "request header fields too large\n".to_string()),
            ParseError::BodyTooLarge => (
                413,
                format!("request body larger than {MAX_BODY_BYTES} bytes\n"),
            ),
            ParseError::UnsupportedVersion => (505, "only HTTP/1.0 and HTTP/1.1\n".to_string()),
            ParseError::NotImplemented(why) => (501, format!("not implemented: {why}\n")),
            ParseError::ExpectationFailed => (417, "expectation failed\n".to_string()),
        };
        Some(Response::text(status, msg))
    }
}

impl From<io::Error> for ParseError {
    fn from(e: io::Error) -> Self {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            ParseError::UnexpectedEof
        } else {
            ParseError::Io(e)
        }
    }
}

/// RFC 9110 `tchar`.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Reads one line (through `\n`) into `buf`, consuming at most `*budget`
/// bytes. Returns the number of bytes read (0 at EOF).
fn read_line_limited<R: BufRead>(
    r: &mut R,
    buf: &mut Vec<u8>,
    budget: &mut usize,
    too_long: fn() -> ParseError,
) -> Result<usize, ParseError> {
    let start = buf.len();
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(ParseError::from(e)),
        };
        if available.is_empty() {
            return Ok(buf.len() - start);
        }
        let (done, used) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (true, i + 1),
            None => (false, available.len()),
        };
        if used > *budget {
            return Err(too_long());
        }
        buf.extend_from_slice(&available[..used]);
        r.consume(used);
        *budget -= used;
        if done {
            return Ok(buf.len() - start);
        }
    }
}

/// Strips the line terminator (`\r\n` or bare `\n`). Errors if the line did
/// not end with `\n` (EOF mid-line) or contains a stray `\r`.
fn strip_eol(line: &[u8]) -> Result<&[u8], ParseError> {
    let Some(line) = line.strip_suffix(b"\n") else {
        return Err(ParseError::UnexpectedEof);
    };
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.contains(&b'\r') {
        return Err(ParseError::Malformed("stray CR"));
    }
    Ok(line)
}

fn parse_request_line(line: &[u8]) -> Result<(String, String, Version), ParseError> {
    let text = std::str::from_utf8(line).map_err(|_| ParseError::Malformed("request line"))?;
    let mut parts = text.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::Malformed("request line"));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(ParseError::Malformed("method"));
    }
    if target.is_empty() || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ParseError::Malformed("request target"));
    }
    let version = match version {
        "HTTP/1.1" => Version::Http11,
        "HTTP/1.0" => Version::Http10,
        v if v.starts_with("HTTP/") => return Err(ParseError::UnsupportedVersion),
        _ => return Err(ParseError::Malformed("version")),
    };
    Ok((method.to_string(), target.to_string(), version))
}

fn parse_header_line(line: &[u8]) -> Result<(String, String), ParseError> {
    if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') {
        return Err(ParseError::Malformed("obsolete header line folding"));
    }
    let colon = line
        .iter()
        .position(|&b| b == b':')
        .ok_or(ParseError::Malformed("header without colon"))?;
    let (name, value) = (&line[..colon], &line[colon + 1..]);
    if name.is_empty() || !name.iter().copied().all(is_tchar) {
        return Err(ParseError::Malformed("header name"));
    }
    if value.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(ParseError::Malformed("control character in header value"));
    }
    let value = String::from_utf8_lossy(value);
    let value = value.trim_matches(|c| c == ' ' || c == '\t');
    // Name is all tchar, hence ASCII.
    let name = String::from_utf8_lossy(name).into_owned();
    Ok((name, value.to_string()))
}

fn parse_content_length(headers: &[(String, String)]) -> Result<Option<usize>, ParseError> {
    let mut found: Option<u64> = None;
    for (_, v) in headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        for part in v.split(',') {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ParseError::Malformed("content-length"));
            }
            // Too many digits to fit is certainly too large.
            let n: u64 = part.parse().map_err(|_| ParseError::BodyTooLarge)?;
            match found {
                Some(prev) if prev != n => {
                    return Err(ParseError::Malformed("conflicting content-length"));
                }
                _ => found = Some(n),
            }
        }
    }
    match found {
        None => Ok(None),
        Some(n) if n > MAX_BODY_BYTES as u64 => Err(ParseError::BodyTooLarge),
        Some(n) => Ok(Some(n as usize)),
    }
}

/// Whether the request uses chunked transfer coding. Errors on codings we do
/// not support.
fn is_chunked(headers: &[(String, String)], version: Version) -> Result<bool, ParseError> {
    let codings: Vec<String> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"))
        .flat_map(|(_, v)| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .filter(|t| !t.is_empty())
        .collect();
    if codings.is_empty() {
        return Ok(false);
    }
    if version == Version::Http10 {
        return Err(ParseError::Malformed("transfer-encoding in HTTP/1.0"));
    }
    if codings.len() == 1 && codings[0] == "chunked" {
        Ok(true)
    } else if codings.last().is_some_and(|c| c == "chunked") {
        Err(ParseError::NotImplemented(
            "transfer codings other than chunked",
        ))
    } else {
        Err(ParseError::Malformed(
            "transfer-encoding must end with chunked",
        ))
    }
}

fn read_chunked<R: BufRead>(r: &mut R) -> Result<Vec<u8>, ParseError> {
    let mut body = Vec::new();
    loop {
        let mut line = Vec::new();
        let mut budget = 1024;
        read_line_limited(r, &mut line, &mut budget, || {
            ParseError::Malformed("chunk size line too long")
        })?;
        let line = strip_eol(&line)?;
        let size_part = line.split(|&b| b == b';').next().unwrap_or_default();
        let size_text = std::str::from_utf8(size_part)
            .map_err(|_| ParseError::Malformed("chunk size"))?
            .trim_matches(|c| c == ' ' || c == '\t');
        if size_text.is_empty() || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseError::Malformed("chunk size"));
        }
        let size = u64::from_str_radix(size_text, 16).map_err(|_| ParseError::BodyTooLarge)?;
        if size == 0 {
            // Trailer section: skip fields until the empty line.
            let mut budget = MAX_HEAD_BYTES;
            loop {
                let mut trailer = Vec::new();
                read_line_limited(r, &mut trailer, &mut budget, || ParseError::HeadTooLarge)?;
                if strip_eol(&trailer)?.is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() as u64 + size > MAX_BODY_BYTES as u64 {
            return Err(ParseError::BodyTooLarge);
        }
        let start = body.len();
        body.resize(start + size as usize, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = Vec::new();
        let mut budget = 2;
        read_line_limited(r, &mut crlf, &mut budget, || {
            ParseError::Malformed("chunk not followed by CRLF")
        })?;
        if !strip_eol(&crlf)?.is_empty() {
            return Err(ParseError::Malformed("chunk not followed by CRLF"));
        }
    }
}

/// Reads one request. `Ok(None)` means the peer closed the connection
/// cleanly before sending anything. `send_continue` is called when the
/// client asked for `Expect: 100-continue` and the body is acceptable.
pub fn read_request<R: BufRead>(
    r: &mut R,
    mut send_continue: impl FnMut() -> io::Result<()>,
) -> Result<Option<Request>, ParseError> {
    let mut budget = MAX_HEAD_BYTES;
    let mut line = Vec::new();
    // Tolerate a few empty lines before the request line (RFC 9112 2.2).
    let mut empty_lines = 0;
    loop {
        line.clear();
        let n = read_line_limited(r, &mut line, &mut budget, || ParseError::HeadTooLarge)?;
        if n == 0 {
            return if empty_lines == 0 {
                Ok(None)
            } else {
                Err(ParseError::UnexpectedEof)
            };
        }
        if strip_eol(&line)?.is_empty() {
            empty_lines += 1;
            if empty_lines > 4 {
                return Err(ParseError::Malformed("empty request line"));
            }
            continue;
        }
        break;
    }
    let (method, target, version) = parse_request_line(strip_eol(&line)?)?;

    let mut headers = Vec::new();
    loop {
        line.clear();
        read_line_limited(r, &mut line, &mut budget, || ParseError::HeadTooLarge)?;
        let l = strip_eol(&line)?;
        if l.is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(ParseError::HeadTooLarge);
        }
        headers.push(parse_header_line(l)?);
    }

    let chunked = is_chunked(&headers, version)?;
    let content_length = parse_content_length(&headers)?;
    if chunked && content_length.is_some() {
        return Err(ParseError::Malformed(
            "both transfer-encoding and content-length",
        ));
    }
    let has_body = chunked || content_length.unwrap_or(0) > 0;

    let expect = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("expect"))
        .map(|(_, v)| v.clone());
    if let Some(expect) = expect {
        if !expect.eq_ignore_ascii_case("100-continue") {
            return Err(ParseError::ExpectationFailed);
        }
        if has_body && version == Version::Http11 {
            send_continue()?;
        }
    }

    let body = if chunked {
        read_chunked(r)?
    } else if let Some(n) = content_length {
        let mut body = vec![0; n];
        r.read_exact(&mut body)?;
        body
    } else {
        Vec::new()
    };

    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), Some(q.to_string())),
        None => (target.clone(), None),
    };
    Ok(Some(Request {
        method,
        target,
        path,
        query,
        version,
        headers,
        body,
    }))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16) -> Self {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Response::new(status)
            .with_header("Content-Type", "text/plain; charset=utf-8")
            .with_body(body.into().into_bytes())
    }

    pub fn html(status: u16, body: impl Into<String>) -> Self {
        Response::new(status)
            .with_header("Content-Type", "text/html; charset=utf-8")
            .with_body(body.into().into_bytes())
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let mut body = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
        body.push(b'\n');
        Response::new(status)
            .with_header("Content-Type", "application/json")
            .with_body(body)
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }

    /// Serializes the response. `head_only` omits the body (HEAD requests).
    pub fn to_bytes(&self, head_only: bool, keep_alive: bool) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        let _ = write!(out, "HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            let _ = write!(out, "{k}: {v}\r\n");
        }
        let bodyless = self.status < 200 || self.status == 204 || self.status == 304;
        if !bodyless {
            let _ = write!(out, "Content-Length: {}\r\n", self.body.len());
        }
        let _ = write!(
            out,
            "Connection: {}\r\n\r\n",
            if keep_alive { "keep-alive" } else { "close" }
        );
        if !head_only && !bodyless {
            out.extend_from_slice(&self.body);
        }
        out
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        413 => "Content Too Large",
        417 => "Expectation Failed",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// What a handler wants done with a request.
pub struct Reply {
    /// `None`: drop the connection without answering.
    pub response: Option<Response>,
    /// Close the connection after the response even if keep-alive.
    pub close: bool,
    /// Run after the response has been written (e.g. process exit).
    pub after: Option<Box<dyn FnOnce() + Send>>,
}

impl Reply {
    pub fn respond(response: Response) -> Self {
        Reply {
            response: Some(response),
            close: false,
            after: None,
        }
    }

    /// Drop the connection without a response (a "down" daemon).
    pub fn drop_connection() -> Self {
        Reply {
            response: None,
            close: true,
            after: None,
        }
    }
}

impl From<Response> for Reply {
    fn from(r: Response) -> Self {
        Reply::respond(r)
    }
}

/// A reader that enforces an overall deadline across many reads.
pub struct DeadlineReader {
    stream: TcpStream,
    deadline: Instant,
}

impl DeadlineReader {
    pub fn new(stream: TcpStream, timeout: Duration) -> Self {
        DeadlineReader {
            stream,
            deadline: Instant::now() + timeout,
        }
    }

    pub fn reset(&mut self, timeout: Duration) {
        self.deadline = Instant::now() + timeout;
    }
}

impl Read for DeadlineReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let remaining = self.deadline.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "request timeout"));
        }
        self.stream.set_read_timeout(Some(remaining))?;
        self.stream.read(buf)
    }
}

/// Serves HTTP requests on one connection until it closes, errors, times
/// out, or `stop()` says so.
pub fn serve_connection(
    stream: TcpStream,
    handler: &dyn Fn(&Request) -> Reply,
    stop: &dyn Fn() -> bool,
) {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut writer = stream;
    let mut reader =
        BufReader::with_capacity(8 * 1024, DeadlineReader::new(read_half, REQUEST_TIMEOUT));
    loop {
        if stop() {
            break;
        }
        reader.get_mut().reset(REQUEST_TIMEOUT);
        let request = {
            let w = &mut writer;
            read_request(&mut reader, || {
                w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            })
        };
        match request {
            Ok(None) => break,
            Ok(Some(req)) => {
                let reply = handler(&req);
                let Some(response) = reply.response else {
                    break;
                };
                let keep_alive = req.keep_alive() && !reply.close;
                let bytes = response.to_bytes(req.is_head(), keep_alive);
                let written = writer.write_all(&bytes).and_then(|_| writer.flush());
                if let Some(after) = reply.after {
                    after();
                }
                if written.is_err() || !keep_alive {
                    break;
                }
            }
            Err(e) => {
                if let Some(resp) = e.response() {
                    let _ = writer.write_all(&resp.to_bytes(false, false));
                    let _ = writer.flush();
                    // Lingering close: a client still sending (say, a body
                    // we refused with 413) would otherwise get a reset that
                    // can destroy the response before it reads it.
                    let _ = writer.shutdown(std::net::Shutdown::Write);
                    reader.get_mut().reset(LINGER_TIMEOUT);
                    let _ = io::copy(&mut (&mut reader).take(LINGER_MAX_BYTES), &mut io::sink());
                }
                break;
            }
        }
    }
    let _ = writer.shutdown(std::net::Shutdown::Both);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: &[u8]) -> Result<Option<Request>, ParseError> {
        let mut r = input;
        read_request(&mut r, || Ok(()))
    }

    fn status_of(input: &[u8]) -> Option<u16> {
        match parse(input) {
            Ok(_) => None,
            Err(e) => e.response().map(|r| r.status),
        }
    }

    #[test]
    fn parses_simple_get() {
        let req = parse(b"GET /get_info?x=1 HTTP/1.1\r\nHost: a\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/get_info");
        assert_eq!(req.query.as_deref(), Some("x=1"));
        assert_eq!(req.header("host"), Some("a"));
        assert!(req.keep_alive());
        assert!(req.body.is_empty());
    }

    #[test]
    fn parses_content_length_body_and_leaves_rest() {
        let input = b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET / HTTP/1.1\r\n\r\n";
        let mut r = &input[..];
        let req = read_request(&mut r, || Ok(())).unwrap().unwrap();
        assert_eq!(req.body, b"hello");
        let next = read_request(&mut r, || Ok(())).unwrap().unwrap();
        assert_eq!(next.method, "GET");
        assert!(read_request(&mut r, || Ok(())).unwrap().is_none());
    }

    #[test]
    fn parses_chunked_body() {
        let req = parse(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: y\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(req.body, b"hello world");
    }

    #[test]
    fn bare_lf_line_endings_are_accepted() {
        let req = parse(b"GET / HTTP/1.0\nA: b\n\n").unwrap().unwrap();
        assert_eq!(req.version, Version::Http10);
        assert!(!req.keep_alive());
    }

    #[test]
    fn keep_alive_rules() {
        let r = parse(b"GET / HTTP/1.1\r\nConnection: Close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.keep_alive());
        let r = parse(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.keep_alive());
    }

    #[test]
    fn clean_eof_is_none_and_partial_is_error() {
        assert!(parse(b"").unwrap().is_none());
        assert!(matches!(parse(b"GET / HT"), Err(ParseError::UnexpectedEof)));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc"),
            Err(ParseError::UnexpectedEof)
        ));
    }

    #[test]
    fn malformed_requests_get_400() {
        for bad in [
            &b"GARBAGE\r\n\r\n"[..],
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"G(T / HTTP/1.1\r\n\r\n",
            b"GET / FTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n",
            b"GET / HTTP/1.1\r\nA: b\x01c\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: abc\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXX0\r\n\r\n",
            b"\xff\xfe / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\rX\r\n\r\n",
        ] {
            assert_eq!(
                status_of(bad),
                Some(400),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn limits_are_enforced() {
        let big = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY_BYTES + 1
        );
        assert_eq!(status_of(big.as_bytes()), Some(413));
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"),
            Some(413)
        );
        let chunked = format!(
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
            MAX_BODY_BYTES + 1
        );
        assert_eq!(status_of(chunked.as_bytes()), Some(413));
        let long_header = format!(
            "GET / HTTP/1.1\r\nX: {}\r\n\r\n",
            "a".repeat(MAX_HEAD_BYTES)
        );
        assert_eq!(status_of(long_header.as_bytes()), Some(431));
        let mut many = String::from("GET / HTTP/1.1\r\n");
        for i in 0..=MAX_HEADERS {
            many.push_str(&format!("H{i}: v\r\n"));
        }
        many.push_str("\r\n");
        assert_eq!(status_of(many.as_bytes()), Some(431));
        assert_eq!(status_of(b"GET / HTTP/2.0\r\n\r\n"), Some(505));
        assert_eq!(
            status_of(b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
            Some(501)
        );
        assert_eq!(
            status_of(b"GET / HTTP/1.1\r\nExpect: magic\r\n\r\n"),
            Some(417)
        );
    }

    #[test]
    fn exactly_max_body_is_accepted() {
        let mut input =
            format!("POST / HTTP/1.1\r\nContent-Length: {MAX_BODY_BYTES}\r\n\r\n").into_bytes();
        input.extend(std::iter::repeat_n(b'x', MAX_BODY_BYTES));
        let req = parse(&input).unwrap().unwrap();
        assert_eq!(req.body.len(), MAX_BODY_BYTES);
    }

    #[test]
    fn expect_continue_is_signalled_before_body() {
        let input = b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok";
        let mut r = &input[..];
        let mut called = false;
        let req = read_request(&mut r, || {
            called = true;
            Ok(())
        })
        .unwrap()
        .unwrap();
        assert!(called);
        assert_eq!(req.body, b"ok");
    }

    #[test]
    fn leading_empty_lines_are_tolerated() {
        let req = parse(b"\r\n\r\nGET / HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(req.path, "/");
    }

    #[test]
    fn response_framing() {
        let r = Response::text(200, "ok");
        let s = String::from_utf8(r.to_bytes(false, true)).unwrap();
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(s.contains("Content-Length: 2\r\n"));
        assert!(s.contains("Connection: keep-alive\r\n"));
        assert!(s.ends_with("\r\n\r\nok"));
        let head = String::from_utf8(r.to_bytes(true, false)).unwrap();
        assert!(head.contains("Content-Length: 2\r\n"));
        assert!(head.ends_with("Connection: close\r\n\r\n"));
        let nc = String::from_utf8(Response::new(204).to_bytes(false, true)).unwrap();
        assert!(!nc.contains("Content-Length"));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: random byte soup and mutations of a
        // valid request must return, never panic.
        let valid = b"POST /json_rpc HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n";
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..3000 {
            let mut input = valid.to_vec();
            for _ in 0..(next() % 6) {
                let pos = (next() as usize) % input.len();
                input[pos] = next() as u8;
            }
            if next() % 4 == 0 {
                let cut = (next() as usize) % input.len();
                input.truncate(cut);
            }
            let _ = parse(&input);
        }
    }
}
