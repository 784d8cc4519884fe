-- seqrelay schema version 7: the MQTT packet id of each message taken live,
-- and where the intake's current MQTT session began.
--
-- A relay killed with PUBACKs mosquitto had not read yet leaves messages that
-- are committed and still in flight in the shard's session: mosquitto resends
-- them, under their packet ids, to the next relay that resumes the session.
-- That relay recognises them among the session's last rows (MID, the same
-- topic and payload) and does not store them again (docs/faults.md).
--
-- MID: the packet id the intake received the message under; 0 for rows that
-- did not come live from the current session (handed over from a journal,
-- taken in an MQTT session that has since been replaced, QoS 0).
-- SESSION_IDX: where the shard's current MQTT session begins, committed by
-- the active (fenced) before it acknowledges a new session's first delivery;
-- rows below it belong to older sessions, whose packet ids mean nothing now.
ALTER TABLE MSG ADD COLUMN MID SMALLINT UNSIGNED NOT NULL DEFAULT 0;
ALTER TABLE SHARD ADD COLUMN SESSION_IDX BIGINT UNSIGNED NOT NULL DEFAULT 0;
