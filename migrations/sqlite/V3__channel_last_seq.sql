-- The last seq given out in each channel, kept by the writer in the same
-- transaction as the messages: a channel whose messages are all gone
-- (deleted from the file by an operator, or by a future retention) keeps
-- its seq instead of starting again at 1. `pos` needs no counter here:
-- AUTOINCREMENT never reuses a position.
ALTER TABLE channels ADD COLUMN last_seq INTEGER NOT NULL DEFAULT 0;
UPDATE channels
SET last_seq = COALESCE((SELECT MAX(seq) FROM messages WHERE channel_id = channels.id), 0);
