// The sequenced frame (PROTOCOL.md section 2): the payload of every message
// on seq/T and relay/replay/R.
//
//   offset 0  ID    4 bytes  uint32 big-endian, topic id
//   offset 4  SEQ   5 bytes  uint40 big-endian, sequence number within T
//   offset 9  QOS   1 byte   ordering flag: 1 ordered, 0 immediate
//   offset 10 message        the publisher's payload, unchanged
//
// The same rules as relay/frame.cc: a frame is at least 10 bytes, SEQ is
// 1..2^40-1, the flag is 0 or 1; the topic id is not checked. The reader and
// the writer sit side by side. Pure functions, no I/O.

export const HEADER_SIZE = 10;
export const MAX_SEQ = 2 ** 40 - 1; // exact in a JS number (below 2^53)

/** A byte string that is not a frame; `reason` says which rule it breaks. */
export class FrameError extends Error {
  constructor(reason) {
    super(reason);
    this.name = 'FrameError';
    this.reason = reason;
  }
}

/**
 * Decodes one frame. Throws FrameError if `bytes` is not a frame.
 * The payload is a view into `bytes`, not a copy.
 * @param {Uint8Array} bytes
 * @returns {{topicId: number, seq: number, ordered: boolean, payload: Uint8Array}}
 */
export function decodeFrame(bytes) {
  // Not instanceof: a Uint8Array of another realm (iframe, vm) is one too.
  if (!ArrayBuffer.isView(bytes) || bytes.BYTES_PER_ELEMENT !== 1 || typeof bytes.subarray !== 'function') {
    throw new TypeError('a frame is a Uint8Array (or Buffer)');
  }
  if (bytes.length < HEADER_SIZE) {
    throw new FrameError(`frame of ${bytes.length} bytes is shorter than the 10-byte header`);
  }
  const topicId = ((bytes[0] << 24) >>> 0) + (bytes[1] << 16) + (bytes[2] << 8) + bytes[3];
  let seq = 0;
  for (let i = 4; i < 9; ++i) seq = seq * 256 + bytes[i];
  if (seq === 0) throw new FrameError('frame has SEQ 0');
  const flag = bytes[9];
  if (flag > 1) throw new FrameError(`frame has ordering flag ${flag}, expected 0 or 1`);
  return { topicId, seq, ordered: flag === 1, payload: bytes.subarray(HEADER_SIZE) };
}

/**
 * Encodes a frame: the 10-byte header, then `payload` unchanged. Throws
 * RangeError for a topic id outside uint32 or a SEQ outside 1..2^40-1.
 * @param {{topicId: number, seq: number, ordered?: boolean}} header
 * @param {Uint8Array|string} [payload]
 * @returns {Uint8Array}
 */
export function encodeFrame({ topicId, seq, ordered = true }, payload = new Uint8Array(0)) {
  if (!Number.isInteger(topicId) || topicId < 0 || topicId > 0xffffffff) {
    throw new RangeError(`topic id ${topicId} outside 0..2^32-1`);
  }
  if (!Number.isInteger(seq) || seq < 1 || seq > MAX_SEQ) {
    throw new RangeError(`SEQ ${seq} outside 1..2^40-1`);
  }
  const body = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
  const out = new Uint8Array(HEADER_SIZE + body.length);
  out[0] = topicId >>> 24;
  out[1] = (topicId >>> 16) & 0xff;
  out[2] = (topicId >>> 8) & 0xff;
  out[3] = topicId & 0xff;
  let rest = seq;
  for (let i = 8; i >= 4; --i) {
    out[i] = rest % 256;
    rest = Math.floor(rest / 256);
  }
  out[9] = ordered ? 1 : 0;
  out.set(body, HEADER_SIZE);
  return out;
}
