//! The import's steps, in order: users, channels, messages (in id order,
//! a page per transaction), members with their read state, then what has
//! no place here counted. Each step writes only what the store lacks, so
//! a second run writes nothing, and a run cut short is finished by the
//! next one.

use std::collections::{HashMap, HashSet};

use mysql::Value;
use mysql::prelude::Queryable;

use super::ImportError;
use super::map;
use super::report::{Report, TableReport};
use super::source::{self, Source, SrcChannel};
use crate::ids;
use crate::store::Store;
use crate::store::mysql::MysqlStore;

/// Users written per transaction.
const USER_BATCH: usize = 500;

/// Runs every step; the report of what each did.
pub(crate) fn import(src: &mut Source, store: &mut MysqlStore) -> Result<Report, ImportError> {
    refuse_served(store)?;
    let mut report = Report::default();
    let (users, users_report) = users(src, store)?;
    report.add(source::USERS, users_report);
    let (channels, channels_report) = channels(src, store, &users)?;
    report.add(source::CHANNELS, channels_report);
    let mut imported = Imported {
        users,
        channels,
        messages: HashSet::new(),
    };
    report.add(
        source::MESSAGES,
        super::messages::messages(src, store, &mut imported)?,
    );
    let (members_report, read_report) = members(src, store, &imported)?;
    report.add(source::MEMBERS, members_report);
    report.add_detail("  of which read marks (lastReadMessageId)", read_report);
    for (table, why) in [
        (source::REACTIONS, "gatrix-chat's schema has no reactions"),
        (
            source::ATTACHMENTS,
            "gatrix-chat's schema has no attachments (the message itself is imported)",
        ),
    ] {
        let n = src.count(table)?;
        let mut t = TableReport {
            read: n,
            ..TableReport::default()
        };
        if n > 0 {
            t.skipped.insert(why.to_owned(), n);
        }
        report.add(table, t);
    }
    Ok(report)
}

/// What the earlier steps imported (or found imported), for the later ones.
pub(super) struct Imported {
    /// `chat_users.id` → our user id.
    pub(super) users: HashMap<u64, String>,
    /// The original's channel ids → ours.
    pub(super) channels: HashMap<u64, Channel>,
    /// The original's message ids in the store.
    pub(super) messages: HashSet<u64>,
}

/// An imported channel: our id, its owner, when it was made.
pub(super) struct Channel {
    pub(super) id: String,
    pub(super) owner: String,
    pub(super) created: String,
}

/// The smallest id the server makes (2024-02's): imported ids are the
/// original's `AUTO_INCREMENT` ones, below 2^32.
pub(super) const FIRST_MADE_ID: u64 = 1 << ids::MONTH_SHIFT;

/// Refuses a store the server has written to: channels it made (their
/// numbers would meet the original's), or messages it made (their seqs
/// would come before the imported ones).
fn refuse_served(store: &mut MysqlStore) -> Result<(), ImportError> {
    let (channels, messages) = store.run_sql(|c| {
        let ids: Vec<(String, u64)> = c.query("SELECT id, num FROM channels")?;
        let made = ids
            .iter()
            .filter(|(id, num)| map::channel_num(id) != Some(*num))
            .count() as u64;
        let messages: Option<u64> = c.exec_first(
            "SELECT COUNT(*) FROM messages WHERE id >= ?",
            (FIRST_MADE_ID,),
        )?;
        Ok((made, messages.unwrap_or(0)))
    })?;
    if channels > 0 || messages > 0 {
        return Err(ImportError::Served { channels, messages });
    }
    Ok(())
}

fn users(
    src: &mut Source,
    store: &mut MysqlStore,
) -> Result<(HashMap<u64, String>, TableReport), ImportError> {
    let rows = src.users()?;
    let existing: HashSet<String> = store
        .run_sql(|c| c.query::<String, _>("SELECT id FROM users"))?
        .into_iter()
        .collect();
    let mut t = TableReport::default();
    let mut ids = HashMap::with_capacity(rows.len());
    let mut new = Vec::new();
    for u in &rows {
        t.read += 1;
        let record = map::user(u);
        ids.insert(u.id, record.id.clone());
        if existing.contains(&record.id) {
            t.present += 1;
            continue;
        }
        if u.gatrix_user_id.is_none() {
            t.change(
                "without gatrixUserId (the original's own, such as 'system'): id chat-user-<id>",
            );
        }
        new.push(record);
    }
    for chunk in new.chunks(USER_BATCH) {
        store.upsert_users(chunk)?;
        t.written += chunk.len() as u64;
    }
    Ok((ids, t))
}

fn channels(
    src: &mut Source,
    store: &mut MysqlStore,
    users: &HashMap<u64, String>,
) -> Result<(HashMap<u64, Channel>, TableReport), ImportError> {
    let rows = src.channels()?;
    let existing: HashSet<String> = store
        .run_sql(|c| c.query::<String, _>("SELECT id FROM channels"))?
        .into_iter()
        .collect();
    let mut t = TableReport::default();
    let mut out = HashMap::with_capacity(rows.len());
    let mut new: Vec<(&SrcChannel, String, String, Option<String>)> = Vec::new();
    for c in &rows {
        t.read += 1;
        let Some(owner) = c.owner else {
            t.skip("without an owner (ownerId and createdBy NULL)");
            continue;
        };
        let owner_id = match users.get(&owner) {
            Some(u) => u.clone(),
            None => map::placeholder_user(owner),
        };
        let id = map::channel_id(c.id);
        let created = c
            .created_at
            .clone()
            .unwrap_or_else(|| map::UNKNOWN_TIME.into());
        out.insert(
            c.id,
            Channel {
                id: id.clone(),
                owner: owner_id.clone(),
                created,
            },
        );
        if existing.contains(&id) {
            t.present += 1;
            continue;
        }
        if !users.contains_key(&owner) {
            t.change("owned by a user chat_users does not hold: owner chat-user-<id>");
        }
        if !map::channel_type(c.kind.as_deref()).1 {
            t.change("of an unknown type: imported as private");
        }
        if c.archived {
            t.change("archived: imported as deleted (hidden, as the original hid them)");
        }
        let (settings, bad) = map::settings(c.settings.as_deref());
        if bad {
            t.change("with settings that are not a JSON object: imported without settings");
        }
        new.push((c, id, owner_id, settings));
    }
    store.run_sql(|conn| {
        let mut tx = conn.start_transaction(mysql::TxOpts::default())?;
        for (c, id, owner, settings) in &new {
            let created = c
                .created_at
                .clone()
                .unwrap_or_else(|| map::UNKNOWN_TIME.into());
            let updated = c.updated_at.clone().unwrap_or_else(|| created.clone());
            let deleted = c
                .archived
                .then(|| c.archived_at.clone().unwrap_or_else(|| updated.clone()));
            tx.exec_drop(
                "INSERT INTO channels (id, num, name, type, description, owner_id, created_at,
                                       updated_at, deleted_at, settings, max_members)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                vec![
                    Value::from(id.as_str()),
                    c.id.into(),
                    map::channel_name(c).into(),
                    map::channel_type(c.kind.as_deref()).0.as_str().into(),
                    c.description.as_deref().into(),
                    owner.as_str().into(),
                    created.into(),
                    updated.into(),
                    deleted.into(),
                    settings.as_deref().into(),
                    c.max_members.into(),
                ],
            )?;
        }
        tx.commit()
    })?;
    t.written = new.len() as u64;
    Ok((out, t))
}

fn members(
    src: &mut Source,
    store: &mut MysqlStore,
    imported: &Imported,
) -> Result<(TableReport, TableReport), ImportError> {
    let rows = src.members()?;
    let mut existing: HashSet<(String, String)> = store
        .run_sql(|c| {
            c.query::<(String, String), _>("SELECT channel_id, user_id FROM channel_members")
        })?
        .into_iter()
        .collect();
    let (mut t, mut read) = (TableReport::default(), TableReport::default());
    let mut new: Vec<NewMember> = Vec::new();
    for m in &rows {
        t.read += 1;
        let Some(Channel {
            id: channel, owner, ..
        }) = imported.channels.get(&m.channel)
        else {
            t.skip("of a channel that chat_channels does not hold (or that was skipped)");
            continue;
        };
        let Some(user) = imported.users.get(&m.user) else {
            t.skip("of a user chat_users does not hold");
            continue;
        };
        if let Some(why) = map::inactive(m.status.as_deref()) {
            t.skip(why);
            continue;
        }
        if m.last_read_message_id.is_some() {
            read.read += 1;
        }
        if !existing.insert((channel.clone(), user.clone())) {
            t.present += 1;
            read.present += u64::from(m.last_read_message_id.is_some());
            continue;
        }
        let (role, lost) = map::role(m.role.as_deref(), user == owner);
        if lost {
            t.change(format!(
                "with role '{}': imported as '{role}'",
                m.role.as_deref().unwrap_or("")
            ));
        }
        if m.status.as_deref() == Some("muted") {
            t.change("muted: imported as an ordinary member (no muting here)");
        }
        new.push(NewMember {
            channel: channel.clone(),
            user: user.clone(),
            role,
            joined_at: m
                .joined_at
                .clone()
                .unwrap_or_else(|| map::UNKNOWN_TIME.into()),
            last_read: m.last_read_message_id,
            last_read_at: m.last_read_at.clone(),
        });
    }
    // The owner is a member, as of a channel made here.
    for Channel {
        id: channel,
        owner,
        created,
    } in imported.channels.values()
    {
        if existing.insert((channel.clone(), owner.clone())) {
            t.change("added: the channel's owner, who had no active row (owners are members here)");
            new.push(NewMember {
                channel: channel.clone(),
                user: owner.clone(),
                role: "owner",
                joined_at: created.clone(),
                last_read: None,
                last_read_at: None,
            });
        }
    }
    new.sort_by(|a, b| (&a.channel, &a.user).cmp(&(&b.channel, &b.user)));
    store.run_sql(|c| {
        let mut tx = c.start_transaction(mysql::TxOpts::default())?;
        for m in &new {
            // The read mark: the seq of the last message read, or of the
            // last imported one before it when that one is not here.
            let seq: Option<u64> = match m.last_read {
                Some(id) => tx.exec_first(
                    "SELECT COALESCE(MAX(seq), 0) FROM messages WHERE channel_id = ? AND id <= ?",
                    (&m.channel, id),
                )?,
                None => None,
            };
            tx.exec_drop(
                "INSERT INTO channel_members (channel_id, user_id, role, joined_at, last_read_seq,
                                              last_read_at, last_read_message_id)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
                vec![
                    Value::from(m.channel.as_str()),
                    m.user.as_str().into(),
                    m.role.into(),
                    m.joined_at.as_str().into(),
                    seq.unwrap_or(0).into(),
                    m.last_read_at.as_deref().into(),
                    m.last_read.into(),
                ],
            )?;
        }
        tx.commit()
    })?;
    t.written = new.len() as u64;
    read.written = new.iter().filter(|m| m.last_read.is_some()).count() as u64;
    Ok((t, read))
}

struct NewMember {
    channel: String,
    user: String,
    role: &'static str,
    joined_at: String,
    last_read: Option<u64>,
    last_read_at: Option<String>,
}
