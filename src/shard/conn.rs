//! One accepted connection on a shard: TLS when configured, then the
//! transport (a WebSocket upgrade, or REST and the probes through hyper).
//! Generic over the stream so a TLS session and a plain socket take the
//! same path.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

use crate::chat::Chat;
use crate::rest::RestSettings;
use crate::tls::Tls;
use crate::transport::{self, Endpoint, Links};

/// What a connection task needs from its shard.
pub struct Served {
    pub peer: SocketAddr,
    pub id: u64,
    pub endpoint: Endpoint,
    pub chat: Rc<Chat>,
    pub links: Rc<Links>,
    pub draining: Rc<Cell<bool>>,
    pub rest: RestSettings,
}

/// Serves an accepted socket: a TLS handshake first when `tls` is set
/// (bounded by the handshake timeout, like a plain request head).
pub async fn serve(stream: TcpStream, tls: Option<Arc<Tls>>, s: Served) {
    let Some(tls) = tls else {
        return serve_stream(stream, s).await;
    };
    let handshake =
        futures_lite::future::or(async { Some(tls.acceptor().accept(stream).await) }, async {
            glommio::timer::sleep(s.endpoint.handshake_timeout).await;
            None
        })
        .await;
    match handshake {
        Some(Ok(stream)) => serve_stream(stream, s).await,
        Some(Err(e)) => tracing::debug!(peer = %s.peer, error = %e, "TLS handshake failed"),
        None => tracing::debug!(peer = %s.peer, "TLS handshake timed out"),
    }
}

async fn serve_stream<S>(stream: S, s: Served)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Served {
        peer,
        id,
        endpoint,
        chat,
        links,
        draining,
        rest,
    } = s;
    // Anything but a Socket.IO upgrade: REST and the probes, served by
    // hyper with keep-alive from the bytes already read.
    let other = async |stream: S, _req: transport::Request, read: Vec<u8>| {
        crate::rest::serve(stream, read, chat.clone(), draining.clone(), rest).await;
    };
    transport::serve(stream, peer, id, &endpoint, &*chat, &links, other).await;
}
