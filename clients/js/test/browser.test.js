// The messenger page (clients/messenger) in real headless Chromium (Debian's
// /usr/bin/chromium, driven by puppeteer-core; no browser download), served
// by mosquitto itself from the shipped configuration (docker/mosquitto:
// the WebSocket listener with http_dir, users, the ACL, the relay's replay
// ACL), with the real relay and MariaDB:
//  - alice and bob exchange 50 messages; bob's page goes offline, alice
//    sends 50 more, bob's page comes back and shows 1..100 in order, no
//    duplicate, the gap filled by retransmit (requests counted on the broker);
//  - carol joins later and sees the history 1..100;
//  - a bad frame published by hand on seq/<room> does not break any page;
//  - a screenshot is written (test-output/messenger.png);
//  - dave signs in in a second tab: the first says so and stays off (no
//    taking turns), "Use here" takes the connection back;
//  - erin signs in in a second browser (no channel between the two): after
//    a few turns the first page steps aside and says so, the second keeps
//    the connection, "Use here" takes it back.
// $CHROMIUM names another browser binary.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import puppeteer from 'puppeteer-core';

import { REPO, TestServers, waitFor, withLogs } from './servers.js';

const ROOM = 'chat/room1';
const USERS = { alice: 'alice-pw', bob: 'bob-pw', carol: 'carol-pw', dave: 'dave-pw', erin: 'erin-pw' };
const OUT = fileURLToPath(new URL('../test-output/', import.meta.url));
let servers;
let browser;
let monitor; // the relay's account on its own listener: sees requests, can publish on seq/
const requests = []; // retransmit requests seen on the broker: [requester, body]

before(async () => {
  // The page's vendor/ scripts, from this tree's sources.
  execFileSync(process.execPath, [fileURLToPath(new URL('../scripts/bundle.js', import.meta.url)),
    '--copy-to', `${REPO}/clients/messenger/vendor`]);
  servers = await TestServers.start({
    shipped: {
      httpDir: `${REPO}/clients/messenger`,
      users: USERS,
      // As the shipped acl's comment says: one block per user, like alice's.
      extraAcl: ['bob', 'carol', 'dave', 'erin'].map((u) => `user ${u}\ntopic write chat/#\ntopic read seq/chat/#\n`).join('\n'),
    },
  });
  monitor = await mqtt.connectAsync(`mqtt://127.0.0.1:${servers.relayPort}`, {
    username: 'seqrelay', password: 'relay-secret', clientId: 'test-monitor',
  });
  monitor.on('message', (topic, payload) => requests.push([topic.split('/').pop(), JSON.parse(payload)]));
  await monitor.subscribeAsync('relay/retransmit/#', { qos: 1 });
  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
});

after(async () => {
  await browser?.close();
  await monitor?.endAsync(true);
  await servers?.stop();
});

async function openMessenger(user, where = browser) {
  const page = await where.newPage();
  await page.setViewport({ width: 760, height: 640 });
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.errors = errors;
  await page.goto(`http://127.0.0.1:${servers.wsPort}/index.html?user=${user}&room=${ROOM}`);
  await page.type('#password', USERS[user]);
  await page.click('#signin button');
  await page.waitForFunction(() => document.getElementById('status').textContent === 'online', { timeout: 10000, polling: 50 });
  return page;
}

// What the page shows: the SEQ of every message, in screen order, and their texts.
const shown = (page) =>
  page.$$eval('#messages li', (items) => items.map((li) => ({ seq: Number(li.dataset.seq), text: li.textContent })));

async function waitShown(page, count, timeout = 20000) {
  try {
    await page.waitForFunction((n) => document.querySelectorAll('#messages li').length >= n, { timeout, polling: 50 }, count);
  } catch (error) {
    const state = await page.evaluate(() => ({
      user: window.messenger.user,
      stats: window.messenger.seq.stats,
      shown: [...document.querySelectorAll('#messages li')].map((li) => Number(li.dataset.seq)),
      notice: document.getElementById('notice').textContent,
      status: document.getElementById('status').textContent,
    }));
    error.message += `: waiting for ${count} messages, the page has ${JSON.stringify(state)}`;
    throw error;
  }
}

async function send(page, text) {
  await page.evaluate((t) => {
    document.getElementById('text').value = t;
    document.getElementById('send').requestSubmit();
  }, text);
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('the messenger in Chromium: in order, offline and back, history, a bad frame', withLogs(() => servers, async () => {
  const alice = await openMessenger('alice');
  const bob = await openMessenger('bob');
  const notices = []; // every text bob's page shows in its notice line
  await bob.exposeFunction('recordNotice', (text) => notices.push(text));
  await bob.evaluate(() => {
    new MutationObserver(() => window.recordNotice(document.getElementById('notice').textContent))
      .observe(document.getElementById('notice'), { childList: true, characterData: true, subtree: true });
  });

  // 50 messages both ways, in turns.
  for (let i = 1; i <= 50; ++i) await send(i % 2 ? alice : bob, `hello ${i}`);
  await waitShown(alice, 50);
  await waitShown(bob, 50);
  for (const page of [alice, bob]) {
    const list = await shown(page);
    assert.deepEqual(list.map((m) => m.seq), range(1, 50));
    assert.ok(list[0].text.startsWith('#1'), `the SEQ is visible: ${list[0].text}`);
  }

  // Bob's page loses the network; mqtt.js notices at once (the socket closes).
  const bobRequestsBefore = requests.filter(([who]) => who === 'bob').length;
  const cdp = await bob.createCDPSession();
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', { offline: true, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await bob.evaluate(() => window.messenger.seq.mqtt.stream.destroy()); // the drop itself: the socket is gone
  await bob.waitForFunction(() => document.getElementById('status').textContent.startsWith('offline'), { timeout: 10000, polling: 50 });
  for (let i = 51; i <= 100; ++i) await send(alice, `while bob is away ${i}`);
  await waitShown(alice, 100);
  await waitFor(() => servers.sql(`SELECT COUNT(*) FROM seqrelay.MSG WHERE ID = '${ROOM}'`).trim() === '100', '100 rows');
  assert.equal((await shown(bob)).length, 50, 'nothing reaches an offline page');

  // Back online: the page reconnects and fetches what it missed.
  await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
  await waitShown(bob, 100);
  const bobList = await shown(bob);
  assert.deepEqual(bobList.map((m) => m.seq), range(1, 100), 'in SEQ order, no duplicate, no gap');
  const stats = await bob.evaluate(() => window.messenger.seq.stats);
  const bobRequests = requests.filter(([who]) => who === 'bob').slice(bobRequestsBefore);
  assert.ok(bobRequests.length >= 1, 'the gap was asked for');
  assert.deepEqual(bobRequests[0][1], { id: bobRequests[0][1].id, from: 51 }, 'from the first missed SEQ');
  assert.equal(stats.requests, bobRequestsBefore + bobRequests.length, 'the page counts the requests the broker saw');
  assert.ok(notices.some((n) => n.startsWith('fetching')), `the page said it was fetching: ${JSON.stringify(notices)}`);
  const bobEvents = await bob.evaluate(() => window.messenger.events);
  // The last fetch is the one for what bob missed (an earlier one may have filled the first messages, if
  // alice's first came before the page's SUBSCRIBE was through); nothing was ever lost.
  const bobFetches = bobEvents.filter((e) => e.kind !== 'history').map((e) => [e.kind, e.from]);
  assert.deepEqual(bobFetches.slice(-2), [['fetch', 51], ['filled', 51]], JSON.stringify(bobFetches));
  assert.ok(bobFetches.every(([kind]) => kind === 'fetch' || kind === 'filled'), JSON.stringify(bobFetches));
  await bob.waitForFunction(() => document.getElementById('notice').textContent === '', { timeout: 5000, polling: 50 })
    .catch(async (e) => { throw new Error(`${e.message}: notices ${JSON.stringify(notices)}, events ${JSON.stringify(await bob.evaluate(() => window.messenger.events))}`); });

  // Carol joins later: the history, 1..100.
  const carol = await openMessenger('carol');
  await waitShown(carol, 100);
  assert.deepEqual((await shown(carol)).map((m) => m.seq), range(1, 100));
  assert.ok((await shown(carol))[99].text.includes('while bob is away 100'));
  const carolEvents = await carol.evaluate(() => window.messenger.events);
  assert.deepEqual(carolEvents.map(({ kind, from, to }) => [kind, from, to]).slice(0, 3),
    [['history', undefined, undefined], ['fetch', 1, 100], ['filled', 1, 100]], 'the page fetched 100 messages of history');
  assert.equal(await carol.$eval('#notice', (e) => e.textContent), '');

  // A bad frame by hand on seq/<room> (with the relay's rights: users may not write there).
  await monitor.publishAsync(`seq/${ROOM}`, Buffer.from('not a frame'), { qos: 1 });
  await monitor.publishAsync(`seq/${ROOM}`, Buffer.from('00000001000000000002', 'hex'), { qos: 1 });
  for (const page of [alice, bob, carol]) {
    await page.waitForFunction(() => window.messenger.seq.stats.badFrames === 2, { timeout: 5000, polling: 50 });
  }
  await send(carol, 'still working');
  for (const page of [alice, bob, carol]) {
    await waitShown(page, 101);
    const list = await shown(page);
    assert.deepEqual(list.map((m) => m.seq), range(1, 101));
    assert.deepEqual(page.errors, [], 'no uncaught error in the page');
  }

  mkdirSync(OUT, { recursive: true });
  await bob.evaluate(() => {
    const list = document.getElementById('messages');
    list.scrollTop = list.scrollHeight;
  });
  await bob.screenshot({ path: `${OUT}/messenger.png` });
}));

test('the messenger says on its form what is wrong with a blank user or a wildcard room', withLogs(() => servers, async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`http://127.0.0.1:${servers.wsPort}/index.html?room=chat/%23`);
  await page.type('#user', '   ');
  await page.click('#signin button');
  const form = () => page.evaluate(() => ({
    chat: !document.getElementById('chat').hidden,
    user: document.getElementById('user').validationMessage,
    room: document.getElementById('room').validationMessage,
  }));
  assert.deepEqual(await form(), { chat: false, user: 'a user name is needed', room: '' });
  await page.$eval('#user', (e) => {
    e.value = 'dave';
    e.dispatchEvent(new Event('input'));
  });
  await page.click('#signin button');
  assert.deepEqual(await form(), { chat: false, user: '', room: "a room is one topic: no '+' or '#'" });
  assert.deepEqual(errors, []);
  await page.close();
}));

test('the same user in a second tab: the first page says so and waits, "Use here" takes it back', withLogs(() => servers, async () => {
  const status = (page) => page.$eval('#status', (e) => e.textContent);
  const first = await openMessenger('dave');
  // A sign-in the broker refuses (a wrong password) takes nothing from the page that works.
  const refused = await browser.newPage();
  await refused.goto(`http://127.0.0.1:${servers.wsPort}/index.html?user=dave&room=${ROOM}`);
  await refused.type('#password', 'not-the-password');
  await refused.click('#signin button');
  await waitFor(async () => (await status(refused)).startsWith('error'), 'the refused sign-in');
  await refused.close();
  assert.equal(await status(first), 'online');
  const second = await openMessenger('dave'); // the broker gives the user's connection to this one
  const texts = (page) => page.$$eval('#messages li', (items) => items.map((li) => li.textContent));
  const elsewhere = 'open in another tab or window';
  await waitFor(async () => (await status(first)) === elsewhere, 'the first page to say the second has the connection');
  assert.equal(await first.$eval('#here', (e) => e.hidden), false);
  // Three reconnect periods on, each page is where it was: they do not take turns.
  await new Promise((resolve) => setTimeout(resolve, 3000));
  assert.equal(await status(first), elsewhere);
  assert.equal(await status(second), 'online');
  await send(second, 'from the second tab');
  await waitFor(async () => (await texts(second)).some((t) => t.endsWith('davefrom the second tab')), 'the message on the second page');

  await first.bringToFront(); // the user goes back to the first tab
  await first.click('#here');
  await waitFor(async () => (await status(first)) === 'online', 'the first page online again');
  await waitFor(async () => (await status(second)) === elsewhere, 'the second page to say the first has the connection');
  assert.equal(await first.$eval('#here', (e) => e.hidden), true);
  // The first page, back, catches up on what the second sent meanwhile.
  await waitFor(async () => (await texts(first)).some((t) => t.endsWith('davefrom the second tab')), 'the message on the first page');
  assert.deepEqual([...first.errors, ...second.errors], []);
  await first.close();
  await second.close();
}));

test('the same user in a second browser: after a few turns the first page steps aside, "Use here" takes it back', withLogs(() => servers, async () => {
  const status = (page) => page.$eval('#status', (e) => e.textContent);
  const texts = (page) => page.$$eval('#messages li', (items) => items.map((li) => li.textContent));
  const elsewhere = 'open in another browser or on another device';
  const other = await browser.createBrowserContext(); // its pages share no BroadcastChannel with the first's
  const first = await openMessenger('erin');
  const second = await openMessenger('erin', other);
  await waitFor(async () => (await status(first)) === elsewhere, 'the first page to step aside', 20000);
  assert.equal(await first.$eval('#here', (e) => e.hidden), false);
  // Settled: two reconnect periods on, the second page is still online and the first still aside.
  await waitFor(async () => (await status(second)) === 'online', 'the second page online');
  await new Promise((resolve) => setTimeout(resolve, 2000));
  assert.equal(await status(first), elsewhere);
  assert.equal(await status(second), 'online');
  await send(second, 'from the second browser');
  await waitFor(async () => (await texts(second)).some((t) => t.endsWith('erinfrom the second browser')), 'the message on the second page');

  await first.click('#here'); // the user is back at the first browser
  await waitFor(async () => (await status(second)) === elsewhere, 'the second page to step aside', 20000);
  await waitFor(async () => (await status(first)) === 'online', 'the first page online again');
  await new Promise((resolve) => setTimeout(resolve, 2000));
  assert.equal(await status(first), 'online');
  assert.equal(await status(second), elsewhere);
  await waitFor(async () => (await texts(first)).some((t) => t.endsWith('erinfrom the second browser')), 'the message on the first page');
  assert.deepEqual([...first.errors, ...second.errors], []);
  await first.close();
  await second.close();
  await other.close();
}));
