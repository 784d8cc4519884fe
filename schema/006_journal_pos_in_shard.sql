-- seqrelay schema version 6: the active's journal position on its SHARD row.
--
-- Every batch the shard's active commits moves its journal's position. That
-- position now rides on the SHARD row the batch's fence updates anyway
-- (JOURNAL_ID: the active's journal, JOURNAL_POS: its records up to there
-- are stored), instead of a second row in JOURNAL: a batch's transaction
-- updates one row besides inserting its MSG rows, which costs the server
-- less CPU per transaction (docs/performance.md).
--
-- A journal's position is the greater of JOURNAL.POS and, while SHARD names
-- it, SHARD.JOURNAL_POS. A takeover folds SHARD's pair into JOURNAL in its
-- own transaction, before the new holder's first batch overwrites it.
ALTER TABLE SHARD
  ADD COLUMN JOURNAL_ID  VARCHAR(36)     NOT NULL DEFAULT '',
  ADD COLUMN JOURNAL_POS BIGINT UNSIGNED NOT NULL DEFAULT 0;
