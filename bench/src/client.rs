//! The benchmark's own Socket.IO v4 client over WebSocket: one small state per
//! connection, driven by the worker thread's current-thread runtime.

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};
use tokio_tungstenite::{WebSocketStream, client_async_with_config};

use crate::proto;

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

/// Joins that had to be retried (reported in the summary).
pub static JOIN_RETRIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

pub struct Conn {
    ws: WebSocketStream<TcpStream>,
    next_ack: u64,
}

impl Conn {
    /// TCP, WebSocket upgrade, Engine.IO OPEN, Socket.IO CONNECT with the token.
    pub async fn open(t: &Target, idx: usize, user: &str) -> Result<Conn> {
        let token = t.tokens.for_user(user)?;
        let stream = tcp_connect(t.addr, t.source(idx))
            .await
            .context("tcp connect")?;
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", t.host);
        // Small buffers: tungstenite's defaults (128 KiB) would cost GBs at 20k conns.
        let cfg = WebSocketConfig::default()
            .read_buffer_size(4096)
            .write_buffer_size(0);
        let (ws, _) = client_async_with_config(url, stream, Some(cfg))
            .await
            .context("websocket upgrade")?;
        let mut c = Conn { ws, next_ack: 1 };
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

    /// The next text frame other than an Engine.IO ping (pings are answered).
    pub async fn next_text(&mut self) -> Result<Utf8Bytes> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    if t.as_str() == "2" {
                        self.ws.send(Message::text("3")).await?;
                        continue;
                    }
                    return Ok(t);
                }
                Some(Ok(Message::Close(_))) | None => bail!("connection closed by server"),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.into()),
            }
        }
    }

    pub async fn send(&mut self, frame: String) -> Result<()> {
        self.ws.send(Message::text(frame)).await?;
        Ok(())
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
            if let Some((aid, body)) = proto::parse_ack(&f)
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
        let _ = self.ws.close(None).await;
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
