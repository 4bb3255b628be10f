//! Store suite: threads (schema 8): replies counted into their head by
//! the writer's commit, refused when their head is not one, listed, and
//! uncounted when deleted.

use super::*;
use gatrix_chat::store::{Placed, Thread};

fn reply(channel: &str, parent: u64, content: &str, at: &str) -> MessageRecord {
    MessageRecord {
        thread: Thread {
            parent: Some(parent),
            ..Thread::default()
        },
        ..message(0, channel, 0, "bob", None, content, at)
    }
}

fn refused(p: &Placed) -> &str {
    match p {
        Placed::Refused(why) => why,
        other => panic!("not refused: {other:?}"),
    }
}

pub(super) fn threads_count_replies_list_them_and_refuse_others(
    s: &mut dyn Store,
    db: &dyn Backend,
) {
    let clock = Clock::new();
    let head = message(0, "c-a", 0, "alice", None, "a question", &clock.at(1));
    let elsewhere = message(0, "c-b", 0, "alice", None, "in b", &clock.at(2));
    let stored = s.append(&[&head, &elsewhere]).expect("append").rows;
    let (h, b) = (stored[0].id, stored[1].id);
    assert_eq!(stored[0].thread, Thread::default());

    let r1 = reply("c-a", h, "first answer", &clock.at(10));
    let plain = message(0, "c-a", 0, "carol", None, "meanwhile", &clock.at(11));
    let r2 = reply("c-a", h, "second answer", &clock.at(12));
    let other_channel = reply("c-a", b, "to b's message", &clock.at(13));
    let missing = reply("c-a", h + (1 << 40), "to nothing", &clock.at(14));
    let out = s
        .append(&[&r1, &plain, &r2, &other_channel, &missing])
        .expect("append replies");
    // Refused replies take no seq: the channel stays gapless.
    let got: Vec<(u64, &str, Option<u64>, u64)> = out
        .rows
        .iter()
        .map(|m| (m.seq, m.content.as_str(), m.thread.parent, m.thread.count))
        .collect();
    assert_eq!(
        got,
        [
            (2, "first answer", Some(h), 1),
            (3, "meanwhile", None, 0),
            (4, "second answer", Some(h), 2),
        ]
    );
    assert_eq!(
        out.placed[..3],
        [Placed::Row(0), Placed::Row(1), Placed::Row(2)]
    );
    assert_eq!(
        refused(&out.placed[3]),
        format!("threadId {b} names no message of this channel")
    );
    assert!(refused(&out.placed[4]).contains("names no message of this channel"));
    let (r1_id, r2_id) = (out.rows[0].id, out.rows[2].id);

    // A reply to a reply is refused: threads are one level deep.
    let nested = reply("c-a", r1_id, "a reply to a reply", &clock.at(15));
    let out = s.append(&[&nested]).expect("append");
    assert!(out.rows.is_empty());
    assert_eq!(
        refused(&out.placed[0]),
        format!("threadId {r1_id} is a reply in a thread; reply to the thread's first message")
    );

    // The head carries its thread; each reply its thread's count after it.
    let mut other = db.open();
    let head_now = other.message(h).expect("message").expect("the head");
    assert_eq!(
        head_now.thread,
        Thread {
            parent: None,
            count: 2,
            last_at: Some(clock.at(12))
        }
    );
    let r1_now = other.message(r1_id).expect("message").expect("the reply");
    assert_eq!(
        r1_now.thread,
        Thread {
            parent: Some(h),
            count: 1,
            last_at: None
        }
    );
    // Replies are channel messages: in its history, in seq order.
    let (page, _) = other.history("c-a", Page::Latest, 10).expect("history");
    assert_eq!(seqs(&page), [1, 2, 3, 4]);
    // The thread, paged by offset.
    let (list, total) = other.thread(h, 0, 10).expect("thread");
    assert_eq!(
        (list.iter().map(|m| m.id).collect::<Vec<_>>(), total),
        (vec![r1_id, r2_id], 2)
    );
    let (list, total) = other.thread(h, 1, 1).expect("thread");
    assert_eq!(
        (list.iter().map(|m| m.id).collect::<Vec<_>>(), total),
        (vec![r2_id], 2)
    );
    assert_eq!(other.thread(b, 0, 10).expect("thread"), (vec![], 0));

    // A deleted reply leaves its thread: count and latest time follow.
    s.delete_message(r2_id, &clock.at(20))
        .expect("delete")
        .expect("deleted");
    let head_now = db.open().message(h).expect("message").expect("the head");
    assert_eq!(
        (head_now.thread.count, head_now.thread.last_at),
        (1, Some(clock.at(10)))
    );
    let (list, total) = db.open().thread(h, 0, 10).expect("thread");
    assert_eq!((list.len(), total), (1, 1));
    // A third reply counts from there.
    let r3 = reply("c-a", h, "third answer", &clock.at(30));
    let out = s.append(&[&r3]).expect("append");
    assert_eq!((out.rows[0].seq, out.rows[0].thread.count), (5, 2));

    // A deleted head takes no more replies.
    s.delete_message(h, &clock.at(40))
        .expect("delete")
        .expect("deleted");
    let late = reply("c-a", h, "too late", &clock.at(41));
    let out = s.append(&[&late]).expect("append");
    assert!(refused(&out.placed[0]).contains("names no message of this channel"));
    assert_eq!(s.last_seq("c-a").expect("last_seq"), 5);
}
