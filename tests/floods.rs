//! Floods and slow readers, with a raw WebSocket: a subscriber that stops
//! reading is closed as a slow consumer (4008) without hurting the others,
//! a client over its command rate is refused, then disconnected (4029), and
//! so is one cycling namespace DISCONNECT/CONNECT, whose presence changes
//! are coalesced for the members of its channels.

mod common;

use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::Duration;

use serde_json::json;
use socket2::{Domain, Protocol, Socket, Type};
use tungstenite::Message;
use tungstenite::protocol::frame::coding::CloseCode;

use common::TestServer;
use common::raw::*;

/// Content of each flood message, a frame of about 4 KB.
const FLOOD_CONTENT_BYTES: usize = 4000;
/// Frames the slow client's queue may hold (OUTBOUND_QUEUE_MESSAGES).
const SLOW_QUEUE_FRAMES: u64 = 256;

/// How many messages to flood, and at which count of the fast subscriber
/// the slow client starts reading again.
///
/// A client that stops reading still absorbs a lot: the server's socket
/// send buffer autotunes up to tcp_wmem's maximum (4 MiB here) even when
/// the client advertises a tiny window. The slow client wakes well after
/// that plus its queue and the writer's buffers were full (so the queue has
/// overflowed), and soon enough that the server is still trying to write
/// the close frame behind the data the kernel holds. With 4 MiB that is
/// 2000 messages, waking at 1400.
fn flood_plan() -> (u64, u64) {
    let send_buffer_max = std::fs::read_to_string("/proc/sys/net/ipv4/tcp_wmem")
        .ok()
        .and_then(|wmem| wmem.split_whitespace().nth(2)?.parse::<u64>().ok())
        .unwrap_or(4 << 20);
    let frame = FLOOD_CONTENT_BYTES as u64 + 60;
    let absorbed = send_buffer_max + SLOW_QUEUE_FRAMES * frame + (1 << 20);
    let wake_at = (absorbed / frame).max(1400);
    (wake_at + 600, wake_at)
}

/// A TCP connection whose receive buffer is tiny, so that little of what
/// the server sends is absorbed on the client's side.
fn connect_with_tiny_rcvbuf(addr: SocketAddr) -> TcpStream {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    socket.connect(&addr.into()).expect("TCP connect");
    socket.into()
}

/// Reads `count` `message` events of `channel` and returns their seqs,
/// calling `progress` with the count after each.
fn receive_seqs(ws: &mut Ws, channel: &str, count: u64, progress: impl Fn(u64)) -> Vec<u64> {
    let mut seqs = Vec::new();
    while (seqs.len() as u64) < count {
        if let Some((name, data)) = as_event(&recv_text(ws))
            && name == "message"
            && data["channelId"] == channel
        {
            seqs.push(data["seq"].as_u64().expect("numeric seq"));
            progress(seqs.len() as u64);
        }
    }
    seqs
}

#[test]
fn slow_consumer_is_disconnected_with_4008() {
    let server = TestServer::start_with(&[
        ("OUTBOUND_QUEUE_MESSAGES", &SLOW_QUEUE_FRAMES.to_string()),
        ("MAX_MESSAGE_LENGTH", &FLOOD_CONTENT_BYTES.to_string()),
        ("RATE_LIMIT_PER_SEC", "100000"),
        ("RATE_LIMIT_BURST", "100000"),
    ]);
    let channel = server.create_channel("owner", "flood", "public", &[]);
    let (flood, slow_wakes_at) = flood_plan();

    let (mut slow, _) = open_on(connect_with_tiny_rcvbuf(server.addr()), &server);
    sio_connect(&mut slow, &server.token("slow"));
    join(&mut slow, &channel);
    let (wake_slow, slow_woken) = std::sync::mpsc::channel();
    let slow = thread::spawn(move || {
        // Stops reading until the flood is well past what it can buffer.
        slow_woken.recv().expect("wake-up from the fast subscriber");
        until_closed(&mut slow)
    });

    let mut fast = connect(&server, "fast");
    join(&mut fast, &channel);
    let fast_channel = channel.clone();
    let fast = thread::spawn(move || {
        receive_seqs(&mut fast, &fast_channel, flood, |received| {
            if received == slow_wakes_at {
                let _ = wake_slow.send(());
            }
        })
    });

    // The sender keeps up to WINDOW sends in flight and reads its own
    // broadcasts as it goes, so that it is never a slow consumer itself:
    // each send queues two frames for it (its ack and the broadcast), so a
    // window is at most half its queue (SLOW_QUEUE_FRAMES applies to every
    // connection).
    const WINDOW: u64 = SLOW_QUEUE_FRAMES / 4;
    let mut sender = connect(&server, "sender");
    join(&mut sender, &channel);
    let content = "y".repeat(FLOOD_CONTENT_BYTES);
    let mut sent = 0;
    while sent < flood {
        let batch = WINDOW.min(flood - sent);
        for id in sent..sent + batch {
            let event = json!(["send_message", { "channelId": channel, "content": content }]);
            send_text(&mut sender, format!("42{id}{event}"));
        }
        for _ in 0..batch {
            let (_, ack) = recv_ack(&mut sender);
            assert_eq!(ack["ok"], true, "send_message: {ack}");
        }
        sent += batch;
    }

    let seqs = fast.join().expect("fast subscriber");
    let expected: Vec<u64> = (1..=flood).collect();
    assert!(
        seqs == expected,
        "the fast subscriber missed or reordered messages"
    );

    match slow.join().expect("slow client") {
        (Ended::Close(Some(frame)), received) => {
            println!("slow client: {received} frames, then {frame:?}");
            assert_eq!(frame.code, CloseCode::Library(4008), "{frame:?}");
            assert_eq!(frame.reason.as_str(), "slow consumer");
            assert!(
                (received as u64) < flood,
                "the slow client got all {received} messages"
            );
        }
        (ended, received) => {
            panic!("expected close 4008 after {received} frames, got {ended:?}")
        }
    }

    assert_healthy(&server);
}

/// Sends `count` `send_message` events at once, with ack ids from `first_id`.
fn send_burst(ws: &mut Ws, channel: &str, first_id: u64, count: u64) {
    for id in first_id..first_id + count {
        let event = json!(["send_message", { "channelId": channel, "content": format!("m{id}") }]);
        send_text(ws, format!("42{id}{event}"));
    }
}

#[test]
fn rate_limit_rejects_then_disconnects() {
    const BURST: u64 = 5;
    const DISCONNECT_AFTER: u64 = 10;
    let server = TestServer::start_with(&[
        ("RATE_LIMIT_PER_SEC", "2"),
        ("RATE_LIMIT_BURST", "5"),
        ("RATE_LIMIT_DISCONNECT_AFTER", "10"),
    ]);

    // A client over its burst is told RATE_LIMITED and recovers after a pause.
    let limits = server.create_channel("owner", "limits", "public", &[]);
    let mut polite = connect(&server, "polite");
    join(&mut polite, &limits);
    send_burst(&mut polite, &limits, 100, BURST);
    let codes: Vec<String> = (0..BURST)
        .map(|_| {
            let (_, ack) = recv_ack(&mut polite);
            match ack["ok"].as_bool() {
                Some(true) => "ok".to_owned(),
                _ => ack["error"]["code"].as_str().unwrap_or("?").to_owned(),
            }
        })
        .collect();
    assert!(
        codes.iter().any(|code| code == "RATE_LIMITED"),
        "no RATE_LIMITED among {codes:?} (the join and {BURST} sends exceed a burst of {BURST})"
    );
    assert!(
        codes
            .iter()
            .all(|code| code == "ok" || code == "RATE_LIMITED"),
        "{codes:?}"
    );
    thread::sleep(Duration::from_millis(1500));
    send_burst(&mut polite, &limits, 200, 1);
    let (id, ack) = recv_ack(&mut polite);
    assert_eq!(
        (id, &ack["ok"]),
        (200, &json!(true)),
        "after a pause: {ack}"
    );

    // A client that keeps sending regardless is disconnected.
    let mut flooder = connect(&server, "flooder");
    join(&mut flooder, &limits);
    let sent = BURST + DISCONNECT_AFTER + 20;
    send_burst(&mut flooder, &limits, 1000, sent);
    let mut rejected = 0;
    loop {
        match flooder.read() {
            Ok(Message::Text(text)) if text.as_str().starts_with("43") => {
                if text.as_str().contains("RATE_LIMITED") {
                    rejected += 1;
                }
            }
            Ok(Message::Close(_)) => break,
            Ok(_) => {}
            Err(e) if is_timeout(&e) => {
                panic!("still connected after {rejected} RATE_LIMITED acks and {WAIT:?}")
            }
            Err(_) => break,
        }
    }
    assert!(
        (1..=DISCONNECT_AFTER).contains(&rejected),
        "disconnected after {rejected} RATE_LIMITED acks (limit {DISCONNECT_AFTER})"
    );

    assert_healthy(&server);
}

/// A masked client text frame, for writing many frames in one `write`.
fn masked_text(text: &str) -> Vec<u8> {
    let p = text.as_bytes();
    let mask = [0x5a, 0x13, 0xc7, 0x01];
    let mut f = vec![0x81];
    match p.len() {
        n if n < 126 => f.push(0x80 | n as u8),
        n => {
            f.push(0x80 | 126);
            f.extend_from_slice(&u16::try_from(n).expect("a short frame").to_be_bytes());
        }
    }
    f.extend_from_slice(&mask);
    f.extend(p.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

/// D4: namespace DISCONNECT/CONNECT cycles (`41`, `40`), thousands in one
/// write, from one connection of a user whose presence list holds many
/// channels. They count against the connection's rate limit (refused with a
/// RATE_LIMITED CONNECT_ERROR, then closed with 4029), and the presence
/// changes are coalesced: a co-subscriber of every channel stays connected
/// and is told a bounded number of times, ending with the user offline.
/// Before: every cycle sent two presence_update per channel and the
/// co-subscriber was closed as a slow consumer (4008).
#[test]
fn namespace_cycling_is_rate_limited_and_presence_coalesced() {
    const CHANNELS: usize = 50;
    const CYCLES: usize = 2000;
    let server = TestServer::start();
    let channels: Vec<String> = (0..CHANNELS)
        .map(|i| server.create_channel("owner", &format!("cycle{i}"), "public", &[]))
        .collect();
    // The cycling user's presence list: every channel, through a first
    // connection that joins them all and stays while the watcher joins.
    let mut setup = connect(&server, "cycler");
    for c in &channels {
        join(&mut setup, c);
    }
    let mut watcher = connect(&server, "watcher");
    for c in &channels {
        join(&mut watcher, c);
    }
    let mut cycler = connect(&server, "cycler");
    // The first connection goes: the cycling one is the user's only one
    // (the channels are told the user left them, and nothing else yet).
    drop(setup);
    for _ in 0..CHANNELS {
        loop {
            if let Some((name, data)) = as_event(&recv_text(&mut watcher))
                && name == "user_left"
            {
                assert_eq!(data["userId"], "cycler", "{data}");
                break;
            }
        }
    }

    let connect_frame = masked_text(&format!("40{}", json!({ "token": server.token("cycler") })));
    let mut burst = Vec::new();
    for _ in 0..CYCLES {
        burst.extend(masked_text("41"));
        burst.extend(&connect_frame);
    }
    std::io::Write::write_all(cycler.get_mut(), &burst).expect("write the cycles");

    // The cycling connection: some CONNECTs accepted, then refused, then
    // closed for rate.
    let mut refused = 0;
    let code = loop {
        match cycler.read() {
            Ok(Message::Text(t)) if t.as_str().starts_with("44") => {
                assert!(t.as_str().contains(r#""code":"RATE_LIMITED""#), "{t}");
                refused += 1;
            }
            Ok(Message::Close(frame)) => break frame.map(|f| f.code),
            Ok(_) => {}
            Err(e) => panic!("cycling connection not closed with a close frame: {e}"),
        }
    };
    assert_eq!(
        code,
        Some(CloseCode::Library(4029)),
        "after {refused} refusals"
    );
    assert!(refused > 0, "no CONNECT refused for rate before the close");

    // The watcher: the user ends offline in every channel (at least one
    // offline per channel), and within the window after that nothing more
    // than a few announcements per channel came.
    let mut presence = Vec::new();
    let mut offline = 0;
    while offline < CHANNELS {
        let frame = recv_text(&mut watcher);
        if let Some((name, data)) = as_event(&frame)
            && name == "presence_update"
            && data["userId"] == "cycler"
        {
            offline += usize::from(data["status"] == "offline");
            presence.push(data["status"].as_str().unwrap_or("?").to_owned());
        }
    }
    // Any announcement still coming is due within an interval (1 s) and a
    // tick (250 ms) of the last one; wait twice that.
    let quiet_until = std::time::Instant::now() + Duration::from_millis(2500);
    loop {
        let left = quiet_until.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            break;
        }
        watcher.get_ref().set_read_timeout(Some(left)).unwrap();
        match watcher.read() {
            Ok(Message::Text(t)) if t.as_str() == "2" => send_text(&mut watcher, "3"),
            Ok(Message::Text(t)) => {
                if let Some((name, data)) = as_event(t.as_str())
                    && name == "presence_update"
                    && data["userId"] == "cycler"
                {
                    presence.push(data["status"].as_str().unwrap_or("?").to_owned());
                }
            }
            Ok(Message::Close(f)) => panic!("watcher closed: {f:?}"),
            Ok(_) => {}
            Err(e) if is_timeout(&e) => break,
            Err(e) => panic!("watcher: {e}"),
        }
    }
    watcher.get_ref().set_read_timeout(Some(WAIT)).unwrap();
    // Measured: 50, all offline (50 CONNECTs refused, then 4029). With
    // PRESENCE_INTERVAL_MS=0 (rate limit alone) the watcher got 4008.
    assert!(
        presence.len() <= 3 * CHANNELS,
        "{} presence_update for {CHANNELS} channels and {CYCLES} cycles: {presence:?}",
        presence.len()
    );
    assert_eq!(
        presence.last().map(String::as_str),
        Some("offline"),
        "{presence:?}"
    );
    // Still connected and served.
    join(&mut watcher, &channels[0]);
}
