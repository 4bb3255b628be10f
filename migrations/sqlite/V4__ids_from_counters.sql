-- Message ids come from the commit's counters (src/ids.rs): id = month << 43
-- | ((pos << 5 | partition) mod 2^43), month = whole months from 2024-01 to
-- created_at (UTC), partition 0 (SQLite has one). Below 2^53 (JSON
-- numbers), unique as pos is. Stored messages get the id of the new layout;
-- a reply_to naming a stored message's old id names its new one. Clients
-- holding old ids no longer find those messages by them.
UPDATE messages
SET reply_to = (
    SELECT CAST(((max(0, min(1023, (CAST(substr(t.created_at, 1, 4) AS INTEGER) - 2024) * 12
                 + CAST(substr(t.created_at, 6, 2) AS INTEGER) - 1)) << 43)
                 | ((t.pos << 5) & 8796093022207)) AS TEXT)
    FROM messages t WHERE t.id = CAST(messages.reply_to AS INTEGER))
WHERE length(reply_to) BETWEEN 1 AND 19
  AND reply_to NOT GLOB '*[^0-9]*'
  AND EXISTS (SELECT 1 FROM messages t WHERE t.id = CAST(messages.reply_to AS INTEGER));
-- Negative first: no new id meets an old one while the unique index checks.
UPDATE messages SET id = -pos;
UPDATE messages
SET id = (max(0, min(1023, (CAST(substr(created_at, 1, 4) AS INTEGER) - 2024) * 12
         + CAST(substr(created_at, 6, 2) AS INTEGER) - 1)) << 43)
         | ((pos << 5) & 8796093022207);
