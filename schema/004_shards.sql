-- seqrelay schema version 4: shards, their leases, and each journal's position.
--
-- SHARD: one row per --shard. NUM places the shard's rows in MSG: their idx
-- are NUM * 2^40 + 1, + 2, ... in commit order (the default shard is 0, so
-- rows from before shards keep their idx). FILTERS: its --source filters,
-- one per line. No two shards may hold filters that can match one topic.
-- The lease: OWNER (a relay id), EPOCH (+1 at every takeover) and EXPIRES_AT
-- (the database's clock). Only the relay holding the current EPOCH commits,
-- and every commit checks EPOCH inside its own transaction.
-- PUBLISHED_IDX: the shard's rows up to it are acknowledged on seq/T.
-- COMMITS: the shard's committed transactions (tells a relay whose COMMIT
-- was cut off whether it took effect).
CREATE TABLE IF NOT EXISTS SHARD (
  NAME          VARCHAR(64)     NOT NULL PRIMARY KEY,
  NUM           INT UNSIGNED    NOT NULL,
  FILTERS       TEXT            NOT NULL,
  OWNER         VARCHAR(128)    NOT NULL DEFAULT '',
  EPOCH         INT UNSIGNED    NOT NULL DEFAULT 0,
  EXPIRES_AT    DATETIME(6)     NOT NULL DEFAULT '2000-01-01 00:00:00',
  ACQUIRED_AT   DATETIME(6)     NULL,
  PUBLISHED_IDX BIGINT UNSIGNED NOT NULL DEFAULT 0,
  COMMITS       BIGINT UNSIGNED NOT NULL DEFAULT 0,
  UNIQUE KEY SHARD_NUM (NUM)
) ENGINE=InnoDB;
INSERT IGNORE INTO SHARD (NAME, NUM, FILTERS, PUBLISHED_IDX)
  SELECT 'default', 0, '', PUBLISHED_IDX FROM RELAY_STATE WHERE K = 1;

-- JOURNAL: per relay journal (its id is kept in the journal's directory),
-- the position up to which its records are stored in MSG. Written in the
-- same transaction as the rows.
CREATE TABLE IF NOT EXISTS JOURNAL (
  ID    VARCHAR(36)     NOT NULL PRIMARY KEY,
  SHARD VARCHAR(64)     NOT NULL,
  POS   BIGINT UNSIGNED NOT NULL DEFAULT 0
) ENGINE=InnoDB;

-- PENDING: messages a relay took and journaled but did not commit before it
-- lost its shard (killed, or paused past its lease). At its next start it
-- hands them over here, moving its JOURNAL.POS past them in the same
-- transaction, and the shard's active appends them to their topics (new
-- SEQs after the current end), deleting each row in the transaction that
-- stores it: every message once.
CREATE TABLE IF NOT EXISTS PENDING (
  JOURNAL_ID VARCHAR(36)     NOT NULL,
  END_POS    BIGINT UNSIGNED NOT NULL,
  SHARD      VARCHAR(64)     NOT NULL,
  ID         VARBINARY(255)  NOT NULL,
  MID        INT UNSIGNED    NOT NULL,
  DIGEST     BIGINT UNSIGNED NOT NULL,
  MSG        MEDIUMBLOB      NOT NULL,
  HANDED_AT  TIMESTAMP(6)    NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (JOURNAL_ID, END_POS),
  KEY PENDING_SHARD (SHARD)
) ENGINE=InnoDB;

-- TAKEN: the first deliveries an active took after resuming the shard's
-- session (mosquitto resends the previous holder's unacknowledged messages
-- first, with their packet ids), committed with them. A handed-over
-- message that matches one (same MID and DIGEST of topic and payload) was
-- stored already and is not stored again.
CREATE TABLE IF NOT EXISTS TAKEN (
  SHARD  VARCHAR(64)     NOT NULL,
  MID    INT UNSIGNED    NOT NULL,
  DIGEST BIGINT UNSIGNED NOT NULL,
  EPOCH  INT UNSIGNED    NOT NULL,
  PRIMARY KEY (SHARD, MID, DIGEST)
) ENGINE=InnoDB;

-- The epoch of the lease a row was committed under: who wrote what, by value.
ALTER TABLE MSG ADD COLUMN EPOCH INT UNSIGNED NOT NULL DEFAULT 0;
