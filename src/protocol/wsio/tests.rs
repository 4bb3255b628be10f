use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

use super::*;
use crate::protocol::Link;
use crate::protocol::ws::tests::masked;
use crate::protocol::{CloseReason, Frame, QueueLimits};

/// A socket that hands out scripted reads (then Pending) and accepts
/// every write.
#[derive(Default)]
struct Mock {
    reads: VecDeque<Vec<u8>>,
    written: Vec<u8>,
    /// Accept at most this many more bytes (None: any), then Pending.
    room: Option<usize>,
}

impl AsyncRead for Mock {
    fn poll_read(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        match me.reads.pop_front() {
            Some(mut chunk) => {
                let n = chunk.len().min(buf.len());
                buf[..n].copy_from_slice(&chunk[..n]);
                if n < chunk.len() {
                    me.reads.push_front(chunk.split_off(n));
                }
                Poll::Ready(Ok(n))
            }
            None => Poll::Pending,
        }
    }
}

impl AsyncWrite for Mock {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let n = me.room.map_or(buf.len(), |room| room.min(buf.len()));
        if n == 0 {
            return Poll::Pending;
        }
        if let Some(room) = &mut me.room {
            *room -= n;
        }
        me.written.extend_from_slice(&buf[..n]);
        Poll::Ready(Ok(n))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_close(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn link() -> Link {
    Link::new(
        1,
        "s".into(),
        "127.0.0.1:1".parse().unwrap(),
        QueueLimits {
            max_frames: 100,
            max_bytes: 1 << 20,
        },
    )
}

fn masked_text(payload: &[u8]) -> Vec<u8> {
    masked(0x81, payload, [1, 2, 3, 4])
}

/// A [`ReadEnd`] that is not a failure (the tests' `unwrap`).
#[derive(Debug, PartialEq, Eq)]
enum Read {
    Pending,
    Yielded,
    Eof,
}

/// The end of a read that must not fail: panics on a failure.
fn ok<E: std::fmt::Debug>(end: ReadEnd<E>) -> Read {
    match end {
        ReadEnd::Pending => Read::Pending,
        ReadEnd::Yielded => Read::Yielded,
        ReadEnd::Eof => Read::Eof,
        ReadEnd::Failed(f) => panic!("read failed: {f:?}"),
        ReadEnd::Stopped(e) => panic!("read stopped: {e:?}"),
    }
}

/// Reads everything scripted, answering pings; returns the end.
fn read_all(io: &mut WsIo<Mock>, cx: &mut Context<'_>) -> Read {
    loop {
        let end = ok(io.read(cx, |io, m| {
            if let Msg::Ping(p) = m {
                io.queue_pong(p);
            }
            Ok::<(), ()>(())
        }));
        if end != Read::Yielded {
            return end;
        }
    }
}

#[test]
fn pings_while_the_socket_is_full_keep_one_pong_and_count_against_the_budget() {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let l = Link::new(
        1,
        "s".into(),
        "127.0.0.1:1".parse().unwrap(),
        QueueLimits {
            max_frames: 100,
            max_bytes: 10_000,
        },
    );
    let mut stream = Mock {
        room: Some(4),
        ..Mock::default()
    };
    stream.reads.push_back(masked(0x89, b"first", [1, 2, 3, 4]));
    let mut io = WsIo::new(stream, Vec::new(), 1000);
    read_all(&mut io, &mut cx);
    io.poll_write(&mut cx, &l).unwrap();
    assert!(
        io.blocked,
        "the socket took 4 bytes of the 7-byte pong, and is full"
    );
    // 100 pings of 100 bytes: one pong kept (the latest), 10,200 owed,
    // which is past the 10,000-byte budget.
    for i in 0..100u8 {
        io.stream
            .reads
            .push_back(masked(0x89, &[i; 100], [1, 2, 3, 4]));
    }
    read_all(&mut io, &mut cx);
    assert_eq!(io.pong.as_deref(), Some(&[99u8; 100][..]));
    assert_eq!(io.pongs_owed, 100 * 102);
    io.poll_write(&mut cx, &l).unwrap();
    assert_eq!(l.closing(), Some(CloseReason::SlowConsumer));
    // Once the socket takes bytes again, the kept pong goes out.
    io.stream.room = None;
    io.poll_write(&mut cx, &l).unwrap();
    assert!(!io.blocked && io.pongs_owed == 0 && io.pong.is_none());
    assert!(io.stream.written.ends_with(&[99u8; 100]));
}

#[test]
fn a_frame_announcement_reserves_only_what_arrived() {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let frame = masked(0x82, &vec![7u8; 999_000], [1, 2, 3, 4]);
    let mut stream = Mock::default();
    stream.reads.push_back(frame[..15].to_vec());
    let mut io = WsIo::new(stream, Vec::new(), 1 << 20);
    assert_eq!(read_all(&mut io, &mut cx), Read::Pending);
    assert_eq!(io.partial.len(), 15);
    assert!(io.partial.capacity() < 64, "{}", io.partial.capacity());
    // Then it grows with the bytes received, up to the frame and no more.
    let mut at = 15;
    while at < frame.len() {
        let end = (at + 50_000).min(frame.len());
        io.stream.reads.push_back(frame[at..end].to_vec());
        at = end;
        read_all(&mut io, &mut cx);
        if at < frame.len() {
            assert!(
                io.partial.capacity() <= 2 * at,
                "{} for {at}",
                io.partial.capacity()
            );
        }
    }
    assert_eq!(io.partial.capacity(), 0, "the frame was decoded");
}

#[test]
fn a_huge_frame_does_not_strand_the_frames_behind_it() {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let l = link();
    l.push(Frame::Text("x".repeat(300_000).into())).unwrap();
    l.push(Frame::Text("after".into())).unwrap();
    let mut io = WsIo::new(Mock::default(), Vec::new(), 1 << 20);
    io.poll_write(&mut cx, &l).unwrap();
    assert_eq!(l.queued_frames(), 0, "every queued frame went out");
    assert!(io.stream.written.ends_with(b"\x81\x05after"));
}

#[test]
fn frames_split_across_reads_and_early_bytes_are_decoded() {
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let first = masked_text(&[b'a'; 200]);
    let second = masked_text(&[b'b'; 70_000 % 65_535]);
    let mut stream = Mock::default();
    // The first frame's head came with the upgrade request; its rest, and
    // the second frame in three pieces, come in reads.
    stream.reads.push_back(first[10..].to_vec());
    stream.reads.push_back(second[..3].to_vec());
    stream.reads.push_back(second[3..4000].to_vec());
    stream.reads.push_back(second[4000..].to_vec());
    let mut io = WsIo::new(stream, first[..10].to_vec(), 1 << 20);
    let mut got = Vec::new();
    let mut end = Read::Yielded;
    while end == Read::Yielded {
        end = ok(io.read(&mut cx, |_, m| {
            if let Msg::Text(t) = m {
                got.push((t.len(), t.as_bytes()[0]));
            }
            Ok::<(), ()>(())
        }));
    }
    assert_eq!(end, Read::Pending);
    assert_eq!(got, vec![(200, b'a'), (70_000 % 65_535, b'b')]);
    assert!(io.partial.capacity() == 0, "no buffer kept once idle");
}

/// Random messages, randomly fragmented (with pings between fragments),
/// delivered in random read sizes, some bytes with the upgrade: every
/// message comes out whole, in order, and every ping is answered.
#[test]
fn random_fragmentation_and_read_sizes_decode_exactly() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6a7);
    for round in 0..200 {
        let mut wire = Vec::new();
        let mut want = Vec::new();
        let mut pings = 0;
        for _ in 0..rng.random_range(1..8) {
            let len = match rng.random_range(0..4) {
                0 => rng.random_range(0..126),
                1 => rng.random_range(126..70_000),
                _ => rng.random_range(0..2_000),
            };
            let text: String = (0..len)
                .map(|_| char::from(rng.random_range(b'a'..=b'z')))
                .collect();
            let bytes = text.as_bytes();
            let parts = rng.random_range(1..4).min(bytes.len().max(1));
            let mut at = 0;
            for p in 0..parts {
                let end = if p + 1 == parts {
                    bytes.len()
                } else {
                    rng.random_range(at..=bytes.len())
                };
                let op = if p == 0 { 0x1 } else { 0x0 };
                let fin = if p + 1 == parts { 0x80 } else { 0 };
                wire.extend(masked(fin | op, &bytes[at..end], rng.random()));
                if p + 1 < parts && rng.random_bool(0.3) {
                    wire.extend(masked(0x89, b"pi", rng.random()));
                    pings += 1;
                }
                at = end;
            }
            want.push(text);
        }
        let early = rng.random_range(0..wire.len().min(40));
        let mut stream = Mock::default();
        let mut at = early;
        while at < wire.len() {
            let n = rng.random_range(1..=(wire.len() - at).min(9_000));
            stream.reads.push_back(wire[at..at + n].to_vec());
            at += n;
        }
        let waker = futures::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let mut io = WsIo::new(stream, wire[..early].to_vec(), 1 << 20);
        let mut got = Vec::new();
        let mut seen_pings = 0;
        loop {
            let end = ok(io.read(&mut cx, |io, m| {
                match m {
                    Msg::Text(t) => got.push(t.into_owned()),
                    Msg::Ping(p) => {
                        seen_pings += 1;
                        io.queue_pong(p);
                    }
                    other => panic!("unexpected {other:?}"),
                }
                Ok::<(), ()>(())
            }));
            if end == Read::Pending {
                break;
            }
        }
        assert_eq!(got, want, "round {round}");
        assert_eq!(seen_pings, pings, "round {round}");
        assert_eq!(io.unsent.len(), pings * 4, "one pong frame per ping");
        assert_eq!(io.partial.capacity(), 0, "round {round}: nothing kept");
    }
}
