//! The import's messages step: the original's messages in id order, a
//! page at a time, each page written in one transaction with the next seqs
//! of their channels, then what `Store::insert_messages` does not write.

use std::collections::{HashMap, HashSet};

use mysql::Value;
use mysql::prelude::Queryable;

use super::ImportError;
use super::map;
use super::report::TableReport;
use super::source::{Source, SrcMessage};
use super::steps::{Channel, FIRST_MADE_ID, Imported};
use crate::store::mysql::MysqlStore;
use crate::store::{MessageRecord, Store, Thread};

pub(super) fn messages(
    src: &mut Source,
    store: &mut MysqlStore,
    imported: &mut Imported,
) -> Result<TableReport, ImportError> {
    let mut last_seq: HashMap<String, u64> = store
        .run_sql(|c| c.query::<(String, u64), _>("SELECT id, last_seq FROM channels"))?
        .into_iter()
        .collect();
    let mut t = TableReport::default();
    let mut after = 0;
    loop {
        let page = src.messages_after(after)?;
        let Some(last) = page.last() else { break };
        after = last.id;
        let present = present_messages(store, &page)?;
        let mut new = Vec::new();
        for m in &page {
            t.read += 1;
            let Some(Channel { id: channel, .. }) = imported.channels.get(&m.channel) else {
                t.skip("of a channel that chat_channels does not hold (or that was skipped)");
                continue;
            };
            if m.id >= FIRST_MADE_ID {
                // Never from AUTO_INCREMENT INT UNSIGNED: kept apart from
                // the ids the server makes.
                t.skip("with an id of 2^43 or more, which ids made here may take");
                continue;
            }
            if present.contains(&m.id) {
                imported.messages.insert(m.id);
                t.present += 1;
                continue;
            }
            let seq = last_seq.entry(channel.clone()).or_insert(0);
            *seq += 1;
            new.push(record(m, channel, *seq, imported, &mut t));
            imported.messages.insert(m.id);
        }
        if !new.is_empty() {
            store.insert_messages(&mut new)?;
            t.written += new.len() as u64;
            fill_states(store, &page, &new)?;
            count_threads(store, &new)?;
        }
    }
    Ok(t)
}

/// What `Store::insert_messages` leaves out (it inserts new messages,
/// never edited or deleted ones) of the messages just written: edited and
/// deleted times, and the original's `isPinned` as pinned at its
/// `updatedAt` (the original keeps no time or author of a pin).
fn fill_states(
    store: &mut MysqlStore,
    page: &[SrcMessage],
    new: &[MessageRecord],
) -> Result<(), ImportError> {
    let pinned: HashMap<u64, String> = page
        .iter()
        .filter(|m| m.pinned)
        .map(|m| {
            let at = m.updated_at.clone().or_else(|| m.created_at.clone());
            (m.id, at.unwrap_or_else(|| map::UNKNOWN_TIME.into()))
        })
        .collect();
    // (id, edited_at, deleted_at, pinned_at)
    type States<'a> = Vec<(u64, Option<&'a str>, Option<&'a str>, Option<&'a str>)>;
    let states: States = new
        .iter()
        .map(|m| {
            let pin = pinned.get(&m.id).map(String::as_str);
            (m.id, m.edited_at.as_deref(), m.deleted_at.as_deref(), pin)
        })
        .filter(|(_, e, d, p)| e.is_some() || d.is_some() || p.is_some())
        .collect();
    if states.is_empty() {
        return Ok(());
    }
    store.run_sql(|c| {
        c.exec_batch(
            "UPDATE messages SET edited_at = ?, deleted_at = ?, pinned_at = ? WHERE id = ?",
            states.iter().map(|(id, e, d, p)| (*e, *d, *p, *id)),
        )
    })?;
    Ok(())
}

/// Which of `page`'s ids the store holds already.
fn present_messages(
    store: &mut MysqlStore,
    page: &[SrcMessage],
) -> Result<HashSet<u64>, ImportError> {
    let marks = vec!["?"; page.len()].join(", ");
    let sql = format!("SELECT id FROM messages WHERE id IN ({marks})");
    let params: Vec<Value> = page.iter().map(|m| m.id.into()).collect();
    Ok(store
        .run_sql(|c| c.exec::<u64, _, _>(sql, params))?
        .into_iter()
        .collect())
}

/// The message as stored here: its original id, the next seq of its
/// channel; its reply (or, for a thread's message, its thread's root) when
/// that message is imported.
fn record(
    m: &SrcMessage,
    channel: &str,
    seq: u64,
    imported: &Imported,
    t: &mut TableReport,
) -> MessageRecord {
    let user_id = match imported.users.get(&m.user) {
        Some(u) => u.clone(),
        None => {
            t.change("by a user chat_users does not hold: author chat-user-<id>");
            map::placeholder_user(m.user)
        }
    };
    let reply_to = match m.reply_to {
        Some(r) if imported.messages.contains(&r) => Some(r),
        Some(_) => {
            t.change("replying to a message not imported: imported without the reply");
            None
        }
        None => None,
    };
    // A thread's message is a reply in the thread of its first message
    // (schema 8); the first message's count is set once the page is in
    // (`count_threads`).
    let parent = match m.thread {
        Some(root) if imported.messages.contains(&root) => Some(root),
        Some(_) => {
            t.change("in a thread whose first message is not imported: imported alone");
            None
        }
        None => None,
    };
    if m.has_data {
        t.change("with messageData (structured content): its text imported, the data not");
    }
    if m.pinned {
        t.change("pinned: when and by whom are unknown: pinned at its updatedAt, by nobody");
    }
    let created = m
        .created_at
        .clone()
        .unwrap_or_else(|| map::UNKNOWN_TIME.into());
    let updated = m.updated_at.clone().unwrap_or_else(|| created.clone());
    MessageRecord {
        id: m.id,
        pos: 0,
        channel_id: channel.to_owned(),
        seq,
        user_id,
        content: m.content.clone(),
        kind: map::message_type(m.content_type.as_deref()),
        client_message_id: None,
        reply_to: reply_to.map(|r| r.to_string()),
        edited_at: m.edited.then(|| updated.clone()),
        deleted_at: m
            .deleted
            .then(|| m.deleted_at.clone().unwrap_or_else(|| updated.clone())),
        created_at: created,
        pinned: None,
        thread: Thread {
            parent,
            ..Thread::default()
        },
    }
}

/// The thread counts of the threads `new` added replies to, as the commit
/// keeps them (`store::Thread`): on each reply, the thread's replies not
/// deleted up to it; on the first message, all of them and the latest's
/// time. Recounted from the store, so a run that adds replies to a thread
/// imported before counts the earlier ones too.
fn count_threads(store: &mut MysqlStore, new: &[MessageRecord]) -> Result<(), ImportError> {
    let heads: HashSet<u64> = new.iter().filter_map(|m| m.thread.parent).collect();
    for head in heads {
        let replies: Vec<(u64, bool, String)> = store.run_sql(|c| {
            c.exec(
                "SELECT id, deleted_at IS NOT NULL, created_at FROM messages \
                 WHERE thread_id = ? ORDER BY id",
                (head,),
            )
        })?;
        let (mut count, mut last_at) = (0u64, None::<String>);
        let mut counts = Vec::with_capacity(replies.len());
        for (id, deleted, created) in replies {
            if !deleted {
                count += 1;
                last_at = Some(created);
            }
            counts.push((count, id));
        }
        store.run_sql(|c| {
            c.exec_batch(
                "UPDATE messages SET thread_count = ? WHERE id = ?",
                counts.iter().copied(),
            )?;
            c.exec_drop(
                "UPDATE messages SET thread_count = ?, last_thread_at = ? WHERE id = ?",
                (count, last_at.as_deref(), head),
            )
        })?;
    }
    Ok(())
}
