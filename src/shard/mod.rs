//! One shard: a pinned glommio executor that owns its listener, its
//! connections for their whole life, and its share of channels and users.
//!
//! Per shard: an SO_REUSEPORT listener on the public port (the kernel spreads
//! new connections), a [`Gate`] that every connection task enters (shutdown
//! waits on it), the mailbox receiver and flusher tasks, and a ticker for
//! timed chat work. State is `Rc`/`RefCell`; other shards are reached only
//! through [`crate::mailbox`].

pub(crate) mod admission;
mod conn;
pub(crate) mod handoff;
pub(crate) mod shutdown;

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
use crate::mailbox::{Mailbox, Mesh};
use crate::protocol::CloseReason;
use crate::transport::{Endpoint, Links};
pub(crate) use admission::Admission;
pub(crate) use shutdown::Shutdown;

/// Everything a shard is started with (shared by all shards, `Send`).
#[derive(Clone)]
pub(crate) struct ShardSetup {
    pub listen: SocketAddr,
    pub backlog: i32,
    pub endpoint: Endpoint,
    pub chat_limits: crate::chat::ChatLimits,
    /// The Gatrix dialects are on (`gatrix_compat`), and the backend's
    /// service token for its REST calls.
    pub gatrix_compat: bool,
    pub backend_service_token: Option<Arc<str>>,
    pub auth: Arc<crate::auth::Authenticator>,
    pub mesh: Arc<Mesh<Mail>>,
    /// Connections handed to the shard that holds their polling session.
    pub handoff: Arc<Mesh<handoff::Handoff>>,
    pub store: crate::chat::ChatStore,
    pub sessions: crate::chat::recovery::SessionStore,
    /// Several instances (Redis configured): the presence threads.
    pub cluster: Option<Arc<crate::chat::cluster::Cluster>>,
    pub admission: Arc<Admission>,
    pub shutdown: Arc<Shutdown>,
    pub drain_timeout: Duration,
    /// REST limits (body size, idle timeout, request rate).
    pub rest: crate::rest::RestSettings,
    /// The metric families; each shard takes its own handles at start.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Whether this port's REST router answers `GET /metrics`.
    pub metrics_on_main_port: bool,
    /// At most one log line per refusal reason in this interval
    /// (`REFUSAL_LOG_INTERVAL_MS`).
    pub refusal_log_interval: Duration,
    /// TLS for the public port, when configured.
    pub tls: Option<Arc<crate::tls::Tls>>,
    /// The systemd watchdog's per-shard heartbeats and how often to beat.
    pub heartbeat: Option<(Arc<crate::notify::Heartbeats>, Duration)>,
}

/// Binds this shard's listener on the shared port.
pub(crate) fn bind(addr: SocketAddr, backlog: i32) -> std::io::Result<TcpListener> {
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
/// `on_bound` is called once the listener is bound (`true`) or binding
/// failed (`false`).
pub(crate) async fn run(
    shard: usize,
    setup: ShardSetup,
    on_bound: impl FnOnce(bool),
) -> std::io::Result<()> {
    let listener = bind(setup.listen, setup.backlog);
    on_bound(listener.is_ok());
    let listener = listener?;
    let mut metrics = setup.metrics.shard(shard);
    if setup.metrics_on_main_port {
        metrics = metrics.serving(setup.metrics.clone());
    }
    metrics.refusals = metrics.refusals.with_interval(setup.refusal_log_interval);
    let mail = Mailbox::new(setup.mesh.clone(), shard);
    let chat = Chat::new(
        mail.clone(),
        setup.auth.clone(),
        setup.store.clone(),
        setup.sessions.clone(),
        setup.chat_limits.clone(),
        metrics.clone(),
        setup.cluster.clone(),
    );
    let rest_context = Rc::new(crate::rest::Context {
        auth: setup.auth.clone(),
        store: setup.store.clone(),
        metrics: metrics.clone(),
        max_message_length: setup.chat_limits.max_message_length,
        chat: crate::rest::ChatApi::new(chat.clone()),
        gatrix: setup.gatrix_compat.then(|| crate::rest::GatrixRest {
            service_token: setup.backend_service_token.clone(),
            directory: setup.chat_limits.directory.clone(),
            server_id: setup.chat_limits.server_id.clone(),
            require_known: setup.chat_limits.require_known_users,
        }),
    });
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
                metrics.mailbox_depth.set(batch.len() as i64);
                for m in batch.drain(..) {
                    chat.handle(m);
                }
            }
        }
    });
    // The systemd watchdog pings only while every shard's loop runs this.
    let heartbeat = setup.heartbeat.clone().map(|(beats, period)| {
        glommio::spawn_local(async move {
            loop {
                beats.beat(shard);
                glommio::timer::sleep(period).await;
            }
        })
    });
    let ticker = glommio::spawn_local({
        let chat = chat.clone();
        async move {
            loop {
                glommio::timer::sleep(Duration::from_millis(250)).await;
                chat.tick();
                // Refusals left out of the log in a past second.
                chat.metrics().refusals.flush();
            }
        }
    });

    let mut endpoint = setup.endpoint.clone();
    endpoint.refusals = Some(metrics.refusals.clone());
    let counter = Rc::new(Cell::new(0u64));
    let next_id = {
        let counter = counter.clone();
        move || {
            counter.set(counter.get() + 1);
            crate::chat::mail::conn_id(shard, counter.get())
        }
    };
    let polls = crate::transport::polling::Polls::new(
        shard,
        setup.handoff.shards(),
        Rc::new(endpoint.clone()),
        chat.clone(),
        links.clone(),
        crate::transport::polling::Hooks {
            next_id: Box::new(next_id.clone()),
            admit: {
                let admission = setup.admission.clone();
                Box::new(move |ip| {
                    admission
                        .admit(ip)
                        .map(|t| Box::new(t) as Box<dyn std::any::Any>)
                        .map_err(|r| r.response())
                })
            },
            spawn: {
                let gate = gate.clone();
                Box::new(move |task| {
                    if let Ok(t) = gate.spawn(task) {
                        t.detach();
                    }
                })
            },
        },
    );
    let shared = Rc::new(conn::Shared {
        endpoint,
        chat: chat.clone(),
        links: links.clone(),
        draining: draining.clone(),
        rest: setup.rest,
        rest_context,
        tls: setup.tls.clone(),
        polls,
        handoff: setup.handoff.clone(),
    });
    // Connections other shards hand over (see `handoff`).
    let handed = glommio::spawn_local({
        let (inbox, shared, gate, next_id) = (
            Mailbox::new(setup.handoff.clone(), shard),
            shared.clone(),
            gate.clone(),
            next_id.clone(),
        );
        async move {
            let mut batch = Vec::new();
            loop {
                inbox.recv(&mut batch).await;
                for h in batch.drain(..) {
                    let handoff::Handoff {
                        fd,
                        peer,
                        read,
                        ticket,
                        tls,
                    } = h;
                    // SAFETY: a connected TCP socket's descriptor, ours now.
                    let stream = unsafe {
                        glommio::net::TcpStream::from_raw_fd(std::os::fd::IntoRawFd::into_raw_fd(
                            fd,
                        ))
                    };
                    let accepted = conn::Accepted {
                        stream,
                        peer,
                        id: next_id(),
                        admit: Ok(ticket),
                        handed: Some(conn::Handed { read, tls }),
                    };
                    spawn_conn(accepted, &shared, &gate, shard);
                }
            }
        }
    });
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
        let accepted = conn::Accepted {
            stream,
            peer,
            id: next_id(),
            admit,
            handed: None,
        };
        spawn_conn(accepted, &shared, &gate, shard);
    }

    // Drain: no new connections; every connection is asked to reconnect
    // elsewhere; wait for them up to the deadline.
    draining.set(true);
    drop(listener);
    links.close_all(CloseReason::ServerShutdown);
    let (conns, channels) = chat.stats();
    tracing::info!(shard, connections = conns, channels, "draining");
    let closed = crate::within::within(setup.drain_timeout, gate.close()).await;
    if closed.is_none_or(|c| c.is_err()) {
        tracing::warn!(
            shard,
            left = links.len(),
            "drain deadline passed; dropping the rest"
        );
    }
    ticker.cancel().await;
    handed.cancel().await;
    if let Some(h) = heartbeat {
        h.cancel().await;
    }
    receiver.cancel().await;
    flusher.cancel().await;
    Ok(())
}

/// Runs one connection as a task of the shard's gate.
fn spawn_conn(accepted: conn::Accepted, shared: &Rc<conn::Shared>, gate: &Gate, shard: usize) {
    let id = accepted.id;
    // Every event logged while serving the connection carries its id
    // and shard, and its user once the Socket.IO CONNECT authenticates.
    // A debug span: at the default `info` it is disabled and entering it
    // on every poll of the task is a null check; an enabled span takes
    // the log filter's process-wide lock on each enter and exit, a cost
    // for debugging sessions only. (The connection logs are at debug.)
    let span = tracing::debug_span!("conn", conn = id, shard, user = tracing::field::Empty);
    // Two phases (`transport::serve`, see `conn`): the opening is boxed
    // outside the task, so the task holds a pointer to it, and the task is
    // boxed before the gate wraps it, so the wrapper holds a pointer too.
    let opening = Box::pin(conn::open(accepted, shared.clone()));
    let sh = shared.clone();
    let fut = Box::pin(tracing::Instrument::instrument(
        async move { crate::transport::serve(opening, &sh.endpoint, &*sh.chat, &sh.links).await },
        span,
    ));
    if let Ok(t) = gate.spawn(fut) {
        t.detach();
    }
}
