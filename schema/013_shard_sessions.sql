-- seqrelay schema version 13: each shard's MQTT session's filters, for
-- topics that move between shards.
--
-- mosquitto keeps a persistent session's subscriptions with the session,
-- not with the client that made them: a shard whose --source was narrowed
-- (its topics given to another shard) went on receiving them through the
-- subscriptions of its earlier relays, and two shards sequenced the same
-- topics. Dropping them at once would lose what is published on the moved
-- topics until their new shard has subscribed. So a shard keeps the
-- filters it gave up, and stores what comes through them, until every
-- shard whose filters can match topics of them has subscribed; then it
-- unsubscribes its session from them.
--
-- A table of its own, not SHARD's row, which every commit locks (its
-- fence): these are written by a relay's main thread, which must not wait
-- for a commit held up.
-- NAME: SHARD.NAME. UNSUBSCRIBING: the filters the shard gave up and its
-- session still holds, one per line; NULL: none. SUBSCRIBED: the filters
-- the shard's session was last seen subscribed to (its intake's SUBACK,
-- every filter granted), one per line; NULL: not yet.
CREATE TABLE IF NOT EXISTS SHARD_SESSION (
  NAME          VARCHAR(64) NOT NULL PRIMARY KEY,
  UNSUBSCRIBING TEXT        NULL,
  SUBSCRIBED    TEXT        NULL
) ENGINE=InnoDB;
