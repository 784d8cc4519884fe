-- seqrelay schema version 12: each dedupe record keeps its own end.
--
-- The purge deleted every record older than the purging relay's own
-- --dedupe-window, so that a shard with a shorter window shortened the
-- other shards' of the same database (DEDUPE has no shard column: a topic's
-- records are its shard's). From this version each record carries
-- EXPIRES_AT, its commit time plus the window of the relay that wrote it,
-- and any relay purges what has expired, whatever its own window: shards
-- keep their own windows, and the records of a shard no longer run still
-- go. Records written before (EXPIRES_AT NULL) age out by the purging
-- relay's window, as they did. The lookup is unchanged: a relay takes a
-- record for a resend only if it is within its own window.
-- DATETIME, in UTC (every relay session is, since schema 11): a window
-- may reach past TIMESTAMP's end in 2038.
ALTER TABLE DEDUPE ADD COLUMN EXPIRES_AT DATETIME(6) NULL;
ALTER TABLE DEDUPE ADD KEY DEDUPE_EXPIRES (EXPIRES_AT, SEEN_AT);
ALTER TABLE DEDUPE DROP KEY DEDUPE_SEEN;
