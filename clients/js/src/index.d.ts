// Type declarations of seqrelay-client (src/index.js). The wire contract is
// PROTOCOL.md; the behaviour is that of tools/client/seq_client.h.
import type { IClientOptions, IClientPublishOptions, MqttClient, Packet } from 'mqtt';

/** Bytes in a frame's header: ID (4), SEQ (5), ordering flag (1). */
export const HEADER_SIZE: 10;
/** The highest SEQ: 2^40 - 1. */
export const MAX_SEQ: number;

export interface FrameHeader {
  topicId: number;
  seq: number;
  /** The topic's ordering flag: true = 1 (ordered), false = 0 (immediate). */
  ordered: boolean;
}
export interface Frame extends FrameHeader {
  /** A view into the decoded bytes. */
  payload: Uint8Array;
}

/** Thrown by decodeFrame for bytes that are not a frame; `reason` says which rule they break. */
export class FrameError extends Error {
  readonly reason: string;
}
/** Throws FrameError for fewer than 10 bytes, SEQ 0, or a flag other than 0 or 1. */
export function decodeFrame(bytes: Uint8Array): Frame;
/** Throws RangeError for a topic id outside uint32 or a SEQ outside 1..2^40-1. A string payload is UTF-8. */
export function encodeFrame(header: { topicId: number; seq: number; ordered?: boolean }, payload?: Uint8Array | string): Uint8Array;

export interface Delivery<P = Uint8Array> {
  seq: number;
  payload: P;
  late: boolean;
}
/** One topic's ordering state; pure logic (see ordered_stream.js). */
export class OrderedStream<P = Uint8Array> {
  constructor(next?: number);
  /** The next SEQ to deliver; every SEQ below it was delivered or given up. 0 = nothing seen yet. */
  readonly next: number;
  readonly lastDelivered: number;
  offer(seq: number, ordered: boolean, payload: P): { deliveries: Delivery<P>[]; duplicate: boolean };
  gap(): { from: number; to: number } | null;
  giveUp(to: number): Delivery<P>[];
  /** The runs of SEQs from `from` to `to` (Infinity: no end) that are not held, ascending. */
  missing(from: number, to: number): { from: number; to: number }[];
  /** Frames held so far, ever: a moment for forget(). */
  readonly arrivals: number;
  /** What the entries above next hold: their payloads' bytes (held back, ordered) and ENTRY_BYTES each (an immediate topic's shown SEQs too). */
  readonly heldBytes: number;
  /** What an entry above next counts besides its payload: 96, the C++ client's kEntryBytes. */
  static readonly ENTRY_BYTES: 96;
  /** Forgets what is held with a SEQ from `from` to `to` that came by the moment `by` (frames the relay never stored); returns their SEQs. */
  forget(from: number, to: number, by?: number): number[];
  /** Drops held frames (ordered, never delivered), the newest but one first, while heldBytes is over `bound`; the newest stays, so those dropped are missing below it. An immediate topic's records are never dropped. Returns the SEQs dropped, ascending. */
  shed(bound: number): number[];
}

export class SeqMessage {
  /** The raw topic T (without the seq/ prefix). */
  readonly topic: string;
  readonly topicId: number;
  readonly seq: number;
  readonly ordered: boolean;
  /** Immediate topics: this message filled a gap after later ones were shown. */
  readonly late: boolean;
  /** The publisher's bytes, unchanged. */
  readonly payload: Uint8Array;
  /** The payload as UTF-8 text. */
  readonly text: string;
}

export interface SeqClientOptions {
  /** Whose replies: requests go to relay/retransmit/<requester>. Default: `defaultRequester(clientId, username)`: `U/C` with a username and another client id, else the username, else the client id. */
  requester?: string;
  /** Default 'seq'. A plain topic prefix: UTF-8, no '+', '#' or NUL, no leading or trailing '/' (else the constructor throws). */
  seqPrefix?: string;
  /** Default 'relay'. A plain topic prefix, as seqPrefix. */
  controlPrefix?: string;
  /** MQTT QoS of the seq/ subscriptions. Default 1. */
  qos?: 0 | 1 | 2;
  /** How long a gap may stay open before it is asked for, ms, 0 to 86400000 (a day). Default 200. */
  gapWait?: number;
  /** How long to wait for a reply, ms; doubled on each retry; restarted by each frame or status of the request or of one sent before it and still out (the relay serves them in order); more than 0, at most 86400000. Default 2000. */
  replyTimeout?: number;
  /** Requests per range before it is given up and reported 'lost' (an integer >= 1); a `busy` refusal does not count. Default 5. */
  maxAttempts?: number;
  /** Requests (ranges and lookups) out at the relay at once, at most; the rest wait their turn. The relay holds 16 of a user waiting. Default 8. */
  maxOutstanding?: number;
  /** Per topic, the bytes that may wait behind its gaps (an ordered topic's payloads and OrderedStream.ENTRY_BYTES a frame; an immediate topic's records of the SEQs shown, ENTRY_BYTES each) or, while its lookup is out, in its live frames (each frame's bytes and the same 96). Past it, held frames are dropped, the newest but one first (the newest stays), and asked for again in turn as a gap: nothing lost; a lookup's held live frames are dropped the last come first, never the one of the highest SEQ, which shows them as a gap once the lookup is answered (stats.framesShed counts them). An immediate topic's records cannot be dropped: its oldest gap is given up instead ('lost', "N bytes held behind the gap, over max_held_bytes"). An integer >= 0; 0: no bound. Default 64 MiB (67108864). */
  maxHeldBytes?: number;
  /** Test hook: live frames for which it returns true are dropped as if lost. */
  dropLiveFrame?: (topic: string, seq: number) => boolean;
}

export interface SubscribeOptions {
  /** Read the topic's history from SEQ 1 first. Only one of history, from and last. */
  history?: boolean;
  /** Resume: deliver from this SEQ on (1 to MAX_SEQ). */
  from?: number;
  /** Start this many messages back from the newest (1 to MAX_SEQ). */
  last?: number;
  /** An iterator holds at most this many unread messages (default 100000); past it the oldest goes, counted in stats.unreadDropped. */
  maxBuffered?: number;
}

/** A request for missing SEQs was made (sent, or waiting its turn behind maxOutstanding others); `to` is null while the newest SEQ is not known yet. */
/** A request for missing SEQs was made (to = null: a catch-up after a reconnect, its end not known yet). Each ends in one `filled` or `lost`. */
export interface FetchEvent { topic: string; from: number; to: number | null }
/** A request's SEQs all came (or those that exist did): to = from - 1 when nothing was missing (a catch-up that found nothing new). */
export interface FilledEvent { topic: string; from: number; to: number }
/** SEQs that will not be delivered (never a SEQ the client holds: a range with held frames in it is reported as one event per missing run): the relay does not have them, deleted them (reason `history starts at N`, N its oldest SEQ), sent them maxAttempts times without the broker delivering them, refused, or did not answer. from = to = 0: a lookup failed (refused for good, or never answered for `last`). to = null: a catch-up from `from` (after a reconnect) was never answered, so what it would have brought is unknown; a later frame's gap is fetched as usual. */
export interface LostEvent { topic: string; from: number; to: number | null; reason: string; code?: string; retry?: boolean }
/** A topic joined with history or resume: the relay's oldest stored (first) and newest (last) SEQ, and where delivery starts. */
export interface HistoryEvent { topic: string; first: number; last: number; start: number | null }
/** Bytes on seq/T or the reply topic that are not a frame (or carry another topic's id). */
/** `seqs`: frames forgotten as never stored by the relay (an immediate topic showed them already). */
export interface BadFrameEvent { topic: string; reason: string; seqs?: number[] }

interface TopicEvents {
  message: (message: SeqMessage) => void;
  fetch: (event: FetchEvent) => void;
  filled: (event: FilledEvent) => void;
  lost: (event: LostEvent) => void;
  history: (event: HistoryEvent) => void;
}
interface ClientEvents extends TopicEvents {
  badframe: (event: BadFrameEvent) => void;
  /**
   * A listener threw, or the broker refused a subscription of the first
   * connection (a SUBACK code >= 0x80: "the broker refused the subscription
   * to '<topic>' (SUBACK <code>): its ACL does not let this user read it?");
   * without a listener here the error surfaces asynchronously.
   */
  error: (error: unknown) => void;
}

declare class Events<E> {
  on<K extends keyof E>(event: K, listener: E[K]): this;
  once<K extends keyof E>(event: K, listener: E[K]): this;
  off<K extends keyof E>(event: K, listener: E[K]): this;
  listenerCount(event: keyof E): number;
}

export class Subscription extends Events<TopicEvents> implements AsyncIterable<SeqMessage> {
  readonly filter: string;
  readonly closed: boolean;
  unsubscribe(): void;
  [Symbol.asyncIterator](): AsyncIterator<SeqMessage>;
}

export interface SeqStats {
  delivered: number;
  duplicates: number;
  requests: number;
  gapsFilled: number;
  gapsLost: number;
  badFrames: number;
  listenerErrors: number;
  /** Messages an iterator dropped, maxBuffered unread already. */
  unreadDropped: number;
  /** Subscriptions (seq/<filter>, the reply topic) the broker refused in a SUBACK, on any connection; on the first each is an 'error' event too. */
  subscribeErrors: number;
  /** The last of them, as the error says it ('' = none). */
  lastSubscribeError: string;
  /** What waits behind gaps and lookups now, over all topics, as maxHeldBytes counts it per topic (a gauge). */
  heldBytes: number;
  /** Held frames dropped to stay within maxHeldBytes, each asked for again later (not lost). */
  framesShed: number;
}

export class SeqClient extends Events<ClientEvents> {
  /** Wraps an mqtt.js client; the caller keeps owning it. */
  constructor(mqttClient: MqttClient, options?: SeqClientOptions);
  readonly mqtt: MqttClient;
  readonly requester: string;
  readonly stats: Readonly<SeqStats>;
  /** Subscribes to seq/<filter>. The filter must be a valid MQTT topic filter ('+' and '#' whole levels, '#' last; no NUL; UTF-8), else it throws; history/from/last need a topic without wildcards. */
  subscribe(filter: string, options?: SubscribeOptions, onMessage?: (message: SeqMessage) => void): Subscription;
  /** Publishes a raw message for the relay to sequence. */
  publish(topic: string, message: string | Uint8Array, options?: IClientPublishOptions): Promise<Packet | undefined>;
  /** The last SEQ delivered or given up of `topic` (0 = none): resume later with { from: position + 1 }. A topic not started yet (its lookup out, or given up with its start kept) says where it starts. */
  position(topic: string): number;
  /** Detaches from the mqtt.js client; does not end it. */
  close(): void;
}

/** A SeqClient on its own connection (mqtt.connect); end() closes both. */
export interface ConnectedSeqClient extends SeqClient {
  end(force?: boolean): Promise<void>;
}
export function connect(url: string, options?: IClientOptions & SeqClientOptions): ConnectedSeqClient;

/** MQTT topic filter matching: '+' one level, '#' the rest. */
export function topicMatches(filter: string, topic: string): boolean;
/** The default requester: `U/C` (PROTOCOL 5.4) with a username and another client id, else the one given. */
export function defaultRequester(clientId?: string, username?: string): string | undefined;
