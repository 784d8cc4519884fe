-- seqrelay schema version 5: publishers' message ids (PROTOCOL.md 5.1).
--
-- DEDUPE: every (topic, msg-id) the relay sequenced within the dedupe
-- window, with the SEQ it got. Written in the transaction that commits the
-- message's MSG row, so no restart, crash or failover forgets it; a later
-- message with the same pair is a publisher's resend and gets no SEQ.
-- SEEN_AT (the database's clock) is when it was committed; rows older than
-- --dedupe-window are purged in small batches.
CREATE TABLE IF NOT EXISTS DEDUPE (
  ID      VARBINARY(255)  NOT NULL,
  MSG_ID  VARBINARY(128)  NOT NULL,
  SEQ     BIGINT UNSIGNED NOT NULL,
  SEEN_AT DATETIME(6)     NOT NULL,
  PRIMARY KEY (ID, MSG_ID),
  KEY DEDUPE_SEEN (SEEN_AT)
) ENGINE=InnoDB;

-- A handed-over message keeps its msg-id (NULL: it had none).
ALTER TABLE PENDING ADD COLUMN MSG_ID VARBINARY(128) NULL;
