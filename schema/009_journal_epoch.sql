-- seqrelay schema version 9: the epoch under which a journal's relay last
-- took its shard, carried by the messages it hands over.
--
-- A handed-over message (PENDING) whose packet id and digest of topic and
-- payload are in TAKEN was resent by mosquitto to a later holder of the
-- shard and stored by it, so it is not stored again. Only a holder after
-- the journal's relay can have taken that resend: a TAKEN row of an older
-- epoch is another message with the same packet id and content (a device
-- that sends the same payload again and again), and matching it lost the
-- handed-over message.
--
-- JOURNAL.EPOCH: the epoch of the journal's relay's latest takeover of its
-- shard (written in the takeover's transaction); 0 before this version.
-- PENDING.EPOCH: that epoch when the message was handed over; TAKEN rows
-- count for it only if newer. 0 (rows handed over before this version)
-- lets every TAKEN row count, as before.
ALTER TABLE JOURNAL ADD COLUMN EPOCH INT UNSIGNED NOT NULL DEFAULT 0;
ALTER TABLE PENDING ADD COLUMN EPOCH INT UNSIGNED NOT NULL DEFAULT 0;
