//! The writer's batched statements on MySQL: one lookup of many
//! (user, clientMessageId) pairs, and a batch of messages inserted in one
//! transaction as multi-row INSERTs. Over a network, a round trip per
//! batch instead of one per message.

use std::collections::HashMap;

use mysql::prelude::Queryable;
use mysql::{Conn, TxOpts, Value};

use super::rows::{MAX_LOOKUP_KEYS, MessageRow, all, chunks, insert_sql, lookup_sql, to_message};
use crate::store::MessageRecord;

/// The first message (by `pos`) of each of the `unique` pairs that has
/// one: one query per [`MAX_LOOKUP_KEYS`] pairs, by the
/// (user_id, client_message_id) index.
pub(super) fn find_by_client_ids(
    c: &mut Conn,
    unique: &[&(String, String)],
) -> mysql::Result<HashMap<(String, String), MessageRecord>> {
    let mut found = HashMap::new();
    for chunk in unique.chunks(MAX_LOOKUP_KEYS) {
        let sql = lookup_sql(chunk.len());
        let params: Vec<Value> = chunk
            .iter()
            .flat_map(|(u, m)| [u.as_str().into(), m.as_str().into()])
            .collect();
        for row in all(c.exec_opt::<MessageRow, _, _>(sql, params)?)? {
            let m = to_message(row);
            if let Some(cmid) = m.client_message_id.clone() {
                // Ascending pos: the first message wins.
                found.entry((m.user_id.clone(), cmid)).or_insert(m);
            }
        }
    }
    Ok(found)
}

/// One transaction: multi-row INSERTs, then each row's `pos`. With one
/// writer, a multi-row INSERT's AUTO_INCREMENT values are consecutive
/// from LAST_INSERT_ID() (InnoDB reserves them at once for a statement
/// whose row count is known, in autoinc lock modes 0 and 1 — MariaDB's
/// default is 1 — with auto_increment_increment 1): `consecutive`. On a
/// server set up otherwise (lock mode 2, Galera's increments) the positions
/// are read back by id instead.
pub(super) fn insert_messages(
    c: &mut Conn,
    messages: &mut [MessageRecord],
    consecutive: bool,
) -> mysql::Result<()> {
    let mut tx = c.start_transaction(TxOpts::default())?;
    for range in chunks(messages) {
        let rows = &mut messages[range];
        let mut params: Vec<Value> = Vec::with_capacity(rows.len() * 9);
        for m in rows.iter() {
            params.extend([
                m.id.into(),
                m.channel_id.as_str().into(),
                m.seq.into(),
                m.user_id.as_str().into(),
                m.content.as_str().into(),
                m.kind.as_str().into(),
                m.client_message_id.as_deref().into(),
                m.reply_to.as_deref().into(),
                m.created_at.as_str().into(),
            ]);
        }
        tx.exec_drop(insert_sql(rows.len()), params)?;
        match tx.last_insert_id() {
            Some(first_pos) if consecutive => {
                for (i, m) in rows.iter_mut().enumerate() {
                    m.pos = first_pos + i as u64;
                }
            }
            _ => {
                let marks = vec!["?"; rows.len()].join(", ");
                let ids: Vec<Value> = rows.iter().map(|m| m.id.into()).collect();
                let pos: HashMap<u64, u64> = all(tx.exec_opt(
                    format!("SELECT id, pos FROM messages WHERE id IN ({marks})"),
                    ids,
                )?)?
                .into_iter()
                .collect();
                for m in rows.iter_mut() {
                    m.pos = pos.get(&m.id).copied().unwrap_or(0);
                }
            }
        }
    }
    tx.commit()
}
