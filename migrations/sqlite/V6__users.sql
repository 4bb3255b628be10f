-- gatrix-chat embedded store, schema 6: the user directory (issue 15 item
-- 4), kept by the Gatrix backend through /api/v1/users (docs/api.md, "The
-- Gatrix REST dialect"): who an author id is, for names and avatars in
-- messages. Ids are the backend's (strings); no foreign key to members or
-- messages: a user may write before being synced, and a deleted user's
-- messages stay.
CREATE TABLE users (
    id            TEXT PRIMARY KEY,
    username      TEXT NOT NULL,
    name          TEXT,
    email         TEXT,
    avatar_url    TEXT,
    status        TEXT NOT NULL DEFAULT 'offline',
    custom_status TEXT,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

-- Read state per member (POST /channels/:id/read): last_read_seq exists
-- since schema 1; when and at which message it moved.
ALTER TABLE channel_members ADD COLUMN last_read_at TEXT;
ALTER TABLE channel_members ADD COLUMN last_read_message_id INTEGER;
