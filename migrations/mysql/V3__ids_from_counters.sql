-- gatrix-chat MySQL/MariaDB store, schema 3: message ids come from the
-- commit's counters (src/ids.rs), and messages record their sequencing
-- partition.
--
-- id = month << 43 | ((pos << 5 | partition) mod 2^43), month = whole
-- months from 2024-01 to created_at (UTC). Ids are unique across every
-- instance on the database (a partition's pos is), below 2^53 (JSON
-- numbers), and a month is still an id range, so `messages` stays
-- PARTITIONed BY RANGE (id) per month and retention drops whole months.
-- The snowflakes of schemas 1-2 (time in ms << 22, above 2^53) do not fit
-- those month bounds, so the table is rebuilt: every stored message gets
-- the id of the new layout (partition 0, its pos), and a reply_to that
-- names a stored message's old id names its new one. Clients holding old
-- ids (a cache, a link) no longer find those messages by them.
--
-- The rebuilt table starts with the catch-all partition only; upkeep (at
-- start, daily, `gatrix-chat db partitions`) splits it by month again.
--
-- (partition_id, pos) is unique, but not as a key: every unique key of a
-- table PARTITIONed BY RANGE (id) must contain id. The commit guarantees
-- it (the partition's `sequencer` row is locked while its positions are
-- given out), and within a month the primary key does too (id is made of
-- the pair).
CREATE TABLE messages_v3 (
    id                BIGINT UNSIGNED  NOT NULL,
    partition_id      TINYINT UNSIGNED NOT NULL,
    pos               BIGINT UNSIGNED  NOT NULL,
    channel_id        VARBINARY(255)   NOT NULL,
    seq               BIGINT UNSIGNED  NOT NULL,
    user_id           VARBINARY(255)   NOT NULL,
    content           MEDIUMTEXT       NOT NULL,
    type              VARCHAR(64)      NOT NULL,
    client_message_id VARBINARY(255)   NULL,
    reply_to          VARBINARY(255)   NULL,
    created_at        VARCHAR(32)      NOT NULL,
    edited_at         VARCHAR(32)      NULL,
    deleted_at        VARCHAR(32)      NULL,
    PRIMARY KEY (id),
    -- a partition's messages after a position (gap fill, polling)
    KEY messages_partition_pos (partition_id, pos),
    -- history pages and the next seq of a channel
    KEY messages_channel_seq (channel_id, seq),
    -- a channel's messages after a recovery offset
    KEY messages_channel_pos (channel_id, pos),
    -- a repeated clientMessageId
    KEY messages_user_client_id (user_id, client_message_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin
PARTITION BY RANGE (id) (
    PARTITION pmax VALUES LESS THAN MAXVALUE
);

INSERT INTO messages_v3 (id, partition_id, pos, channel_id, seq, user_id, content, type,
                         client_message_id, reply_to, created_at, edited_at, deleted_at)
SELECT (LEAST(1023, GREATEST(0, (CAST(SUBSTRING(created_at, 1, 4) AS SIGNED) - 2024) * 12
            + CAST(SUBSTRING(created_at, 6, 2) AS SIGNED) - 1)) << 43)
       | ((pos << 5) & 8796093022207),
       0, pos, channel_id, seq, user_id, content, type,
       client_message_id, reply_to, created_at, edited_at, deleted_at
FROM messages;

-- A reply_to naming a stored message (by its old id) names its new id. The
-- CASE keeps CAST away from values that are not ids (strict mode would
-- make its warning an error).
UPDATE messages_v3 r
JOIN messages o
  ON o.id = CASE WHEN r.reply_to REGEXP '^[0-9]{1,19}$' THEN CAST(r.reply_to AS UNSIGNED) END
SET r.reply_to = CAST((LEAST(1023, GREATEST(0, (CAST(SUBSTRING(o.created_at, 1, 4) AS SIGNED) - 2024) * 12
            + CAST(SUBSTRING(o.created_at, 6, 2) AS SIGNED) - 1)) << 43)
       | ((o.pos << 5) & 8796093022207) AS CHAR);

DROP TABLE messages;
RENAME TABLE messages_v3 TO messages;
