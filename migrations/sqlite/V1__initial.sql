-- gatrix-chat embedded store, schema 1.
-- Timestamps are RFC 3339 UTC strings with milliseconds (what clients see).

CREATE TABLE channels (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    type        TEXT NOT NULL CHECK (type IN ('public', 'private', 'direct')),
    description TEXT,
    owner_id    TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    deleted_at  TEXT
);

CREATE TABLE channel_members (
    channel_id    TEXT NOT NULL REFERENCES channels (id),
    user_id       TEXT NOT NULL,
    role          TEXT NOT NULL DEFAULT 'member' CHECK (role IN ('owner', 'member')),
    joined_at     TEXT NOT NULL,
    last_read_seq INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (channel_id, user_id)
);
-- "the caller's channels"
CREATE INDEX channel_members_by_user ON channel_members (user_id);

-- pos: the commit position, global on this instance: the recovery offset.
CREATE TABLE messages (
    pos               INTEGER PRIMARY KEY AUTOINCREMENT,
    id                INTEGER NOT NULL,
    channel_id        TEXT NOT NULL,
    seq               INTEGER NOT NULL,
    user_id           TEXT NOT NULL,
    content           TEXT NOT NULL,
    type              TEXT NOT NULL,
    client_message_id TEXT,
    reply_to          TEXT,
    created_at        TEXT NOT NULL,
    edited_at         TEXT,
    deleted_at        TEXT
);
-- history pages and the next seq of a channel
CREATE UNIQUE INDEX messages_channel_seq ON messages (channel_id, seq);
-- one message per (user, clientMessageId); NULLs do not collide
CREATE UNIQUE INDEX messages_user_client_id ON messages (user_id, client_message_id);
CREATE UNIQUE INDEX messages_id ON messages (id);
