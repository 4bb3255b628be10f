//! A Socket.IO server set up as the official socket.io-protocol test suite
//! expects, built on gatrix-chat's protocol layer alone (no chat):
//!
//! - listens on 127.0.0.1:3000 (or the address given as the first argument);
//! - pingInterval 300 ms, pingTimeout 200 ms, maxPayload 1000000,
//!   connectTimeout 1000 ms;
//! - on connect to `/` or `/custom`, emits `auth` with the handshake auth;
//! - echoes `message` as `message-back` with the same arguments (binary
//!   attachments included);
//! - answers `message-with-ack` with an ack of its arguments.
//!
//! Each connection runs the server's own connection task
//! (`transport::serve`, as on a shard) with this handler: WebSocket, and
//! long-polling with its upgrade (the sessions on this one executor).
//! Run: `cargo run --example socketio_conformance`. tests/conformance.rs
//! drives this same code.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use gatrix_chat::protocol::packet::{self, PacketType};
use gatrix_chat::protocol::{
    DisconnectReason, Event, Frame, Handler, Handshake, Link, Options, QueueLimits, Refusal,
};
use gatrix_chat::transport::{self, Endpoint, Links};
use serde_json::Value;

/// One connected namespace socket: where to write and which namespace.
pub struct Socket {
    link: Rc<Link>,
    nsp: String,
    auth: Value,
}

pub struct Conformance;

impl Conformance {
    /// Emits or acks `args` (with their attachments, if any) on `socket`.
    fn send(socket: &Socket, kind: PacketType, name: Option<&str>, ack: Option<u64>, ev: &Event) {
        let mut array: Vec<Value> = name.map(|n| Value::String(n.into())).into_iter().collect();
        array.extend(ev.args.iter().cloned());
        if ev.attachments.is_empty() {
            let args = Value::Array(array).to_string();
            let inner = &args[1..args.len() - 1];
            let text = match (kind, name) {
                (PacketType::Ack, _) => packet::encode_ack(&socket.nsp, ack.unwrap_or(0), inner),
                (_, Some(_)) => format!("42{}{}", nsp_prefix(&socket.nsp), args),
                _ => return,
            };
            let _ = socket.link.push_text(text);
        } else {
            let binary_kind = if kind == PacketType::Ack {
                PacketType::BinaryAck
            } else {
                PacketType::BinaryEvent
            };
            let header = packet::encode_binary(
                binary_kind,
                &socket.nsp,
                ack,
                ev.attachments.len(),
                &Value::Array(array),
            );
            let _ = socket.link.push_text(header);
            for a in &ev.attachments {
                let _ = socket.link.push(Frame::Binary(a.clone()));
            }
        }
    }
}

fn nsp_prefix(nsp: &str) -> String {
    if nsp == "/" {
        String::new()
    } else {
        format!("{nsp},")
    }
}

impl Handler for Conformance {
    type Socket = Socket;

    fn connect(
        &self,
        link: &Rc<Link>,
        _hs: &Handshake,
        nsp: &str,
        auth: Option<Value>,
    ) -> Result<Socket, Refusal> {
        if nsp != "/" && nsp != "/custom" {
            return Err(Refusal::InvalidNamespace);
        }
        Ok(Socket {
            link: link.clone(),
            nsp: nsp.to_owned(),
            auth: auth.unwrap_or_else(|| Value::Object(Default::default())),
        })
    }

    fn connected(&self, socket: &Socket, _sid: &str) {
        let frame = packet::encode_event(&socket.nsp, None, "auth", &socket.auth.to_string());
        let _ = socket.link.push_text(frame);
    }

    fn event(&self, socket: &Socket, ev: Event) {
        match ev.name.as_str() {
            "message" => Self::send(socket, PacketType::Event, Some("message-back"), None, &ev),
            "message-with-ack" => {
                if let Some(id) = ev.ack_id {
                    Self::send(socket, PacketType::Ack, None, Some(id), &ev);
                }
            }
            _ => {}
        }
    }

    fn disconnect(&self, _socket: Socket, _reason: DisconnectReason) {}
}

/// The suite's settings.
pub fn endpoint() -> Endpoint {
    let max_payload = 1_000_000;
    Endpoint {
        opts: Options {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            connect_timeout: Duration::from_millis(1000),
            max_payload,
            // The suite's CONNECTs are small, but it is about the protocol:
            // no smaller limit before CONNECT.
            max_payload_before_connect: max_payload,
        },
        queue: QueueLimits {
            max_frames: 1024,
            max_bytes: 8 << 20,
        },
        max_header_bytes: 16 * 1024,
        handshake_timeout: Duration::from_secs(10),
        origins: gatrix_chat::transport::origin::OriginPolicy::any(),
        refusals: None,
        // As the server by default (permessage-deflate when offered).
        compression: gatrix_chat::config::Config::default().compression(),
    }
}

/// Serves on `addr` on the calling thread (one glommio executor) forever.
/// `ready` is called with the bound address.
pub fn serve(addr: SocketAddr, ready: impl FnOnce(SocketAddr) + Send + 'static) {
    glommio::LocalExecutorBuilder::default()
        .io_memory(512 << 10)
        .spawn(move || async move {
            let listener = glommio::net::TcpListener::bind(addr).expect("bind");
            ready(listener.local_addr().expect("local addr"));
            let (ep, links, handler) = (
                Rc::new(endpoint()),
                Rc::new(Links::default()),
                Rc::new(Conformance),
            );
            // Long-polling sessions: one shard, ids above the accepted
            // connections', no connection limit.
            let polls = Rc::new(transport::polling::Polls::new(
                0,
                1,
                ep.clone(),
                handler.clone(),
                links.clone(),
                transport::polling::Hooks {
                    next_id: Box::new({
                        let n = std::cell::Cell::new(1u64 << 40);
                        move || {
                            n.set(n.get() + 1);
                            n.get()
                        }
                    }),
                    admit: Box::new(|_| Ok(Box::new(()))),
                    spawn: Box::new(|task| {
                        glommio::spawn_local(task).detach();
                    }),
                },
            ));
            let mut id = 0;
            loop {
                let Ok(stream) = listener.accept().await else {
                    continue;
                };
                let Ok(peer) = stream.peer_addr() else {
                    continue;
                };
                id += 1;
                let (ep, links, handler, polls) =
                    (ep.clone(), links.clone(), handler.clone(), polls.clone());
                glommio::spawn_local(async move {
                    let not_found = async |mut s: glommio::net::TcpStream, _req, _read| {
                        let r = transport::Response::error(404, "NOT_FOUND", "no such path");
                        let _ = transport::http::write_response(&mut s, &r).await;
                        None
                    };
                    // The server's own connection task: the opening (no
                    // admission, no TLS, 404 for other paths), then the
                    // session with this handler.
                    let (ep, links, polls) = (&*ep, &*links, Some(&*polls));
                    let opening = Box::pin(async move {
                        let opened = transport::open(
                            stream,
                            Vec::new(),
                            peer,
                            id,
                            ep,
                            links,
                            polls,
                            not_found,
                        );
                        opened.await.here().await.map(|upgraded| (upgraded, ()))
                    });
                    transport::serve(opening, ep, &*handler, links).await;
                })
                .detach();
            }
        })
        .expect("executor")
        .join()
        .expect("join");
}

#[allow(dead_code)]
fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:3000".into());
    let addr: SocketAddr = addr.parse().expect("address as IP:PORT");
    serve(addr, |a| {
        println!("socket.io conformance server listening on {a}")
    });
}
