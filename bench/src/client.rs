//! The benchmark's own Socket.IO v4 client over WebSocket: one small state per
//! connection, driven by the worker thread's current-thread runtime.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::proto;
use frames::{base64_key, server_frame};

mod frames;

/// How connections get their JWT.
#[derive(Clone)]
pub enum Tokens {
    /// Mint HS256 tokens, one user per connection.
    Secret(Vec<u8>),
    /// One token for everyone (from `--token-cmd`).
    Fixed(String),
}

impl Tokens {
    pub fn for_user(&self, user: &str) -> Result<String> {
        match self {
            Tokens::Fixed(t) => Ok(t.clone()),
            Tokens::Secret(secret) => {
                let now = now_ns() / 1_000_000_000;
                let claims = json!({"sub": user, "name": user, "iat": now, "exp": now + 86_400});
                let key = jsonwebtoken::EncodingKey::from_secret(secret);
                Ok(jsonwebtoken::encode(
                    &jsonwebtoken::Header::default(),
                    &claims,
                    &key,
                )?)
            }
        }
    }
}

/// Where and how to connect.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub addr: SocketAddr,
    pub source_ips: Vec<IpAddr>,
    pub tokens: Tokens,
    /// Offer permessage-deflate and require it.
    pub deflate: bool,
}

impl Target {
    fn source(&self, idx: usize) -> Option<IpAddr> {
        (!self.source_ips.is_empty()).then(|| self.source_ips[idx % self.source_ips.len()])
    }
}

/// Wall-clock Unix time in ns (shared between processes on one host).
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// TCP connect, optionally from a given source address. The port is picked at
/// connect time (IP_BIND_ADDRESS_NO_PORT) so each source address gets its own
/// ephemeral port range per destination.
pub async fn tcp_connect(addr: SocketAddr, src: Option<IpAddr>) -> Result<TcpStream> {
    let domain = if addr.is_ipv4() {
        socket2::Domain::IPV4
    } else {
        socket2::Domain::IPV6
    };
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_nonblocking(true)?;
    if let Some(ip) = src {
        set_bind_no_port(&s);
        s.bind(&SocketAddr::new(ip, 0).into())?;
    }
    let sock = TcpSocket::from_std_stream(s.into());
    let stream = sock.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// IP_BIND_ADDRESS_NO_PORT: best effort (Linux only; harmless if refused).
fn set_bind_no_port(s: &socket2::Socket) {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on an open socket with a c_int option value.
    unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// Bytes read from the server by every connection (the wire cost of what
/// it sends: frames and their headers, compressed or not).
pub static WIRE_BYTES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Joins that had to be retried (reported in the summary).
pub static JOIN_RETRIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One Socket.IO connection over a WebSocket framed by hand.
///
/// The benchmark's receivers are its hot path: at 2,000,000 deliveries/s
/// each message may cost it only a few hundred ns, and tungstenite's
/// per-message path (a zeroed read buffer, two atomic wakers per poll, a
/// copy per frame) cost more than the server's. Here a connection reads
/// whatever the socket has into one buffer (no zeroing) and hands out
/// every text frame in it as a `&str` into that buffer. Outgoing frames
/// are masked and queued in `wbuf`, and written with plain `write` calls
/// whose progress is kept, so dropping a future (`select!`) never leaves a
/// half-written frame.
pub struct Conn {
    stream: TcpStream,
    rbuf: Vec<u8>,
    rpos: usize,
    wbuf: Vec<u8>,
    wpos: usize,
    mask_seed: u32,
    next_ack: u64,
    /// permessage-deflate was negotiated: the inflater (reset per message:
    /// the server sends without context takeover) and its output.
    inflater: Option<Box<flate2::Decompress>>,
    inflated: Vec<u8>,
}

/// Read buffer growth step (one read takes at most what is free in it).
const READ_CHUNK: usize = 16 * 1024;

impl Conn {
    /// TCP, WebSocket upgrade, Engine.IO OPEN, Socket.IO CONNECT with the token.
    pub async fn open(t: &Target, idx: usize, user: &str) -> Result<Conn> {
        let token = t.tokens.for_user(user)?;
        let stream = tcp_connect(t.addr, t.source(idx))
            .await
            .context("tcp connect")?;
        let mut c = Conn {
            stream,
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: Vec::new(),
            wpos: 0,
            mask_seed: (idx as u32).wrapping_mul(0x9E37_79B9) | 1,
            next_ack: 1,
            inflater: None,
            inflated: Vec::new(),
        };
        c.upgrade(&t.host, t.deflate)
            .await
            .context("websocket upgrade")?;
        let open = c.next_text().await?;
        if !open.starts_with('0') {
            bail!("expected Engine.IO OPEN, got {open:.80}");
        }
        c.send(format!("40{}", json!({ "token": token }))).await?;
        loop {
            let f = c.next_text().await?;
            if f.starts_with("40") {
                return Ok(c);
            }
            if f.starts_with("44") {
                bail!("connect refused: {f:.120}");
            }
        }
    }

    async fn upgrade(&mut self, host: &str, deflate: bool) -> Result<()> {
        let key = base64_key(self.next_mask());
        let offer = if deflate {
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        } else {
            ""
        };
        let req = format!(
            "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: {host}\r\n\
             Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\n{offer}\r\n"
        );
        self.stream.write_all(req.as_bytes()).await?;
        let head_end = loop {
            if let Some(at) = memchr::memmem::find(&self.rbuf, b"\r\n\r\n") {
                break at + 4;
            }
            if self.rbuf.len() > 16 * 1024 {
                bail!("response head too large");
            }
            self.fill().await?;
        };
        let head = String::from_utf8_lossy(&self.rbuf[..head_end]).into_owned();
        if head.split_whitespace().nth(1) != Some("101") {
            bail!("upgrade refused: {}", head.lines().next().unwrap_or(""));
        }
        let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
        if !head.lines().any(|l| {
            l.split_once(':').is_some_and(|(k, v)| {
                k.eq_ignore_ascii_case("sec-websocket-accept") && v.trim() == accept
            })
        }) {
            bail!("bad Sec-WebSocket-Accept in the upgrade response");
        }
        if deflate {
            let accepted = head.lines().any(|l| {
                l.split_once(':').is_some_and(|(k, v)| {
                    k.eq_ignore_ascii_case("sec-websocket-extensions")
                        && v.trim().starts_with("permessage-deflate")
                        && v.contains("server_no_context_takeover")
                })
            });
            if !accepted {
                bail!("--deflate: the server did not accept permessage-deflate");
            }
            self.inflater = Some(Box::new(flate2::Decompress::new(false)));
        }
        self.rpos = head_end;
        Ok(())
    }

    /// Reads more bytes into `rbuf` (cancel-safe: a read either happened
    /// or not).
    async fn fill(&mut self) -> Result<()> {
        if self.rpos > 0 {
            self.rbuf.drain(..self.rpos);
            self.rpos = 0;
        }
        if self.rbuf.capacity() - self.rbuf.len() < READ_CHUNK / 4 {
            self.rbuf.reserve(READ_CHUNK);
        }
        let n = self.stream.read_buf(&mut self.rbuf).await?;
        if n == 0 {
            bail!("connection closed by server");
        }
        WIRE_BYTES.fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Writes what is queued in `wbuf` (cancel-safe, see the type).
    async fn flush_out(&mut self) -> Result<()> {
        while self.wpos < self.wbuf.len() {
            let n = self.stream.write(&self.wbuf[self.wpos..]).await?;
            if n == 0 {
                bail!("connection closed by server");
            }
            self.wpos += n;
        }
        self.wbuf.clear();
        self.wpos = 0;
        Ok(())
    }

    fn next_mask(&mut self) -> u32 {
        // xorshift32: masks need not be secret here, only present.
        let mut x = self.mask_seed;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.mask_seed = x;
        x
    }

    /// Queues one masked client frame.
    fn queue_frame(&mut self, opcode: u8, payload: &[u8]) {
        let mask = self.next_mask().to_ne_bytes();
        let len = payload.len();
        self.wbuf.push(0x80 | opcode);
        if len < 126 {
            self.wbuf.push(0x80 | len as u8);
        } else if len <= 0xFFFF {
            self.wbuf.push(0x80 | 126);
            self.wbuf.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.wbuf.push(0x80 | 127);
            self.wbuf.extend_from_slice(&(len as u64).to_be_bytes());
        }
        self.wbuf.extend_from_slice(&mask);
        self.wbuf
            .extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    }

    /// The next text frame other than an Engine.IO ping (pings are answered).
    pub async fn next_text(&mut self) -> Result<&str> {
        let (start, end, compressed) = loop {
            if self.wpos < self.wbuf.len() {
                self.flush_out().await?;
            }
            let Some((b0, payload, total)) = server_frame(&self.rbuf[self.rpos..])? else {
                self.fill().await?;
                continue;
            };
            let at = self.rpos;
            self.rpos += total;
            let (start, end) = (at + payload.start, at + payload.end);
            let compressed = b0 & 0x40 != 0;
            match b0 & 0x0F {
                0x1 if compressed && self.inflater.is_some() => break (start, end, true),
                0x1 if compressed => bail!("a compressed frame without permessage-deflate"),
                0x1 if &self.rbuf[start..end] == b"2" => self.queue_frame(0x1, b"3"),
                0x1 => break (start, end, false),
                0x8 => bail!("connection closed by server"),
                0x9 => {
                    let p = self.rbuf[start..end].to_vec();
                    self.queue_frame(0xA, &p);
                }
                _ => {} // pong, binary
            }
        };
        if compressed {
            let d = self
                .inflater
                .as_mut()
                .ok_or_else(|| anyhow!("no inflater"))?;
            frames::inflate(d, &self.rbuf[start..end], &mut self.inflated)?;
            return Ok(std::str::from_utf8(&self.inflated)?);
        }
        Ok(std::str::from_utf8(&self.rbuf[start..end])?)
    }

    pub async fn send(&mut self, frame: String) -> Result<()> {
        self.queue_frame(0x1, frame.as_bytes());
        self.flush_out().await
    }

    pub fn take_ack_id(&mut self) -> u64 {
        let id = self.next_ack;
        self.next_ack += 1;
        id
    }

    /// Emit with an ack and wait for it (other frames meanwhile are dropped).
    pub async fn call(&mut self, event: &str, payload: Value) -> Result<Value> {
        let id = self.take_ack_id();
        self.send(format!("42{id}{}", json!([event, payload])))
            .await?;
        loop {
            let f = self.next_text().await?;
            if let Some((aid, body)) = proto::parse_ack(f)
                && aid == id
            {
                let v: Value = serde_json::from_str(body)?;
                let first = v.get(0).cloned().unwrap_or(Value::Null);
                if first["ok"] != Value::Bool(true) {
                    bail!("{event} failed: {first}");
                }
                return Ok(first);
            }
        }
    }

    /// Join a channel; returns its lastSeq. UNAVAILABLE (store busy) is
    /// retried a few times.
    pub async fn join(&mut self, channel_id: &str) -> Result<u64> {
        let mut attempt = 0;
        loop {
            match self
                .call("join_channel", json!({ "channelId": channel_id }))
                .await
            {
                Ok(r) => return Ok(r["lastSeq"].as_u64().unwrap_or(0)),
                Err(e) => {
                    let msg = e.to_string();
                    attempt += 1;
                    if attempt >= 20 || !msg.contains("UNAVAILABLE") {
                        return Err(e);
                    }
                    JOIN_RETRIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            }
        }
    }

    pub async fn close(mut self) {
        self.queue_frame(0x8, &1000u16.to_be_bytes());
        if self.flush_out().await.is_ok() {
            let _ = self.stream.shutdown().await;
        }
    }
}

/// Create a public channel over REST; returns its id.
pub async fn create_channel(t: &Target, name: &str) -> Result<String> {
    let token = t.tokens.for_user("bench-owner")?;
    let body = json!({ "name": name, "type": "public" }).to_string();
    let req = format!(
        "POST /api/v1/channels HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        t.host,
        body.len()
    );
    let mut s = tcp_connect(t.addr, t.source(0)).await?;
    s.write_all(req.as_bytes()).await?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).await?;
    let text = String::from_utf8_lossy(&resp);
    let status = text.split_whitespace().nth(1).unwrap_or("");
    let json_part = match (text.find('{'), text.rfind('}')) {
        (Some(a), Some(b)) if b > a => &text[a..=b],
        _ => "",
    };
    if status != "201" && status != "200" {
        bail!("POST /api/v1/channels: HTTP {status}: {json_part:.200}");
    }
    let v: Value = serde_json::from_str(json_part).context("channel create response")?;
    match &v["channel"]["id"] {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(anyhow!("no channel.id in {v}")),
    }
}
