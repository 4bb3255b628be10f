//! Rough figures before the real benchmark: S senders and M subscribers on
//! one channel. Reports acked (durable) sends per second, delivered
//! `message` events per second, and end-to-end latency percentiles (send
//! to receipt, from a timestamp in the content).
//!
//! Rough on purpose: one OS thread per connection, blocking tungstenite.
//! With `rate` 0 the senders run closed-loop (a window of unacked sends
//! each): the ingest ceiling. With a rate, they pace to it: latency at a
//! moderate load. The operators' benchmark (`gatrix-chat-bench`,
//! docs/benchmarks.md) replaces this.
//!
//! ```sh
//! RATE_LIMIT_PER_SEC=1000000 RATE_LIMIT_BURST=1000000 JWT_SECRET=$S cargo run --release &
//! JWT_SECRET=$S cargo run --release --example rough_fanout -- 127.0.0.1:3001 100 4 10 0
//! ```
//! Arguments: address, subscribers, senders, seconds, total sends per second (0 = as fast as acks allow).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

fn token(secret: &str, sub: &str) -> String {
    let exp = now_ns() / 1_000_000_000 + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": sub, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// Creates a public channel through the REST API and returns its id.
fn create_channel(addr: &str, secret: &str) -> String {
    let body = json!({"name": "rough", "type": "public"}).to_string();
    let mut s = TcpStream::connect(addr).expect("connect for REST");
    write!(
        s,
        "POST /api/v1/channels HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        token(secret, "bench-owner"),
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let json = &out[out.find("\r\n\r\n").expect("response") + 4..];
    let v: Value = serde_json::from_str(json).unwrap_or_else(|_| panic!("create channel: {out}"));
    v["channel"]["id"].as_str().expect("channel id").to_owned()
}

fn connect(addr: &str, secret: &str, user: &str, channel: &str) -> Ws {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tungstenite::connect(url).expect("connect");
    ws.read().unwrap(); // OPEN
    ws.send(Message::text(format!(
        "40{}",
        json!({"token": token(secret, user)})
    )))
    .unwrap();
    let reply = ws.read().unwrap();
    assert!(reply.to_text().unwrap().starts_with("40"), "{reply}");
    ws.send(Message::text(format!(
        "421{}",
        json!(["join_channel", {"channelId": channel}])
    )))
    .unwrap();
    loop {
        let m = ws.read().unwrap();
        let t = m.to_text().unwrap_or("");
        if t.starts_with("431[") {
            assert!(t.contains(r#""ok":true"#), "{t}");
            return ws;
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1e6
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: u64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let addr = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:3001".into());
    let (subs, senders, secs, rate) = (
        arg(2, 100) as usize,
        arg(3, 4) as usize,
        arg(4, 10),
        arg(5, 0),
    );
    let secret = std::env::var("JWT_SECRET").expect("JWT_SECRET");
    let channel = create_channel(&addr, &secret);

    let delivered = Arc::new(AtomicU64::new(0));
    let acked = Arc::new(AtomicU64::new(0));
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    for i in 0..subs {
        let mut ws = connect(&addr, &secret, &format!("sub{i}"), &channel);
        let (delivered, stop, measuring, latencies) = (
            delivered.clone(),
            stop.clone(),
            measuring.clone(),
            latencies.clone(),
        );
        std::thread::spawn(move || {
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match ws.read() {
                    Ok(Message::Text(t)) if t.as_str() == "2" => {
                        ws.send(Message::text("3")).unwrap()
                    }
                    Ok(Message::Text(t)) if t.as_str().starts_with(r#"42["message""#) => {
                        if !measuring.load(Ordering::Relaxed) {
                            continue;
                        }
                        delivered.fetch_add(1, Ordering::Relaxed);
                        let at = t.as_str().find(r#""content":"t="#).map(|i| i + 13);
                        if let Some(sent) = at.and_then(|i| {
                            t.as_str()[i..]
                                .split(['"', ' '])
                                .next()?
                                .parse::<u64>()
                                .ok()
                        }) {
                            mine.push(now_ns().saturating_sub(sent));
                        }
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            latencies.lock().unwrap().extend(mine);
        });
    }
    let per_sender = rate as f64 / senders.max(1) as f64;
    let mut handles = Vec::new();
    for i in 0..senders {
        let mut ws = connect(&addr, &secret, &format!("sender{i}"), &channel);
        let (acked, stop, measuring, channel) = (
            acked.clone(),
            stop.clone(),
            measuring.clone(),
            channel.clone(),
        );
        handles.push(std::thread::spawn(move || {
            let window: u64 = if rate == 0 { 64 } else { 1 };
            let mut id = 10;
            let start = Instant::now();
            let mut sent = 0u64;
            while !stop.load(Ordering::Relaxed) {
                if rate > 0 {
                    let due = start + Duration::from_secs_f64(sent as f64 / per_sender);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
                for _ in 0..window {
                    id += 1;
                    sent += 1;
                    let content = format!("t={} {}", now_ns(), "x".repeat(60));
                    let frame = format!(
                        "42{id}{}",
                        json!(["send_message", {"channelId": channel, "content": content}])
                    );
                    ws.write(Message::text(frame)).unwrap();
                }
                ws.flush().unwrap();
                let mut got = 0;
                while got < window {
                    match ws.read() {
                        Ok(Message::Text(t)) if t.as_str() == "2" => {
                            ws.send(Message::text("3")).unwrap()
                        }
                        Ok(Message::Text(t)) if t.as_str().starts_with("43") => {
                            assert!(t.as_str().contains(r#""ok":true"#), "refused: {t}");
                            got += 1;
                        }
                        Ok(_) => {}
                        Err(e) => panic!("sender: {e}"),
                    }
                }
                if measuring.load(Ordering::Relaxed) {
                    acked.fetch_add(window, Ordering::Relaxed);
                }
            }
        }));
    }
    std::thread::sleep(Duration::from_secs(1)); // warm-up
    measuring.store(true, Ordering::Relaxed);
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    measuring.store(false, Ordering::Relaxed);
    let took = start.elapsed().as_secs_f64();
    let (a, d) = (
        acked.load(Ordering::Relaxed),
        delivered.load(Ordering::Relaxed),
    );
    stop.store(true, Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(300));
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_unstable();
    println!(
        "subscribers {subs}, senders {senders}, target {}: acked {:.0}/s, delivered {:.0}/s; latency ms p50 {:.2} p90 {:.2} p99 {:.2} max {:.2} ({} samples)",
        if rate == 0 {
            "closed loop".to_owned()
        } else {
            format!("{rate}/s")
        },
        a as f64 / took,
        d as f64 / took,
        percentile(&lat, 0.5),
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        lat.last().map_or(f64::NAN, |&m| m as f64 / 1e6),
        lat.len()
    );
    std::process::exit(0);
}
