//! Handing a connection to the shard that holds its polling session.
//!
//! With SO_REUSEPORT the kernel gives each new TCP connection to any
//! shard, but a long-polling session lives on one shard (its link, its
//! namespace sockets, its place in the chat state are `Rc`s there). Its
//! sid ends with that shard's number, so the shard that read a request
//! for it knows the holder at once, asks no one, and gives it the socket:
//! a duplicate of the file descriptor, the bytes already read (the request
//! itself, the start of a POST's body) and the connection's admission
//! ticket, through a lock-free queue of the holder ([`Mesh::post_external`],
//! a `SegQueue` and a waker). The holder serves the request as if it had
//! accepted the connection, and keeps the connection (keep-alive) after.
//! Nothing crosses shards on the message path, and a request costs one
//! hand-over at most: clients that keep their connection (browsers,
//! socket.io-client, python-socketio) are handed over once per connection.
//!
//! A TLS session is handed over too: its whole state (keys, sequence
//! numbers, records received and not yet decrypted, plaintext not yet
//! read) is rustls's `ServerConnection`, which is `Send`; it travels boxed
//! with the descriptor, and the holder wraps the socket in it again without
//! a new handshake ([`resume`]). A moved session keeps its own keys and
//! certificate: a SIGHUP reload only changes what new handshakes get.
//!
//! Nothing is lost on the way: glommio's `TcpStream` (not `buffered`)
//! reads straight into the caller's buffer and holds no bytes of its own,
//! so what the kernel has not given yet stays in the socket, shared by the
//! duplicate; what was read is in `read` (plaintext) or in the
//! `ServerConnection` (TLS records read and not yet decrypted).

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use futures_rustls::TlsAcceptor;
use futures_rustls::server::TlsStream;
use glommio::net::TcpStream;
use rustls::ServerConnection;

use super::admission::Ticket;

/// A connection on its way to another shard.
pub(crate) struct Handoff {
    pub fd: OwnedFd,
    pub peer: SocketAddr,
    /// Every byte read from it so far, the request included.
    pub read: Vec<u8>,
    pub ticket: Ticket,
    /// The TLS session, when the port speaks TLS (boxed: it is large, and
    /// a plain connection's hand-over should not carry its space).
    pub tls: Option<Box<ServerConnection>>,
}

/// A duplicate of `stream`'s descriptor, which outlives the stream's own
/// (closed when the stream is dropped here).
pub(crate) fn duplicate(stream: &impl AsRawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: the descriptor is open for as long as `stream` is borrowed.
    unsafe { BorrowedFd::borrow_raw(stream.as_raw_fd()) }.try_clone_to_owned()
}

/// Wraps a handed-over socket in its TLS session again. futures-rustls has
/// no constructor from parts, so this swaps the moved session into the
/// fresh one `accept_with` makes; the `Accept` future then does no
/// handshake, since the session is past it (`MidHandshake::poll` runs the
/// handshake only `while session.is_handshaking()`), and only flushes
/// what the session has to send, if anything (futures-rustls 0.26.0,
/// src/common/handshake.rs). The fresh session, made from the acceptor's
/// current config, is dropped unused.
pub(crate) async fn resume(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    mut session: Box<ServerConnection>,
) -> std::io::Result<TlsStream<TcpStream>> {
    acceptor
        .accept_with(stream, |fresh| std::mem::swap(fresh, &mut *session))
        .await
}
