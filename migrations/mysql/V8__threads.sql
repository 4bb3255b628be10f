-- gatrix-chat MySQL/MariaDB store, schema 8: threads, the same columns and
-- meaning as migrations/sqlite/V8__threads.sql (a reply's thread head in
-- thread_id; on a head, thread_count and last_thread_at of its replies not
-- deleted; on a reply, its thread's count right after its commit).
ALTER TABLE messages
    ADD COLUMN thread_id      BIGINT UNSIGNED NULL,
    ADD COLUMN thread_count   INT UNSIGNED    NOT NULL DEFAULT 0,
    ADD COLUMN last_thread_at VARCHAR(32)     NULL,
    -- a thread's replies in order (GET /api/v1/messages/thread/:threadId)
    ADD KEY messages_thread (thread_id, seq);
