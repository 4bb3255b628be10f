-- gatrix-chat embedded store, schema 8: threads (issue 15 item 3;
-- docs/protocol.md, send_message's threadId). A reply in a thread is a
-- message of the channel like any other (its seq, its pos) with the id of
-- its thread's head in thread_id. thread_count and last_thread_at: on a
-- head, its replies not deleted and the created_at of the latest, kept by
-- the writer's commit and a deletion in their own transaction; on a reply,
-- its thread's count right after it was committed (what its broadcast
-- said), last_thread_at NULL.
ALTER TABLE messages ADD COLUMN thread_id INTEGER;
ALTER TABLE messages ADD COLUMN thread_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN last_thread_at TEXT;
-- a thread's replies in order (GET /api/v1/messages/thread/:threadId)
CREATE INDEX messages_thread ON messages (thread_id, seq) WHERE thread_id IS NOT NULL;
