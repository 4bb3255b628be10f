-- gatrix-chat MySQL/MariaDB store, schema 6: the user directory (issue 15
-- item 4), kept by the Gatrix backend through /api/v1/users (docs/api.md,
-- "The Gatrix REST dialect"): who an author id is, for names and avatars
-- in messages. Ids are the backend's (strings, as user_id elsewhere); no
-- foreign key: a user may write before being synced, and a deleted user's
-- messages stay.
CREATE TABLE users (
    id            VARBINARY(255)  NOT NULL,
    username      VARCHAR(255)    NOT NULL,
    name          VARCHAR(255),
    email         VARCHAR(255),
    avatar_url    VARCHAR(2048),
    status        VARCHAR(32)     NOT NULL DEFAULT 'offline',
    custom_status VARCHAR(255),
    created_at    VARCHAR(32)     NOT NULL,
    updated_at    VARCHAR(32)     NOT NULL,
    PRIMARY KEY (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Read state per member (POST /channels/:id/read): last_read_seq exists
-- since schema 1; when and at which message it moved.
ALTER TABLE channel_members
    ADD COLUMN last_read_at         VARCHAR(32)     NULL,
    ADD COLUMN last_read_message_id BIGINT UNSIGNED NULL;
