//! Entry points for the fuzz targets in `fuzz/` (cargo-fuzz), compiled only
//! with the `fuzzing` feature: one function per target, each driving the
//! real parser with what the target decoded from libFuzzer's bytes, and
//! asserting the invariants that hold for every input. A failed assertion
//! (or any panic inside the parsers) is what the fuzzer reports as a crash,
//! so unlike the rest of the crate this module panics on purpose.
//!
//! docs/fuzzing.md lists the targets and how to run them.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};
use serde_json::Value;

use crate::chat::commands::{self, Command, MAX_ID_LEN, MAX_TYPE_LEN};
use crate::chat::recovery::{Claim, Sent, offset};
use crate::protocol::packet::{self, EngineType, PacketType};
use crate::protocol::ws::{Decoder, Msg, WsError};
use crate::protocol::wsio::{IoFailure, ReadEnd, WsIo};
use crate::rest;
use crate::transport::{self, http, origin::OriginPolicy};

mod redis;
pub use redis::{bus_envelope, session_entry};

/// A decoded WebSocket message, owned, to compare two decodings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>),
}

impl From<Msg<'_>> for WsMessage {
    fn from(m: Msg<'_>) -> Self {
        match m {
            Msg::Text(t) => Self::Text(t.into_owned()),
            Msg::Binary(b) => Self::Binary(b.into_owned()),
            Msg::Ping(p) => Self::Ping(p.to_vec()),
            Msg::Pong => Self::Pong,
            Msg::Close(c) => Self::Close(c),
        }
    }
}

/// Everything a byte stream decoded to: the messages, then the error that
/// ended it (`None`: the stream ended, maybe inside a frame).
#[derive(Debug, PartialEq, Eq)]
pub struct WsOutcome {
    pub messages: Vec<WsMessage>,
    pub error: Option<WsError>,
}

/// A socket whose reads return `reads` one by one (a read larger than the
/// caller's buffer is split), then EOF; writes are accepted and dropped.
struct ScriptedSocket<'a> {
    reads: VecDeque<&'a [u8]>,
}

impl AsyncRead for ScriptedSocket<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let Some(next) = self.reads.pop_front() else {
            return Poll::Ready(Ok(0));
        };
        let n = next.len().min(buf.len());
        buf[..n].copy_from_slice(&next[..n]);
        if n < next.len() {
            self.reads.push_front(&next[n..]);
        }
        Poll::Ready(Ok(n))
    }
}

impl AsyncWrite for ScriptedSocket<'_> {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(b.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Target `ws_decode`: the server's WebSocket reading ([`WsIo`] over the
/// shared read buffer, the carried-over partial frame, [`Decoder`]) fed
/// `early` (bytes that came with the upgrade request) and then `reads`,
/// one socket read each. Asserts that no message exceeds `max`, and that
/// the result is the same as decoding all the bytes in one buffer: split
/// points between reads must not change what a stream means.
pub fn ws_decode(early: &[u8], reads: &[&[u8]], max: usize) -> WsOutcome {
    let socket = ScriptedSocket {
        reads: reads.iter().copied().filter(|r| !r.is_empty()).collect(),
    };
    let mut io = WsIo::new(socket, early.to_vec(), max);
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let mut messages = Vec::new();
    let error = loop {
        let r = io.read(&mut cx, |_, m| {
            messages.push(WsMessage::from(m));
            Ok::<(), ()>(())
        });
        match r {
            ReadEnd::Yielded => {}
            ReadEnd::Eof => break None,
            ReadEnd::Pending => unreachable!("the scripted socket is never pending"),
            ReadEnd::Failed(IoFailure::Ws(e)) => break Some(e),
            ReadEnd::Failed(IoFailure::Io(e)) => {
                unreachable!("the scripted socket does not fail: {e}")
            }
            ReadEnd::Stopped(()) => unreachable!("the callback does not fail"),
        }
    };
    let outcome = WsOutcome { messages, error };
    for m in &outcome.messages {
        let len = match m {
            WsMessage::Text(t) => t.len(),
            WsMessage::Binary(b) => b.len(),
            WsMessage::Ping(p) => {
                assert!(p.len() <= 125, "a ping of {} bytes", p.len());
                0
            }
            WsMessage::Pong | WsMessage::Close(_) => 0,
        };
        assert!(len <= max, "a message of {len} bytes, max {max}");
    }
    let whole: Vec<u8> = std::iter::once(early)
        .chain(reads.iter().copied())
        .flatten()
        .copied()
        .collect();
    assert_eq!(
        outcome,
        ws_decode_whole(&whole, max),
        "split reads decode differently from one buffer"
    );
    outcome
}

/// [`Decoder`] alone over one buffer holding the whole stream.
pub fn ws_decode_whole(bytes: &[u8], max: usize) -> WsOutcome {
    let mut buf = bytes.to_vec();
    let mut dec = Decoder::new(max);
    let mut messages = Vec::new();
    let mut at = 0;
    let error = loop {
        match dec.next(&mut buf[at..]) {
            Ok(Some((m, used))) => {
                assert!(used > 0, "a step that consumed nothing");
                at += used;
                messages.extend(m.map(WsMessage::from));
            }
            Ok(None) => break None,
            Err(e) => break Some(e),
        }
    };
    WsOutcome { messages, error }
}

/// Target `packet`: one WebSocket text frame through the Engine.IO and
/// Socket.IO parsers, as the driver reads it (binary packets announce their
/// attachments here). A packet that parses is re-encoded with the server's
/// encoders, which must give a frame that parses back to the same kind,
/// namespace, ack id, attachment count and argument count.
pub fn packet(frame: &str) {
    let Ok((EngineType::Message, data)) = packet::parse_engine(frame) else {
        return;
    };
    let Ok(p) = packet::parse_packet(data) else {
        return;
    };
    assert!(p.attachments <= packet::MAX_ATTACHMENTS);
    assert!(
        p.nsp.starts_with('/') && !p.nsp.contains(','),
        "{:?}",
        p.nsp
    );
    let args = match &p.data {
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    let encoded = match (p.kind, &p.data) {
        (PacketType::BinaryEvent | PacketType::BinaryAck, Some(array)) => {
            packet::encode_binary(p.kind, &p.nsp, p.ack_id, p.attachments, array)
        }
        (PacketType::Event, Some(Value::Array(a))) => {
            let name = match &a[0] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let rest: Vec<String> = a[1..].iter().map(Value::to_string).collect();
            packet::encode_event(&p.nsp, p.ack_id, &name, &rest.join(","))
        }
        (PacketType::Ack, Some(Value::Array(a))) => {
            let rest: Vec<String> = a.iter().map(Value::to_string).collect();
            let id = p.ack_id.expect("an ack has an id");
            packet::encode_ack(&p.nsp, id, &rest.join(","))
        }
        (PacketType::Connect, _) => packet::encode_connect(&p.nsp, "sid", Some("pid")),
        (PacketType::Disconnect, _) => packet::encode_disconnect(&p.nsp),
        (kind, data) => panic!("accepted {kind:?} with {data:?}"),
    };
    let (kind, again) = packet::parse_engine(&encoded).expect("our frame is Engine.IO");
    assert_eq!(kind, EngineType::Message);
    let q = packet::parse_packet(again).unwrap_or_else(|e| panic!("{encoded:?}: {e}"));
    assert_eq!((q.kind, &q.nsp), (p.kind, &p.nsp), "{encoded:?}");
    if matches!(p.kind, PacketType::Connect | PacketType::Disconnect) {
        return;
    }
    assert_eq!((q.ack_id, q.attachments), (p.ack_id, p.attachments));
    let again_args = match &q.data {
        Some(Value::Array(a)) => a.len(),
        _ => 0,
    };
    assert_eq!(again_args, args, "{encoded:?}");
}

/// A reader that hands out `bytes` at most `chunk` at a time.
struct Trickle<'a> {
    bytes: &'a [u8],
    chunk: usize,
}

impl AsyncRead for Trickle<'_> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let n = self.bytes.len().min(buf.len()).min(self.chunk.max(1));
        buf[..n].copy_from_slice(&self.bytes[..n]);
        self.bytes = &self.bytes[n..];
        Poll::Ready(Ok(n))
    }
}

/// Target `http_head`: the first request head of a connection, read at most
/// `chunk` bytes per read within `max` bytes ([`http::read_head`]), then
/// the upgrade checks a Socket.IO request goes through (the Engine.IO
/// query and headers, the `Origin` allow-list, the accept key).
pub fn http_head(bytes: &[u8], chunk: usize, max: usize) {
    let mut reader = Trickle { bytes, chunk };
    let read = futures_lite::future::block_on(http::read_head(&mut reader, max));
    let (req, read) = match read {
        Ok(r) => r,
        Err(http::HttpError::TooLarge(_)) => {
            let taken = bytes.len() - reader.bytes.len();
            assert!(taken >= max, "TooLarge after {taken} bytes, max {max}");
            return;
        }
        Err(_) => return,
    };
    assert!(
        bytes.starts_with(&read),
        "the bytes handed on are not the input"
    );
    assert!(req.head_len > 0 && req.head_len <= read.len());
    // One read of at most 1 KiB past the bound at most.
    assert!(read.len() < max + 1024);
    for (name, _) in &req.headers {
        assert_eq!(*name, name.to_ascii_lowercase());
    }
    let _ = req.query_pairs();
    let _ = req.header_has_token("connection", "upgrade");
    if let Ok(key) = transport::check_engine_request(&req) {
        let _ = tungstenite::handshake::derive_accept_key(key.as_bytes());
    }
    let policy = OriginPolicy::new(vec!["https://play.example.com".into()], false);
    let _ = policy.check(&req);
}

/// Target `command`: a chat event's name and its arguments (the JSON array
/// after the name in a Socket.IO event, or one value) through
/// [`commands::parse`]. What it accepts is within the documented limits.
pub fn command(event: &str, args_json: &[u8], max_content: usize) {
    let Ok(v) = serde_json::from_slice::<Value>(args_json) else {
        return;
    };
    let args = match v {
        Value::Array(a) => a,
        other => vec![other],
    };
    let id_ok = |s: &str| !s.is_empty() && s.len() <= MAX_ID_LEN;
    let thread_ok = |t: Option<u64>| t.is_none_or(|t| (1..=commands::MAX_MESSAGE_ID).contains(&t));
    match commands::parse(event, &args, max_content) {
        Ok(Command::Join { channel } | Command::Leave { channel }) => assert!(id_ok(&channel)),
        Ok(Command::Typing {
            channel, thread, ..
        }) => {
            assert!(id_ok(&channel));
            assert!(thread_ok(thread), "thread {thread:?}");
        }
        Ok(Command::Send(m)) => {
            assert!(id_ok(&m.channel));
            assert!(m.content.len() <= max_content && !m.content.trim().is_empty());
            assert!(!m.kind.is_empty() && m.kind.len() <= MAX_TYPE_LEN);
            assert!(m.client_message_id.as_deref().is_none_or(id_ok));
            assert!(m.reply_to.as_deref().is_none_or(id_ok));
            assert!(thread_ok(m.thread_id), "thread {:?}", m.thread_id);
        }
        Err(e) => {
            let _ = (e.body_json(), e.ack_json());
        }
    }
}

/// Target `rest_query`: a REST request target (`path?query`): the route
/// table with its percent-decoded ids, a message id from the last path
/// segment, and the history paging query.
pub fn rest_query(target: &str) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let _ = rest::Route::parse(path);
    let last = path.rsplit('/').next().unwrap_or_default();
    if let Ok(id) = rest::message_id(last) {
        assert_eq!(
            id.to_string().trim_start_matches('0'),
            last.trim_start_matches('0')
        );
    }
    if let Ok((_, limit)) = rest::parse_page(Some(query)) {
        assert!((1..=rest::MAX_LIMIT).contains(&limit), "limit {limit}");
    }
}

/// Target `rest_body`: a REST request body through every body reader: a new
/// channel, a channel update's fields, a message send (the chat command
/// parser) and an edit.
pub fn rest_body(body: &[u8], max_content: usize) {
    if let Ok(c) = rest::parse_new(body, "me") {
        assert!(!c.name.is_empty() && c.name == c.name.trim());
        assert!(c.name.chars().count() <= rest::MAX_NAME_CHARS);
        assert!(
            !c.members.iter().any(|m| m == "me"),
            "the creator is not a member"
        );
    }
    let Ok(p) = rest::object(body) else {
        return;
    };
    let _ = rest::text(&p, "name", rest::MAX_NAME_CHARS);
    let _ = rest::text(&p, "description", rest::MAX_DESCRIPTION_CHARS);
    if let Ok(content) = rest::edited_content(&p, max_content) {
        assert!(content.len() <= max_content);
    }
    let _ = commands::parse("send_message", &[Value::Object(p)], max_content);
}

/// Target `recovery_claim`: a Socket.IO CONNECT packet's auth payload read
/// as a recovery claim (`{pid, offset}`), with one sequencing partition
/// and with four: an offset, when taken, is the positions sent (one
/// decimal u64 with one partition, as always).
pub fn recovery_claim(connect: &str) {
    let Ok(p) = packet::parse_packet(connect) else {
        return;
    };
    for partitions in [1, 4] {
        let Some(claim) = Claim::from_auth(p.data.as_ref(), partitions) else {
            return;
        };
        let auth = p.data.as_ref().expect("a claim comes from an auth payload");
        assert_eq!(
            auth.get("pid").and_then(Value::as_str),
            Some(claim.pid.as_str())
        );
        let sent = auth.get("offset").and_then(Value::as_str);
        match claim.offset {
            Sent::Nothing => assert!(sent.is_none()),
            Sent::Usable(v) => {
                let sent = sent.expect("a string offset");
                assert_eq!(v.len(), partitions);
                if partitions == 1 {
                    assert_eq!(sent.parse::<u64>(), Ok(v[0]));
                }
                assert_eq!(offset::parse(&offset::render(&v), partitions), Some(v));
            }
            Sent::Unusable => assert!(sent.is_some()),
        }
    }
}

/// Target `recovery_offset`: the recovery offset a client sends, read for
/// 1 to 32 sequencing partitions (the first byte says how many). What it
/// accepts has exactly that many positions, within the length bound, and
/// renders to a string that reads back the same; with no leading zeros
/// that string is the input.
pub fn recovery_offset(bytes: &[u8]) {
    let Some((&n, rest)) = bytes.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    let partitions = usize::from(n % 32) + 1;
    let Some(v) = offset::parse(s, partitions) else {
        return;
    };
    assert_eq!(v.len(), partitions);
    assert!(s.len() <= offset::MAX_OFFSET_LEN);
    let again = offset::render(&v);
    assert_eq!(offset::parse(&again, partitions), Some(v));
    let leading_zero = s.split('.').any(|p| p.len() > 1 && p.starts_with('0'));
    if !leading_zero {
        assert_eq!(again, s);
    }
}

/// Target `polling_payload`: a long-polling POST body (UTF-8, as the
/// server checks first) through the payload decoder. What it accepts has
/// one packet per `\x1e`-separated part, none empty, and encodes back (as
/// a GET's payload) to a body that decodes to the same packets.
pub fn polling_payload(body: &str) {
    use crate::protocol::Frame;
    use crate::transport::polling::payload::{self, Inbound};
    let Some(packets) = payload::decode(body) else {
        return;
    };
    assert_eq!(packets.len(), body.split('\x1e').count());
    let mut again = String::new();
    for p in &packets {
        let frame = match p {
            Inbound::Text(t) => {
                assert!(!t.is_empty() && !t.contains('\x1e') && !t.starts_with('b'));
                Frame::Text(t.clone().into())
            }
            Inbound::Binary(b) => Frame::Binary(b.clone().into()),
        };
        payload::encode_into(&mut again, &frame);
    }
    assert_eq!(payload::decode(&again), Some(packets));
}

/// Target `ws_deflate`, the permessage-deflate parsers: a
/// `Sec-WebSocket-Extensions` value through [`deflate::negotiate`] (an
/// accepted offer is answered with both no-context-takeover parameters and
/// at most the window the client allowed), and bytes through
/// [`deflate::inflate`] with a limit (never more than the limit comes out;
/// what does comes back the same after [`deflate::compress`]).
pub fn ws_deflate(header: &str, data: &[u8], max: usize) {
    use crate::protocol::deflate;
    if let Some(a) = deflate::negotiate(header) {
        assert!(
            a.response.starts_with(
                "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
            ),
            "{:?}",
            a.response
        );
        let bits = a
            .response
            .split("server_max_window_bits=")
            .nth(1)
            .map(|b| b.parse::<u8>().expect("a number"));
        assert!(bits.is_none_or(|b| (8..=15).contains(&b)));
        assert_eq!(a.compress, bits.is_none_or(|b| b == 15));
    }
    match deflate::inflate(data, max) {
        Ok(out) => {
            assert!(
                out.len() <= max,
                "{} bytes inflated, limit {max}",
                out.len()
            );
            let mut again = Vec::new();
            if deflate::compress(&out, &mut again) {
                assert_eq!(deflate::inflate(&again, max).as_deref(), Ok(&out[..]));
            }
        }
        Err(e) => assert!(matches!(e, WsError::TooLarge | WsError::Protocol(_))),
    }
}
