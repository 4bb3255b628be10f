//! `Link`: the queue bounds (frames, bytes, the driver's backlog), the
//! first close reason, and recovery's hold, pages and release.

use super::*;

fn link(max_frames: usize, max_bytes: usize) -> Link {
    Link::new(
        1,
        "s".into(),
        "127.0.0.1:1".parse().unwrap(),
        QueueLimits {
            max_frames,
            max_bytes,
        },
    )
}

#[test]
fn overflow_by_count_closes_as_slow_consumer() {
    let l = link(2, 1000);
    assert!(l.push_text("a".into()).is_ok());
    assert!(l.push_text("b".into()).is_ok());
    assert_eq!(l.push_text("c".into()), Err(PushError::Overflow));
    assert_eq!(l.closing(), Some(CloseReason::SlowConsumer));
    assert_eq!(l.push_text("d".into()), Err(PushError::Closed));
    assert_eq!(l.queued_frames(), 2);
}

#[test]
fn overflow_by_bytes() {
    let l = link(100, 10);
    assert!(l.push_text("12345".into()).is_ok());
    assert!(l.push_text("12345".into()).is_ok());
    assert_eq!(l.push_text("1".into()), Err(PushError::Overflow));
}

#[test]
fn pop_releases_bytes() {
    let l = link(10, 10);
    l.push_text("12345".into()).unwrap();
    // 5 queued bytes + 6 would exceed 10.
    assert_eq!(l.push_text("123456".into()), Err(PushError::Overflow));
    let l = link(10, 10);
    l.push_text("12345".into()).unwrap();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    assert!(matches!(l.pop(&mut cx), Poll::Ready(Frame::Text(_))));
    assert!(l.pop(&mut cx).is_pending());
    assert!(l.push_text("123456".into()).is_ok());
}

#[test]
fn the_drivers_backlog_shares_the_byte_budget() {
    let l = link(10, 10);
    l.push_text("12345".into()).unwrap();
    l.set_backlog(5);
    assert_eq!(l.closing(), None, "5 queued + 5 held is the limit");
    assert_eq!(l.push_text("1".into()), Err(PushError::Overflow));
    let l = link(10, 10);
    l.set_backlog(11);
    assert_eq!(l.closing(), Some(CloseReason::SlowConsumer));
}

#[test]
fn first_close_reason_wins() {
    let l = link(10, 10);
    l.close(CloseReason::ServerShutdown);
    l.close(CloseReason::SlowConsumer);
    assert_eq!(l.closing(), Some(CloseReason::ServerShutdown));
}

#[test]
fn held_frames_wait_behind_the_released_ones() {
    let l = link(10, 100);
    l.push_text("connect".into()).unwrap();
    l.hold();
    l.push_text("live".into()).unwrap();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let text = |p: Poll<Frame>| match p {
        Poll::Ready(Frame::Text(t)) => Some(t.as_str().to_owned()),
        _ => None,
    };
    assert_eq!(text(l.pop(&mut cx)).as_deref(), Some("connect"));
    assert_eq!(text(l.pop(&mut cx)), None, "live is held");
    l.release(vec![Frame::Text("missed".into())]);
    assert_eq!(text(l.pop(&mut cx)).as_deref(), Some("missed"));
    assert_eq!(text(l.pop(&mut cx)).as_deref(), Some("live"));
    assert_eq!(text(l.pop(&mut cx)), None);
}

#[test]
fn pages_go_ahead_of_held_frames_in_order() {
    let l = link(10, 1000);
    l.push_text("before".into()).unwrap();
    l.hold();
    l.push_text("reply".into()).unwrap();
    l.push_text("live-1".into()).unwrap();
    let waker = futures::task::noop_waker();
    let mut cx = Context::from_waker(&waker);
    let text = |p: Poll<Frame>| match p {
        Poll::Ready(Frame::Text(t)) => Some(t.as_str().to_owned()),
        _ => None,
    };
    assert_eq!(text(l.pop(&mut cx)).as_deref(), Some("before"));
    assert_eq!(text(l.pop(&mut cx)), None, "the reply is held");
    l.map_first_held(|_| Frame::Text("reply'".into()));
    l.pass_held(1);
    l.push_ahead(vec![
        Frame::Text("page-1a".into()),
        Frame::Text("page-1b".into()),
    ])
    .unwrap();
    assert_eq!(text(l.pop(&mut cx)).as_deref(), Some("reply'"));
    assert_eq!(text(l.pop(&mut cx)).as_deref(), Some("page-1a"));
    l.push_text("live-2".into()).unwrap();
    l.push_ahead(vec![Frame::Text("page-2".into())]).unwrap();
    assert_eq!(text(l.pop(&mut cx)).as_deref(), Some("page-1b"));
    assert_eq!(text(l.pop(&mut cx)).as_deref(), Some("page-2"));
    assert_eq!(text(l.pop(&mut cx)), None, "live frames still held");
    l.release(vec![]);
    assert_eq!(text(l.pop(&mut cx)).as_deref(), Some("live-1"));
    assert_eq!(text(l.pop(&mut cx)).as_deref(), Some("live-2"));
    assert_eq!(text(l.pop(&mut cx)), None);
    assert_eq!(l.queued_bytes.get(), 0);
}

#[test]
fn a_page_that_does_not_fit_closes_as_slow_consumer() {
    let l = link(3, 1000);
    l.hold();
    l.push_text("live".into()).unwrap();
    let page = vec![Frame::Text("a".into()); 3];
    assert_eq!(l.push_ahead(page), Err(PushError::Overflow));
    assert_eq!(l.closing(), Some(CloseReason::SlowConsumer));
    assert_eq!(l.queued_frames(), 1);
}
