// OrderedStream: one topic's client-side state, what comes next, what is
// held back, what is missing. A line-by-line port of
// tools/client/ordered_stream.{h,cc}, so the C++ and JavaScript clients
// behave the same.
//
// Frames are offered in whatever order they arrive (live, replayed,
// duplicated); the stream says what to deliver now:
//  - ordered topics (flag 1): strictly in SEQ order; a frame after a gap is
//    held until the gap fills or is given up (or dropped past a bound,
//    shed(), to come again);
//  - immediate topics (flag 0): at once; a frame that fills a gap is
//    delivered when it comes and marked late.
// Either way each SEQ is delivered at most once. Pure logic, no I/O.

const encoder = new TextEncoder();

// A payload's size in bytes: a Uint8Array's (a Buffer's) byteLength, a
// string's in UTF-8 (tests and typed callers may hold strings); null (a
// shown SEQ's record) holds none.
function payloadBytes(payload) {
  if (payload === null || payload === undefined) return 0;
  if (typeof payload === 'string') return encoder.encode(payload).length;
  return payload.byteLength ?? 0;
}

export class OrderedStream {
  // What an entry above next costs besides its payload: its record (the
  // map's entry, its key, its arrival). A count, not a measure: the same 96
  // as the C++ client's kEntryBytes, so that the three clients bound a topic
  // alike (SeqClient's maxHeldBytes).
  static ENTRY_BYTES = 96;

  /** @param {number} next the first SEQ wanted; 0 = start at the first frame seen. */
  constructor(next = 0) {
    // Every SEQ below next was delivered or given up; 0 = nothing seen yet.
    this.next = next;
    // The highest SEQ delivered so far; 0 = none.
    this.lastDelivered = 0;
    // Above next: SEQ -> {payload, arrival, bytes}: the held payload
    // (ordered), or null once delivered (immediate); when it came (arrivals
    // after it), so that forget() can spare what came after a given moment;
    // its share of heldBytes. Its keys, ascending, in aboveKeys from
    // aboveHead on.
    this.above = new Map();
    this.aboveKeys = [];
    this.aboveHead = 0;
    // Frames held so far, ever.
    this.arrivals = 0;
    // What the entries above next hold: their payloads (held back, ordered)
    // and ENTRY_BYTES each for the record (an immediate topic's shown SEQs
    // too). It grows while a gap stays open, and falls as it fills or is
    // given up.
    this.heldBytes = 0;
  }

  /**
   * Offers one frame. Returns {deliveries, duplicate}: what can be delivered
   * now, in order, and whether the frame was already delivered or held.
   */
  offer(seq, ordered, payload) {
    if (this.next === 0) this.next = seq; // joined here
    if (seq < this.next || this.above.has(seq)) return { deliveries: [], duplicate: true };
    const out = [];
    if (seq === this.next) {
      this.#deliver(out, seq, payload);
      ++this.next;
      this.#drain(out);
    } else if (ordered) {
      this.#hold(seq, payload);
    } else {
      this.#deliver(out, seq, payload); // immediate: show it now, remember it was shown
      this.#hold(seq, null);
    }
    return { deliveries: out, duplicate: false };
  }

  /** The oldest open gap {from, to}, or null if nothing above next was seen. */
  gap() {
    if (this.aboveHead === this.aboveKeys.length) return null;
    return { from: this.next, to: this.aboveKeys[this.aboveHead] - 1 };
  }

  /**
   * Gives up on every SEQ up to and including `to` that has not come: they
   * will not be delivered. Returns what becomes deliverable.
   */
  giveUp(to) {
    const out = [];
    if (this.next === 0 || to < this.next) return out;
    // Up to `to`, frames that came are delivered in order and missing SEQs
    // are skipped; whatever follows `to` without a break comes out too.
    while (this.aboveHead < this.aboveKeys.length && this.aboveKeys[this.aboveHead] <= to) {
      const seq = this.#popFirst();
      const payload = this.#erase(seq);
      if (payload !== null) this.#deliver(out, seq, payload);
    }
    this.next = to + 1;
    this.#drain(out);
    return out;
  }

  /**
   * The runs of SEQs from `from` to `to` (Infinity: no end) that are not
   * held, ascending, as [{from, to}]. SEQs below next count as missing
   * here: callers start at next where what was passed is not wanted.
   */
  missing(from, to) {
    const keys = this.aboveKeys;
    let lo = this.aboveHead;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keys[mid] < from) lo = mid + 1;
      else hi = mid;
    }
    const runs = [];
    let at = from; // the lowest SEQ not yet placed in a run or passed as held
    for (let i = lo; i < keys.length && keys[i] <= to; ++i) {
      if (keys[i] > at) runs.push({ from: at, to: keys[i] - 1 });
      at = keys[i] + 1;
    }
    if (at <= to) runs.push({ from: at, to });
    return runs;
  }

  /**
   * Forgets every frame held with a SEQ from `from` to `to` that came by the
   * moment `arrivals` had the value `by` (ordered: never delivered;
   * immediate: delivered, its SEQ free again), as frames the relay never
   * stored. Returns their SEQs, ascending.
   */
  forget(from, to, by = Infinity) {
    const gone = (seq) => seq >= from && seq <= to && this.above.get(seq).arrival <= by;
    const keep = [];
    const dropped = [];
    for (let i = this.aboveHead; i < this.aboveKeys.length; ++i) {
      const seq = this.aboveKeys[i];
      if (!gone(seq)) {
        keep.push(seq);
        continue;
      }
      this.#erase(seq);
      dropped.push(seq);
    }
    this.aboveKeys = keep;
    this.aboveHead = 0;
    if (dropped.length > 0) {
      // The highest SEQ delivered may have been a forgotten (immediate)
      // frame: recounted from next - 1 (every SEQ below next is passed; a
      // given-up one there makes no frame late, as none comes below next)
      // and the immediate frames still held.
      this.lastDelivered = Math.max(this.next - 1, 0);
      for (const seq of keep) if (this.above.get(seq).payload === null && seq > this.lastDelivered) this.lastDelivered = seq;
    }
    return dropped;
  }

  /**
   * Drops held frames (ordered: never delivered), the newest but one first,
   * while heldBytes is over `bound`. The newest stays, so that those
   * dropped are missing below it (gap(), missing()): asked for again in
   * turn, as any gap. An immediate topic's records are never dropped (their
   * frames were shown: a record dropped would let one be shown again).
   * Returns the SEQs dropped, ascending.
   */
  shed(bound) {
    const keys = this.aboveKeys;
    const dropped = [];
    let i = keys.length - 1; // the newest: kept
    while (this.heldBytes > bound && i > this.aboveHead) {
      --i;
      const seq = keys[i];
      if (this.above.get(seq).payload === null) continue; // a record of a frame shown
      this.#erase(seq);
      dropped.push(seq);
    }
    if (dropped.length > 0) {
      // One pass over what was walked (from i on), not a splice a frame.
      const gone = new Set(dropped);
      const tail = keys.slice(i).filter((seq) => !gone.has(seq));
      keys.length = i;
      for (const seq of tail) keys.push(seq);
    }
    return dropped.reverse();
  }

  #deliver(out, seq, payload) {
    out.push({ seq, payload, late: seq < this.lastDelivered });
    if (seq > this.lastDelivered) this.lastDelivered = seq;
  }

  #drain(out) {
    while (this.aboveHead < this.aboveKeys.length && this.aboveKeys[this.aboveHead] === this.next) {
      const seq = this.#popFirst();
      const payload = this.#erase(seq);
      if (payload !== null) this.#deliver(out, seq, payload);
      ++this.next;
    }
  }

  // Adds an entry above next (its key to aboveKeys), and its bytes to heldBytes.
  #hold(seq, payload) {
    const bytes = payloadBytes(payload) + OrderedStream.ENTRY_BYTES;
    this.above.set(seq, { payload, arrival: ++this.arrivals, bytes });
    this.heldBytes += bytes;
    const keys = this.aboveKeys;
    if (keys.length === this.aboveHead || keys[keys.length - 1] < seq) {
      keys.push(seq); // the usual case: frames arrive in order
      return;
    }
    let lo = this.aboveHead;
    let hi = keys.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (keys[mid] < seq) lo = mid + 1;
      else hi = mid;
    }
    keys.splice(lo, 0, seq);
  }

  // Removes the entry of `seq` (its key out of aboveKeys already), and its
  // bytes from heldBytes. Returns its payload.
  #erase(seq) {
    const entry = this.above.get(seq);
    this.above.delete(seq);
    this.heldBytes -= entry.bytes;
    return entry.payload;
  }

  #popFirst() {
    const seq = this.aboveKeys[this.aboveHead++];
    if (this.aboveHead === this.aboveKeys.length) {
      this.aboveKeys = [];
      this.aboveHead = 0;
    } else if (this.aboveHead > 1024 && this.aboveHead * 2 > this.aboveKeys.length) {
      this.aboveKeys = this.aboveKeys.slice(this.aboveHead); // keep removal amortised O(1)
      this.aboveHead = 0;
    }
    return seq;
  }
}
