-- gatrix-chat MySQL/MariaDB store, schema 7: the same columns and meaning
-- as migrations/sqlite/V7__roles_settings_pins.sql (a member may be an
-- 'admin'; a channel's settings and member limit; who pinned a message and
-- when).
ALTER TABLE channel_members
    DROP CONSTRAINT channel_members_role,
    ADD CONSTRAINT channel_members_role CHECK (role IN ('owner', 'admin', 'member'));

ALTER TABLE channels
    ADD COLUMN settings    MEDIUMTEXT   NULL,
    ADD COLUMN max_members INT UNSIGNED NULL;

ALTER TABLE messages
    ADD COLUMN pinned_at VARCHAR(32)    NULL,
    ADD COLUMN pinned_by VARBINARY(255) NULL;
