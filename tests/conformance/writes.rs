//! The handshake as the official socket.io-protocol suite reads it. Its
//! client (Node's `ws`) emits every frame of one socket read at once while
//! the suite awaits one frame at a time, so a frame that shares a read with
//! the one awaited is lost to it: the CONNECT reply and the packets the
//! server sends right after it must leave in separate writes. The client
//! here reads the socket itself and looks at what each read returns.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use super::server;

/// A WebSocket client on a plain socket: one `read` call per [`Raw::read`].
struct Raw {
    s: TcpStream,
    /// Bytes of a frame not complete at the end of a read.
    carry: Vec<u8>,
}

impl Raw {
    /// Upgrades and returns the client with the frames that came with the
    /// 101 (the OPEN packet, read until it is complete).
    fn open() -> (Raw, Vec<String>) {
        let mut s = TcpStream::connect(server()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\n\
              Upgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 4096];
        let end = loop {
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed during the upgrade");
            head.extend_from_slice(&buf[..n]);
            if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        assert!(head.starts_with(b"HTTP/1.1 101"), "{head:?}");
        let mut raw = Raw {
            s,
            carry: head[end..].to_vec(),
        };
        let mut frames = raw.take_frames();
        while frames.is_empty() {
            frames = raw.read();
        }
        (raw, frames)
    }

    /// Sends one masked text frame.
    fn send(&mut self, text: &str) {
        let p = text.as_bytes();
        assert!(p.len() < 126);
        let mask = [1u8, 2, 3, 4];
        let mut f = vec![0x81, 0x80 | p.len() as u8];
        f.extend_from_slice(&mask);
        f.extend(p.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.s.write_all(&f).unwrap();
    }

    /// One `read` from the socket: the text frames it completed.
    fn read(&mut self) -> Vec<String> {
        let mut buf = [0u8; 64 * 1024];
        let n = self.s.read(&mut buf).expect("read within 5 s");
        assert!(n > 0, "closed by the server");
        self.carry.extend_from_slice(&buf[..n]);
        self.take_frames()
    }

    /// The complete frames at the front of `carry` (server frames are not
    /// masked and, here, small).
    fn take_frames(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            let c = &self.carry;
            if c.len() < 2 {
                break;
            }
            let (len, at) = match c[1] & 0x7f {
                126 if c.len() >= 4 => (u16::from_be_bytes([c[2], c[3]]) as usize, 4),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if c.len() < at + len {
                break;
            }
            assert_eq!(c[0], 0x81, "a text frame");
            out.push(String::from_utf8(c[at..at + len].to_vec()).unwrap());
            self.carry.drain(..at + len);
        }
        out
    }
}

/// `40` is answered by the CONNECT reply in one write and the `auth` event
/// in another, as the reference server does: a client that reads once per
/// awaited frame sees both. Repeated: one write always shares a read (500
/// of 500 rounds before the fix), two writes a moment apart did not once
/// in 500 rounds.
#[test]
fn connect_reply_and_next_packet_leave_in_separate_writes() {
    for nsp in ["", "/custom,"].repeat(10) {
        let (mut c, open) = Raw::open();
        assert_eq!(open.len(), 1, "{open:?}");
        assert!(open[0].starts_with("0{"), "{open:?}");
        c.send(&format!("40{nsp}"));
        let first = c.read();
        assert_eq!(first.len(), 1, "one frame per write: {first:?}");
        assert!(
            first[0].starts_with(&format!("40{nsp}{{\"sid\"")),
            "{first:?}"
        );
        let second = c.read();
        assert_eq!(second, vec![format!("42{nsp}[\"auth\",{{}}]")]);
    }
}
