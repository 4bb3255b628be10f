-- gatrix-chat MySQL/MariaDB store, schema 5: each channel's number, the id
-- the Gatrix dialect shows (docs/protocol.md, "The Gatrix dialect": a JSON
-- number below 2^53, which its frontend compares with ===). AUTO_INCREMENT
-- on the shared database, so instances never give the same one; the ALTER
-- numbers the existing channels.
ALTER TABLE channels
    ADD COLUMN num BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    ADD UNIQUE KEY channels_by_num (num);
