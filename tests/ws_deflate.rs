//! permessage-deflate (RFC 7692) against the real binary, with the raw
//! client of `ws_hostile/wire.rs` and frames compressed here with flate2
//! (tungstenite has no deflate): the negotiation in the 101, a compressed
//! chat round trip, one broadcast to a compressing and a plain subscriber,
//! zip bombs (closed 1009, memory bounded) and `WS_COMPRESSION=false`.

mod common;
#[path = "ws_hostile/wire.rs"]
mod wire;

use std::thread;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{Value, json};

use common::TestServer;
use wire::*;

const MIB: u64 = 1 << 20;
/// What every browser offers.
const BROWSER_OFFER: &str =
    "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A message compressed as a client does (raw deflate, sync flush, the
/// 00 00 ff ff tail left off: RFC 7692 7.2.1).
fn deflate(payload: &[u8]) -> Vec<u8> {
    let mut c = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(payload.len() + 64);
    loop {
        let at = c.total_in() as usize;
        c.compress_vec(&payload[at..], &mut out, FlushCompress::Sync)
            .expect("deflate");
        if c.total_in() as usize == payload.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

/// A server message's payload inflated (the tail put back: 7.2.2).
fn inflate(payload: &[u8]) -> String {
    let mut d = Decompress::new(false);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(64 * payload.len() + 1024);
    d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .expect("inflate");
    assert_eq!(d.total_in() as usize, input.len(), "all inflated");
    String::from_utf8(out).expect("UTF-8")
}

/// A compressed text message from the client (RSV1 set).
fn compressed_text(text: &str) -> Vec<u8> {
    frame(0xC1, &deflate(text.as_bytes()))
}

/// Upgrades with `extra` headers; returns the wire and the extension the
/// 101 names, then reads the OPEN packet.
fn open(server: &TestServer, extra: &str) -> (Wire, Option<String>) {
    let (mut wire, head) = Wire::request(server.addr(), &upgrade_request(server.port(), extra));
    assert_eq!(head.status, 101, "{}", head.text);
    let ext = head.header("Sec-WebSocket-Extensions").map(str::to_owned);
    let (op, open) = wire.read_frame().expect("OPEN");
    assert!(op == 1 && open.starts_with(b"0{"), "OPEN: {open:?}");
    (wire, ext)
}

/// The next text frame that is not an Engine.IO ping, with whether it came
/// compressed, inflated.
fn next_text(wire: &mut Wire) -> (bool, String) {
    loop {
        let (b0, payload) = wire.read_frame_b0().expect("a frame");
        let compressed = b0 & 0x40 != 0;
        let text = if compressed {
            inflate(&payload)
        } else {
            String::from_utf8(payload).expect("UTF-8")
        };
        match b0 & 0x0F {
            1 if text == "2" => wire.send(&frame(0x81, b"3")),
            1 => return (compressed, text),
            8 => panic!("closed: {text:?}"),
            _ => {}
        }
    }
}

/// The next `42…` event named `name`, with its frame's compression flag.
fn next_event(wire: &mut Wire, name: &str) -> (bool, Value) {
    loop {
        let (compressed, text) = next_text(wire);
        if let Some(rest) = text.strip_prefix("42")
            && let Ok(v) = serde_json::from_str::<Value>(rest)
            && v[0] == name
        {
            return (compressed, v);
        }
    }
}

/// The ack `43<id>[…]`, with its frame's compression flag.
fn next_ack(wire: &mut Wire, id: u64) -> (bool, Value) {
    let prefix = format!("43{id}");
    loop {
        let (compressed, text) = next_text(wire);
        if let Some(rest) = text.strip_prefix(&prefix) {
            let v: Value = serde_json::from_str(rest).expect("ack JSON");
            return (compressed, v[0].clone());
        }
    }
}

/// A Socket.IO CONNECT, compressed when `deflate`.
fn connect(wire: &mut Wire, token: &str, deflate: bool) {
    let connect = format!(r#"40{{"token":"{token}"}}"#);
    wire.send(&if deflate {
        compressed_text(&connect)
    } else {
        frame(0x81, connect.as_bytes())
    });
    let (_, reply) = next_text(wire);
    assert!(reply.starts_with("40{\"sid\""), "CONNECT refused: {reply}");
}

#[test]
fn browsers_offer_is_accepted_and_a_broadcast_reaches_compressing_and_plain_subscribers() {
    let server = TestServer::start();
    let lobby = server.create_channel("owner", "lobby", "public", &[]);
    let (mut alice, ext) = open(&server, BROWSER_OFFER);
    assert_eq!(ext.as_deref(), Some(ANSWER));
    let (mut bob, ext) = open(&server, "");
    assert_eq!(ext, None, "no offer, no extension");
    // Alice's CONNECT and commands go compressed, small as they are.
    connect(&mut alice, &server.token("alice"), true);
    connect(&mut bob, &server.token("bob"), false);
    let join = json!(["join_channel", {"channelId": lobby}]).to_string();
    alice.send(&compressed_text(&format!("421{join}")));
    bob.send(&frame(0x81, format!("421{join}").as_bytes()));
    assert_eq!(next_ack(&mut alice, 1).1["ok"], true);
    assert_eq!(next_ack(&mut bob, 1).1["ok"], true);

    // 2 KB of chat text: above the 1024-byte threshold.
    let content: String = (0..60)
        .map(|i| format!("line {i} of a long message. "))
        .collect();
    assert!(content.len() > 1500 && content.len() < 4000);
    let send =
        json!(["send_message", {"channelId": lobby, "content": content, "clientMessageId": "c1"}]);
    alice.send(&compressed_text(&format!("422{send}")));

    // The broadcast comes before the ack (both in one committed batch).
    let (to_alice_compressed, to_alice) = next_event(&mut alice, "message");
    let (ack_compressed, ack) = next_ack(&mut alice, 2);
    assert_eq!(ack["ok"], true, "{ack}");
    assert_eq!(ack["message"]["content"], content);
    assert!(ack_compressed, "an ack above the threshold is compressed");
    let (to_bob_compressed, to_bob) = next_event(&mut bob, "message");
    assert!(to_alice_compressed, "alice negotiated deflate");
    assert!(!to_bob_compressed, "bob did not");
    assert_eq!(to_alice, to_bob, "the same broadcast, inflated");
    assert_eq!(to_alice[1]["content"], content);

    // Below the threshold, the broadcast goes plain to both.
    let send =
        json!(["send_message", {"channelId": lobby, "content": "short", "clientMessageId": "c2"}]);
    alice.send(&compressed_text(&format!("423{send}")));
    assert!(!next_event(&mut alice, "message").0);
    let (ack_compressed, ack) = next_ack(&mut alice, 3);
    assert_eq!((ack_compressed, &ack["ok"]), (false, &json!(true)));
    assert_eq!(next_event(&mut bob, "message").1[1]["content"], "short");
}

#[test]
fn several_offers_the_first_acceptable_one_wins_and_rsv1_rules_hold() {
    let server = TestServer::start();
    let offers = "Sec-WebSocket-Extensions: x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=16\r\n\
                  Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=10; server_max_window_bits=12\r\n";
    let (mut wire, ext) = open(&server, offers);
    assert_eq!(
        ext.as_deref(),
        Some(format!("{ANSWER}; server_max_window_bits=12").as_str())
    );
    // RSV1 on a control frame is a protocol error even with the extension.
    wire.send(&frame(0xC9, b"ping"));
    assert_eq!(wire.close_code(), 1002);
    // Without the extension, any RSV1 is.
    let (mut plain, _) = open(&server, "");
    plain.send(&compressed_text("40"));
    assert_eq!(plain.close_code(), 1002);
}

#[test]
fn with_compression_off_the_101_names_no_extension() {
    let server = TestServer::start_with(&[("WS_COMPRESSION", "false")]);
    let (mut wire, ext) = open(&server, BROWSER_OFFER);
    assert_eq!(ext, None);
    wire.send(&compressed_text("40"));
    assert_eq!(wire.close_code(), 1002);
}

/// Zip bombs: a few KB that inflate to many MB. Before a CONNECT the
/// smaller limit (MAX_PAYLOAD_BEFORE_CONNECT, 16 KiB) applies to the
/// inflated size, after it MAX_PAYLOAD (1 MB); either way the connection
/// is closed with 1009, and the inflater never holds more than the limit:
/// 16 connections at once, each with a bomb of 32 MB, leave the server's
/// peak RSS within 64 MB of where it was (inflating them whole would be
/// 512 MB).
#[test]
fn a_zip_bomb_is_closed_1009_without_inflating_past_the_limit() {
    const CONNS: usize = 16;
    let server = TestServer::start();
    // 32 MB of one repeated JSON-ish text, as a text message.
    let bomb = deflate(&vec![b'a'; 32 << 20]);
    assert!(bomb.len() < 64 << 10, "{} compressed bytes", bomb.len());
    let bomb = frame(0xC1, &bomb);

    // Before the CONNECT: a small inflated size is already too large.
    let (mut early, _) = open(&server, BROWSER_OFFER);
    early.send(&frame(0xC1, &deflate(&vec![b'a'; 20_000])));
    assert_eq!(early.close_code(), 1009);

    let baseline = server.peak_rss_kib() * 1024;
    let wires: Vec<Wire> = (0..CONNS)
        .map(|i| {
            let (mut w, ext) = open(&server, BROWSER_OFFER);
            assert_eq!(ext.as_deref(), Some(ANSWER));
            connect(&mut w, &server.token(&format!("user{i}")), false);
            w
        })
        .collect();
    let closers: Vec<_> = wires
        .into_iter()
        .map(|mut w| {
            let bomb = bomb.clone();
            thread::spawn(move || {
                // The server may close before all of it is taken.
                let _ = w.try_send(&bomb);
                w.close_code()
            })
        })
        .collect();
    for c in closers {
        assert_eq!(c.join().expect("client thread"), 1009);
    }
    let grown = (server.peak_rss_kib() * 1024).saturating_sub(baseline);
    assert!(grown < 64 * MIB, "RSS grew by {} MiB", grown / MIB);
    // The server still serves.
    let (mut after, _) = open(&server, BROWSER_OFFER);
    connect(&mut after, &server.token("after"), true);
}

/// Several instances with four sequencing partitions: each instance's
/// applier puts the offset into a frame (one position per partition) and
/// compresses it then, so a compressing and a plain subscriber on the
/// instance that did not commit it get the same broadcast, with that
/// offset, above the threshold compressed.
#[test]
#[ignore = "needs MariaDB and redis-server: run scripts/test"]
fn with_partitions_over_redis_the_applier_compresses_the_frame_with_its_offset() {
    let cluster = common::cluster::Cluster::start(2, &[("SEQUENCER_PARTITIONS", "4")]);
    let (a, b) = (cluster.server(0), cluster.server(1));
    let lobby = a.create_channel("owner", "lobby", "public", &[]);
    let join = json!(["join_channel", {"channelId": lobby}]).to_string();
    let (mut alice, ext) = open(b, BROWSER_OFFER);
    assert_eq!(ext.as_deref(), Some(ANSWER));
    let (mut bob, _) = open(b, "");
    let (mut carol, _) = open(a, "");
    connect(&mut alice, &cluster.token("alice"), true);
    connect(&mut bob, &cluster.token("bob"), false);
    connect(&mut carol, &cluster.token("carol"), false);
    alice.send(&compressed_text(&format!("421{join}")));
    bob.send(&frame(0x81, format!("421{join}").as_bytes()));
    carol.send(&frame(0x81, format!("421{join}").as_bytes()));
    assert_eq!(next_ack(&mut alice, 1).1["ok"], true);
    assert_eq!(next_ack(&mut bob, 1).1["ok"], true);
    assert_eq!(next_ack(&mut carol, 1).1["ok"], true);

    let content: String = (0..60)
        .map(|i| format!("line {i} of a long message. "))
        .collect();
    let send =
        json!(["send_message", {"channelId": lobby, "content": content, "clientMessageId": "c1"}]);
    carol.send(&frame(0x81, format!("422{send}").as_bytes()));
    assert_eq!(next_ack(&mut carol, 2).1["ok"], true);
    let (compressed, to_alice) = next_event(&mut alice, "message");
    let (plain, to_bob) = next_event(&mut bob, "message");
    assert!(compressed, "alice negotiated deflate: compressed on B");
    assert!(!plain, "bob did not");
    assert_eq!(to_alice, to_bob, "the same broadcast, inflated");
    assert_eq!(to_alice[1]["content"], content);
    let offset = to_alice[2].as_str().expect("a string offset");
    let positions: Vec<u64> = offset
        .split('.')
        .map(|p| p.parse().expect("decimal positions"))
        .collect();
    assert_eq!(positions.len(), 4, "one position per partition: {offset}");
    // The message's own partition and position are in its id
    // (architecture.md "Message ids"): its entry of the offset is its pos.
    let id: u64 = to_alice[1]["id"]
        .as_str()
        .and_then(|i| i.parse().ok())
        .expect("a decimal id");
    let (partition, pos) = ((id & 31) as usize, (id & ((1 << 43) - 1)) >> 5);
    assert_eq!(positions[partition], pos, "offset {offset}, id {id}");
}
