//! Connection state recovery against the real binary, under hostile
//! clients: a replay is bounded in total (a gap over RECOVERY_MAX_REPLAY
//! is refused up front with a fresh session, without reading it), a gap
//! within it is replayed whole, in order, before live messages; dropped
//! sessions are capped in number (RECOVERY_MAX_SESSIONS), oldest
//! forgotten first. Memory is read from /proc/<pid>/status (VmRSS).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use serde_json::{Value, json};

use common::TestServer;
use common::chat::{NO_RATE_LIMIT, numbered, send_all};
use common::raw::*;

/// Samples the server's RSS until dropped; `peak` is the highest seen.
struct RssWatch {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<()>>,
}

impl RssWatch {
    fn start(server: &TestServer) -> Self {
        let (stop, peak) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicU64::new(0)),
        );
        let pid = server.pid();
        let (s, p) = (stop.clone(), peak.clone());
        let thread = thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = common::proc::rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(10));
            }
        });
        RssWatch {
            stop,
            peak,
            thread: Some(thread),
        }
    }

    /// The peak RSS in KiB, sampling stopped.
    fn peak(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("RSS sampler");
        }
        self.peak.load(Ordering::Relaxed)
    }
}

/// Connects `sub` with `{pid, offset}` claimed; returns the socket and the
/// CONNECT reply's pid.
fn reconnect(server: &TestServer, sub: &str, pid: &str, offset: &Value) -> (Ws, String) {
    let (mut ws, _) = open(server);
    let auth = json!({ "token": server.token(sub), "pid": pid, "offset": offset });
    let reply = sio_connect_with(&mut ws, &auth);
    let got = reply["pid"].as_str().expect("CONNECT reply pid").to_owned();
    (ws, got)
}

/// Connects `sub`, joins `channels`; returns the socket and its pid.
fn session(server: &TestServer, sub: &str, channels: &[String]) -> (Ws, String) {
    let (mut ws, _) = open(server);
    let reply = sio_connect_with(&mut ws, &json!({ "token": server.token(sub) }));
    let pid = reply["pid"].as_str().expect("pid").to_owned();
    for (i, ch) in channels.iter().enumerate() {
        join_ack(&mut ws, 100 + i as u64, ch);
    }
    (ws, pid)
}

/// Drops `ws` without a `41` (the session is kept) and waits until
/// `watcher`, alone with it in `channel`, sees it leave: the server has
/// then kept the session (it is saved before the leave goes out).
fn drop_and_await(ws: Ws, sub: &str, watcher: &mut Ws) {
    drop(ws);
    loop {
        if let Some((name, data)) = as_event(&recv_text(watcher))
            && name == "user_left"
            && data["userId"] == sub
        {
            return;
        }
    }
}

/// A `message` event's content and offset.
fn message(packet: &str) -> Option<(String, u64)> {
    let (name, args) = as_event_args(packet)?;
    if name != "message" {
        return None;
    }
    let content = args[0]["content"].as_str()?.to_owned();
    let offset = args.get(1)?.as_str()?.parse().ok()?;
    Some((content, offset))
}

/// D2: reconnects claiming offset "0" over a gap far larger than the cap,
/// four at once, are refused up front (a new pid: `recovered` false,
/// nothing restored) without the gap being read into memory.
#[test]
fn old_offsets_over_the_cap_are_refused_without_loading_the_gap() {
    let server = TestServer::start_with(&NO_RATE_LIMIT);
    let channels: Vec<String> = (0..4)
        .map(|i| server.create_channel("owner", &format!("busy-{i}"), "public", &[]))
        .collect();
    let watch_ch = server.create_channel("owner", "watch", "public", &[]);
    let mut watcher = connect(&server, "watcher");
    join(&mut watcher, &watch_ch);
    // Four sessions in every busy channel, dropped.
    let mut pids = Vec::new();
    for k in 0..4 {
        let sub = format!("attacker-{k}");
        let mut all = channels.clone();
        all.push(watch_ch.clone());
        let (ws, pid) = session(&server, &sub, &all);
        drop_and_await(ws, &sub, &mut watcher);
        pids.push((sub, pid));
    }
    // 4 × 4,000 messages of 2,000 bytes: 32 MB of content in the gap.
    let mut bob = connect(&server, "bob");
    let body = "x".repeat(2_000);
    for ch in &channels {
        join(&mut bob, ch);
        let msgs: Vec<(String, String)> = numbered(ch, 4_000)
            .into_iter()
            .map(|(cmid, _)| (cmid, body.clone()))
            .collect();
        for ack in send_all(&mut bob, ch, 1_000, &msgs) {
            assert!(ack["message"]["seq"].is_u64(), "send: {ack}");
        }
    }

    let before = server.rss_kib();
    let watch = RssWatch::start(&server);
    let attempts: Vec<_> = pids
        .iter()
        .map(|(sub, pid)| {
            let (server_port, sub, pid) = (server.port(), sub.clone(), pid.clone());
            let token = server.token(&sub);
            let ws_url = server.ws_url();
            thread::spawn(move || {
                let stream = std::net::TcpStream::connect(("127.0.0.1", server_port)).unwrap();
                stream.set_read_timeout(Some(WAIT)).unwrap();
                let (mut ws, _) = tungstenite::client::client(ws_url, stream).unwrap();
                let _open = recv_text(&mut ws);
                let auth = json!({ "token": token, "pid": pid, "offset": "0" });
                send_text(&mut ws, format!("40{auth}"));
                // Everything until the ack of a send to a busy channel, or
                // the end of the connection.
                let mut frames = Vec::new();
                let mut asked = false;
                loop {
                    match ws.read() {
                        Ok(tungstenite::Message::Text(t)) if t.as_str() == "2" => {
                            send_text(&mut ws, "3")
                        }
                        Ok(tungstenite::Message::Text(t)) => {
                            let t = t.as_str().to_owned();
                            if t.starts_with("43") {
                                frames.push(t);
                                break;
                            }
                            if t.starts_with("40") && !asked {
                                asked = true;
                                let probe =
                                    json!(["send_message", {"channelId": "none", "content": "?"}]);
                                send_text(&mut ws, format!("429{probe}"));
                            }
                            frames.push(t);
                        }
                        Ok(tungstenite::Message::Close(f)) => {
                            frames.push(format!("close {f:?}"));
                            break;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            frames.push(format!("error {e}"));
                            break;
                        }
                    }
                }
                (pid, frames)
            })
        })
        .collect();
    let outcomes: Vec<(String, Vec<String>)> =
        attempts.into_iter().map(|t| t.join().unwrap()).collect();
    // Memory returns afterwards too: sample a little past the attempts.
    thread::sleep(Duration::from_millis(500));
    let peak = watch.peak();
    let after = server.rss_kib();
    let grew = peak.saturating_sub(before) / 1024;
    eprintln!(
        "RSS before {} MiB, peak {} MiB (+{grew} MiB), after {} MiB",
        before / 1024,
        peak / 1024,
        after / 1024
    );
    assert!(
        grew < 64,
        "four recoveries of a 32 MB gap grew RSS by {grew} MiB"
    );

    for (pid, frames) in outcomes {
        let reply = frames
            .iter()
            .find_map(|f| f.strip_prefix("40"))
            .unwrap_or_else(|| panic!("no CONNECT reply: {frames:?}"));
        let reply: Value = serde_json::from_str(reply).unwrap();
        assert!(reply["pid"].is_string(), "{reply}");
        assert_ne!(
            reply["pid"],
            json!(pid),
            "recovered over the cap: {frames:?}"
        );
        assert!(
            !frames.iter().any(|f| message(f).is_some()),
            "a refused recovery replayed messages"
        );
        assert!(
            frames.last().is_some_and(|f| f.starts_with("439")),
            "the fresh session stays open: {:?}",
            frames.last()
        );
    }
    // The gap is still there for history, and the server is well.
    assert_healthy(&server);
}

/// D2, both sides of the cap: a gap of exactly RECOVERY_MAX_REPLAY messages
/// across three channels is replayed whole (several store pages), in
/// commit order, once, before a live message; one more is refused with a
/// fresh session.
#[test]
fn a_gap_at_the_cap_is_replayed_whole_and_one_more_is_refused() {
    let mut env = NO_RATE_LIMIT.to_vec();
    env.push(("RECOVERY_MAX_REPLAY", "300"));
    let server = TestServer::start_with(&env);
    let channels: Vec<String> = (0..3)
        .map(|i| server.create_channel("owner", &format!("c-{i}"), "public", &[]))
        .collect();
    let watch_ch = server.create_channel("owner", "watch", "public", &[]);
    let mut watcher = connect(&server, "watcher");
    join(&mut watcher, &watch_ch);
    let mut bob = connect(&server, "bob");
    for ch in &channels {
        join(&mut bob, ch);
    }
    let mut all = channels.clone();
    all.push(watch_ch.clone());
    let (mut alice, pid) = session(&server, "alice", &all);
    send_all(&mut bob, &channels[0], 10, &numbered("seen", 1));
    let offset = loop {
        if let Some((_, off)) = message(&recv_text(&mut alice)) {
            break off;
        }
    };
    drop_and_await(alice, "alice", &mut watcher);

    // 300 missed, interleaved over the three channels.
    let mut sent = Vec::new();
    for i in 0..300 {
        let ch = &channels[i % 3];
        let m = vec![(format!("gap-{i}"), format!("gap {i}"))];
        send_all(&mut bob, ch, 1_000 + i as u64, &m);
        sent.push(format!("gap {i}"));
    }
    let (mut alice, got_pid) = reconnect(&server, "alice", &pid, &json!(offset.to_string()));
    assert_eq!(got_pid, pid, "within the cap: recovered");
    send_all(
        &mut bob,
        &channels[1],
        5_000,
        &[("live".into(), "live".into())],
    );
    sent.push("live".into());
    let mut got = Vec::new();
    let mut last = offset;
    while got.len() < sent.len() {
        if let Some((content, off)) = message(&recv_text(&mut alice)) {
            assert!(off > last, "offsets not increasing: {off} after {last}");
            last = off;
            got.push(content);
        }
    }
    assert_eq!(got, sent, "every missed message once, in order, then live");

    // One over the cap: refused up front, a fresh session.
    drop_and_await(alice, "alice", &mut watcher);
    for i in 0..301 {
        let m = vec![(format!("over-{i}"), format!("over {i}"))];
        send_all(&mut bob, &channels[i % 3], 6_000 + i as u64, &m);
    }
    let (mut alice, fresh) = reconnect(&server, "alice", &pid, &json!(last.to_string()));
    assert_ne!(fresh, pid, "over the cap: not recovered");
    let ack = call(
        &mut alice,
        7,
        "send_message",
        json!({ "channelId": channels[0], "content": "am I in?" }),
    );
    assert_eq!(
        ack["error"]["code"], "FORBIDDEN",
        "channels restored: {ack}"
    );
}

/// D8: with RECOVERY_MAX_SESSIONS=100, many connections that join and
/// drop leave at most 100 sessions: the oldest is forgotten (its claim
/// gets a fresh session), a recent one recovers, and memory stays flat.
#[test]
fn dropped_sessions_are_capped_oldest_forgotten_first() {
    let server = TestServer::start_with(&[
        ("RECOVERY_MAX_SESSIONS", "100"),
        // 1,500 connections from one address in a few seconds.
        ("WS_CONNECTION_RATE_PER_IP", "100000"),
        ("WS_CONNECTION_BURST_PER_IP", "100000"),
    ]);
    let flood = server.create_channel("owner", "flood", "public", &[]);
    let watch_ch = server.create_channel("owner", "watch", "public", &[]);
    let mut watcher = connect(&server, "watcher");
    join(&mut watcher, &watch_ch);
    let both = [flood.clone(), watch_ch.clone()];
    let (first, first_pid) = session(&server, "first", &both);
    drop_and_await(first, "first", &mut watcher);

    let before = server.rss_kib();
    for i in 0..1_500 {
        let (ws, _) = session(&server, &format!("u{i}"), std::slice::from_ref(&flood));
        drop(ws);
    }
    let (last, last_pid) = session(&server, "last", &both);
    drop_and_await(last, "last", &mut watcher);
    let after = server.rss_kib();
    let grew = after.saturating_sub(before) / 1024;
    eprintln!(
        "RSS before {} MiB, after 1,500 dropped sessions {} MiB",
        before / 1024,
        after / 1024
    );
    assert!(grew < 24, "1,500 dropped sessions grew RSS by {grew} MiB");

    let (_ws, got) = reconnect(&server, "first", &first_pid, &json!("0"));
    assert_ne!(got, first_pid, "the oldest session was kept beyond the cap");
    let (_ws, got) = reconnect(&server, "last", &last_pid, &json!("0"));
    assert_eq!(got, last_pid, "the newest session was forgotten");
}

/// A client that claims a session and at once sends `41` and a new CONNECT
/// on the same WebSocket gets both replies: the abandoned recovery does not
/// keep holding the link.
#[test]
fn a_recovery_abandoned_with_41_does_not_hold_the_next_connect() {
    let server = TestServer::start();
    let channel = server.create_channel("owner", "gap", "public", &[]);
    let watch_ch = server.create_channel("owner", "watch", "public", &[]);
    let mut watcher = connect(&server, "watcher");
    join(&mut watcher, &watch_ch);
    let (alice, pid) = session(&server, "alice", &[channel.clone(), watch_ch]);
    drop_and_await(alice, "alice", &mut watcher);
    let mut bob = connect(&server, "bob");
    join(&mut bob, &channel);
    send_all(&mut bob, &channel, 10, &numbered("gap", 3));

    let (mut ws, _) = open(&server);
    let token = server.token("alice");
    send_text(
        &mut ws,
        format!("40{}", json!({ "token": token, "pid": pid, "offset": "0" })),
    );
    send_text(&mut ws, "41");
    send_text(&mut ws, format!("40{}", json!({ "token": token })));
    let mut replies = Vec::new();
    while replies.len() < 2 {
        let t = recv_text(&mut ws);
        if let Some(body) = t.strip_prefix("40") {
            replies.push(serde_json::from_str::<Value>(body).expect("CONNECT JSON"));
        }
    }
    assert_ne!(replies[1]["pid"], json!(pid), "the second CONNECT is fresh");
    join(&mut ws, &channel);
}
