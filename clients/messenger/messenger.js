// The paper's collaborative messenger as a page, on the seqrelay JavaScript
// client (vendor/seqrelay.js, global `seqrelay`) and mqtt.js (global `mqtt`).
// The page joins a room (a raw topic), shows its history from SEQ 1, then
// every message in SEQ order with its SEQ, and says when it is fetching
// messages it missed. It connects back to the server that served it: the
// broker's WebSocket listener.
//
// A message is JSON {"user": ..., "text": ...}; the user name in it is what
// the sender typed (the broker checks who may write to the room, not what
// they write). Anything else is shown as text.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const params = new URLSearchParams(location.search);
  // events: what the client reported (fetch, filled, lost, history), in order.
  // elsewhere: another page has the user's connection; this one waits.
  // up: connected now; takenInARow: see "Pages in two browsers".
  const state = {
    seq: null, room: null, user: null, shown: new Set(), fetching: null, events: [], elsewhere: false, connectedAt: 0,
    up: false, takenInARow: 0,
  };
  // For tests and the curious: the client, and what the page showed.
  window.messenger = state;

  function setStatus(text, kind) {
    $('status').textContent = text;
    $('status').className = kind;
  }

  function showStats() {
    const s = state.seq.stats;
    $('stats').textContent = `${s.delivered} delivered · ${s.duplicates} duplicates dropped · ` +
      `${s.requests} retransmit requests · ${s.badFrames} bad frames ignored`;
    $('count').textContent = `${state.shown.size} messages`;
  }

  function notice(text) {
    $('notice').textContent = text;
  }

  function show(m) {
    let user = '?';
    let text = m.text;
    try {
      const body = JSON.parse(m.text);
      if (body && typeof body.user === 'string' && typeof body.text === 'string') ({ user, text } = body);
    } catch {
      // not JSON: shown as it is
    }
    const li = document.createElement('li');
    li.dataset.seq = String(m.seq);
    if (user === state.user) li.className = 'mine';
    const seq = document.createElement('span');
    seq.className = 'seq';
    seq.textContent = `#${m.seq}`;
    const who = document.createElement('span');
    who.className = 'user';
    who.textContent = user;
    li.append(seq, who, document.createTextNode(text));
    const list = $('messages');
    const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 4;
    list.append(li);
    if (atBottom) list.scrollTop = list.scrollHeight;
    state.shown.add(m.seq);
  }

  // One connection per user: the broker names it after the user, so the
  // same user signing in on another page takes it over, and reconnecting
  // would take it back: the two pages would take turns every second. The
  // pages of one browser tell each other when one takes the connection;
  // the others wait until asked to be the one again.
  // A page says so once the broker has let it in (a sign-in that fails
  // takes nothing from the page that works); of two pages that connect at
  // once, the later one keeps the connection.
  const ELSEWHERE_TAB = 'open in another tab or window';
  const ELSEWHERE_BROWSER = 'open in another browser or on another device';
  const PAGE = `${Date.now()}-${Math.random()}`;
  const pages = typeof BroadcastChannel === 'function' ? new BroadcastChannel('seqrelay-messenger') : null;
  if (pages) {
    pages.onmessage = (e) => {
      const { user, page, at } = e.data ?? {};
      // A page still signing in (not connected yet) keeps going: the broker decides.
      if (!state.seq || !state.connectedAt || state.elsewhere || user !== state.user || page === PAGE) return;
      if (at > state.connectedAt || (at === state.connectedAt && page > PAGE)) waitElsewhere(ELSEWHERE_TAB);
    };
  }
  // Pages in two browsers (or devices) cannot tell each other: mosquitto
  // 2.0.11 closes the connection it gives to the other page without saying
  // why (not even to an MQTT v5 client). What a page sees is its connection
  // ending, again and again, each time soon after it was made, while each
  // reconnect gets in at once (a network drop or a broker restart makes
  // reconnects fail, which ends the count). The page that had the
  // connection is the first taken from: its long connection counts one,
  // and at its third in a row it steps aside, a turn before the newer
  // page would (a page alone on a flapping network needs two short
  // connections after a long one, as before). The page the user has just
  // made the one (signed in, or "Use here") starts its count one behind,
  // so that it keeps the connection even when the turns fall unevenly.
  // (Until 2026-12-06 a long connection counted nothing and the newer page
  // was kept by a 6 s grace instead: on a loaded machine, with slow turns,
  // the grace could run out first and the newer page step aside.)
  const TAKEN_MS = 5000; // a connection that ended sooner may have been taken
  const TAKEN_IN_A_ROW = 3;
  const CLAIMED = -1; // the count of a page the user has just made the one
  function connectionEnded() {
    if (!state.up) {
      state.takenInARow = 0; // an attempt that failed: the network or the broker, not another page
      return;
    }
    state.up = false;
    state.takenInARow = Date.now() - state.connectedAt < TAKEN_MS ? state.takenInARow + 1 : 1;
    if (state.takenInARow >= TAKEN_IN_A_ROW && !state.elsewhere) {
      waitElsewhere(ELSEWHERE_BROWSER);
    }
  }
  function waitElsewhere(why) {
    state.elsewhere = true;
    state.seq.mqtt.end(true);
    setStatus(why, 'offline');
    $('here').hidden = false;
  }
  $('here').addEventListener('click', () => {
    state.elsewhere = false;
    state.takenInARow = CLAIMED;
    $('here').hidden = true;
    setStatus('connecting', '');
    state.seq.mqtt.reconnect();
  });

  function join(user, password, room) {
    state.user = user;
    state.room = room;
    $('signin').hidden = true;
    $('chat').hidden = false;
    $('me').textContent = user;
    $('where').textContent = room;
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
    // The shipped broker names each connection after its user
    // (use_username_as_clientid), so the replies come on relay/replay/<user>.
    const seq = seqrelay.connect(url, {
      username: user,
      password: password || undefined,
      clientId: user,
      reconnectPeriod: 1000,
      connectTimeout: 5000,
    });
    state.seq = seq;
    state.takenInARow = CLAIMED;
    seq.mqtt.on('connect', () => {
      setStatus('online', 'online');
      // Pages of this browser learn that this one has the user's connection.
      state.up = true;
      state.connectedAt = Date.now();
      pages?.postMessage({ user, page: PAGE, at: state.connectedAt });
    });
    seq.mqtt.on('close', connectionEnded);
    seq.mqtt.on('offline', () => {
      if (!state.elsewhere) setStatus('offline, reconnecting', 'offline');
    });
    seq.mqtt.on('error', (e) => setStatus(`error: ${e.message}`, 'offline'));
    const sub = seq.subscribe(room, { history: true });
    sub.on('message', (m) => {
      show(m);
      showStats();
    });
    for (const kind of ['fetch', 'filled', 'lost', 'history']) sub.on(kind, (e) => state.events.push({ kind, ...e }));
    sub.on('fetch', (e) => {
      state.fetching = e;
      notice(e.to === null ? 'fetching missed messages…' : `fetching ${e.to - e.from + 1} missed messages…`);
    });
    sub.on('filled', () => {
      state.fetching = null;
      notice('');
    });
    sub.on('history', (e) => {
      if (e.first > 1) notice(`history starts at #${e.first}`);
    });
    sub.on('lost', (e) => {
      if (e.to === null) notice(`missed messages could not be fetched (${e.reason})`);
      else notice(e.from ? `#${e.from}..#${e.to} could not be fetched (${e.reason})` : `history unavailable (${e.reason})`);
    });
    seq.on('badframe', showStats);
    const timer = setInterval(showStats, 1000);
    window.addEventListener('pagehide', () => clearInterval(timer));
  }

  // What the client would refuse once the chat view is open, said on the
  // form instead: [field, why] or null.
  function signInProblem(user, room) {
    if (!user) return ['user', 'a user name is needed'];
    if (/[+#/]/.test(user)) return ['user', "a user name holds no '+', '#' or '/'"];
    if (!room) return ['room', 'a room is needed'];
    if (/[+#]/.test(room)) return ['room', "a room is one topic: no '+' or '#'"];
    return null;
  }
  $('signin').addEventListener('submit', (e) => {
    e.preventDefault();
    const user = $('user').value.trim();
    const room = $('room').value.trim();
    const problem = signInProblem(user, room);
    if (problem) {
      const input = $(problem[0]);
      input.setCustomValidity(problem[1]);
      input.reportValidity();
      input.addEventListener('input', () => input.setCustomValidity(''), { once: true });
      return;
    }
    join(user, $('password').value, room);
  });
  $('send').addEventListener('submit', (e) => {
    e.preventDefault();
    const text = $('text').value;
    if (!text || !state.seq) return;
    if (state.elsewhere) {
      notice('this page is not connected: "Use here" makes it the one');
      return;
    }
    state.seq.publish(state.room, JSON.stringify({ user: state.user, text })).catch((err) => notice(`not sent: ${err.message}`));
    $('text').value = '';
  });
  // ?user=alice&room=chat/room1 prefills the form.
  if (params.get('user')) $('user').value = params.get('user');
  if (params.get('room')) $('room').value = params.get('room');
})();
