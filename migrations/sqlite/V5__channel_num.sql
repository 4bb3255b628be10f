-- gatrix-chat embedded store, schema 5: each channel's number, the id the
-- Gatrix dialect shows (docs/protocol.md, "The Gatrix dialect": a JSON
-- number below 2^53, which its frontend compares with ===). Given at
-- creation (the highest + 1: one writer per data directory); existing
-- channels get their rowid, unique and stable.
ALTER TABLE channels ADD COLUMN num INTEGER;
UPDATE channels SET num = rowid;
CREATE UNIQUE INDEX channels_by_num ON channels (num);
