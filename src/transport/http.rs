//! The HTTP/1.1 side of a connection: reading one request head (httparse)
//! within a size bound, and writing small complete responses.
//!
//! Only what the Socket.IO endpoint and the health probe need lives here:
//! every connection starts with one request; a WebSocket upgrade keeps the
//! socket, anything else is answered and closed.

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// One parsed request head.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// Raw query string, without the `?`.
    pub query: String,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    /// Length in bytes of the head on the wire.
    pub head_len: usize,
    /// The HTTP/1.x minor version (0 for HTTP/1.0).
    pub minor_version: u8,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Does a comma-separated header contain `token` (case-insensitive)?
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.header(name)
            .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    }

    /// Decoded query parameters.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query.as_bytes())
            .into_owned()
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("request head larger than {0} bytes")]
    TooLarge(usize),
    #[error("malformed request: {0}")]
    Malformed(#[from] httparse::Error),
    #[error("connection closed before a full request")]
    Closed,
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// Most headers one request may carry.
const MAX_HEADERS: usize = 48;

/// Reads one request head. Returns it and every byte read so far: the head
/// and whatever came after it (a body, or a pipelined first WebSocket
/// frame), so that another HTTP implementation can take over the stream.
pub async fn read_head<S: AsyncRead + Unpin>(
    s: &mut S,
    max_bytes: usize,
) -> Result<(Request, Vec<u8>), HttpError> {
    read_head_after(s, Vec::new(), max_bytes).await
}

/// [`read_head`] after `early`, bytes of the request already read (a
/// keep-alive connection's next request, or a connection handed over
/// from another shard).
pub async fn read_head_after<S: AsyncRead + Unpin>(
    s: &mut S,
    early: Vec<u8>,
    max_bytes: usize,
) -> Result<(Request, Vec<u8>), HttpError> {
    let mut buf = early;
    buf.reserve(1024);
    let mut chunk = [0u8; 1024];
    // The bytes already read may hold a whole head: parse them first.
    let mut first = true;
    loop {
        if !first || buf.is_empty() {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(HttpError::Closed);
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        first = false;
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf)? {
            httparse::Status::Complete(len) => {
                let target = req.path.unwrap_or("/");
                let (path, query) = target.split_once('?').unwrap_or((target, ""));
                let request = Request {
                    method: req.method.unwrap_or("").to_owned(),
                    path: path.to_owned(),
                    query: query.to_owned(),
                    headers: req
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_ascii_lowercase(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect(),
                    head_len: len,
                    minor_version: req.version.unwrap_or(0),
                };
                return Ok((request, buf));
            }
            httparse::Status::Partial if buf.len() >= max_bytes => {
                return Err(HttpError::TooLarge(max_bytes));
            }
            httparse::Status::Partial => {}
        }
    }
}

/// A complete response; the connection closes after it.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    /// `Retry-After`, in seconds, for refusals worth retrying.
    pub retry_after: Option<u32>,
    /// Headers besides the usual ones (e.g. `Sec-WebSocket-Version`).
    pub headers: &'static [(&'static str, &'static str)],
}

impl Response {
    pub fn json(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.into(),
            retry_after: None,
            headers: &[],
        }
    }

    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// `{"error":{"code":…,"message":…}}`, the REST error shape.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(
            status,
            serde_json::json!({"error": {"code": code, "message": message}}).to_string(),
        )
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        413 => "Payload Too Large",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

pub async fn write_response<S: AsyncWrite + Unpin>(s: &mut S, r: &Response) -> std::io::Result<()> {
    write_response_with(s, r, &[]).await
}

/// [`write_response`] with headers made for this answer besides the
/// response's own (the CORS headers of a long-polling refusal).
pub async fn write_response_with<S: AsyncWrite + Unpin>(
    s: &mut S,
    r: &Response,
    more: &[(&'static str, String)],
) -> std::io::Result<()> {
    let retry = r
        .retry_after
        .map(|s| format!("Retry-After: {s}\r\n"))
        .unwrap_or_default();
    let extra: String = r
        .headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .chain(more.iter().map(|(k, v)| format!("{k}: {v}\r\n")))
        .collect();
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{retry}Connection: close\r\nCache-Control: no-store\r\n{extra}\r\n",
        r.status,
        reason_phrase(r.status),
        r.content_type,
        r.body.len()
    );
    // One write, so head and body leave in one segment: the connection is
    // closed right after, and a client that stops reading at the head
    // (a WebSocket client refused its upgrade) still has the body.
    let mut out = head.into_bytes();
    out.extend_from_slice(r.body.as_bytes());
    s.write_all(&out).await?;
    s.flush().await
}

/// Closes a connection gently: our side first (the client gets the whole
/// last response and an EOF), then what the client still sends is read and
/// dropped for a bounded time ([`LINGER_TIME`], [`LINGER_BYTES`]). Closing
/// a socket with unread input makes the kernel reset it, and a reset can
/// destroy a response (a 413, say) that the client has received but not
/// yet read. Used by REST and by long-polling.
pub async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) {
    if stream.close().await.is_err() {
        return;
    }
    let drain = async {
        let mut buf = [0u8; 4096];
        let mut left = LINGER_BYTES;
        while left > 0 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    crate::within::within(LINGER_TIME, drain).await;
}

/// How long [`linger`] reads what a client still sends, at most.
pub const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(1);
/// How many bytes [`linger`] reads and drops, at most.
pub const LINGER_BYTES: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::io::Cursor;

    fn read(bytes: &[u8], max: usize) -> Result<(Request, Vec<u8>), HttpError> {
        futures_lite::future::block_on(read_head(&mut Cursor::new(bytes.to_vec()), max))
    }

    #[test]
    fn parses_an_upgrade_request() {
        let (req, rest) = read(
            b"GET /socket.io/?EIO=4&transport=websocket&token=a%2Eb HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\nXY",
            4096,
        )
        .unwrap();
        assert_eq!(
            (req.method.as_str(), req.path.as_str()),
            ("GET", "/socket.io/")
        );
        assert!(req.header_has_token("connection", "upgrade"));
        assert_eq!(req.header("upgrade"), Some("websocket"));
        assert!(req.query_pairs().contains(&("token".into(), "a.b".into())));
        assert_eq!(&rest[req.head_len..], b"XY");
    }

    #[test]
    fn bounds_the_head() {
        let mut big = b"GET / HTTP/1.1\r\n".to_vec();
        big.extend(std::iter::repeat_n(b'a', 5000));
        assert!(matches!(read(&big, 2048), Err(HttpError::TooLarge(2048))));
        assert!(matches!(read(b"GET / HT", 2048), Err(HttpError::Closed)));
        assert!(matches!(
            read(b"\x01\x02 / HTTP/1.1\r\n\r\n", 2048),
            Err(HttpError::Malformed(_))
        ));
    }
}
