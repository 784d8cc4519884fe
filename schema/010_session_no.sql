-- seqrelay schema version 10: a number for each MQTT session of a shard,
-- on the shard, on the resends a holder took, and on handed-over messages.
--
-- A relay remembers the deliveries it took (its journal's newest records)
-- to recognise mosquitto's resends of them after a reconnect. Only the
-- session they were taken in can resend them: after mosquitto forgot it (a
-- broker without persistence, a restart) and any holder began a new one,
-- a new message with the packet id, topic and payload of such a record is
-- new. SESSION_IDX (schema 7) cannot tell two sessions apart when no row
-- was stored between their marks; this number can.
--
-- SHARD.SESSION_NO: how many new MQTT sessions holders of the shard have
-- begun, raised by the active (fenced) in the same commit that moves
-- SESSION_IDX, before it acknowledges a new session's first delivery. A
-- relay's journal records which number its newest records were taken under
-- (the file "session" in its folder); the relay forgets them when it takes
-- the shard and finds another number.
--
-- TAKEN.SESSION_NO: the number of the session a resend candidate was
-- delivered in, part of the key (two sessions' deliveries with one packet
-- id and content are two rows); PENDING.SESSION_NO: the number of the
-- session a handed-over message was taken in, as its journal knew it. A
-- handed-over message matches a TAKEN row only of the same session (a new
-- message of a later session with the same packet id and content is
-- another message), and is remembered for resends only while the intake is
-- in its session. Sessions before this version are all number 0, as the
-- shard's own number starts at 0: rows of before it match as before.
-- 18446744073709551615: of an older session than its journal's newest,
-- whose number the journal does not know (matches no TAKEN row).
ALTER TABLE SHARD ADD COLUMN SESSION_NO BIGINT UNSIGNED NOT NULL DEFAULT 0;
ALTER TABLE TAKEN ADD COLUMN SESSION_NO BIGINT UNSIGNED NOT NULL DEFAULT 0, DROP PRIMARY KEY,
  ADD PRIMARY KEY (SHARD, MID, DIGEST, SESSION_NO);
ALTER TABLE PENDING ADD COLUMN SESSION_NO BIGINT UNSIGNED NOT NULL DEFAULT 0;
