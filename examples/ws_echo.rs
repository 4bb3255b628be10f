//! A WebSocket echo server on gatrix-chat's own WebSocket path, for the
//! Autobahn|Testsuite (its `fuzzingclient`, run by scripts/test with
//! tests/autobahn/fuzzingclient.json):
//!
//! - one glommio executor, as a shard runs;
//! - the transport's upgrade (`transport::open`: the request head, the
//!   handshake checks, the 101), so the URL is the Engine.IO endpoint
//!   `ws://ADDR/socket.io/?EIO=4&transport=websocket`;
//! - the server's socket I/O and decoder (`protocol::wsio::WsIo`,
//!   `protocol::ws`), with the same limits as a connection after its
//!   CONNECT: 16 MiB messages (so that the 9.x cases run) and a bounded
//!   outbound [`Link`];
//! - permessage-deflate negotiated as the server does by default (RFC 7692:
//!   no context takeover either way; messages inflated within the limit,
//!   echoes from the default `WS_COMPRESSION_THRESHOLD` on compressed);
//! - every text and binary message echoed, pings answered by `WsIo`, the
//!   close handshake as the server does it (the client's code echoed, 1002,
//!   1007 or 1009 for what the decoder refuses, 4008 past the budget).
//!
//! Only the Engine.IO layer (`protocol::drive`) is left out: an echo has
//! no OPEN packet. Run: `cargo run --example ws_echo [IP:PORT]` (default
//! 127.0.0.1:9001; port 0 picks one); it prints `listening on ADDR`.

use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::{AsyncRead, AsyncWrite};
use gatrix_chat::protocol::ws::Msg;
use gatrix_chat::protocol::wsio::{IoFailure, ReadEnd, WsIo};
use gatrix_chat::protocol::{CloseReason, Frame, Link, Options, QueueLimits};
use gatrix_chat::transport::{self, Endpoint, Links};

/// Largest message, and frame, echoed.
const MAX_MESSAGE: usize = 16 << 20;
/// Time for the last frames and the close handshake, as the server allows.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

fn endpoint() -> Endpoint {
    Endpoint {
        opts: Options {
            // Unused by the echo (no Engine.IO session).
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            connect_timeout: Duration::from_secs(45),
            max_payload: MAX_MESSAGE,
            // There is no CONNECT here: the limit after it applies at once.
            max_payload_before_connect: MAX_MESSAGE,
        },
        queue: QueueLimits {
            max_frames: 1 << 16,
            max_bytes: 4 * MAX_MESSAGE,
        },
        max_header_bytes: 16 * 1024,
        handshake_timeout: Duration::from_secs(10),
        origins: transport::origin::OriginPolicy::any(),
        refusals: None,
        // permessage-deflate as the server negotiates it by default (the
        // 12.* and 13.* cases): echoes of at least the default threshold
        // go back compressed, each on its own.
        compression: gatrix_chat::config::Config::default().compression(),
    }
}

/// Why the echo loop ended.
enum End {
    /// The client's close frame (answered with its code).
    ClientClosed,
    /// The server closes with this reason.
    Close(CloseReason),
    /// EOF or a socket error: nothing more can be sent.
    Gone,
}

/// Echoes messages until the connection ends, then closes it as the
/// server's driver does.
async fn echo<S: AsyncRead + AsyncWrite + Unpin>(mut io: WsIo<S>, link: Rc<Link>) {
    let end = poll_fn(|cx| {
        let read = io.read(cx, |io, msg| {
            let pushed = match msg {
                Msg::Text(t) => link.push(Frame::Text(t.into_owned().into())),
                Msg::Binary(b) => link.push(Frame::Binary(Bytes::from(b.into_owned()))),
                Msg::Ping(p) => {
                    io.queue_pong(p);
                    Ok(())
                }
                Msg::Pong => Ok(()),
                Msg::Close(_) => return Err(End::ClientClosed),
            };
            pushed.map_err(|_| End::Close(CloseReason::SlowConsumer))
        });
        match read {
            ReadEnd::Pending | ReadEnd::Yielded => {}
            ReadEnd::Eof | ReadEnd::Failed(IoFailure::Io(_)) => return Poll::Ready(End::Gone),
            ReadEnd::Failed(IoFailure::Ws(e)) => return Poll::Ready(End::Close(e.close_reason())),
            ReadEnd::Stopped(end) => return Poll::Ready(end),
        }
        if io.poll_write(cx, &link).is_err() {
            return Poll::Ready(End::Gone);
        }
        match link.closing() {
            Some(reason) => Poll::Ready(End::Close(reason)),
            None => Poll::Pending,
        }
    })
    .await;

    let (code, reason) = match end {
        End::Gone => return,
        End::ClientClosed => CloseReason::ClientClosed.code_and_reason(),
        End::Close(r) => r.code_and_reason(),
    };
    let finish = async {
        // What was echoed before the close still goes out (RFC 6455 5.5.1
        // allows finishing the current message), except to a slow consumer.
        if !matches!(end, End::Close(CloseReason::SlowConsumer)) {
            let sent = poll_fn(|cx| match io.poll_write(cx, &link) {
                Err(e) => Poll::Ready(Err(e)),
                Ok(()) if link.queued_frames() == 0 => io.poll_flush_unsent(cx),
                Ok(()) => Poll::Pending,
            })
            .await;
            if sent.is_err() {
                return;
            }
        }
        io.queue_close(code, reason);
        if poll_fn(|cx| io.poll_flush_unsent(cx)).await.is_ok() && !matches!(end, End::ClientClosed)
        {
            poll_fn(|cx| io.poll_until_client_close(cx)).await;
        }
    };
    futures_lite::future::or(finish, async {
        glommio::timer::sleep(CLOSE_GRACE).await;
    })
    .await;
}

fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9001".into());
    let addr: SocketAddr = addr.parse().expect("address as IP:PORT");
    glommio::LocalExecutorBuilder::default()
        .io_memory(1 << 20)
        .spawn(move || async move {
            let listener = glommio::net::TcpListener::bind(addr).expect("bind");
            println!("listening on {}", listener.local_addr().expect("address"));
            let ep = Rc::new(endpoint());
            let mut id = 0;
            loop {
                let Ok(stream) = listener.accept().await else {
                    continue;
                };
                let Ok(peer) = stream.peer_addr() else {
                    continue;
                };
                id += 1;
                let ep = ep.clone();
                glommio::spawn_local(async move {
                    // A registry of its own: nothing closes every link here.
                    let links = Links::default();
                    let not_found = async |mut s: glommio::net::TcpStream, _req, _read| {
                        let r = transport::Response::error(404, "NOT_FOUND", "no such path");
                        let _ = transport::http::write_response(&mut s, &r).await;
                        None
                    };
                    let opened =
                        transport::open(stream, Vec::new(), peer, id, &ep, &links, None, not_found);
                    if let transport::Opened::Upgraded(upgraded) = opened.await {
                        let (io, link) = upgraded.into_parts();
                        echo(io, link).await;
                    }
                })
                .detach();
            }
        })
        .expect("executor")
        .join()
        .expect("join");
}
