-- seqrelay schema version 2: the journal position.
--
-- JOURNAL_POS: every record of the relay's local journal up to this byte
-- position is stored in MSG. It is written in the same transaction as the
-- rows, so after a crash the records after it are exactly those to store.
ALTER TABLE RELAY_STATE ADD COLUMN JOURNAL_POS BIGINT UNSIGNED NOT NULL DEFAULT 0;
