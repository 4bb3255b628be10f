//! One HTTP request of a polling session, on its shard: the handshake,
//! a GET (waits for packets), a POST (its body within the payload limit),
//! a preflight; the answers, kept alive when the client allows it.

use std::net::SocketAddr;

use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::cors::{cors, preflight};
use super::session::PollSession;
use super::{BAD_REQUEST, Polls, UNKNOWN_SID, engine_error, handshake, payload};
use crate::protocol::CloseReason;
use crate::transport::http::{self, Request};
use crate::transport::{Endpoint, Links, Response};

/// What the connection does after a polling request.
pub(crate) enum After {
    /// Reads the next request; the bytes already read come first.
    KeepAlive(Vec<u8>),
    Close,
}

/// Serves one request of `transport=polling` on its session's shard.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn serve<S>(
    stream: &mut S,
    req: &Request,
    read: Vec<u8>,
    peer: SocketAddr,
    ep: &Endpoint,
    links: &Links,
    polls: &Polls<S>,
) -> After
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let headers = match cors(req, ep, peer) {
        Ok(h) => h,
        Err(r) => return refuse(stream, &r, &[]).await,
    };
    let keep_alive = req.minor_version >= 1 && !req.header_has_token("connection", "close");
    let body_at = req.head_len.min(read.len());
    if req.method == "OPTIONS" {
        let headers = preflight(req, ep);
        return reply(
            stream,
            204,
            "",
            &headers,
            "",
            keep_alive,
            read[body_at..].to_vec(),
        )
        .await;
    }
    let q = req.query_pairs();
    let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("EIO") != Some("4") {
        return refuse(
            stream,
            &engine_error(400, 5, "Unsupported protocol version"),
            &headers,
        )
        .await;
    }
    let Some(sid) = get("sid") else {
        if req.method != "GET" {
            return refuse(
                stream,
                &engine_error(400, 2, "Bad handshake method"),
                &headers,
            )
            .await;
        }
        let open = match handshake(req, peer, ep, links, polls) {
            Ok(open) => open,
            Err(r) => return refuse(stream, &r, &headers).await,
        };
        return reply(
            stream,
            200,
            TEXT,
            &headers,
            &open,
            keep_alive,
            read[body_at..].to_vec(),
        )
        .await;
    };
    let Some(ps) = polls.session(sid) else {
        return refuse(
            stream,
            &engine_error(400, UNKNOWN_SID.0, UNKNOWN_SID.1),
            &headers,
        )
        .await;
    };
    if ps.link.closing().is_some() || ps.upgraded() {
        // Gone, or on WebSocket now: the reference's transport mismatch.
        return refuse(
            stream,
            &engine_error(400, BAD_REQUEST.0, BAD_REQUEST.1),
            &headers,
        )
        .await;
    }
    match req.method.as_str() {
        "GET" => match ps.poll_request().await {
            Some(body) => {
                reply(
                    stream,
                    200,
                    TEXT,
                    &headers,
                    &body,
                    keep_alive,
                    read[body_at..].to_vec(),
                )
                .await
            }
            None => {
                refuse(
                    stream,
                    &engine_error(400, BAD_REQUEST.0, BAD_REQUEST.1),
                    &headers,
                )
                .await
            }
        },
        "POST" => post(stream, req, read, ep, &ps, &headers, keep_alive).await,
        _ => {
            refuse(
                stream,
                &engine_error(400, BAD_REQUEST.0, BAD_REQUEST.1),
                &headers,
            )
            .await
        }
    }
}

const TEXT: &str = "text/plain; charset=UTF-8";

/// A POST: its body (at most the session's payload limit, else 413 and
/// the session closes, as for a WebSocket message too large), split into
/// packets for the driver; `ok`.
async fn post<S>(
    stream: &mut S,
    req: &Request,
    mut read: Vec<u8>,
    ep: &Endpoint,
    ps: &PollSession<impl Sized>,
    headers: &[(&'static str, String)],
    keep_alive: bool,
) -> After
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let bad = engine_error(400, BAD_REQUEST.0, BAD_REQUEST.1);
    if ps.posting.get() {
        // Two POSTs at once: the reference closes the session.
        ps.link.close(CloseReason::Malformed);
        return refuse(stream, &bad, headers).await;
    }
    let len = match (
        req.header("content-length")
            .map(|v| v.trim().parse::<usize>()),
        req.header("transfer-encoding"),
    ) {
        (Some(Ok(n)), None) => n,
        _ => return refuse(stream, &bad, headers).await,
    };
    if len > ps.body_limit.get() {
        ps.link.close(CloseReason::TooLarge);
        let r = engine_error(413, BAD_REQUEST.0, "Payload too large");
        let _ = http::write_response_with(stream, &r, headers).await;
        http::linger(stream).await;
        return After::Close;
    }
    ps.posting.set(true);
    let body = read_body(stream, &mut read, req.head_len, len, ep).await;
    ps.posting.set(false);
    let Some(leftover) = body else {
        return After::Close;
    };
    let text = std::str::from_utf8(&read[req.head_len..req.head_len + len]).ok();
    match text.and_then(payload::decode) {
        Some(packets) => ps.deliver(packets),
        None => {
            ps.link.close(CloseReason::Malformed);
            return refuse(stream, &bad, headers).await;
        }
    }
    reply(
        stream,
        200,
        "text/html",
        headers,
        "ok",
        keep_alive,
        leftover,
    )
    .await
}

/// Reads until `read` holds the whole body (within the handshake timeout)
/// and returns the bytes after it.
async fn read_body<S: AsyncRead + Unpin>(
    stream: &mut S,
    read: &mut Vec<u8>,
    head: usize,
    len: usize,
    ep: &Endpoint,
) -> Option<Vec<u8>> {
    let fill = async {
        let mut chunk = [0u8; 4096];
        while read.len() < head + len {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => read.extend_from_slice(&chunk[..n]),
            }
        }
        true
    };
    let done = crate::within::within(ep.handshake_timeout, fill).await;
    (done == Some(true)).then(|| read.split_off(head + len))
}

/// An error answer, with the CORS headers of an allowed origin so that the
/// page can read why (the reference's `cors` option covers its errors too).
async fn refuse<S: AsyncWrite + Unpin>(
    stream: &mut S,
    r: &Response,
    cors: &[(&'static str, String)],
) -> After {
    let _ = http::write_response_with(stream, r, cors).await;
    After::Close
}

/// Writes a polling answer; keeps the connection for the next request
/// when the client allows it.
#[allow(clippy::too_many_arguments)]
async fn reply<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    content_type: &str,
    headers: &[(&'static str, String)],
    body: &str,
    keep_alive: bool,
    leftover: Vec<u8>,
) -> After {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\n",
        if status == 204 { "No Content" } else { "OK" }
    );
    if !content_type.is_empty() {
        out.push_str(&format!("Content-Type: {content_type}\r\n"));
    }
    out.push_str(&format!(
        "Content-Length: {}\r\nCache-Control: no-store\r\n",
        body.len()
    ));
    if !keep_alive {
        out.push_str("Connection: close\r\n");
    }
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(body);
    if stream.write_all(out.as_bytes()).await.is_err() || stream.flush().await.is_err() {
        return After::Close;
    }
    if keep_alive {
        After::KeepAlive(leftover)
    } else {
        After::Close
    }
}
