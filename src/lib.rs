//! gatrix-chat: a thread-per-core, Socket.IO v4-compatible chat server.
//!
//! The map, from the wire inwards (docs/architecture.md draws the same):
//! - [`transport`]: accepted TCP stream → HTTP request head → WebSocket
//!   upgrade, Engine.IO long-polling and its upgrade (the session on its
//!   shard), or a small HTTP answer (refusals).
//! - [`protocol`]: Engine.IO v4 / Socket.IO v5: the codec, the session
//!   state whatever the transport, the WebSocket driver and its bounded outbound queue ([`protocol::Link`]),
//!   and the [`protocol::Handler`] interface the application implements.
//! - `chat`: the chat commands (join, leave, send, typing, presence) as a
//!   `Handler`, split by role: connection side, channel owner, user owner.
//! - `rest`: the REST API and the probes over hyper (HTTP/1.1,
//!   keep-alive), for requests that are not a Socket.IO upgrade.
//! - `shard`: one pinned glommio executor per core: listener, connections,
//!   admission limits, shutdown.
//! - [`mailbox`]: the lock-free rings between shards (and from other
//!   threads to a shard), generic over the message.
//! - `bus`: with Redis, several instances on one MySQL database as one
//!   server: the ordered log of commits every instance applies.
//! - [`server`]: the main thread: starts the shards and waits for signals.
//! - [`config`], [`cli`]: settings (file < env < flags) and the command line.
//! - `auth`: JWT verification; [`ids`]: session tokens and message ids.
//! - `fuzzing` (feature `fuzzing` only): the fuzz targets' entry points
//!   (fuzz/, docs/fuzzing.md).
//! - [`metrics`]: Prometheus metrics, per-shard handles; `notify`: systemd
//!   sd_notify and watchdog; `tls`: HTTPS/WSS on the public port;
//!   [`within`]: a future with a deadline on the shard's timer.

// Items the binary, the tests, the examples and the fuzz targets do not
// use stay crate-private, so rustc reports dead code (docs/architecture.md).
#![warn(unreachable_pub)]

pub(crate) mod auth;
pub(crate) mod bus;
pub(crate) mod chat;
pub mod cli;
pub mod config;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod mailbox;
pub mod metrics;
pub(crate) mod notify;
pub mod protocol;
pub(crate) mod redis_link;
pub(crate) mod rest;
pub mod server;
pub(crate) mod shard;
pub mod store;
#[cfg(test)]
pub(crate) mod testing;
pub(crate) mod tls;
pub mod transport;
pub mod within;
