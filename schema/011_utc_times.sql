-- seqrelay schema version 11: the lease's times and the dedupe records'
-- as TIMESTAMP, which the server keeps in UTC whatever the time zone of the
-- session that writes or reads them.
--
-- SHARD.EXPIRES_AT and ACQUIRED_AT and DEDUPE.SEEN_AT were DATETIME, set
-- with NOW(6) in the writing session's time zone, which was the server's:
-- relays whose sessions began in different zones (the server's zone changed
-- between them, or the hour a server on local time moves its clocks)
-- disagreed on when a lease ends or a record ages out. Relays from this
-- version on keep their sessions in UTC, and these columns, TIMESTAMP from
-- here on, are converted from and to each session's zone, so a relay of
-- before this version still running beside newer ones reads and writes them
-- right as well. The values written before are converted from the server's
-- zone, in which relays of before this version wrote them; the relay's
-- session goes back to UTC after this migration.
SET time_zone = @@GLOBAL.time_zone;
ALTER TABLE SHARD MODIFY EXPIRES_AT TIMESTAMP(6) NOT NULL DEFAULT '2000-01-01 00:00:00',
  MODIFY ACQUIRED_AT TIMESTAMP(6) NULL;
ALTER TABLE DEDUPE MODIFY SEEN_AT TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6);
SET time_zone = '+00:00';
