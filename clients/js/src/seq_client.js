// SeqClient: the seqrelay client module on an mqtt.js client, in the browser
// (MQTT over WebSocket) or in Node (MQTT over TCP). The JavaScript twin of
// tools/client/seq_client.{h,cc}: same requests, same rules.
//
// It subscribes to <seq-prefix>/<filter>, decodes every frame, keeps one
// OrderedStream per topic id (in SEQ order, exactly once, duplicates
// dropped), and asks the relay for what is missing on
// <control-prefix>/retransmit/<requester>: a gap after `gapWait`, with
// retries and backoff; a truncated reply from its `next`; the history of a
// topic on join; everything after the last SEQ delivered after a reconnect.
// At most `maxOutstanding` requests are out at the relay at once; the rest
// wait their turn.
//
//   const seq = new SeqClient(mqtt.connect(url, { username: 'alice' }), { requester: 'alice' });
//   const room = seq.subscribe('chat/room1', { history: true });
//   room.on('message', (m) => console.log(m.seq, m.text));    // or: for await (const m of room)
//
// Frames that are not frames are counted (stats.badFrames) and reported as
// 'badframe' events; they never reach a message listener. A listener that
// throws does not disturb the stream; its error goes to the 'error' event
// (or, without an 'error' listener, surfaces asynchronously). So does a
// subscription the broker refuses on the first connection (its ACL does not
// let this user read the topic); on a reconnect a refusal is only counted
// (stats.subscribeErrors, stats.lastSubscribeError), as the C++ client does.
//
// Everything runs on the JavaScript event loop: no locking, and every
// listener is called from the mqtt.js 'message' handler or the client's timer.

import { Emitter } from './emitter.js';
import { decodeFrame, FrameError, MAX_SEQ } from './frame.js';
import { OrderedStream } from './ordered_stream.js';

// A lookup asks from the highest SEQ there can be: the relay answers with no
// frames, and the status says the topic's id and newest SEQ.
const LOOKUP_FROM = MAX_SEQ;
// The `to` of an open-ended request, until its status names the newest SEQ.
const OPEN_END = Infinity;
// How often the timer looks at open gaps and outstanding requests.
const TICK_MS = 25;
// Every timeout here runs on a monotonic clock, as in the C++ and Python
// clients: the wall clock steps (an NTP correction, a machine resumed), and
// a step back held every retry and give-up for as long (until 2026-12-07).
const monotonicMs = () => performance.now();

// v1 relays have no `code`: these error texts mean the same request can never succeed.
const FINAL_ERRORS = new Set(['unknown topic', 'unknown id', 'forbidden']);

// Why a resume at `start` past the topic's newest SEQ `last` is given up:
// the same words in the three client libraries.
// The fields of a status and the types the protocol gives them (PROTOCOL 3
// and 5): a status with any of them of another type is not the relay's.
const STATUS_FIELDS = {
  ...Object.fromEntries(['id', 'from', 'to', 'sent', 'last', 'first', 'next'].map((key) => [key, 'count'])),
  ...Object.fromEntries(['status', 'error', 'code', 'topic'].map((key) => [key, 'string'])),
  ...Object.fromEntries(['retry', 'truncated'].map((key) => [key, 'boolean'])),
};

/** Why the status `s` is not of the protocol's shape, or null (as the Python client's). */
function statusShapeError(s) {
  for (const [key, kind] of Object.entries(STATUS_FIELDS)) {
    if (!Object.hasOwn(s, key)) continue;
    const value = s[key];
    if (kind === 'count' ? !(Number.isSafeInteger(value) && value >= 0) : typeof value !== kind) {
      return kind === 'count' ? `'${key}' is not a non-negative integer` : `'${key}' is not a ${kind}`;
    }
  }
  if (s.status === 'ok') {
    // Every ok status names the topic's id and newest SEQ (PROTOCOL 3).
    for (const key of ['id', 'last']) if (!Object.hasOwn(s, key)) return `an ok status without '${key}'`;
  }
  return null;
}

const resetReason = (start, last) => `resumed at ${start}, past the topic's newest SEQ ${last}: its history began again`;

// A SUBACK code from 0x80 on refuses the subscription: 0x80 on MQTT 3.1.1, a
// reason code on v5 (mosquitto's dynamic security plugin answers so for a
// topic the user may not read; an acl_file never refuses a SUBSCRIBE).
const SUBACK_REFUSED = 0x80;
// The same words in the three client libraries.
const refusedReason = (topic, code) =>
  `the broker refused the subscription to '${topic}' (SUBACK ${code}): its ACL does not let this user read it?`;

const decoder = new TextDecoder();

/** One delivered message. */
export class SeqMessage {
  constructor(topic, topicId, seq, ordered, late, payload) {
    this.topic = topic; // the raw topic T (without the seq/ prefix)
    this.topicId = topicId; // the frame's topic id
    this.seq = seq; // 1..2^40-1
    this.ordered = ordered; // the topic's ordering flag
    this.late = late; // immediate topics: filled a gap after later frames were shown
    this.payload = payload; // Uint8Array: the publisher's bytes, unchanged
  }

  /** The payload as UTF-8 text. */
  get text() {
    return decoder.decode(this.payload);
  }
}

/**
 * The requester a connection gets by default (its replies' topic):
 * `U/C` (PROTOCOL 5.4) when it has a username U and another client id C,
 * which the shipped ACL allows whatever the broker does with client ids;
 * else the username or the client id (with the shipped broker's
 * use_username_as_clientid the two are the same).
 */
export function defaultRequester(clientId, username) {
  if (username && clientId && clientId !== username) return `${username}/${clientId}`;
  return username || clientId || undefined;
}

/** MQTT topic filter matching ('+' one level, '#' the rest). */
export function topicMatches(filter, topic) {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; ++i) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/**
 * What one subscribe() call receives: messages and gap events of the
 * topics its filter matches. A callback API (on('message')) and an async
 * iterator (for await ... of); an iterator buffers only while it exists.
 */
export class Subscription extends Emitter {
  #client;
  #iterators = new Set(); // each live iterator's end, called when the subscription ends
  closed = false;

  #maxBuffered;

  constructor(client, filter, maxBuffered) {
    super();
    this.#client = client;
    this.filter = filter;
    this.#maxBuffered = maxBuffered;
  }

  onListenerError(error, event) {
    this.#client.onListenerError(error, event);
  }

  /** Stops this subscription (its iterators end). The MQTT subscription is dropped too. */
  unsubscribe() {
    if (this.closed) return;
    this.closed = true;
    this.#client._unsubscribe(this);
    for (const end of this.#iterators) end();
  }

  [Symbol.asyncIterator]() {
    const queue = []; // messages not read yet: queue[head] is the next
    let head = 0;
    const waiting = []; // the resolvers of next() calls that found nothing to read, in call order
    let ended = false; // return() was called: nothing more is read
    const endWaiting = () => {
      for (const resolve of waiting.splice(0)) resolve({ value: undefined, done: true });
    };
    const onMessage = (m) => {
      if (waiting.length > 0) {
        waiting.shift()({ value: m, done: false }); // nothing queued while a reader waits
        return;
      }
      if (queue.length - head >= this.#maxBuffered) {
        // A reader this far behind: the oldest goes, not the memory.
        queue[head++] = undefined;
        ++this.#client.stats.unreadDropped;
      }
      queue.push(m);
      if (head >= 1024 && head * 2 >= queue.length) {
        queue.splice(0, head); // what was read (or dropped) leaves the array
        head = 0;
      }
    };
    const iterators = this.#iterators;
    // The subscription ended: readers waiting are done (what is queued is
    // still read, then done).
    const onClosed = () => {
      this.off('message', onMessage);
      iterators.delete(onClosed);
      endWaiting();
    };
    this.on('message', onMessage);
    iterators.add(onClosed);
    return {
      next: async () => {
        if (!ended && head < queue.length) {
          const value = queue[head];
          queue[head++] = undefined;
          if (head === queue.length) {
            queue.length = 0;
            head = 0;
          }
          return { value, done: false };
        }
        if (ended || this.closed) {
          onClosed();
          return { value: undefined, done: true };
        }
        return new Promise((resolve) => waiting.push(resolve));
      },
      return: async () => {
        ended = true;
        queue.length = 0;
        head = 0;
        onClosed();
        return { value: undefined, done: true };
      },
      [Symbol.asyncIterator]() {
        return this;
      },
    };
  }
}

const DAY_MS = 86_400_000;
const LONE_SURROGATE = /[\uD800-\uDFFF]/u; // no UTF-8 for it: encoded as U+FFFD, never matched again

/**
 * What is wrong with a topic filter as MQTT takes it (null if nothing):
 * '#' alone in the last level, '+' alone in its level, no NUL, valid UTF-8,
 * at most 65535 bytes. The relay's rule (relay/core/topic_filter.cc), and
 * the C++ and Python clients'.
 */
export function filterError(filter) {
  if (typeof filter !== 'string' || filter === '') return 'a topic filter is a non-empty string';
  if (filter.includes('\0')) return `topic filter '${filter}' contains a NUL`;
  if (LONE_SURROGATE.test(filter)) return `topic filter '${filter}' is not valid UTF-8`;
  if (new TextEncoder().encode(filter).length > 65535) return 'topic filter longer than 65535 bytes';
  const levels = filter.split('/');
  if (levels.some((l, i) => (l === '#' ? i < levels.length - 1 : l !== '+' && /[+#]/.test(l)))) {
    return `'+' and '#' must fill a whole level, '#' the last, in topic filter '${filter}'`;
  }
  return null;
}

function checkPrefix(name, prefix) {
  if (typeof prefix !== 'string' || prefix === '' || /[+#\0]/.test(prefix) || prefix.startsWith('/') ||
      prefix.endsWith('/') || LONE_SURROGATE.test(prefix)) {
    throw new Error(`${name} '${prefix}' must be a plain topic prefix: UTF-8, no '+', '#' or NUL, no leading or trailing '/'`);
  }
}

function checkMs(name, value, min, inclusive) {
  if (!(Number.isFinite(value) && (inclusive ? value >= min : value > min) && value <= DAY_MS)) {
    throw new RangeError(`${name} is milliseconds, ${inclusive ? 'from' : 'more than'} ${min} to 24 h (${DAY_MS}); got ${value}`);
  }
}

export class SeqClient extends Emitter {
  /**
   * @param mqttClient an mqtt.js MqttClient (connected or not). The caller
   *   keeps owning it: close() detaches, it does not end it.
   * @param options see index.d.ts (SeqClientOptions)
   */
  constructor(mqttClient, options = {}) {
    super();
    this.mqtt = mqttClient;
    this.requester =
      options.requester ?? defaultRequester(mqttClient.options?.clientId, mqttClient.options?.username);
    if (!this.requester) throw new Error('a requester (the client id the broker knows) is required');
    // 'U/C' (a username and one level more) is PROTOCOL 5.4's per-user form.
    if (/[+#]/.test(this.requester)) throw new Error(`requester '${this.requester}' holds a wildcard`);
    if (/\0/.test(this.requester) || LONE_SURROGATE.test(this.requester)) {
      throw new Error(`requester '${this.requester}' is not valid UTF-8 without NUL`);
    }
    const levels = this.requester.split('/');
    if (levels.length > 2 || levels.includes('')) {
      throw new Error(`requester '${this.requester}' is not R or U/C (PROTOCOL 3 and 5.4: one or two non-empty levels)`);
    }
    this.seqPrefix = options.seqPrefix ?? 'seq';
    this.controlPrefix = options.controlPrefix ?? 'relay';
    this.qos = options.qos ?? 1;
    this.gapWait = options.gapWait ?? 200;
    // Per request, doubled on each retry; it runs from the request's sending,
    // restarted by replies to it and to requests sent before it (#heard).
    this.replyTimeout = options.replyTimeout ?? 2000;
    this.maxAttempts = options.maxAttempts ?? 5; // requests per gap before it is reported lost
    // Requests (ranges and lookups) out at the relay at once, at most. The
    // relay holds at most 16 of a user waiting and refuses more `busy`; 8
    // leaves room for a second connection of the same user, and keeps this
    // client's own requests from being refused.
    this.maxOutstanding = options.maxOutstanding ?? 8;
    if (!Number.isInteger(this.maxOutstanding) || this.maxOutstanding < 1) throw new RangeError('maxOutstanding is a count >= 1');
    // Per topic, what may wait behind its gaps (its stream's heldBytes: an
    // ordered topic's payloads and ENTRY_BYTES a frame for the record, an
    // immediate topic's records of the SEQs shown) or, while its lookup is
    // out, its live frames (each frame's bytes and the same ENTRY_BYTES). A
    // relay that answers `busy` for long, which is never a failed attempt,
    // would otherwise have the client hold every frame that comes
    // meanwhile. Past it, held frames are dropped, the newest but one first
    // (the newest stays): the relay has them, and they are asked for again
    // in turn, as a gap; a lookup's held live frames are dropped the last
    // come first, never the one of the highest SEQ, which shows them as a
    // gap once the lookup is answered (stats.framesShed counts them). An
    // immediate topic's records cannot be dropped (a frame would be shown
    // twice): its oldest gap is given up instead ('lost'). 0: no bound.
    this.maxHeldBytes = options.maxHeldBytes ?? 64 * 1024 * 1024;
    if (!Number.isSafeInteger(this.maxHeldBytes) || this.maxHeldBytes < 0) {
      throw new RangeError(`maxHeldBytes is a count of bytes >= 0 (0: no bound); got ${this.maxHeldBytes}`);
    }
    // What would subscribe to nothing, ask on the wrong topics or wait for
    // ever is refused here, as the C++ client's CheckOptions does.
    checkPrefix('seqPrefix', this.seqPrefix);
    checkPrefix('controlPrefix', this.controlPrefix);
    if (![0, 1, 2].includes(this.qos)) throw new RangeError(`qos is 0, 1 or 2; got ${this.qos}`);
    checkMs('gapWait', this.gapWait, 0, true);
    checkMs('replyTimeout', this.replyTimeout, 0, false);
    if (!Number.isInteger(this.maxAttempts) || this.maxAttempts < 1) throw new RangeError('maxAttempts is a count >= 1');
    // Test hook: live frames for which this returns true are dropped as if
    // the network had lost them (replayed frames never are).
    this.dropLiveFrame = options.dropLiveFrame ?? null;
    this.requestTopic = `${this.controlPrefix}/retransmit/${this.requester}`;
    this.replyTopic = `${this.controlPrefix}/replay/${this.requester}`;

    // Every counter starts at 0 and only grows.
    this.stats = {
      delivered: 0,
      duplicates: 0,
      requests: 0, // retransmit and lookup requests sent
      gapsFilled: 0, // requests whose every SEQ was delivered
      gapsLost: 0, // ranges given up (reported as 'lost')
      badFrames: 0,
      listenerErrors: 0,
      unreadDropped: 0, // messages an iterator dropped, its maxBuffered unread already
      // Subscriptions (seq/<filter>, the reply topic) the broker refused in a
      // SUBACK; on the first connection each is an 'error' event too.
      subscribeErrors: 0,
      lastSubscribeError: '', // the last of them: which topic, which code
      // Held frames dropped to stay within maxHeldBytes, each asked for
      // again later (not lost).
      framesShed: 0,
    };
    // What waits behind gaps and lookups now, over all topics, as
    // maxHeldBytes counts it per topic: a gauge, not a counter, so counted
    // when read (as the C++ client's stats()).
    Object.defineProperty(this.stats, 'heldBytes', { enumerable: true, get: () => this.#heldBytes() });
    this.topics = new Map(); // topic id -> per-topic state (see #topic)
    this.ids = new Map(); // topic name -> topic id, for every entry of topics
    this.lookups = new Map(); // topic name -> {start, sentSeq, waitFrom, attempts}: joining at history or a given SEQ
    // Topic name -> {frames, bytes}: the live frames that came while its
    // lookup was out, and what they hold (as maxHeldBytes counts it).
    this.heldLive = new Map();
    this.startAt = new Map(); // topic name -> first SEQ wanted, for topics the relay had no message of yet
    // Of those, the ones whose lookup went unanswered (#giveUpLookup): a quiet
    // topic sends no live frame to start it, so they are looked up again
    // every 16 reply timeouts (#tick), and at the next reconnect.
    this.unansweredStarts = new Set();
    this.keptLookupsAt = 0;
    this.subscriptions = new Set();
    this.connects = 0; // CONNACKs seen; above 1 means a reconnect
    // SUBSCRIBEs sent and not acknowledged yet: packet id -> their topics, in
    // the order of the SUBACK's codes. Every SUBSCRIBE of the connection is
    // seen, mqtt.js's own resubscription after a reconnect too (our own
    // subscribe() of a topic it has subscribed sends nothing). An entry whose
    // connection ended is replaced when its id is used again: at most 65535.
    this.subscribing = new Map();
    // Requests sent (#request): each sending gets the next number, its
    // sentSeq, so that the order in which the relay serves them is known
    // (see #heard).
    this.sends = 0;
    // The requests out at the relay and not answered yet: topic states with
    // a range sent (t.asked, not t.queued) and lookups sent (an entry of
    // lookups with sentSeq != 0). At most maxOutstanding; #pump drops those
    // answered, given up or forgotten, and sends what waits.
    this.inFlight = new Set();
    // Requests made and not sent yet, in the order they were made: topic
    // states with t.queued, and lookups with sentSeq = 0.
    this.waiting = new Set();
    // `busy` (PROTOCOL 5.3): nothing waiting is sent before busyUntil
    // (monotonicMs(); 0 = no pause). busyRounds: pauses since the relay last
    // served this client (a frame or an ok status), each twice the one before.
    this.busyUntil = 0;
    this.busyRounds = 0;
    this.closed = false;

    this.onConnect = () => this.#onConnect();
    this.onMessage = (topic, payload) => this.#onMessage(topic, payload);
    this.onPacketSend = (packet) => {
      if (packet.cmd === 'subscribe') this.subscribing.set(packet.messageId, packet.subscriptions.map((s) => s.topic));
    };
    this.onPacketReceive = (packet) => {
      if (packet.cmd === 'suback') this.#onSuback(packet);
    };
    mqttClient.on('connect', this.onConnect);
    mqttClient.on('message', this.onMessage);
    mqttClient.on('packetsend', this.onPacketSend);
    mqttClient.on('packetreceive', this.onPacketReceive);
    this.timer = setInterval(() => this.#tick(), TICK_MS);
    this.timer.unref?.(); // a Node process may exit with the client still open
    if (mqttClient.connected) this.#onConnect();
  }

  /**
   * Subscribes to the sequenced form of `filter` (a raw topic or filter).
   * options.history: true reads the topic from SEQ 1 first; options.from: N
   * resumes at SEQ N; options.last: N starts N messages back. Those three
   * need a topic without wildcards. Without them, delivery starts at the
   * first frame that comes.
   * @returns {Subscription}
   */
  subscribe(filter, options = {}, onMessage = undefined) {
    if (this.closed) throw new Error('the client is closed');
    const bad = filterError(filter);
    if (bad) throw (typeof filter !== 'string' || filter === '' ? new TypeError(bad) : new Error(bad));
    // PROTOCOL 1: a longer topic is never sequenced, so nothing would come.
    const size = new TextEncoder().encode(filter).length;
    if (!/[+#]/.test(filter) && size > 255) {
      throw new Error(`topic '${filter.slice(0, 40)}...' is ${size} bytes: the relay sequences topics of at most 255 bytes`);
    }
    if ((options.from !== undefined) + (options.last !== undefined) + Boolean(options.history) > 1) {
      throw new Error('give only one of history, from, last');
    }
    let start = null;
    if (options.from !== undefined) {
      if (!Number.isInteger(options.from) || options.from < 1 || options.from > MAX_SEQ) {
        throw new RangeError(`from is a SEQ, 1 to ${MAX_SEQ}`);
      }
      start = options.from;
    } else if (options.last !== undefined) {
      if (!Number.isInteger(options.last) || options.last < 1 || options.last > MAX_SEQ) {
        throw new RangeError(`last is a count, 1 to ${MAX_SEQ}`);
      }
      start = -options.last; // resolved once the lookup says the newest SEQ
    } else if (options.history) {
      start = 1;
    }
    const maxBuffered = options.maxBuffered ?? 100000;
    if (!Number.isInteger(maxBuffered) || maxBuffered < 1) throw new RangeError('maxBuffered is a count >= 1');
    if (start !== null) {
      if (/[+#]/.test(filter)) throw new Error(`history and resume need a topic without '+' or '#': '${filter}'`);
      // Its stream has a position already: history below it would be dropped as duplicates.
      // So has a topic with a start kept (a lookup given up unanswered, or a topic the relay
      // had no message of): a second lookup would replace that start, and its answer drop
      // it, so the first subscription's SEQs below the new start would be neither delivered
      // nor reported (until 2026-12-07 it was taken).
      if (this.ids.has(filter) || this.lookups.has(filter) || this.startAt.has(filter)) {
        throw new Error(`'${filter}' is followed already: history and resume apply to a topic's first subscription (unsubscribe every subscription that matches it first)`);
      }
      // Set before the SUBSCRIBE: a live frame that came first would start
      // the topic's stream there, and the history below it would be dropped.
      this.lookups.set(filter, { name: filter, start, sentSeq: 0, waitFrom: 0, attempts: 0 });
    }
    const sub = new Subscription(this, filter, maxBuffered);
    if (onMessage) sub.on('message', onMessage);
    this.subscriptions.add(sub);
    if (this.mqtt.connected) {
      this.mqtt.subscribe(`${this.seqPrefix}/${filter}`, { qos: this.qos });
      if (start !== null) this.#ask(this.lookups.get(filter));
    }
    return sub;
  }

  /** Publishes a raw message (what the relay sequences); mqtt.js's publishAsync. */
  publish(topic, message, options = { qos: 1 }) {
    return this.mqtt.publishAsync(topic, message, options);
  }

  /**
   * The last SEQ delivered (or given up) of `topic`: where to resume later with from: n + 1. 0 = none.
   * A topic not started yet (its lookup out, or given up with its start kept) says where it starts.
   */
  position(topic) {
    const id = this.ids.get(topic);
    if (id !== undefined && this.topics.has(id)) return Math.max(0, this.topics.get(id).stream.next - 1);
    // Until 2026-12-07 such a topic said 0: an app that saved it at exit
    // asked for the whole history at its next start.
    const start = this.lookups.get(topic)?.start || this.startAt.get(topic) || 0;
    return Math.max(0, start - 1);
  }

  /** Detaches from the mqtt.js client and stops the timer. Idempotent. */
  close() {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.mqtt.off('connect', this.onConnect);
    this.mqtt.off('message', this.onMessage);
    this.mqtt.off('packetsend', this.onPacketSend);
    this.mqtt.off('packetreceive', this.onPacketReceive);
    for (const sub of [...this.subscriptions]) sub.unsubscribe();
  }

  onListenerError(error, event) {
    ++this.stats.listenerErrors;
    // An 'error' listener that throws surfaces as unhandled: sent back to
    // 'error', it would recurse until the stack ran out.
    if (event !== 'error' && this.listenerCount('error') > 0) this.emit('error', error);
    else super.onListenerError(error);
  }

  _unsubscribe(sub) {
    this.subscriptions.delete(sub);
    const stillWanted = [...this.subscriptions].some((s) => s.filter === sub.filter);
    // Offline too: mqtt.js would subscribe again at the next connect to
    // every filter it was not told to drop (and sends the UNSUBSCRIBE then).
    if (!stillWanted && !this.closed) this.mqtt.unsubscribe(`${this.seqPrefix}/${sub.filter}`);
    // Topics no subscription matches any more are forgotten: a reconnect
    // asks nothing for them, and a later subscribe starts afresh.
    for (const [id, t] of this.topics) {
      if (!this.#wanted(t.name)) {
        this.topics.delete(id);
        this.ids.delete(t.name);
      }
    }
    for (const map of [this.lookups, this.heldLive, this.startAt]) {
      for (const name of [...map.keys()]) if (!this.#wanted(name)) map.delete(name);
    }
    for (const name of [...this.unansweredStarts]) if (!this.#wanted(name)) this.unansweredStarts.delete(name);
    if (!this.closed && this.mqtt.connected) this.#pump(); // their places go to requests waiting
  }

  // True if a subscription's filter matches `topic`.
  #wanted(topic) {
    for (const s of this.subscriptions) if (topicMatches(s.filter, topic)) return true;
    return false;
  }

  #onConnect() {
    ++this.connects;
    // Node over TCP: Nagle's algorithm off, as the C++ client does
    // (MOSQ_OPT_TCP_NODELAY); a small publish could otherwise wait for the
    // delayed ACK of the previous one. Browsers decide this themselves.
    this.mqtt.stream?.setNoDelay?.(true);
    // Our own SUBSCRIBEs on every CONNACK (mqtt.js may resubscribe too; a
    // second SUBSCRIBE changes nothing): they must reach the broker before
    // the requests below, and the replies' topic before any request. The
    // topics first, as the C++ client does: a broker that refuses both
    // reports the topic first.
    const filters = new Set([...this.subscriptions].map((s) => s.filter));
    for (const f of filters) this.mqtt.subscribe(`${this.seqPrefix}/${f}`, { qos: this.qos });
    this.mqtt.subscribe(`${this.replyTopic}/#`, { qos: 1 });
    for (const lookup of this.lookups.values()) if (lookup.sentSeq === 0) this.#ask(lookup);
    // After a reconnect: what was published while away is missed, and
    // without a later frame no gap would show.
    if (this.connects > 1) this.#catchUp();
  }

  // A SUBACK: a refused subscription of ours (a seq/ topic a subscription
  // wants, or the replies') would deliver nothing, and say nothing. Counted;
  // on the first connection an error too (the C++ client's Start fails).
  #onSuback(packet) {
    const topics = this.subscribing.get(packet.messageId);
    if (!topics) return;
    this.subscribing.delete(packet.messageId);
    const granted = packet.granted ?? [];
    topics.forEach((topic, i) => {
      const code = granted[i];
      if (typeof code !== 'number' || code < SUBACK_REFUSED || !this.#ours(topic)) return;
      const why = refusedReason(topic, code);
      ++this.stats.subscribeErrors;
      this.stats.lastSubscribeError = why;
      if (this.connects > 1) return;
      const error = new Error(why);
      if (this.listenerCount('error') > 0) this.emit('error', error);
      else super.onListenerError(error); // unhandled: thrown on a later turn, as a listener's error is
    });
  }

  // True if `topic` is one this client subscribes to.
  #ours(topic) {
    if (topic === `${this.replyTopic}/#`) return true;
    if (!topic.startsWith(`${this.seqPrefix}/`)) return false;
    const filter = topic.slice(this.seqPrefix.length + 1);
    for (const s of this.subscriptions) if (s.filter === filter) return true;
    return false;
  }

  #onMessage(topic, payload) {
    if (topic === `${this.replyTopic}/status`) {
      this.#handleStatus(payload);
    } else if (topic === this.replyTopic) {
      this.#handleFrame(null, payload, true);
    } else if (topic.startsWith(`${this.seqPrefix}/`)) {
      this.#handleFrame(topic.slice(this.seqPrefix.length + 1), payload, false);
    } else {
      return; // the application's own subscription
    }
    this.#pump(); // a request answered or done: its place goes to the next waiting
  }

  #badFrame(topic, reason) {
    ++this.stats.badFrames;
    this.emit('badframe', { topic, reason });
  }

  #handleFrame(name, bytes, replayed) {
    let frame;
    try {
      frame = decodeFrame(bytes);
    } catch (error) {
      if (!(error instanceof FrameError)) throw error;
      this.#badFrame(replayed ? this.replyTopic : `${this.seqPrefix}/${name}`, error.reason);
      return;
    }
    if (replayed) this.busyRounds = 0; // the relay is serving this client
    if (!replayed && this.dropLiveFrame?.(name, frame.seq)) return;
    let t = this.topics.get(frame.topicId);
    if (!t) {
      // A replayed frame of an unknown id was not asked for; a live frame
      // of a topic being looked up waits for the answer.
      if (replayed) return;
      if (this.lookups.has(name)) {
        this.#holdLive(name, bytes);
        return;
      }
      // A frame of a topic unsubscribed from, still on its way: not a new topic.
      if (!this.#wanted(name)) return;
      // A start kept from a lookup the relay did not answer, and a live
      // frame below it: an old frame sent again (a relay's restart), or one
      // of a database since reset, whose SEQs below the start would all be
      // dropped as duplicates, saying nothing. Only the relay can tell: the
      // frame waits for a lookup, asked now, once (given up, the topic
      // starts at the kept start, as it did for every frame until
      // 2026-12-07).
      const kept = this.startAt.get(name);
      if (kept > frame.seq && this.unansweredStarts.has(name)) {
        this.unansweredStarts.delete(name);
        const lookup = { name, start: kept, sentSeq: 0, waitFrom: 0, attempts: 0, again: true, check: true };
        this.lookups.set(name, lookup);
        this.#holdLive(name, bytes);
        this.#ask(lookup);
        return;
      }
      // A topic keeps its id for the life of the database (PROTOCOL 2).
      if (this.ids.has(name)) {
        this.#badFrame(`${this.seqPrefix}/${name}`, `'${name}' is topic id ${this.ids.get(name)}, not ${frame.topicId}`);
        return;
      }
      t = this.#topic(frame.topicId, name, this.startAt.get(name) ?? 0);
      this.startAt.delete(name);
      this.unansweredStarts.delete(name);
    } else if (!replayed && t.name !== name) {
      this.#badFrame(`${this.seqPrefix}/${name}`, `topic id ${frame.topicId} is '${t.name}', not '${name}'`);
      return;
    }
    if (replayed && this.#isOut(t)) this.#heard(t); // before the frame may complete the request
    t.ordered = frame.ordered;
    // A copy: mqtt.js may hand out views into a larger buffer.
    const payload = Uint8Array.prototype.slice.call(frame.payload);
    const { deliveries, duplicate } = t.stream.offer(frame.seq, frame.ordered, payload);
    if (duplicate) ++this.stats.duplicates;
    this.#deliver(t, deliveries);
    this.#boundHeld(t);
  }

  // Keeps `t` within maxHeldBytes: sheds held frames, or (immediate) gives
  // up its oldest gaps.
  #boundHeld(t) {
    const bound = this.maxHeldBytes;
    // (A topic forgotten during its delivery, a listener having unsubscribed, is left as it is.)
    if (bound === 0 || t.stream.heldBytes <= bound || this.topics.get(t.id) !== t) return;
    if (t.ordered) {
      // The relay has an ordered topic's frames: those dropped are asked for
      // again in turn, and nothing is lost however long it stays busy. (Over
      // still only by one frame bigger than the bound.)
      const shed = t.stream.shed(bound).length;
      this.stats.framesShed += shed;
      t.shed = t.shed || shed > 0;
      return;
    }
    // An immediate topic's records of frames shown (never shed, nor walked):
    // the oldest gaps given up. Each turn moves next on: the asked range
    // given up (then the gap above it, if the range ended below it), or the
    // gap itself. A topic forgotten in a 'lost' listener (it unsubscribed) is
    // left as it is.
    while (t.stream.heldBytes > bound && t.stream.gap() && this.topics.get(t.id) === t) {
      const reason = `${t.stream.heldBytes} bytes held behind the gap, over max_held_bytes`;
      if (t.asked) {
        this.#abandon(t, reason);
      } else {
        const gap = t.stream.gap();
        this.#lose(t, gap.from, gap.to, reason);
      }
    }
  }

  // stats.heldBytes: every topic's stream's, and the live frames held for lookups.
  #heldBytes() {
    let bytes = 0;
    for (const t of this.topics.values()) bytes += t.stream.heldBytes;
    for (const held of this.heldLive.values()) bytes += held.bytes;
    return bytes;
  }

  #topic(id, name, start) {
    const t = {
      id,
      name,
      ordered: true,
      stream: new OrderedStream(start),
      asked: null, // the outstanding request {from, to}; to may be OPEN_END
      askedOn: 0, // this.connects when it was last sent: one sent before a reconnect may have lost frames
      sentSeq: 0, // this.sends when it was last sent (see #heard)
      waitFrom: 0, // when its reply timeout started: its last sending, or a reply since (see #heard)
      attempts: 0, // requests sent for it
      gapSeen: 0, // when the current gap was first seen; 0 = no gap
      catchUpOwed: false, // a reconnect came while a request was out: ask for what came meanwhile after it
      shed: false, // frames of it were shed (maxHeldBytes) since it last had no gap: a forged frame forgotten above them may leave them in no gap
      queued: false, // t.asked waits to be sent (in waiting), behind maxOutstanding others or a busy pause
      refusal: null, // the outstanding request's last status with retry: true, if any
      sent: null, // the range last asked for {from, to}, and stream.arrivals when it first was
      // Statuses of that range not come yet, one a send: the relay answers
      // each request, in order, so while more than one is due, a status of
      // the range is an earlier send's, not the last one's (or the last
      // one's after an earlier one was lost: a relay restarted, a reconnect).
      statusesDue: 0,
    };
    this.topics.set(id, t);
    this.ids.set(name, id);
    return t;
  }

  #deliver(t, deliveries) {
    for (const d of deliveries) {
      ++this.stats.delivered;
      this.#emitTopic('message', t.name, new SeqMessage(t.name, t.id, d.seq, t.ordered, d.late, d.payload));
    }
    // The request is done once every SEQ it asked for was delivered (or
    // given up): an empty hold-back set alone says nothing, because a
    // history request starts with nothing held.
    if (t.asked && t.stream.next > t.asked.to) {
      const { from, to } = t.asked;
      t.asked = null;
      t.attempts = 0;
      t.refusal = null;
      // Every fetch ends in `filled` or `lost`: a catch-up that found
      // nothing new in an empty one (to = from - 1), which fills no gap.
      if (to >= from) ++this.stats.gapsFilled;
      this.#emitTopic('filled', t.name, { topic: t.name, from, to: Math.max(to, from - 1) });
    }
    if (!t.stream.gap()) {
      t.gapSeen = 0;
      t.shed = false; // every SEQ shed below the newest has come (or was given up)
    }
  }

  // Emits on the client and on every subscription whose filter matches.
  #emitTopic(event, topic, value) {
    this.emit(event, value);
    for (const sub of this.subscriptions) {
      if (topicMatches(sub.filter, topic)) sub.emit(event, value);
    }
  }

  #handleStatus(bytes) {
    let s;
    try {
      s = JSON.parse(decoder.decode(bytes));
    } catch {
      return;
    }
    if (s === null || typeof s !== 'object' || Array.isArray(s)) return;
    const why = statusShapeError(s);
    if (why !== null) {
      this.#badFrame(`${this.replyTopic}/status`, `malformed status: ${why}`);
      return;
    }
    const ok = s.status === 'ok';
    if (ok) this.busyRounds = 0;

    if (s.from === LOOKUP_FROM && this.lookups.has(s.topic)) {
      this.#lookupAnswered(s, ok);
      return;
    }
    const t = this.topics.get(s.id);
    // A request waiting to be sent has nothing out at the relay to answer.
    if (!t || !t.asked || t.queued) return;
    // A status answers the outstanding request only if it names the same
    // range: the status of an earlier request can come after its frames
    // closed it and the timer asked for the next gap; taken as the answer
    // to the new one, it would give up SEQs that are on their way.
    if (s.from !== t.asked.from || (t.asked.to !== OPEN_END && s.to !== t.asked.to)) return;
    this.#heard(t);
    // The same range asked again (no status within the reply timeout): the
    // statuses of the earlier tries come first. One of them may give nothing
    // up, nor ask again (below): the last try's reply may bring what it did
    // not (until 2026-12-07 the first try's status, its frame dropped by the
    // broker, gave up the SEQ the last try's reply was bringing). What else
    // it says holds for the later tries too.
    const earlierTry = Boolean(t.sent) && t.sent.from === t.asked.from && t.sent.to === t.asked.to && t.statusesDue > 1;
    t.statusesDue = earlierTry ? t.statusesDue - 1 : 0;
    if (!ok && s.code === 'busy') {
      this.#refusedBusy(t);
      return;
    }
    // busy, unavailable, stopping, internal (PROTOCOL 5.3), and a v1 relay's
    // error without `retry` other than the final ones (as for lookups).
    const retry = !ok && (typeof s.retry === 'boolean' ? s.retry : !FINAL_ERRORS.has(s.error));
    if (retry) {
      // The timer asks again after the backoff; `stopping` says where to go on from.
      t.refusal = s;
      if (Number.isInteger(s.next) && s.next > t.asked.from) t.asked = { from: s.next, to: t.asked.to };
      return;
    }
    const last = ok && Number.isInteger(s.last) ? s.last : null;
    if (last !== null && t.sent && t.sent.from === t.asked.from && t.sent.to === t.asked.to) {
      // `last` is the topic's newest SEQ once the relay had the request. A
      // frame held since before the request was first sent, and above it,
      // was never stored by the relay: not its frame (a publisher on seq/
      // the broker should not let in). Forgotten, so that the SEQs below
      // it, which do not exist yet, are not given up for it. A frame that
      // came later may be newer than the reply: it stays.
      const seqs = t.stream.forget(last + 1, Infinity, t.sent.arrivals);
      if (seqs.length > 0) {
        // `seqs`: an immediate topic showed them already.
        this.stats.badFrames += seqs.length;
        // Frames shed below a forgotten one (maxHeldBytes) may be in no gap
        // now: a catch-up from next brings them, once this request is done.
        if (t.shed) {
          t.catchUpOwed = true;
          t.shed = false;
        }
        this.emit('badframe', {
          topic: `${this.seqPrefix}/${t.name}`, reason: `${seqs.length} frame(s) above SEQ ${last}, the newest the relay stored`, seqs,
        });
      }
    }
    if (t.asked.to === OPEN_END && Number.isInteger(s.to ?? s.last)) {
      // A catch-up learns its end: done if its frames came already.
      t.asked = { from: t.asked.from, to: s.to ?? s.last };
      if (t.stream.next > t.asked.to) {
        this.#deliver(t, []);
        return;
      }
      this.#emitTopic('fetch', t.name, { topic: t.name, from: t.asked.from, to: t.asked.to });
    }
    if (ok && Number.isInteger(s.first) && s.first > t.asked.from && s.first > t.stream.next) {
      // PROTOCOL 5.2: the relay deleted everything below `first`. Give it up
      // now, so delivery goes on from `first` (without waiting for the rest
      // of a truncated reply), and never ask for it again. What is left of
      // the request starts at `first`, or nothing is if it ended below.
      const first = s.first;
      t.asked = first <= t.asked.to ? { from: first, to: t.asked.to } : null;
      if (!t.asked) t.attempts = 0;
      this.#lose(t, t.stream.next, first - 1, `history starts at ${first}`);
      if (!t.asked) return; // done: the frames from `first` on came already, or none were asked for
    }
    // Sent before the latest reconnect: frames of the reply published while
    // the client was away never came (its session is clean), so what is
    // missing is no sign that the relay lacks it: asked for again.
    const stale = t.askedOn !== this.connects;
    if (ok && s.truncated === true && Number.isInteger(s.next)) {
      t.asked = { from: stale ? Math.min(s.next, t.stream.next) : s.next, to: t.asked.to };
      this.#requestRange(t);
      return;
    }
    if (t.asked.to === OPEN_END) {
      // A catch-up refused for good before its end was known: given up as
      // one never answered is (until 2026-12-06 it was dropped unreported).
      if (!ok) this.#abandon(t, s.error ?? 'refused', s);
      else t.asked = null; // an ok status without `to` or `last`: nothing to go by
      t.attempts = 0;
      return;
    }
    // Frames come before their status: whatever of the asked range is still
    // missing now, the relay does not have (an operator's purge), or the
    // broker dropped on the way (a reply larger than its queue for a slow
    // client: mosquitto's max_queued_messages, 1,000 by default). The relay
    // keeps no gaps of its own between `first` and `last`, so it is asked
    // for again, up to maxAttempts requests, before it is reported.
    const asked = t.asked;
    const attempts = t.attempts;
    const gap = t.stream.gap();
    t.asked = null;
    t.attempts = 0;
    let missingTo = asked.to;
    if (gap && gap.from <= asked.to) missingTo = Math.min(asked.to, gap.to);
    if (last !== null) missingTo = Math.min(missingTo, last); // nothing above it exists yet
    if (t.stream.next > missingTo) {
      // Everything asked for that exists came (the rest was above `last`;
      // all of it was: an empty `filled`, as for a catch-up).
      const to = Math.max(missingTo, asked.from - 1);
      if (to >= asked.from) ++this.stats.gapsFilled;
      this.#emitTopic('filled', t.name, { topic: t.name, from: asked.from, to });
      return;
    }
    if (earlierTry) {
      // The request stays out: the last try's status, or its timeout (an
      // earlier try's status lost leaves one due for good), decides.
      t.asked = asked;
      t.attempts = attempts;
      return;
    }
    if (ok && attempts < this.maxAttempts) {
      t.asked = { from: t.stream.next, to: missingTo };
      t.attempts = attempts + 1; // (reconnects that keep cutting replies short end in a report too)
      this.#emitTopic('fetch', t.name, { topic: t.name, from: t.asked.from, to: t.asked.to });
      this.#requestRange(t);
      return;
    }
    // The last reply says which: did the relay send every SEQ it was asked for?
    const top = last === null ? asked.to : Math.min(asked.to, last);
    const allSent = Number.isInteger(s.sent) && s.sent >= Math.max(0, top - asked.from + 1);
    const reason = !ok ? (s.error ?? 'refused')
      : allSent ? 'sent by the relay, not delivered by the broker' : 'the relay has no such SEQ';
    this.#lose(t, t.stream.next, missingTo, reason, ok ? undefined : s);
  }

  #lookupAnswered(s, ok) {
    const name = s.topic;
    const lookup = this.lookups.get(name);
    // A lookup waiting to be sent (again) has nothing out to answer: a busy
    // status for it is one delivered twice, and gives no attempt back.
    const out = this.#isOut(lookup);
    if (out) this.#heard(lookup);
    if (!ok && s.code === 'busy') {
      if (out) this.#refusedBusy(lookup);
      return;
    }
    if (!ok) {
      const retry = s.retry ?? !FINAL_ERRORS.has(s.error);
      if (s.code === 'unknown_topic' || s.error === 'unknown topic') {
        // Nothing was said yet: the first live frame must be SEQ 1. Nothing
        // is missing for the history or the last N of nothing; a resume from
        // a later SEQ (a position saved against a database since reset)
        // asked for SEQs that do not exist, and is told so.
        const resumed = lookup.start > 1;
        this.unansweredStarts.delete(name); // answered: it starts at its first live frame
        if (resumed) this.#emitTopic('lost', name, { topic: name, from: 0, to: 0, reason: s.error ?? 'unknown topic', code: s.code });
        this.#endLookup(name, lookup.again || resumed ? null : { topic: name, first: 1, last: 0 }, 1);
      } else if (!retry || lookup.attempts >= this.maxAttempts) {
        this.#giveUpLookup(name, lookup, { topic: name, from: 0, to: 0, reason: s.error ?? 'lookup failed', code: s.code }, !retry);
      }
      return; // else the timer asks again
    }
    const last = s.last;
    const first = Number.isInteger(s.first) ? s.first : 1; // a v1 relay deletes nothing
    let wanted = lookup.start < 0 ? Math.max(1, last + lookup.start + 1) : lookup.start;
    // The lookup ends before any event: a listener that unsubscribes from
    // the topic finds nothing of it left, and nothing is made of it after
    // (until 2026-12-07 an unsubscribe in the reset's `lost` left the topic
    // started, and caught up at reconnects, for nobody).
    this.lookups.delete(name);
    this.startAt.delete(name);
    this.unansweredStarts.delete(name);
    if (wanted > last + 1) {
      // A resume past the topic's newest SEQ (a position saved against a
      // database since reset): the SEQs up to it would be taken for ones
      // delivered before and dropped. The topic began again: told so, and
      // read from its oldest SEQ, as a topic the relay does not know is.
      this.#emitTopic('lost', name, { topic: name, from: 0, to: 0, reason: resetReason(wanted, last) });
      wanted = first;
      if (!this.#wanted(name)) return;
    }
    // PROTOCOL 5.2: what is older than `first` is gone; do not ask or wait for it.
    const start = Math.max(wanted, first);
    let t = this.topics.get(s.id);
    if (!t) t = this.#topic(s.id, name, start);
    if (!lookup.again) this.#emitTopic('history', name, { topic: name, first, last, start });
    if (wanted < first) this.#lose(t, wanted, first - 1, `history starts at ${first}`);
    if (!this.#wanted(name)) return; // a listener above unsubscribed: the topic is forgotten
    if (start <= last) {
      t.asked = { from: start, to: last };
      t.attempts = 1;
      this.#emitTopic('fetch', name, { topic: name, from: start, to: last });
      this.#ask(t);
    }
    this.#offerHeld(name);
  }

  // A lookup given up. Unanswered, its start known (a saved position,
  // history, a given SEQ): kept, so that the first live frame shows the
  // SEQs from it on as a gap, asked for by the frame's topic id as any
  // other, when the relay may answer again (until 2026-12-06 the topic
  // started at its first live frame, and a position saved then skipped the
  // SEQs below it for good). The last N, which needs the newest SEQ, and a
  // lookup `refused` for good (forbidden) are given up (`lost`). A lookup
  // again after a reconnect loses nothing by failing.
  #giveUpLookup(name, lookup, lost, refused = false) {
    if (lookup.check) { // the check of a live frame below a kept start: the start stands
      this.#endLookup(name, null, lookup.start);
      return;
    }
    if (lookup.start > 0 && !refused) {
      if (this.unansweredStarts.size === 0) this.keptLookupsAt = monotonicMs() + this.replyTimeout * 16;
      this.unansweredStarts.add(name);
      this.#endLookup(name, null, lookup.start);
      return;
    }
    this.unansweredStarts.delete(name);
    if (!lookup.again) this.#emitTopic('lost', name, lost);
    this.#endLookup(name, null, 0);
  }

  // Ends a lookup without an answer to build on: the topic starts at its
  // first live frame (held ones included), or at `start` if given.
  #endLookup(name, history, start) {
    this.lookups.delete(name);
    // Not for a topic a listener unsubscribed from meanwhile: the next
    // reconnect would look it up and read its history for nobody.
    if (start > 0 && this.#wanted(name)) this.startAt.set(name, start);
    if (history) this.#emitTopic('history', name, { ...history, start: start || null });
    this.#offerHeld(name);
  }

  // Holds a live frame of `name`, whose lookup is out, within maxHeldBytes:
  // past it frames are dropped, the last come first, but never the one of
  // the highest SEQ (an old frame sent again may come last): offered once
  // the lookup ends, it shows those dropped as a gap, asked for in turn.
  // The lookup waits on. The C++ client's HoldLiveLocked.
  #holdLive(name, bytes) {
    let held = this.heldLive.get(name);
    if (!held) this.heldLive.set(name, (held = { frames: [], bytes: 0, top: 0, topSeq: 0 }));
    let seq = 0; // an undecodable frame (its offer counts it bad)
    try {
      seq = decodeFrame(bytes).seq;
    } catch (error) {
      if (!(error instanceof FrameError)) throw error;
    }
    if (held.frames.length === 0 || seq > held.topSeq) {
      held.top = held.frames.length; // frames[top] has the highest SEQ
      held.topSeq = seq;
    }
    held.frames.push(bytes);
    held.bytes += bytes.byteLength + OrderedStream.ENTRY_BYTES;
    const bound = this.maxHeldBytes;
    for (let i = held.frames.length - 1; bound !== 0 && held.bytes > bound && i >= 0; --i) {
      if (i === held.top) continue;
      held.bytes -= held.frames[i].byteLength + OrderedStream.ENTRY_BYTES;
      held.frames.splice(i, 1);
      if (i < held.top) --held.top;
      ++this.stats.framesShed;
    }
  }

  #offerHeld(name) {
    const held = this.heldLive.get(name)?.frames ?? [];
    this.heldLive.delete(name);
    for (const bytes of held) this.#handleFrame(name, bytes, false);
  }

  // Gives the outstanding request up: a range to its end; an open end (a
  // catch-up) only what is known missing, below the first held frame, and
  // with nothing known, `lost` says so with no end (to: null).
  #abandon(t, reason, status) {
    const gap = t.stream.gap();
    const openEnd = t.asked.to === OPEN_END;
    const to = !openEnd ? t.asked.to : gap ? gap.to : t.stream.next - 1;
    t.asked = null;
    t.attempts = 0;
    t.refusal = null;
    if (to >= t.stream.next) {
      this.#lose(t, t.stream.next, to, reason, status);
    } else if (openEnd) {
      ++this.stats.gapsLost;
      this.#emitTopic('lost', t.name, { topic: t.name, from: t.stream.next, to: null, reason, code: status?.code, retry: status?.retry });
    }
  }

  // Gives up every SEQ up to `to`. Reported lost are only the SEQs from
  // `from` that are not held, one event per run: a held frame is delivered,
  // not gone (until 2026-12-06 the lost range ran over held frames, which
  // then came).
  #lose(t, from, to, reason, status) {
    for (const run of t.stream.missing(from, to)) {
      ++this.stats.gapsLost;
      this.#emitTopic('lost', t.name, { topic: t.name, from: run.from, to: run.to, reason, code: status?.code, retry: status?.retry });
    }
    this.#deliver(t, t.stream.giveUp(to));
  }

  // A new request of `item` (a topic state with t.asked set, or a lookup):
  // it waits its turn behind those made before it, and goes out when fewer
  // than maxOutstanding are out (at once, if none waits and a place is free).
  #ask(item) {
    if (item.stream) item.queued = true;
    else item.sentSeq = 0;
    this.waiting.add(item); // a Set: one that waits already keeps its place
    this.#pump();
  }

  // True if `item` has a request out at the relay: a range sent and not
  // done, or a lookup sent and not answered, of a topic still followed.
  #isOut(item) {
    if (item.stream) return this.topics.get(item.id) === item && item.asked !== null && !item.queued;
    return this.lookups.get(item.name) === item && item.sentSeq !== 0;
  }

  // True if `item` still has a request to send.
  #isWaiting(item) {
    if (item.stream) return this.topics.get(item.id) === item && item.asked !== null && item.queued;
    return this.lookups.get(item.name) === item && item.sentSeq === 0;
  }

  // Sends what waits, oldest first, while fewer than maxOutstanding are out
  // and no busy pause runs.
  #pump() {
    for (const item of this.inFlight) if (!this.#isOut(item)) this.inFlight.delete(item);
    if (this.waiting.size === 0 || monotonicMs() < this.busyUntil) return;
    for (const item of this.waiting) {
      if (this.inFlight.size >= this.maxOutstanding) break;
      this.waiting.delete(item);
      if (!this.#isWaiting(item)) continue; // done, given up or forgotten meanwhile
      this.inFlight.add(item);
      if (item.stream) {
        item.queued = false;
        this.#requestRange(item);
      } else {
        this.#sendLookup(item.name);
      }
    }
  }

  // `busy` (PROTOCOL 5.3): the relay holds too many requests of this user
  // (with its other connections') or of everyone. No failed attempt, and
  // nothing is given up for it: the request waits again, behind the others
  // (a range, from its first SEQ still missing when it goes out), and
  // nothing waiting is sent for a pause of replyTimeout, doubled for each
  // pause since the relay last served this client (at most 16 times), times
  // a random 0.5 to 1.5, so that clients refused together do not come back
  // together. (Until 2026-12-06 a busy answer counted as an attempt, and
  // every refused request was asked again on the same schedule, together.)
  #refusedBusy(item) {
    if (!item.stream && item.attempts > 0) --item.attempts; // its sending counted one
    const now = monotonicMs();
    if (now >= this.busyUntil) { // else refused during the pause that runs: the same round
      this.busyUntil = now + this.replyTimeout * 2 ** Math.min(this.busyRounds, 4) * (0.5 + Math.random());
      ++this.busyRounds;
    }
    this.#ask(item);
  }

  #sendLookup(name) {
    const lookup = this.lookups.get(name);
    ++lookup.attempts;
    this.#request(lookup, { topic: name, from: LOOKUP_FROM });
  }

  // `retry`: the request again (what is left of it), after no status came in time.
  #requestRange(t, retry = false) {
    // Never asked again is what came already: the range starts at its first
    // SEQ not delivered or held (a retry after part of the reply came; until
    // 2026-12-06 a retry asked the whole range again).
    const [missing] = t.stream.missing(Math.max(t.asked.from, t.stream.next), t.asked.to);
    if (missing && missing.from > t.asked.from) t.asked = { from: missing.from, to: t.asked.to };
    // Which frames were held when this range was first asked for (see
    // #handleStatus). Kept for the retries: an earlier moment only spares
    // more frames.
    if (!t.sent || t.sent.from !== t.asked.from || t.sent.to !== t.asked.to) {
      t.sent = { from: t.asked.from, to: t.asked.to, arrivals: t.stream.arrivals };
      t.statusesDue = 0;
    }
    ++t.statusesDue;
    // A retry keeps the connection the request first went out on: sent
    // after a reconnect, it does not make the first request's reply whole.
    if (!retry) t.askedOn = this.connects;
    const request = { id: t.id, from: t.asked.from };
    if (t.asked.to !== OPEN_END) request.to = t.asked.to;
    this.#request(t, request);
  }

  // Sends `item`'s request `body`: every sending of a range or a lookup
  // (first, retry, continuation, again after a reconnect) comes here, and
  // starts the request's reply timeout anew.
  #request(item, body) {
    item.sentSeq = ++this.sends;
    item.waitFrom = monotonicMs();
    ++this.stats.requests;
    // Offline, mqtt.js queues it; the timer's retry covers a lost one.
    this.mqtt.publish(this.requestTopic, JSON.stringify(body), { qos: 1 }, () => {});
  }

  #catchUp() {
    // Requests out at the reconnect: their replies, published while away,
    // are lost with the old connection. Each has at least one more try, on
    // the new connection: once its timeout has run (time offline counts),
    // the next tick asks again. (Until 2026-12-06 a request whose last try
    // went out before the disconnect was given up at that tick, never asked
    // on the new connection. Its timeout is not restarted here: a link that
    // drops more often than the timeout would then hold it unsent.)
    for (const q of [...this.lookups.values(), ...this.topics.values()]) {
      if (this.#isOut(q)) q.attempts = Math.min(q.attempts, this.maxAttempts - 1);
    }
    // A topic the relay had no message of when it was looked up starts at
    // its first live frame, SEQ `start`: what was published while away
    // would wait for a later live frame to show as a gap. Looked up again.
    for (const [name, start] of this.startAt) {
      if (this.lookups.has(name)) continue;
      const lookup = { name, start, sentSeq: 0, waitFrom: 0, attempts: 0, again: true };
      this.lookups.set(name, lookup);
      this.#ask(lookup);
    }
    for (const t of this.topics.values()) {
      if (t.stream.next === 0) continue;
      if (t.asked) {
        // A request is out: its range ends where it ends, and what was
        // published while away comes after it. Asked for once it is done.
        t.catchUpOwed = true;
        continue;
      }
      this.#startCatchUp(t);
      this.#ask(t);
    }
  }

  // An open-ended request from the next SEQ not delivered yet.
  #startCatchUp(t) {
    t.catchUpOwed = false;
    t.refusal = null;
    t.asked = { from: t.stream.next, to: OPEN_END };
    t.attempts = 1;
    this.#emitTopic('fetch', t.name, { topic: t.name, from: t.stream.next, to: null });
  }

  // The reply timeout of a request sent `attempts` times (at least once).
  #backoff(attempts) {
    return this.replyTimeout * 2 ** Math.min(Math.max(attempts, 1) - 1, 10);
  }

  // Traffic on the reply topics that belongs to `q`, a request out at the
  // relay: a replayed frame of its topic, or a status that answers it. The
  // relay serves this client's requests one after another, in the order they
  // came, so `q` and every request sent after it are still waiting their
  // turn: their reply timeouts start anew. Those sent before `q` are not
  // waiting: the relay is past them, and their replies came or were lost (a
  // relay instance froze, or the reply went out while the client
  // reconnected); their timeouts run on, so that a lost reply is asked again
  // and, after maxAttempts, given up. (Until 2026-12-06 only frames of its
  // own topic restarted a request's timeout: a request behind another's long
  // reply was asked again at each timeout, each time a new job queued at the
  // relay, and then given up as unanswered. For a while that day any word on
  // the reply topics restarted every timeout, and a lost reply never timed
  // out while the client's other requests were answered.)
  #heard(q) {
    const now = monotonicMs();
    for (const p of this.inFlight) if (p.sentSeq >= q.sentSeq && this.#isOut(p)) p.waitFrom = now;
  }

  #tick() {
    if (!this.mqtt.connected) return; // requests wait for the connection; catch-up follows it
    const now = monotonicMs();
    for (const [name, lookup] of this.lookups) {
      if (lookup.sentSeq === 0 || now - lookup.waitFrom < this.#backoff(lookup.round ? 1 : lookup.attempts)) continue;
      if (lookup.round || lookup.attempts >= this.maxAttempts) {
        this.#giveUpLookup(name, lookup, { topic: name, from: 0, to: 0, reason: 'no reply from the relay to the lookup' });
      } else {
        this.#sendLookup(name);
      }
    }
    if (this.unansweredStarts.size > 0 && now >= this.keptLookupsAt) {
      this.keptLookupsAt = now + this.replyTimeout * 16;
      for (const name of this.unansweredStarts) {
        if (this.lookups.has(name)) continue;
        // One try a round, with one reply timeout.
        const start = this.startAt.get(name);
        const lookup = { name, start, sentSeq: 0, waitFrom: 0, attempts: 0, again: true, round: true };
        this.lookups.set(name, lookup);
        this.#ask(lookup);
      }
    }
    for (const t of this.topics.values()) {
      const gap = t.stream.gap();
      if (t.asked) {
        if (t.queued) continue; // not sent yet: no reply is due
        if (now - t.waitFrom < this.#backoff(t.attempts)) continue;
        if (t.attempts >= this.maxAttempts) {
          // The last answer, if the relay kept asking for a retry (unavailable, ...).
          const refusal = t.refusal;
          this.#abandon(t, refusal ? (refusal.error ?? 'refused') : 'no reply from the relay', refusal ?? undefined);
          continue;
        }
        ++t.attempts; // no status in time: ask again
        this.#requestRange(t, true);
        continue;
      } else if (t.catchUpOwed) {
        this.#startCatchUp(t); // from the next SEQ: any gap is in it
      } else {
        if (!gap) continue;
        if (t.gapSeen === 0) t.gapSeen = now;
        if (now - t.gapSeen < this.gapWait) continue;
        t.asked = gap;
        t.attempts = 1;
        t.refusal = null;
        this.#emitTopic('fetch', t.name, { topic: t.name, from: gap.from, to: gap.to });
      }
      this.#ask(t);
    }
    this.#pump(); // places freed by requests given up, or a busy pause over
  }
}
