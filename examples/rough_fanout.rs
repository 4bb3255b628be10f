//! A rough fan-out figure: S senders and M subscribers on one channel,
//! counting delivered `message` events per second.
//!
//! Rough on purpose: one OS thread per connection, blocking tungstenite,
//! closed-loop senders (a window of unacked sends each). The operators'
//! benchmark (`gatrix-chat-bench`, docs/benchmarks.md) replaces it.
//!
//! ```sh
//! RATE_LIMIT_PER_SEC=1000000 RATE_LIMIT_BURST=1000000 JWT_SECRET=$S cargo run --release &
//! JWT_SECRET=$S cargo run --release --example rough_fanout -- 127.0.0.1:3001 100 4 10
//! ```
//! Arguments: address, subscribers, senders, seconds.

use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tungstenite::{Message, WebSocket, stream::MaybeTlsStream};

type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

fn token(secret: &str, sub: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({"sub": sub, "exp": exp}),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn connect(addr: &str, secret: &str, user: &str) -> Ws {
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
    ws.send(Message::text(
        r#"421["join_channel",{"channelId":"rough"}]"#,
    ))
    .unwrap();
    loop {
        let m = ws.read().unwrap();
        if m.to_text().unwrap_or("").starts_with("431[") {
            return ws;
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let addr = args
        .get(1)
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:3001".into());
    let subs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(100);
    let senders: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4);
    let secs: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(10);
    let secret = std::env::var("JWT_SECRET").expect("JWT_SECRET");

    let delivered = Arc::new(AtomicU64::new(0));
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    for i in 0..subs {
        let mut ws = connect(&addr, &secret, &format!("sub{i}"));
        let (delivered, stop) = (delivered.clone(), stop.clone());
        threads.push(std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match ws.read() {
                    Ok(Message::Text(t)) if t.as_str() == "2" => {
                        ws.send(Message::text("3")).unwrap()
                    }
                    Ok(Message::Text(t)) if t.as_str().starts_with(r#"42["message""#) => {
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }));
    }
    let content = "x".repeat(100);
    for i in 0..senders {
        let mut ws = connect(&addr, &secret, &format!("sender{i}"));
        let (sent, stop, content) = (sent.clone(), stop.clone(), content.clone());
        threads.push(std::thread::spawn(move || {
            const WINDOW: u64 = 64;
            let mut id = 10;
            while !stop.load(Ordering::Relaxed) {
                for _ in 0..WINDOW {
                    id += 1;
                    let frame = format!(
                        "42{id}{}",
                        json!(["send_message", {"channelId": "rough", "content": content}])
                    );
                    ws.write(Message::text(frame)).unwrap();
                }
                ws.flush().unwrap();
                let mut acked = 0;
                while acked < WINDOW {
                    match ws.read() {
                        Ok(Message::Text(t)) if t.as_str() == "2" => {
                            ws.send(Message::text("3")).unwrap()
                        }
                        Ok(Message::Text(t)) if t.as_str().starts_with("43") => acked += 1,
                        Ok(_) => {}
                        Err(e) => panic!("sender: {e}"),
                    }
                }
                sent.fetch_add(WINDOW, Ordering::Relaxed);
            }
        }));
    }
    let start = Instant::now();
    let (d0, s0) = (
        delivered.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed),
    );
    std::thread::sleep(Duration::from_secs(secs));
    let (d1, s1) = (
        delivered.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed),
    );
    let took = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    println!(
        "subscribers {subs}, senders {senders}, {took:.1}s: sent {:.0}/s, delivered {:.0}/s (to subscribers only)",
        (s1 - s0) as f64 / took,
        (d1 - d0) as f64 / took
    );
    std::process::exit(0);
}
