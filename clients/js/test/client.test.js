// The JavaScript client against the real relay, mosquitto and MariaDB
// (started by ./servers.js): the scenarios of
// tests/integration/client_test.cc and more. The relay runs with
// --replay-max=100, so every history longer than that is read with the
// truncated/next rule, and with sensors/# immediate.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import mqtt from 'mqtt';

import { connect, decodeFrame, encodeFrame } from '../src/index.js';
import { DYNSEC_PLUGIN, DynsecBroker, TestServers, waitFor, withLogs } from './servers.js';

let servers;
const serverTest = (name, fn) => test(name, withLogs(() => servers, fn));
const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);
let clients = 0;

before(async () => {
  servers = await TestServers.start({ relayArgs: ['--replay-max=100', '--immediate=sensors/#'] });
});
after(async () => servers?.stop());

function url() {
  return `mqtt://127.0.0.1:${servers.mqttPort}`;
}

// A SeqClient on its own connection, ended after the test.
async function seqClient(t, options = {}) {
  const seq = connect(url(), { clientId: `js-${process.pid}-${++clients}`, ...options });
  t.after(() => seq.end(true));
  await waitFor(() => seq.mqtt.connected, 'the client to connect');
  return seq;
}

// Waits for the broker's SUBACK of seq/<filter> (a second SUBSCRIBE of the
// filter changes nothing, and the broker handles a connection's packets in
// order): a live-only subscription sees the first message published after.
async function subscribed(seq, filter) {
  await seq.mqtt.subscribeAsync(`seq/${filter}`, { qos: 1 });
}

async function publisher(t) {
  const client = await mqtt.connectAsync(url(), { clientId: `pub-${process.pid}-${++clients}` });
  t.after(() => client.endAsync(true));
  return client;
}

// Publishes "<prefix>-<i>" for i in [from, to], QoS 1, in order.
async function publishRange(client, topic, from, to, prefix = 'm') {
  for (let i = from; i <= to; ++i) await client.publishAsync(topic, `${prefix}-${i}`, { qos: 1 });
}

// Collects messages of a subscription until `count` came (or the deadline).
function collect(sub, count, deadlineMs = 15000) {
  const got = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`got ${got.length} of ${count} messages: SEQ ${got.map((m) => m.seq).join(',')}`)),
      deadlineMs,
    );
    sub.on('message', (m) => {
      got.push(m);
      if (got.length === count) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

// The last SEQ of `topic` in the MSG table: the relay has committed that far.
function lastSeq(topic) {
  return Number(servers.sql(`SELECT COALESCE(MAX(SEQ), 0) FROM seqrelay.MSG WHERE ID = '${topic}'`).trim());
}

async function waitCommitted(topic, seq) {
  await waitFor(() => lastSeq(topic) >= seq, `${topic} to reach SEQ ${seq} in MSG`, 20000);
}

// Publishes "m-<i>" for i in [from, to] and returns once the relay has
// published the frame of SEQ `to` on seq/<topic> (seen by a subscriber of
// its own): committed is not enough for a client that joins next, since the
// relay publishes after the commit, and a frame published after the join
// comes live where the test expects it replayed.
async function publishStored(t, pub, topic, from, to) {
  const watcher = await mqtt.connectAsync(url(), { clientId: `watch-${process.pid}-${++clients}` });
  t.after(() => watcher.endAsync(true));
  let newest = 0;
  watcher.on('message', (_, bytes) => { newest = Math.max(newest, decodeFrame(bytes).seq); });
  await watcher.subscribeAsync(`seq/${topic}`, { qos: 1 });
  await publishRange(pub, topic, from, to);
  await waitFor(() => newest >= to, `the relay to publish ${topic} up to SEQ ${to}`, 20000);
  await watcher.endAsync(true);
}

serverTest('live messages arrive once each, in SEQ order, payloads exact', async (t) => {
  const seq = await seqClient(t);
  const room = seq.subscribe('chat/live');
  await subscribed(seq, 'chat/live');
  const got = collect(room, 200);
  const pub = await publisher(t);
  await publishRange(pub, 'chat/live', 1, 200);
  const messages = await got;
  assert.deepEqual(messages.map((m) => m.seq), range(1, 200));
  assert.deepEqual(messages.map((m) => m.text), range(1, 200).map((i) => `m-${i}`));
  assert.ok(messages.every((m) => m.topic === 'chat/live' && m.ordered && !m.late && m.payload instanceof Uint8Array));
  assert.equal(seq.stats.requests, 0, 'no gap, no request');
  assert.equal(seq.stats.badFrames, 0);
});

serverTest('lost frames are asked for and come back: every SEQ once, in order, one request per lost run', async (t) => {
  // Drops every 7th frame and a burst of 50, as client_test.cc does.
  const lost = (s) => s % 7 === 0 || (s >= 100 && s < 150);
  const seq = await seqClient(t, { dropLiveFrame: (topic, s) => lost(s), gapWait: 50 });
  const room = seq.subscribe('chat/lossy');
  await subscribed(seq, 'chat/lossy');
  const got = collect(room, 300, 30000);
  const pub = await publisher(t);
  await publishRange(pub, 'chat/lossy', 1, 300);
  const messages = await got;
  assert.deepEqual(messages.map((m) => m.seq), range(1, 300));
  assert.deepEqual(messages.map((m) => m.text), range(1, 300).map((i) => `m-${i}`));
  // Lost runs: 7, 14, ..., 294 outside the burst, plus the burst 98..149 as one or more.
  const runs = range(1, 300).filter((s) => lost(s) && !lost(s - 1)).length;
  assert.ok(seq.stats.requests >= 1, 'gaps were filled by retransmit');
  assert.ok(seq.stats.requests <= runs + 2, `${seq.stats.requests} requests for ${runs} lost runs`);
  assert.equal(seq.stats.gapsLost, 0);
  assert.equal(seq.stats.gapsFilled, seq.stats.requests);
});

serverTest('history on join: 1..250 told before, then live, no gap or duplicate at the seam (truncated/next)', async (t) => {
  const pub = await publisher(t);
  await publishStored(t, pub, 'chat/history', 1, 250);
  const seq = await seqClient(t);
  const events = [];
  seq.on('history', (e) => events.push(['history', e]));
  seq.on('fetch', (e) => events.push(['fetch', e]));
  const room = seq.subscribe('chat/history', { history: true });
  const got = collect(room, 350, 30000);
  // Live messages while the history is read.
  await publishRange(pub, 'chat/history', 251, 350);
  const messages = await got;
  assert.deepEqual(messages.map((m) => m.seq), range(1, 350));
  assert.deepEqual(messages.map((m) => m.text), range(1, 350).map((i) => `m-${i}`));
  const history = events.find(([kind]) => kind === 'history')[1];
  assert.equal(history.first, 1);
  assert.equal(history.start, 1);
  assert.ok(history.last >= 250);
  // A lookup, then replies of at most 100 frames (--replay-max=100), each asked from the last one's "next":
  // at least three for the 250 stored before the join (the live ones may fill the rest first).
  assert.ok(seq.stats.requests >= 1 + Math.ceil(250 / 100), `requests: ${seq.stats.requests}`);
  // A live frame may come before or after its replayed copy (they travel on
  // different relay connections): a duplicate is dropped, never delivered.
  assert.equal(seq.stats.delivered, 350, 'each SEQ delivered once');
});

serverTest('resume from a SEQ, and the last N', async (t) => {
  const pub = await publisher(t);
  await publishStored(t, pub, 'chat/resume', 1, 40);
  const seq = await seqClient(t);
  const from = seq.subscribe('chat/resume', { from: 31 });
  assert.deepEqual((await collect(from, 10)).map((m) => m.seq), range(31, 40));
  assert.equal(seq.position('chat/resume'), 40);

  const other = await seqClient(t);
  const last = other.subscribe('chat/resume', { last: 5 });
  const got = collect(last, 6);
  await waitFor(() => other.position('chat/resume') === 40, 'the last 5 to arrive');
  await publishRange(pub, 'chat/resume', 41, 41);
  assert.deepEqual((await got).map((m) => m.seq), range(36, 41));
});

serverTest('history of a topic nobody wrote to yet starts at its first message', async (t) => {
  const seq = await seqClient(t);
  const history = new Promise((resolve) => seq.once('history', resolve));
  const room = seq.subscribe('chat/empty-room', { history: true });
  assert.deepEqual(await history, { topic: 'chat/empty-room', first: 1, last: 0, start: 1 });
  const got = collect(room, 3);
  const pub = await publisher(t);
  await publishRange(pub, 'chat/empty-room', 1, 3);
  assert.deepEqual((await got).map((m) => m.seq), [1, 2, 3]);
});

serverTest('async iterator: for await delivers in order; unsubscribe ends it', async (t) => {
  const seq = await seqClient(t);
  const room = seq.subscribe('chat/iter');
  await subscribed(seq, 'chat/iter');
  const pub = await publisher(t);
  const reader = (async () => {
    const seen = [];
    for await (const m of room) {
      seen.push(m.seq);
      if (seen.length === 30) room.unsubscribe();
    }
    return seen;
  })();
  await publishRange(pub, 'chat/iter', 1, 30);
  assert.deepEqual(await reader, range(1, 30));
});

serverTest('bad frames are counted, never reach a listener; a throwing listener does not break the stream', async (t) => {
  const seq = await seqClient(t);
  const bad = [];
  const errors = [];
  seq.on('badframe', (e) => bad.push(e));
  seq.on('error', (e) => errors.push(e.message));
  const room = seq.subscribe('chat/bad');
  await subscribed(seq, 'chat/bad');
  const delivered = [];
  room.on('message', (m) => {
    delivered.push(m.seq);
    if (m.seq === 2) throw new Error('listener bug');
  });
  const pub = await publisher(t);
  await publishRange(pub, 'chat/bad', 1, 2);
  await waitFor(() => delivered.length === 2, 'two messages');
  // By hand on seq/chat/bad: too short, flag 2, SEQ 0, and another topic's id.
  const id = seq.topics.values().next().value.id;
  await pub.publishAsync('seq/chat/bad', Buffer.from('short'), { qos: 1 });
  await pub.publishAsync('seq/chat/bad', Buffer.from('00000007000000001102', 'hex'), { qos: 1 });
  await pub.publishAsync('seq/chat/bad', Buffer.from('00000007000000000001', 'hex'), { qos: 1 });
  await pub.publishAsync('seq/chat/bad', Buffer.from(encodeFrame({ topicId: id + 1000, seq: 3 }, 'forged')), { qos: 1 });
  await publishRange(pub, 'chat/bad', 3, 4);
  await waitFor(() => delivered.length >= 4, 'the next two messages');
  assert.deepEqual(delivered, [1, 2, 3, 4]);
  assert.equal(seq.stats.badFrames, 4);
  assert.deepEqual(bad.map((e) => e.reason), [
    'frame of 5 bytes is shorter than the 10-byte header',
    'frame has ordering flag 2, expected 0 or 1',
    'frame has SEQ 0',
    `'chat/bad' is topic id ${id}, not ${id + 1000}`,
  ]);
  assert.deepEqual(errors, ['listener bug']);
  assert.equal(seq.stats.listenerErrors, 1);
});

serverTest('a forged frame on a known topic id of another topic is refused', async (t) => {
  const seq = await seqClient(t);
  seq.subscribe('chat/forge/#');
  await subscribed(seq, 'chat/forge/#');
  const got = [];
  seq.on('message', (m) => got.push(`${m.topic}#${m.seq}`));
  const pub = await publisher(t);
  await publishRange(pub, 'chat/forge/a', 1, 1);
  await waitFor(() => got.length === 1, 'the first message');
  const id = seq.topics.values().next().value.id;
  await pub.publishAsync('seq/chat/forge/b', Buffer.from(encodeFrame({ topicId: id, seq: 2 }, 'x')), { qos: 1 });
  await publishRange(pub, 'chat/forge/a', 2, 2);
  await waitFor(() => got.length >= 2, 'the second message');
  assert.deepEqual(got, ['chat/forge/a#1', 'chat/forge/a#2']);
  assert.equal(seq.stats.badFrames, 1);
});

serverTest('a gap the relay cannot fill is reported as lost, and delivery goes on', async (t) => {
  const pub = await publisher(t);
  await publishStored(t, pub, 'chat/hole', 1, 5);
  // 6 and 7 lost on the way, and then gone from the database too.
  const seq = await seqClient(t, { gapWait: 20, dropLiveFrame: (topic, s) => s === 6 || s === 7 });
  const room = seq.subscribe('chat/hole', { history: true });
  const lost = new Promise((resolve) => room.once('lost', resolve));
  const got = collect(room, 6);
  await waitFor(() => seq.position('chat/hole') === 5, 'the history');
  await publishRange(pub, 'chat/hole', 6, 7);
  await waitCommitted('chat/hole', 7);
  servers.sql("DELETE FROM seqrelay.MSG WHERE ID = 'chat/hole' AND SEQ IN (6, 7)");
  await publishRange(pub, 'chat/hole', 8, 8);
  assert.deepEqual(await lost, {
    topic: 'chat/hole', from: 6, to: 7, reason: 'the relay has no such SEQ', code: undefined, retry: undefined,
  });
  assert.deepEqual((await got).map((m) => m.seq), [1, 2, 3, 4, 5, 8]);
  assert.equal(seq.stats.gapsLost, 1);
});

serverTest("a forged frame above the topic's newest SEQ is dropped: nothing is given up for it, delivery goes on", async (t) => {
  const pub = await publisher(t);
  await publishStored(t, pub, 'chat/forged', 1, 5);
  const seq = await seqClient(t, { gapWait: 20 });
  const room = seq.subscribe('chat/forged', { history: true });
  const lost = [];
  room.on('lost', (e) => lost.push(e));
  const bad = new Promise((resolve) => seq.once('badframe', resolve));
  const got = collect(room, 7);
  await waitFor(() => seq.position('chat/forged') === 5, 'the history');
  // SEQ 8 by hand, on a topic whose newest SEQ is 5.
  const id = seq.topics.values().next().value.id;
  await pub.publishAsync('seq/chat/forged', Buffer.from(encodeFrame({ topicId: id, seq: 8 }, 'forged')), { qos: 1 });
  assert.deepEqual(await bad, { topic: 'seq/chat/forged', reason: '1 frame(s) above SEQ 5, the newest the relay stored', seqs: [8] });
  await publishRange(pub, 'chat/forged', 6, 7);
  assert.deepEqual((await got).map((m) => m.seq), range(1, 7));
  assert.deepEqual(lost, []);
});

serverTest('immediate topics show a frame at once and mark the late gap fill', async (t) => {
  let dropped = false;
  const seq = await seqClient(t, {
    gapWait: 20,
    dropLiveFrame: (topic, s) => {
      if (s !== 3 || dropped) return false;
      dropped = true;
      return true;
    },
  });
  const sensor = seq.subscribe('sensors/t1');
  await subscribed(seq, 'sensors/t1');
  const got = collect(sensor, 5);
  const pub = await publisher(t);
  await publishRange(pub, 'sensors/t1', 1, 5);
  const messages = await got;
  assert.deepEqual(messages.map((m) => [m.seq, m.late, m.ordered]), [
    [1, false, false], [2, false, false], [4, false, false], [5, false, false], [3, true, false],
  ]);
});

serverTest('after a reconnect, what was published while away is fetched', async (t) => {
  const seq = await seqClient(t, { reconnectPeriod: 0 });
  const room = seq.subscribe('chat/away');
  const seen = [];
  room.on('message', (m) => seen.push(m.seq));
  const fetches = [];
  room.on('fetch', (e) => fetches.push(e));
  const pub = await publisher(t);
  await publishRange(pub, 'chat/away', 1, 10);
  await waitFor(() => seen.length === 10, 'the first 10');
  // The network drops: the socket goes, no reconnect until asked.
  const closed = new Promise((resolve) => seq.mqtt.once('close', resolve));
  seq.mqtt.stream.destroy();
  await closed;
  await publishStored(t, pub, 'chat/away', 11, 40);
  seq.mqtt.reconnect();
  await waitFor(() => seen.length >= 40, 'the 30 published while away', 15000);
  assert.deepEqual(seen, range(1, 40));
  assert.deepEqual(fetches[0], { topic: 'chat/away', from: 11, to: null });
  assert.equal(seq.stats.duplicates, 0);
});

// A broker of its own (the relay is not needed): mosquitto's dynamic
// security plugin refuses every SUBSCRIBE of an anonymous client, which has
// no role. Until 2026-12-06 the client took the SUBACK's 128 for a
// subscription, and delivered nothing, silently.
test('a subscription the broker refuses is an error on the first connection, and counted on a reconnect', {
  skip: !existsSync(DYNSEC_PLUGIN) && `no ${DYNSEC_PLUGIN} (mosquitto's dynamic security plugin)`,
}, async () => {
  const broker = await DynsecBroker.start();
  let seq;
  try {
    seq = connect(`mqtt://127.0.0.1:${broker.port}`, { clientId: `js-${process.pid}-${++clients}`, reconnectPeriod: 0 });
    const errors = [];
    seq.on('error', (e) => errors.push(e.message));
    seq.subscribe('chat/refused');
    const refused = (topic) =>
      `the broker refused the subscription to '${topic}' (SUBACK 128): its ACL does not let this user read it?`;
    // The topic first, then the replies' (as the C++ client subscribes).
    await waitFor(() => errors.length >= 2, 'the refusals of the first connection');
    assert.deepEqual(errors, [refused('seq/chat/refused'), refused(`relay/replay/${seq.requester}/#`)]);
    assert.equal(seq.stats.subscribeErrors, 2);
    assert.equal(seq.stats.lastSubscribeError, errors[1]);
    // A reconnect subscribes again: refused again, counted, no error event.
    const closed = new Promise((resolve) => seq.mqtt.once('close', resolve));
    seq.mqtt.stream.destroy();
    await closed;
    seq.mqtt.reconnect();
    await waitFor(() => seq.stats.subscribeErrors >= 4, 'the refusals of the second connection');
    assert.equal(seq.stats.subscribeErrors, 4);
    assert.equal(seq.stats.lastSubscribeError, refused(`relay/replay/${seq.requester}/#`));
    assert.equal(errors.length, 2, 'on a reconnect only counted');
  } catch (error) {
    error.message += `\n${broker.logs()}`;
    throw error;
  } finally {
    await seq?.end(true);
    await broker.stop();
  }
});
