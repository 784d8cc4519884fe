// OrderedStream against the C++ client's tables
// (tests/unit/ordered_stream_test.cc, shared as
// clients/testdata/ordered_stream_cases.json) and the same randomized
// exactly-once property.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { OrderedStream } from '../src/ordered_stream.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const cases = JSON.parse(readFileSync(`${repo}/clients/testdata/ordered_stream_cases.json`, 'utf8'));

// Every frame offered carries "p<seq>", so a wrong payload shows as a mismatch.
const payloadOf = (seq) => `p${seq}`;
const gapText = (gap) => (gap ? `${gap.from}..${gap.to}` : 'none');
function outs(deliveries) {
  return deliveries.map((d) => {
    assert.equal(d.payload, payloadOf(d.seq), `payload of SEQ ${d.seq}`);
    return [d.seq, d.late];
  });
}

test('offer table', () => {
  for (const c of cases.offer) {
    const s = new OrderedStream(c.start);
    c.steps.forEach((step, i) => {
      const where = `${c.rule}, step ${i}: offer(${step.seq})`;
      const { deliveries, duplicate } = s.offer(step.seq, c.ordered, payloadOf(step.seq));
      assert.deepEqual(outs(deliveries), step.want, where);
      assert.equal(duplicate, step.duplicate, where);
      assert.equal(s.next, step.next, where);
      assert.equal(gapText(s.gap()), step.gap, where);
    });
    assert.equal(s.lastDelivered, c.last_delivered, c.rule);
  }
});

test('give-up table', () => {
  for (const c of cases.give_up) {
    const s = new OrderedStream(c.start);
    for (const seq of c.offers) s.offer(seq, c.ordered, payloadOf(seq));
    assert.deepEqual(outs(s.giveUp(c.to)), c.want, c.rule);
    assert.equal(s.next, c.next, c.rule);
    assert.equal(gapText(s.gap()), c.gap, c.rule);
    assert.equal(s.lastDelivered, c.last_delivered, c.rule);
  }
});

test('a duplicate of a held frame keeps the first payload', () => {
  const s = new OrderedStream(1);
  assert.equal(s.offer(2, true, 'first').duplicate, false);
  assert.equal(s.offer(2, true, 'second').duplicate, true);
  assert.deepEqual(
    s.offer(1, true, 'one').deliveries.map((d) => [d.seq, d.payload]),
    [[1, 'one'], [2, 'first']],
  );
});

test('a given-up frame arriving later is a duplicate', () => {
  for (const ordered of [true, false]) {
    const s = new OrderedStream();
    s.offer(1, ordered, payloadOf(1));
    s.offer(5, ordered, payloadOf(5));
    s.giveUp(4);
    assert.equal(s.next, 6);
    const { deliveries, duplicate } = s.offer(3, ordered, payloadOf(3));
    assert.deepEqual(deliveries, []);
    assert.equal(duplicate, true);
  }
});

// As OrderedStreamTest.DropAboveForgetsWhatIsHeldAboveTheNewestSeq.
test('forget drops what is held in a range and came by a moment, and frees those SEQs', () => {
  for (const ordered of [true, false]) {
    const s = new OrderedStream();
    for (const seq of [1, 4, 9, 1000000]) s.offer(seq, ordered, payloadOf(seq));
    const moment = s.arrivals;
    s.offer(12, ordered, payloadOf(12)); // came after the moment
    assert.deepEqual(s.forget(6, Infinity, moment), [9, 1000000]);
    assert.equal(gapText(s.gap()), '2..3');
    assert.equal(s.lastDelivered, ordered ? 1 : 12);
    assert.deepEqual(s.forget(6, Infinity, moment), []);
    assert.equal(s.offer(9, ordered, payloadOf(9)).duplicate, false);
    assert.equal(s.offer(12, ordered, payloadOf(12)).duplicate, true);
    assert.deepEqual(s.forget(10, 12), [12]); // no moment: whenever it came
  }
});

// As OrderedStreamTest.HeldBytesCountWhatWaitsAboveAGapAndFallAsItGoes:
// what a stream holds above a gap, in bytes: an ordered topic's payloads
// and a record each, an immediate topic's records of the SEQs shown; back
// to nothing once the gap fills, or is given up, or its frames forgotten.
test('heldBytes counts what waits above a gap, and falls as it goes', () => {
  const entry = OrderedStream.ENTRY_BYTES;
  assert.equal(entry, 96, "the C++ client's kEntryBytes");
  const payloadOf10 = (seq) => `payload-${String(seq).padStart(2, '0')}`; // 10 bytes, as the C++ test's
  for (const ordered of [true, false]) {
    const where = ordered ? 'ordered' : 'immediate';
    const payload = ordered ? 10 : 0; // an immediate topic holds only the record of a SEQ shown
    const s = new OrderedStream(1);
    s.offer(1, ordered, payloadOf10(1));
    assert.equal(s.heldBytes, 0, `${where}: delivered at once, nothing held`);
    for (const seq of [10, 11, 12, 20]) s.offer(seq, ordered, payloadOf10(seq));
    assert.equal(s.heldBytes, 4 * (payload + entry), where);
    assert.equal(s.offer(11, ordered, payloadOf10(11)).duplicate, true);
    assert.equal(s.heldBytes, 4 * (payload + entry), `${where}: a duplicate adds nothing`);
    assert.deepEqual(s.forget(20, 20), [20]);
    assert.equal(s.heldBytes, 3 * (payload + entry), where);
    s.giveUp(5); // 2..5 given up; 6..9 still missing
    assert.equal(s.heldBytes, 3 * (payload + entry), where);
    for (const seq of [8, 7]) s.offer(seq, ordered, payloadOf10(seq));
    assert.equal(s.heldBytes, 5 * (payload + entry), where);
    s.offer(6, ordered, payloadOf10(6)); // 6..8 out; 9 still missing
    assert.equal(s.heldBytes, 3 * (payload + entry), where);
    s.offer(9, ordered, payloadOf10(9)); // fills the gap: 9..12 out
    assert.equal(s.heldBytes, 0, where);
    s.offer(30, ordered, payloadOf10(30));
    assert.equal(s.heldBytes, payload + entry, where);
    s.giveUp(29);
    assert.equal(s.heldBytes, 0, where);
  }
});

// As OrderedStreamTest.ShedDropsHeldFramesNewestButOneFirstAndKeepsTheNewest:
// past a bound, an ordered topic's held frames are dropped, the newest but
// one first: the newest stays, so the dropped show as missing below it and
// are asked for again; an immediate topic's records are never dropped.
test('shed drops held frames, the newest but one first, and keeps the newest', () => {
  const frame = 10 + OrderedStream.ENTRY_BYTES; // "payload-0N"
  const payloadOf10 = (seq) => `payload-0${seq}`;
  const s = new OrderedStream(1);
  for (const seq of [3, 4, 5, 6, 9]) s.offer(seq, true, payloadOf10(seq));
  assert.equal(s.heldBytes, 5 * frame);
  assert.deepEqual(s.shed(5 * frame), [], 'not over the bound');
  assert.deepEqual(s.shed(3 * frame), [5, 6]);
  assert.equal(s.heldBytes, 3 * frame);
  assert.equal(gapText(s.gap()), '1..2');
  assert.deepEqual(s.missing(1, 9), [{ from: 1, to: 2 }, { from: 5, to: 8 }]);
  assert.deepEqual(s.shed(0), [3, 4]);
  assert.equal(s.heldBytes, frame, 'the newest stays, whatever the bound');
  assert.deepEqual(s.missing(1, 9), [{ from: 1, to: 8 }]);
  // What was dropped comes again, and everything is delivered in order.
  const delivered = [];
  for (const seq of [1, 2, 3, 4, 5, 6, 7, 8]) {
    for (const d of s.offer(seq, true, payloadOf10(seq)).deliveries) {
      assert.equal(d.payload, payloadOf10(d.seq));
      delivered.push(d.seq);
    }
  }
  assert.deepEqual(delivered, [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.equal(s.heldBytes, 0);

  const immediate = new OrderedStream(1);
  for (const seq of [3, 4, 9]) immediate.offer(seq, false, payloadOf10(seq));
  assert.deepEqual(immediate.shed(0), [], 'records of frames shown stay');
  assert.equal(immediate.heldBytes, 3 * OrderedStream.ENTRY_BYTES);
  assert.deepEqual(immediate.missing(1, 9), [{ from: 1, to: 2 }, { from: 5, to: 8 }]);
});

// The client holds Uint8Arrays (its frames' payloads); a string counts in UTF-8.
test("heldBytes counts a payload's bytes: a Uint8Array's length, a string's UTF-8", () => {
  const s = new OrderedStream(1);
  s.offer(2, true, new Uint8Array(1000));
  s.offer(3, true, Buffer.from('abc'));
  s.offer(4, true, 'é€'); // 2 + 3 bytes in UTF-8
  assert.equal(s.heldBytes, 1000 + 3 + 5 + 3 * OrderedStream.ENTRY_BYTES);
  assert.deepEqual(s.offer(1, true, new Uint8Array(7)).deliveries.map((d) => d.seq), [1, 2, 3, 4]);
  assert.equal(s.heldBytes, 0);
});

// mulberry32: a small seeded generator, so a failure replays exactly.
function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// SEQ 1..last shuffled, about 10% of them twice.
function shuffledWithDuplicates(seed, last) {
  const rng = random(seed);
  const seqs = [];
  let extra = 0;
  for (let seq = 1; seq <= last; ++seq) {
    seqs.push(seq);
    if (rng() < 0.1) {
      seqs.push(seq);
      ++extra;
    }
  }
  for (let i = seqs.length - 1; i > 0; --i) {
    const j = Math.floor(rng() * (i + 1));
    [seqs[i], seqs[j]] = [seqs[j], seqs[i]];
  }
  return { seqs, extra };
}

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('random order, ordered topic: 1..last exactly once, in order', () => {
  for (const seed of [1, 2, 42, 1234, 987654321]) {
    const { seqs, extra } = shuffledWithDuplicates(seed, 500);
    assert.ok(extra > 0);
    const s = new OrderedStream(1);
    const delivered = [];
    let duplicates = 0;
    for (const seq of seqs) {
      const r = s.offer(seq, true, payloadOf(seq));
      for (const d of r.deliveries) {
        assert.equal(d.late, false, 'ordered deliveries are never late');
        delivered.push(d.seq);
      }
      if (r.duplicate) ++duplicates;
    }
    assert.deepEqual(delivered, range(1, 500), `seed ${seed}`);
    assert.equal(duplicates, extra);
    assert.equal(s.next, 501);
    assert.equal(s.gap(), null);
  }
});

test('random order, immediate topic: every SEQ exactly once, late exactly when a higher one was shown', () => {
  for (const seed of [1, 2, 42, 1234, 987654321]) {
    const { seqs, extra } = shuffledWithDuplicates(seed, 500);
    const s = new OrderedStream(1);
    const delivered = [];
    let duplicates = 0;
    let highest = 0;
    for (const seq of seqs) {
      const r = s.offer(seq, false, payloadOf(seq));
      for (const d of r.deliveries) {
        assert.equal(d.late, d.seq < highest, `SEQ ${d.seq}`);
        highest = Math.max(highest, d.seq);
        delivered.push(d.seq);
      }
      if (r.duplicate) ++duplicates;
    }
    assert.deepEqual([...delivered].sort((a, b) => a - b), range(1, 500), `seed ${seed}`);
    assert.equal(duplicates, extra);
    assert.equal(s.next, 501);
    assert.equal(s.gap(), null);
  }
});

test('missing(): the runs of a range that are not held', () => {
  const s = new OrderedStream(5);
  for (const seq of [7, 10, 11, 20]) s.offer(seq, true, payloadOf(seq));
  const shown = new OrderedStream(5);
  for (const seq of [7, 10, 11, 20]) shown.offer(seq, false, payloadOf(seq)); // delivered, still above next
  for (const stream of [s, shown]) {
    assert.deepEqual(stream.missing(5, 19), [{ from: 5, to: 6 }, { from: 8, to: 9 }, { from: 12, to: 19 }]);
    assert.deepEqual(stream.missing(10, 11), []);
    assert.deepEqual(stream.missing(11, Infinity), [{ from: 12, to: 19 }, { from: 21, to: Infinity }]);
    assert.deepEqual(stream.missing(1, 4), [{ from: 1, to: 4 }], 'below next counts as missing');
  }
  assert.deepEqual(new OrderedStream(0).missing(3, 3), [{ from: 3, to: 3 }]);
});
