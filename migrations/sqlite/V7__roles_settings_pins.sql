-- gatrix-chat embedded store, schema 7 (issue 15 item 5): what the Gatrix
-- platform keeps per channel, member and message (docs/api.md, "The Gatrix
-- REST dialect").
--
-- A member may be an 'admin' (the original's chat_channel_members.role):
-- may read, change and delete the channel as its owner may. SQLite cannot
-- alter a CHECK, so channel_members is rebuilt: every column schemas 1 and
-- 6 gave it, its index and its rows. Nothing references channel_members,
-- so dropping the old table is allowed with foreign keys on.
CREATE TABLE channel_members_v7 (
    channel_id           TEXT NOT NULL REFERENCES channels (id),
    user_id              TEXT NOT NULL,
    role                 TEXT NOT NULL DEFAULT 'member'
                         CHECK (role IN ('owner', 'admin', 'member')),
    joined_at            TEXT NOT NULL,
    last_read_seq        INTEGER NOT NULL DEFAULT 0,
    last_read_at         TEXT,
    last_read_message_id INTEGER,
    PRIMARY KEY (channel_id, user_id)
);
INSERT INTO channel_members_v7
    (channel_id, user_id, role, joined_at, last_read_seq, last_read_at, last_read_message_id)
SELECT channel_id, user_id, role, joined_at, last_read_seq, last_read_at, last_read_message_id
FROM channel_members;
DROP TABLE channel_members;
ALTER TABLE channel_members_v7 RENAME TO channel_members;
-- "the caller's channels"
CREATE INDEX channel_members_by_user ON channel_members (user_id);

-- The channel's settings as the Gatrix frontend sent them (a JSON object,
-- kept as text and returned as it came) and its member limit (NULL: none;
-- a join beyond it is refused).
ALTER TABLE channels ADD COLUMN settings TEXT;
ALTER TABLE channels ADD COLUMN max_members INTEGER;

-- A pinned message (PATCH /messages/:id/pin): when and by whom; NULL
-- pinned_at: not pinned. The original keeps a flag (isPinned); the time and
-- the member are what a pin list shows, and an imported pin gets the
-- message's last change as its time and no member.
ALTER TABLE messages ADD COLUMN pinned_at TEXT;
ALTER TABLE messages ADD COLUMN pinned_by TEXT;
