//! The writer's batched lookup on MySQL: many (user, clientMessageId)
//! pairs in one statement. Over a network, a round trip per batch instead
//! of one per message. (The batched INSERTs are in [`super::sequence`].)

use std::collections::HashMap;

use mysql::Value;
use mysql::prelude::Queryable;

use super::rows::{MAX_LOOKUP_KEYS, MessageRow, all, lookup_sql, to_message};
use crate::store::MessageRecord;

/// The first message (by `pos`) of each of the `unique` pairs that has
/// one: one query per [`MAX_LOOKUP_KEYS`] pairs, by the
/// (user_id, client_message_id) index.
pub(super) fn find_by_client_ids(
    c: &mut impl Queryable,
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
