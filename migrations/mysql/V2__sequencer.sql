-- gatrix-chat MySQL/MariaDB store, schema 2: seq and pos come from counters
-- in the database, taken inside each commit transaction (src/store/mysql/
-- sequence.rs), no longer from the writer's memory and AUTO_INCREMENT.
--
-- With several writers on one database, InnoDB hands AUTO_INCREMENT values
-- out at insert time, not at commit: a later position could become visible
-- before an earlier one, and a rolled-back batch leaves a gap. So `pos` is
-- a plain column now, assigned from the sequencer row of the writer's
-- partition, which every commit locks first (SELECT ... FOR UPDATE) and
-- holds until it commits: positions are gapless and in commit order.
-- Its keys (messages_pos, messages_channel_pos) stay as they are: they are
-- not unique (a unique key of a table PARTITIONed BY RANGE (id) must
-- contain id), and without AUTO_INCREMENT pos no longer needs to lead one.
ALTER TABLE messages MODIFY pos BIGINT UNSIGNED NOT NULL;

-- The last seq given out in each channel, locked by the commit that gives
-- out the next ones. A channel keeps its seq when retention drops all of
-- its messages (MAX(seq) would start again at 1).
ALTER TABLE channels ADD COLUMN last_seq BIGINT UNSIGNED NOT NULL DEFAULT 0;
UPDATE channels c
    JOIN (SELECT channel_id, MAX(seq) AS s FROM messages GROUP BY channel_id) m
    ON m.channel_id = c.id
SET c.last_seq = m.s;

-- One row per sequencing partition: the last commit position given out.
-- One partition (0) for now.
CREATE TABLE sequencer (
    partition_id INT UNSIGNED    NOT NULL,
    last_pos     BIGINT UNSIGNED NOT NULL,
    PRIMARY KEY (partition_id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;
INSERT INTO sequencer (partition_id, last_pos)
    SELECT 0, COALESCE(MAX(pos), 0) FROM messages;
