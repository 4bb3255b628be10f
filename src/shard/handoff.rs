//! Handing a connection to the shard that holds its polling session.
//!
//! With SO_REUSEPORT the kernel gives each new TCP connection to any
//! shard, but a long-polling session lives on one shard (its link, its
//! namespace sockets, its place in the chat state are `Rc`s there). Its
//! sid ends with that shard's number, so the shard that read a request
//! for it knows the owner at once, asks no one, and gives it the socket:
//! a duplicate of the file descriptor, the bytes already read (the request
//! itself, the start of a POST's body) and the connection's admission
//! ticket, through a lock-free queue of the owner ([`Mesh::post_external`],
//! a `SegQueue` and a waker). The owner serves the request as if it had
//! accepted the connection, and keeps the connection (keep-alive) after.
//! Nothing crosses shards on the message path, and a request costs one
//! hand-over at most: clients that keep their connection (browsers,
//! socket.io-client, python-socketio) are handed over once per connection.
//!
//! A TLS session cannot be handed over (its state is the shard's): with
//! `TLS_CERT_FILE` and several shards, a request that lands on another
//! shard is answered as an unknown sid; terminate TLS in front (the
//! proxy's connections then land anywhere and are handed over), or use
//! WebSocket-only clients (docs/operations.md).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use super::admission::Ticket;

/// A connection on its way to another shard.
pub struct Handoff {
    pub fd: OwnedFd,
    pub peer: SocketAddr,
    /// Every byte read from it so far, the request included.
    pub read: Vec<u8>,
    pub ticket: Ticket,
}

/// A duplicate of `stream`'s descriptor, which outlives the stream's own
/// (closed when the stream is dropped here).
pub fn duplicate(stream: &impl AsRawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: the descriptor is open for as long as `stream` is borrowed.
    unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned()
}
