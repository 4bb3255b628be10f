//! One shard: a pinned glommio executor that owns its listener, its
//! connections for their whole life, and its share of channels and users.
//!
//! Per shard: an SO_REUSEPORT listener on the public port (the kernel spreads
//! new connections), a [`Gate`] that every connection task enters (shutdown
//! waits on it), the mailbox receiver and flusher tasks, and a ticker for
//! timed chat work. State is `Rc`/`RefCell`; other shards are reached only
//! through [`mailbox`].

pub mod admission;
pub mod mailbox;
pub mod shutdown;

use std::cell::Cell;
use std::net::SocketAddr;
use std::os::fd::IntoRawFd;
use std::os::unix::io::FromRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use glommio::net::TcpListener;
use glommio::sync::Gate;

use crate::chat::{Chat, Mail};
use crate::protocol::CloseReason;
use crate::transport::{self, Endpoint, Links, Response};
pub use admission::Admission;
use mailbox::{Mailbox, Mesh};
pub use shutdown::Shutdown;

/// Everything a shard is started with (shared by all shards, `Send`).
#[derive(Clone)]
pub struct ShardSetup {
    pub listen: SocketAddr,
    pub backlog: i32,
    pub endpoint: Endpoint,
    pub chat_limits: crate::chat::ChatLimits,
    pub auth: Arc<crate::auth::Authenticator>,
    pub mesh: Arc<Mesh<Mail>>,
    pub store: crate::chat::ChatStore,
    pub sessions: Arc<crate::chat::recovery::Sessions>,
    pub admission: Arc<Admission>,
    pub shutdown: Arc<Shutdown>,
    pub drain_timeout: Duration,
    /// REST limits (body size, idle timeout, request rate).
    pub rest: crate::rest::RestSettings,
}

/// Binds this shard's listener on the shared port.
pub fn bind(addr: SocketAddr, backlog: i32) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    sock.set_tcp_nodelay(true)?;
    sock.bind(&addr.into())?;
    sock.listen(backlog)?;
    // SAFETY: the fd is a bound, listening TCP socket that we own.
    Ok(unsafe { TcpListener::from_raw_fd(sock.into_raw_fd()) })
}

/// The shard's life: serve until shutdown, then drain.
/// `on_bound` is called once the listener is bound (or binding failed).
pub async fn run(shard: usize, setup: ShardSetup, on_bound: impl FnOnce()) -> std::io::Result<()> {
    let listener = bind(setup.listen, setup.backlog);
    on_bound();
    let listener = listener?;
    let mail = Mailbox::new(setup.mesh.clone(), shard);
    let chat = Chat::new(
        mail.clone(),
        setup.auth.clone(),
        setup.store.clone(),
        setup.sessions.clone(),
        setup.chat_limits.clone(),
    );
    let links = Rc::new(Links::default());
    let gate = Gate::new();
    let draining = Rc::new(Cell::new(false));

    let flusher = glommio::spawn_local({
        let mail = mail.clone();
        async move { mail.run_flusher().await }
    });
    let receiver = glommio::spawn_local({
        let (mail, chat) = (mail.clone(), chat.clone());
        async move {
            let mut batch = Vec::new();
            loop {
                mail.recv(&mut batch).await;
                for m in batch.drain(..) {
                    chat.handle(m);
                }
            }
        }
    });
    let ticker = glommio::spawn_local({
        let chat = chat.clone();
        async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(250)).await;
                chat.tick();
            }
        }
    });

    let endpoint = Rc::new(setup.endpoint.clone());
    let mut counter = 0u64;
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = futures_lite::future::or(async { Some(listener.accept().await) }, async {
            setup.shutdown.wait(shard).await;
            None
        })
        .await;
        let stream = match accepted {
            None => break,
            Some(Ok(s)) => {
                backoff = Duration::from_millis(5);
                s
            }
            Some(Err(e)) => {
                // EMFILE and friends: back off instead of spinning or dying.
                tracing::warn!(shard, error = %e, "accept failed; backing off");
                glommio::timer::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else {
            continue;
        };
        let admit = setup.admission.admit(peer.ip());
        counter += 1;
        let id = crate::chat::mail::conn_id(shard, counter);
        let (chat, links, ep, draining, rest) = (
            chat.clone(),
            links.clone(),
            endpoint.clone(),
            draining.clone(),
            setup.rest,
        );
        // Boxed before the gate wraps it, so the wrapper holds a pointer
        // rather than a second copy of the connection's state.
        let task = gate.spawn(Box::pin(async move {
            let mut stream = stream;
            let _guard = match admit {
                Ok(g) => g,
                Err(refusal) => {
                    let r = Response::error(503, "UNAVAILABLE", refusal.message());
                    let _ = Box::pin(transport::http::write_response(&mut stream, &r)).await;
                    return;
                }
            };
            // Anything but a Socket.IO upgrade: REST and the probes, served
            // by hyper with keep-alive from the bytes already read.
            let other =
                async |stream: glommio::net::TcpStream, _req: transport::Request, read: Vec<u8>| {
                    crate::rest::serve(stream, read, chat.clone(), draining.clone(), rest).await;
                };
            transport::serve(stream, peer, id, &ep, &*chat, &links, other).await;
        }));
        if let Ok(t) = task {
            t.detach();
        }
    }

    // Drain: no new connections; every connection is asked to reconnect
    // elsewhere; wait for them up to the deadline.
    draining.set(true);
    drop(listener);
    links.close_all(CloseReason::ServerShutdown);
    let (conns, channels) = chat.stats();
    tracing::info!(shard, connections = conns, channels, "draining");
    let closed = futures_lite::future::or(async { gate.close().await.is_ok() }, async {
        glommio::timer::sleep(setup.drain_timeout).await;
        false
    })
    .await;
    if !closed {
        tracing::warn!(
            shard,
            left = links.len(),
            "drain deadline passed; dropping the rest"
        );
    }
    ticker.cancel().await;
    receiver.cancel().await;
    flusher.cancel().await;
    Ok(())
}
