//! The targets of what an instance reads back from Redis (several
//! instances): the bus's log entries and the recovery sessions.

/// Target `bus_envelope`: an entry of the bus's log (one byte of kind, an
/// rkyv archive, zstd-compressed or not) as another instance reads it from
/// Redis. What decodes and becomes a batch is non-empty, with strictly
/// increasing positions; encoded again (raw and compressed) it decodes to
/// the same messages.
pub fn bus_envelope(bytes: &[u8]) {
    use crate::bus::batch::Span;
    use crate::bus::envelope;
    use crate::protocol::deflate::Settings;
    let Ok(decoded) = envelope::decode(bytes) else {
        return;
    };
    let settings = Settings {
        enabled: false,
        threshold: 1024,
    };
    let partition = decoded.partition;
    let messages: Vec<(String, u64, u64, String)> = decoded
        .messages
        .iter()
        .map(|m| (m.channel.clone(), m.seq, m.pos, m.frame.clone()))
        .collect();
    let Ok(batch) = envelope::to_batch(decoded, settings) else {
        return;
    };
    let (first, last) = batch.span();
    assert!(first <= last);
    assert_eq!(batch.items.len(), messages.len());
    for threshold in [0, 1] {
        let again = envelope::encode(&batch, threshold).expect("a batch encodes");
        let back = envelope::decode(&again).expect("what was encoded decodes");
        assert_eq!(back.partition, partition);
        let back: Vec<(String, u64, u64, String)> = back
            .messages
            .into_iter()
            .map(|m| (m.channel, m.seq, m.pos, m.frame))
            .collect();
        assert_eq!(back, messages);
    }
}

/// Target `session_entry`: a recovery session's value as an instance reads
/// it from Redis (`<owner><state><len>:<user><start_pos>:<len>:<channel>…`).
/// What decodes, encoded again, decodes to the same entry.
pub fn session_entry(bytes: &[u8]) {
    use crate::chat::recovery::entry;
    let Ok(e) = entry::decode(bytes) else {
        return;
    };
    let owner = "o".repeat(entry::OWNER_LEN);
    let again = entry::encode(
        &owner,
        &e.user,
        &e.start_pos,
        e.channels.iter().map(String::as_str),
    );
    assert_eq!(entry::decode(&again), Ok(e));
}
