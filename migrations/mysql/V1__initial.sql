-- gatrix-chat MySQL/MariaDB store, schema 1: the same tables and meaning as
-- migrations/sqlite/V1__initial.sql.
--
-- Text is utf8mb4 (4-byte UTF-8: emoji round-trip), collation utf8mb4_bin.
-- Ids (channels, users, client message ids, reply targets) are VARBINARY:
-- compared byte for byte, as SQLite compares them. A character collation
-- would make "Alice" and "alice" one user (a _ci collation) or "c-1" and
-- "c-1 " one channel (every PAD SPACE collation, utf8mb4_bin included,
-- ignores trailing spaces; the NO PAD ones differ between MySQL and
-- MariaDB). The server checks that ids are UTF-8 of at most 128 bytes;
-- 255 leaves room for imported data.
-- Timestamps are RFC 3339 UTC strings with milliseconds, as in SQLite: the
-- bytes clients see, ordered as strings = ordered in time.

CREATE TABLE channels (
    id          VARBINARY(255) NOT NULL,
    name        VARCHAR(255)   NOT NULL,
    type        VARCHAR(16)    NOT NULL,
    description TEXT           NULL,
    owner_id    VARBINARY(255) NOT NULL,
    created_at  VARCHAR(32)    NOT NULL,
    updated_at  VARCHAR(32)    NOT NULL,
    deleted_at  VARCHAR(32)    NULL,
    PRIMARY KEY (id),
    CONSTRAINT channels_type CHECK (type IN ('public', 'private', 'direct'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE channel_members (
    channel_id    VARBINARY(255)  NOT NULL,
    user_id       VARBINARY(255)  NOT NULL,
    role          VARCHAR(16)     NOT NULL DEFAULT 'member',
    joined_at     VARCHAR(32)     NOT NULL,
    last_read_seq BIGINT UNSIGNED NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, user_id),
    -- "the caller's channels"
    KEY channel_members_by_user (user_id),
    CONSTRAINT channel_members_channel FOREIGN KEY (channel_id) REFERENCES channels (id),
    CONSTRAINT channel_members_role CHECK (role IN ('owner', 'member'))
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Messages are partitioned by RANGE of `id`. The id is a snowflake whose top
-- bits are milliseconds since 2024-01-01 (src/ids.rs), so an id range is a
-- time range: one partition per calendar month (UTC) lets old messages go
-- with a cheap DROP PARTITION instead of a DELETE, while every query below
-- stays an index lookup inside each partition. The table starts with only the
-- MAXVALUE catch-all: `gatrix-chat db partitions` (also run at start and
-- daily) splits it into monthly partitions a few months ahead, so an insert
-- never fails for want of a partition.
--
-- MySQL requires every unique key of a partitioned table to contain the
-- partitioning column, and partitioned InnoDB tables cannot have foreign
-- keys. So only `id` is unique here; the uniqueness of (channel_id, seq) and
-- of (user_id, client_message_id) that SQLite enforces with indexes is
-- guaranteed instead by the single writer (src/store/writer.rs), which looks
-- both up and assigns seq at commit time. The keys below serve those lookups.
--
-- pos: the commit position, global on this instance: the recovery offset.
-- AUTO_INCREMENT in commit order because one writer thread inserts.
CREATE TABLE messages (
    id                BIGINT UNSIGNED NOT NULL,
    pos               BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    channel_id        VARBINARY(255)  NOT NULL,
    seq               BIGINT UNSIGNED NOT NULL,
    user_id           VARBINARY(255)  NOT NULL,
    content           MEDIUMTEXT      NOT NULL,
    type              VARCHAR(64)     NOT NULL,
    client_message_id VARBINARY(255)  NULL,
    reply_to          VARBINARY(255)  NULL,
    created_at        VARCHAR(32)     NOT NULL,
    edited_at         VARCHAR(32)     NULL,
    deleted_at        VARCHAR(32)     NULL,
    PRIMARY KEY (id),
    -- replay after a recovery offset, in commit order
    KEY messages_pos (pos),
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
