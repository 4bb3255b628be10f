//! Hostile clients at the WebSocket layer, with a raw TCP client
//! (`ws_hostile/wire.rs`): pings from a client that never reads (the pong
//! replies are bounded and the client is closed as a slow consumer), frame
//! headers that announce a large payload that never comes (the server holds
//! what arrived, not what was announced), and the smaller frame limit before
//! a Socket.IO CONNECT. Memory is read from the server's /proc status.

mod common;
#[path = "ws_hostile/wire.rs"]
mod wire;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{TestServer, http_get};
use wire::*;

const MIB: u64 = 1 << 20;

/// Sum of `chat_disconnects_total` over shards for `reason`.
fn disconnects(server: &TestServer, reason: &str) -> u64 {
    let metrics = http_get(server.port(), "/metrics").expect("GET /metrics");
    assert_eq!(metrics.status, 200);
    let label = format!("reason=\"{reason}\"");
    metrics
        .body
        .lines()
        .filter(|l| l.starts_with("chat_disconnects_total{") && l.contains(&label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// D1: a client that sends WebSocket pings as fast as it can and never
/// reads made the server queue one pong per ping without limit (1.47 GB in
/// 6 s for three connections). The replies now count against the outbound
/// byte budget (OUTBOUND_QUEUE_BYTES, 4 MiB), only the latest one is kept
/// once the socket is full, and the client is closed as a slow consumer.
#[test]
fn ping_flood_without_reading_is_bounded_and_closed() {
    const CLIENTS: usize = 3;
    /// Growth allowed over the baseline (the bug made gigabytes).
    const BOUND: u64 = 64 * MIB;
    /// Past this the old code is clearly unbounded: stop before it eats the
    /// machine (the assertion below then fails).
    const GIVE_UP: u64 = 512 * MIB;
    const DEADLINE: Duration = Duration::from_secs(60);

    let server = TestServer::start();
    let wires: Vec<Wire> = (0..CLIENTS)
        .map(|_| Wire::open_on(tcp_with_rcvbuf(server.addr(), 4096)))
        .collect();
    let baseline = server.rss_kib() * 1024;
    let before = disconnects(&server, "slow_consumer");

    let stop = Arc::new(AtomicBool::new(false));
    let flooders: Vec<_> = wires
        .into_iter()
        .map(|wire| {
            let stop = stop.clone();
            thread::spawn(move || {
                let mut stream = wire.stream;
                // A blocked write returns now and then to look at `stop`.
                stream
                    .set_write_timeout(Some(Duration::from_millis(200)))
                    .expect("write timeout");
                let batch: Vec<u8> = (0..500).flat_map(|_| frame(0x89, &[b'p'; 125])).collect();
                let started = Instant::now();
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) && started.elapsed() < DEADLINE {
                    // A write may take part of the batch: go on from there,
                    // so that every frame is whole.
                    let at = (sent % batch.len() as u64) as usize;
                    match stream.write(&batch[at..]) {
                        Ok(n) => sent += n as u64,
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) => {}
                        // The server dropped the connection.
                        Err(e) => return Ok((sent, e.kind())),
                    }
                }
                Err(sent)
            })
        })
        .collect();

    let mut peak = baseline;
    while !flooders.iter().all(|f| f.is_finished()) {
        peak = peak.max(server.rss_kib() * 1024);
        if peak > baseline + GIVE_UP {
            stop.store(true, Ordering::Relaxed);
        }
        thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, Ordering::Relaxed);
    let growth = peak.saturating_sub(baseline);
    println!(
        "VmRSS baseline {} MiB, peak {} MiB, growth {} KiB",
        baseline / MIB,
        peak / MIB,
        growth / 1024
    );
    for (i, f) in flooders.into_iter().enumerate() {
        match f.join().expect("flooder") {
            Ok((sent, kind)) => println!("client {i}: {} KiB of pings, then {kind:?}", sent / 1024),
            Err(sent) => panic!(
                "client {i} still connected after {} KiB of pings (RSS growth {} MiB)",
                sent / 1024,
                growth / MIB
            ),
        }
    }
    assert!(
        growth < BOUND,
        "RSS grew by {} MiB under a ping flood",
        growth / MIB
    );
    // Counted when the connection's task ends, which may be a moment after
    // the client saw its socket go.
    let deadline = Instant::now() + WAIT;
    while disconnects(&server, "slow_consumer") - before < CLIENTS as u64
        && Instant::now() < deadline
    {
        thread::sleep(Duration::from_millis(50));
    }
    let metrics = http_get(server.port(), "/metrics")
        .expect("GET /metrics")
        .body;
    let reasons: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("chat_disconnects_total{") && !l.ends_with(" 0"))
        .collect();
    assert_eq!(
        disconnects(&server, "slow_consumer") - before,
        CLIENTS as u64,
        "every flooder closed as a slow consumer (4008): {reasons:#?}"
    );
    common::raw::assert_healthy(&server);
}

/// D5: a frame header made the server reserve the whole announced payload
/// (300 connections announcing 999,000 bytes and sending one held 1.09 MB
/// each). The server now holds what arrived. The connections CONNECT first,
/// so MAX_PAYLOAD (not the smaller limit before CONNECT) applies.
#[test]
fn announced_frames_hold_only_the_bytes_received() {
    const CONNS: usize = 300;
    /// Growth allowed per connection (the bug: about 1 MiB each).
    const PER_CONN: u64 = 32 * 1024;

    let server = TestServer::start();
    let token = server.token("announcer");
    let mut wires: Vec<Wire> = (0..CONNS)
        .map(|_| {
            let mut w = Wire::open(server.addr());
            w.sio_connect(&token);
            w
        })
        .collect();
    let baseline = server.rss_kib() * 1024;
    // Each frame is an event with an ack id, padded to 999,000 bytes; only
    // its first byte is sent.
    let head = r#"427["nope",{"pad":""#;
    let tail = r#""}]"#;
    let mut event = head.as_bytes().to_vec();
    event.resize(999_000 - tail.len(), b'y');
    event.extend_from_slice(tail.as_bytes());
    for w in &mut wires {
        let mut bytes = frame_header(0x81, event.len());
        bytes.extend(mask_from(&event[..1], 0));
        w.send(&bytes);
    }
    // Nothing answers an incomplete frame, so there is no event to wait
    // for: sample for a while (the old code reserved on the first read, in
    // milliseconds) and keep the peak.
    let mut peak = baseline;
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        peak = peak.max(server.rss_kib() * 1024);
        thread::sleep(Duration::from_millis(50));
    }
    let growth = peak.saturating_sub(baseline);
    println!(
        "VmRSS baseline {} MiB, peak {} MiB: {} bytes per connection",
        baseline / MIB,
        peak / MIB,
        growth / CONNS as u64
    );
    assert!(
        growth < PER_CONN * CONNS as u64,
        "RSS grew by {} KiB per connection for a one-byte start of a frame",
        growth / CONNS as u64 / 1024
    );
    // The frames are still being waited for: the rest of one arrives, in
    // pieces, and the event is answered (NOT_FOUND: no such event).
    let w = &mut wires[0];
    for (i, piece) in event[1..].chunks(100_000).enumerate() {
        w.send(&mask_from(piece, 1 + i * 100_000));
    }
    let ack = loop {
        let packet = w.read_text();
        if packet.starts_with("43") {
            break packet;
        }
    };
    assert!(
        ack.starts_with("437[") && ack.contains("NOT_FOUND"),
        "{ack}"
    );
    drop(wires);
    common::raw::assert_healthy(&server);
}

/// D5: before its Socket.IO CONNECT a connection may only send frames up to
/// MAX_PAYLOAD_BEFORE_CONNECT (a header announcing more closes it with 1009
/// at once); a CONNECT with a long token fits; after it, MAX_PAYLOAD.
#[test]
fn frames_before_connect_are_limited() {
    let server = TestServer::start_with(&[("MAX_PAYLOAD_BEFORE_CONNECT", "8192")]);

    // The header alone of a large frame is refused.
    let mut w = Wire::open(server.addr());
    w.send(&frame_header(0x81, 999_000));
    assert_eq!(w.close_code(), 1009, "999,000-byte frame before CONNECT");

    // So is a complete frame just over the limit.
    let mut w = Wire::open(server.addr());
    let _ = w.try_send(&frame(0x81, &[b'x'; 8193]));
    assert_eq!(w.close_code(), 1009, "8193-byte frame before CONNECT");

    // A CONNECT with a long token (about 6 KB) fits, and after it a frame
    // of 20,000 bytes is fine (an unknown event, answered NOT_FOUND).
    let name = "n".repeat(4000);
    let token = server.token_with("long-token", Some(&name), common::now_secs() + 600);
    assert!(token.len() > 5000, "{}", token.len());
    let mut w = Wire::open(server.addr());
    w.sio_connect(&token);
    let event = format!(r#"427["nope",{{"pad":"{}"}}]"#, "y".repeat(20_000));
    w.send(&frame(0x81, event.as_bytes()));
    let ack = loop {
        let packet = w.read_text();
        if packet.starts_with("43") {
            break packet; // events (presence) may come first
        }
    };
    assert!(
        ack.starts_with("437[") && ack.contains("NOT_FOUND"),
        "after CONNECT: {ack}"
    );

    // Unauthenticated: 300 connections announcing 999,000 bytes are all
    // closed (D5's attack), and the server is fine.
    for _ in 0..300 {
        let mut w = Wire::open(server.addr());
        let mut bytes = frame_header(0x82, 999_000);
        bytes.push(0);
        w.send(&bytes);
        assert_eq!(w.close_code(), 1009);
    }
    common::raw::assert_healthy(&server);
}
