use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_lite::{AsyncRead, AsyncWrite};

use super::*;
use crate::protocol::QueueLimits;

/// A socket that hands out scripted reads (then Pending) and accepts
/// every write.
#[derive(Default)]
struct Mock {
    reads: VecDeque<Vec<u8>>,
    written: Vec<u8>,
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
        self.get_mut().written.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
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
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81, 0x80 | 126];
    f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
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
    let mut end = ReadEnd::Yielded;
    while end == ReadEnd::Yielded {
        end = io
            .read(&mut cx, |_, m| {
                if let Msg::Text(t) = m {
                    got.push((t.len(), t.as_bytes()[0]));
                }
                Ok::<(), ()>(())
            })
            .unwrap();
    }
    assert_eq!(end, ReadEnd::Pending);
    assert_eq!(got, vec![(200, b'a'), (70_000 % 65_535, b'b')]);
    assert!(io.partial.capacity() == 0, "no buffer kept once idle");
}
