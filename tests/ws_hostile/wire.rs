//! A raw WebSocket client on a plain `TcpStream`: the upgrade request
//! written by hand and frames encoded and decoded here, so that a test can
//! send what no WebSocket library would (invalid close codes, invalid
//! UTF-8, a frame cut anywhere, pings while never reading) and see exactly
//! what the server answers. Shared by `ws_hostile.rs` and `ws_handshake.rs`
//! (`#[path]`).

#![allow(dead_code)]

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

/// How long any expected answer may take.
pub const WAIT: Duration = Duration::from_secs(10);

/// The usual upgrade request for the Engine.IO endpoint.
pub fn upgrade_request(port: u16, extra: &str) -> String {
    format!(
        "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{extra}\r\n"
    )
}

/// A TCP connection whose receive buffer is tiny (`bytes`), so that little
/// of what the server sends is absorbed on this side when it stops reading.
pub fn tcp_with_rcvbuf(addr: SocketAddr, bytes: usize) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("TCP connect");
    socket.into()
}

/// One connection, with what was read past the last thing parsed.
pub struct Wire {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

/// What the server sent in answer to an upgrade request.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    pub text: String,
}

impl Head {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.text.split("\r\n").skip(1).find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim()
                .eq_ignore_ascii_case(name)
                .then_some(value.trim())
        })
    }
}

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// A close frame with this code (None: an empty close frame) and reason.
    Close(Option<u16>, String),
    /// EOF or a read error without a close frame.
    Dropped(String),
}

impl Wire {
    /// Connects, sends `request` and reads the response head.
    pub fn request(addr: SocketAddr, request: &str) -> (Wire, Head) {
        let stream = TcpStream::connect(addr).expect("TCP connect");
        Self::request_on(stream, request)
    }

    /// [`Wire::request`] on a stream the caller set up.
    pub fn request_on(stream: TcpStream, request: &str) -> (Wire, Head) {
        stream.set_read_timeout(Some(WAIT)).expect("read timeout");
        let mut wire = Wire {
            stream,
            buf: Vec::new(),
        };
        wire.stream
            .write_all(request.as_bytes())
            .expect("send the request");
        let end = loop {
            if let Some(at) = wire.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break at;
            }
            wire.fill().expect("read the response head");
        };
        let text = String::from_utf8_lossy(&wire.buf[..end]).into_owned();
        wire.buf.drain(..end + 4);
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line: {text}"));
        (wire, Head { status, text })
    }

    /// Upgrades (asserting the 101) and reads the Engine.IO OPEN packet.
    pub fn open(addr: SocketAddr) -> Wire {
        Self::open_on(TcpStream::connect(addr).expect("TCP connect"))
    }

    /// [`Wire::open`] on a stream the caller set up.
    pub fn open_on(stream: TcpStream) -> Wire {
        let port = stream.peer_addr().expect("peer").port();
        let (mut wire, head) = Self::request_on(stream, &upgrade_request(port, ""));
        assert_eq!(head.status, 101, "upgrade refused: {}", head.text);
        let (op, open) = wire.read_frame().expect("the OPEN packet");
        assert!(
            op == 1 && open.starts_with(b"0{"),
            "expected OPEN, got {op} {open:?}"
        );
        wire
    }

    /// Sends `40{"token"}` and asserts the CONNECT is accepted.
    pub fn sio_connect(&mut self, token: &str) {
        self.send(&frame(
            0x81,
            format!(r#"40{{"token":"{token}"}}"#).as_bytes(),
        ));
        let reply = self.read_text();
        assert!(reply.starts_with("40{\"sid\""), "CONNECT refused: {reply}");
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// Sends, ignoring a failure (the server may close before all is written).
    pub fn try_send(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    fn fill(&mut self) -> io::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk)?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// The next server frame: (opcode, payload). Server frames are
    /// unmasked and, from this server, never fragmented.
    pub fn read_frame(&mut self) -> io::Result<(u8, Vec<u8>)> {
        self.read_frame_b0()
            .map(|(b0, payload)| (b0 & 0x0F, payload))
    }

    /// [`Wire::read_frame`] with the whole first byte (FIN | RSV | opcode).
    pub fn read_frame_b0(&mut self) -> io::Result<(u8, Vec<u8>)> {
        loop {
            if let Some((b0, payload, used)) = parse_server_frame(&self.buf) {
                self.buf.drain(..used);
                return Ok((b0, payload));
            }
            self.fill()?;
        }
    }

    /// The next text frame that is not an Engine.IO ping (pings answered).
    pub fn read_text(&mut self) -> String {
        loop {
            let (op, payload) = self.read_frame().expect("a text frame");
            let text = String::from_utf8(payload).expect("UTF-8 from the server");
            match op {
                1 if text == "2" => self.send(&frame(0x81, b"3")),
                1 => return text,
                8 => panic!("expected a text frame, got close {text:?}"),
                _ => {}
            }
        }
    }

    /// Reads until the close frame (or the end of the connection).
    pub fn until_closed(&mut self) -> Ended {
        loop {
            match self.read_frame() {
                Ok((8, payload)) => {
                    let code =
                        (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
                    let reason =
                        String::from_utf8_lossy(payload.get(2..).unwrap_or(&[])).into_owned();
                    return Ended::Close(code, reason);
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    panic!("connection still open after {WAIT:?}")
                }
                Err(e) => return Ended::Dropped(e.to_string()),
            }
        }
    }

    /// The close code the server ended with; panics on anything else.
    pub fn close_code(&mut self) -> u16 {
        match self.until_closed() {
            Ended::Close(Some(code), _) => code,
            other => panic!("expected a close frame with a code, got {other:?}"),
        }
    }
}

fn parse_server_frame(buf: &[u8]) -> Option<(u8, Vec<u8>, usize)> {
    let (b0, b1) = (*buf.first()?, *buf.get(1)?);
    let (len, at) = match b1 & 0x7F {
        126 => (u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?]) as usize, 4),
        127 => (
            u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize,
            10,
        ),
        n => (usize::from(n), 2),
    };
    let payload = buf.get(at..at + len)?.to_vec();
    Some((b0, payload, at + len))
}

const MASK: [u8; 4] = [0x5a, 0x13, 0xc7, 0x88];

/// The header of a masked client frame announcing `len` payload bytes;
/// the payload that follows must be masked with [`mask_from`].
pub fn frame_header(b0: u8, len: usize) -> Vec<u8> {
    let mut out = vec![b0];
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xFFFF {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
    out
}

/// `payload` masked as the bytes at offset `from` of a frame's payload.
pub fn mask_from(payload: &[u8], from: usize) -> Vec<u8> {
    payload
        .iter()
        .enumerate()
        .map(|(i, b)| b ^ MASK[(from + i) % 4])
        .collect()
}

/// A complete masked client frame; `b0` is FIN | RSV | opcode.
pub fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = frame_header(b0, payload.len());
    out.extend(mask_from(payload, 0));
    out
}

/// A close frame with `code` and `reason` (raw bytes, maybe not UTF-8).
pub fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason);
    frame(0x88, &payload)
}
