//! One accepted connection on a shard: admission, TLS when configured, then
//! the transport (a WebSocket upgrade, or REST and the probes through
//! hyper). Generic over the stream so a TLS session and a plain socket take
//! the same path.
//!
//! The connection's task is [`transport::serve`], the same two-phase task
//! the examples run: [`open`] is its first phase (admission, TLS
//! handshake, then `transport::open`: request heads, REST, polling, the
//! 101), boxed and freed when the WebSocket session starts; the task holds
//! only that box and the shard's [`Shared`], then the session's state.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use futures_lite::{AsyncRead, AsyncWrite};
use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;
use rustls::ServerConnection;

use super::admission::{Ticket, Turnaway};
use super::handoff::{self, Handoff};
use crate::chat::Chat;
use crate::mailbox::Mesh;
use crate::rest::RestSettings;
use crate::tls::Tls;
use crate::transport::polling::Polls;
use crate::transport::{self, Endpoint, Links, Opened, Upgraded};

/// What every connection of a shard is served with (one per shard).
pub(crate) struct Shared {
    pub endpoint: Endpoint,
    pub chat: Rc<Chat>,
    pub links: Rc<Links>,
    pub draining: Rc<Cell<bool>>,
    pub rest: RestSettings,
    /// What REST requests are answered with.
    pub rest_context: Rc<crate::rest::Context>,
    pub tls: Option<Arc<Tls>>,
    /// This shard's long-polling sessions.
    pub polls: Polls<Stream>,
    /// Where connections for another shard's polling session go.
    pub handoff: Arc<Mesh<Handoff>>,
}

/// An accepted socket and its admission.
pub(crate) struct Accepted {
    pub stream: TcpStream,
    pub peer: SocketAddr,
    pub id: u64,
    pub admit: Result<Ticket, Turnaway>,
    /// Set for a connection handed over by another shard.
    pub handed: Option<Handed>,
}

/// What a connection handed over by another shard brings besides its
/// socket (see `handoff`).
pub(crate) struct Handed {
    /// Bytes already read (decrypted, over TLS).
    pub read: Vec<u8>,
    /// Its TLS session, past the handshake, when the port speaks TLS.
    pub tls: Option<Box<ServerConnection>>,
}

pub(crate) enum Stream {
    Plain(TcpStream),
    // Boxed: a TLS session's state is large.
    Tls(Box<TlsStream<TcpStream>>),
}

/// Everything up to a WebSocket session (the first phase of
/// [`transport::serve`]): the session and its admission ticket, held as
/// long as the session runs; `None` when the connection was refused,
/// served as REST or polling, handed over, or failed before the upgrade.
pub(crate) async fn open(a: Accepted, sh: Rc<Shared>) -> Option<(Upgraded<Stream>, Ticket)> {
    let Accepted {
        mut stream,
        peer,
        id,
        admit,
        handed,
    } = a;
    let ticket = match admit {
        Ok(t) => t,
        Err(turnaway) => {
            sh.chat
                .metrics()
                .refusals
                .refused(turnaway.reason(), peer.ip(), || {
                    format!("connection: {}", turnaway.message())
                });
            // Over TLS the client would not understand a plain answer: it
            // is just closed.
            if sh.tls.is_none() {
                let _ = transport::http::write_response(&mut stream, &turnaway.response()).await;
            }
            return None;
        }
    };
    let (early, session) = handed.map_or((Vec::new(), None), |h| (h.read, h.tls));
    let stream = match (&sh.tls, session) {
        (None, None) => Stream::Plain(stream),
        (None, Some(_)) => {
            // Every shard has the same configuration: cannot happen.
            tracing::warn!(%peer, "a TLS session handed to a shard without TLS");
            return None;
        }
        (Some(tls), session) => {
            let acceptor = tls.acceptor();
            // A handed-over session does no handshake (see
            // `handoff::resume`); the timeout still bounds its flush.
            let handshake = crate::within::within(sh.endpoint.handshake_timeout, async {
                match session {
                    Some(session) => handoff::resume(acceptor, stream, session).await,
                    None => acceptor.accept(stream).await,
                }
            })
            .await;
            match handshake {
                Some(Ok(s)) => Stream::Tls(Box::new(s)),
                Some(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    return None;
                }
                None => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return None;
                }
            }
        }
    };
    // Anything but a Socket.IO upgrade: REST and the probes, served by
    // hyper with keep-alive from the bytes already read.
    let other = async |stream: Stream, req: transport::Request, read: Vec<u8>| {
        crate::rest::serve(
            stream,
            &req,
            read,
            crate::rest::Serving {
                context: sh.rest_context.clone(),
                draining: sh.draining.clone(),
                settings: sh.rest,
                origins: sh.endpoint.origins.clone(),
            },
            peer.ip(),
        )
        .await
    };
    let polls = Some(&sh.polls);
    let opened = transport::open(
        stream,
        early,
        peer,
        id,
        &sh.endpoint,
        &sh.links,
        polls,
        other,
    );
    match opened.await {
        Opened::Upgraded(upgraded) => Some((upgraded, ticket)),
        Opened::Done => None,
        Opened::Elsewhere {
            stream,
            shard,
            read,
        } => {
            let (tcp, tls) = match stream {
                Stream::Plain(tcp) => (tcp, None),
                Stream::Tls(s) => {
                    let (tcp, session) = s.into_inner();
                    (tcp, Some(Box::new(session)))
                }
            };
            match handoff::duplicate(&tcp) {
                Ok(fd) => {
                    // Its descriptor is closed; the socket lives on in
                    // the duplicate.
                    drop(tcp);
                    let h = Handoff {
                        fd,
                        peer,
                        read,
                        ticket,
                        tls,
                    };
                    sh.handoff.post_external(shard, h);
                }
                Err(e) => tracing::warn!(%peer, error = %e, "could not hand a connection over"),
            }
            None
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut [u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => std::pin::Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => std::pin::Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_close(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => std::pin::Pin::new(s).poll_close(cx),
            Stream::Tls(s) => std::pin::Pin::new(&mut **s).poll_close(cx),
        }
    }
}
