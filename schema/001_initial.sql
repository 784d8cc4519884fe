-- seqrelay schema version 1: the tables of PROTOCOL.md section 4.
--
-- Applied by the relay at start (and usable as a database container's init
-- script). Topics are VARBINARY so that they compare byte for byte on MySQL 8
-- and MariaDB alike: 'chat/A' <> 'chat/a', 'a' <> 'a '.

CREATE TABLE IF NOT EXISTS MSG (
  idx  BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,  -- commit order; assigned by the relay
  ID   VARBINARY(255)  NOT NULL,                             -- raw topic T, its UTF-8 bytes
  QOS  INT             NOT NULL,                             -- ordering flag in the frame: 1 ordered, 0 immediate
  SEQ  BIGINT UNSIGNED NOT NULL,                             -- SEQ of the message within T, 1..2^40-1
  MSG  MEDIUMBLOB      NULL,                                 -- the payload, byte for byte; empty, never NULL
  RECEIVED_AT TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  UNIQUE KEY MSG_ID_SEQ (ID, SEQ)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS TOPIC (
  FRAME_ID   INT UNSIGNED   NOT NULL AUTO_INCREMENT PRIMARY KEY,  -- ID in frames
  ID         VARBINARY(255) NOT NULL,                             -- = MSG.ID
  CREATED_AT TIMESTAMP(6)   NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  UNIQUE KEY TOPIC_ID (ID)
) ENGINE=InnoDB;

-- One row: the relay's progress that is not in MSG itself.
-- PUBLISHED_IDX: every MSG row with idx <= it has been acknowledged by the
-- broker on seq/T; rows above it are published again at the next start.
CREATE TABLE IF NOT EXISTS RELAY_STATE (
  K             TINYINT UNSIGNED NOT NULL PRIMARY KEY,
  PUBLISHED_IDX BIGINT UNSIGNED  NOT NULL
) ENGINE=InnoDB;
INSERT IGNORE INTO RELAY_STATE (K, PUBLISHED_IDX) VALUES (1, 0);
