// The frame codec against the same tables and golden files as the C++ codec
// (tests/unit/frame_test.cc, tests/data/*.bin), shared as
// clients/testdata/frame_cases.json.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import { decodeFrame, encodeFrame, FrameError, HEADER_SIZE, MAX_SEQ } from '../src/frame.js';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const cases = JSON.parse(readFileSync(`${repo}/clients/testdata/frame_cases.json`, 'utf8'));
const hex = (bytes) => Buffer.from(bytes).toString('hex');
const fromHex = (text) => new Uint8Array(Buffer.from(text, 'hex'));

test('encode: golden header bytes', () => {
  for (const c of cases.encode) {
    const frame = encodeFrame({ topicId: c.topic_id, seq: c.seq, ordered: c.ordered });
    assert.equal(hex(frame), c.hex, c.rule);
  }
});

test('encode: the payload follows the header unchanged', () => {
  assert.equal(hex(encodeFrame({ topicId: 7, seq: 17 }, new Uint8Array([0x68, 0x69]))), '000000070000000011016869');
  assert.equal(hex(encodeFrame({ topicId: 7, seq: 17 }, 'hi')), '000000070000000011016869', 'a string is UTF-8');
});

test('encode: SEQ limits', () => {
  for (const c of cases.seq_limits) {
    const encode = () => encodeFrame({ topicId: 7, seq: c.seq });
    if (c.ok) assert.equal(encode().length, HEADER_SIZE, c.rule);
    else assert.throws(encode, RangeError, c.rule);
  }
  assert.throws(() => encodeFrame({ topicId: 7, seq: 1.5 }), RangeError, 'a SEQ is an integer');
  assert.throws(() => encodeFrame({ topicId: 2 ** 32, seq: 1 }), RangeError, 'a topic id is a uint32');
  assert.throws(() => encodeFrame({ topicId: -1, seq: 1 }), RangeError);
  assert.equal(MAX_SEQ, 1099511627775);
});

test('decode: which byte strings are frames, and the error says why', () => {
  for (const c of cases.decode) {
    const bytes = fromHex(c.hex);
    if (c.ok) {
      assert.doesNotThrow(() => decodeFrame(bytes), c.rule);
    } else {
      assert.throws(() => decodeFrame(bytes), (e) => e instanceof FrameError && e.reason.includes(c.error), c.rule);
    }
  }
  assert.throws(() => decodeFrame('not bytes'), TypeError);
});

test('decode: golden files in tests/data decode as their names say, with exact fields', () => {
  for (const c of cases.golden_files) {
    const bytes = new Uint8Array(readFileSync(`${repo}/tests/data/${c.file}`));
    assert.equal(bytes.length, c.size, c.file);
    if (!c.ok) {
      assert.throws(() => decodeFrame(bytes), FrameError, c.file);
      continue;
    }
    const f = decodeFrame(bytes);
    assert.deepEqual(
      { topicId: f.topicId, seq: f.seq, ordered: f.ordered, payload: hex(f.payload) },
      { topicId: c.topic_id, seq: c.seq, ordered: c.ordered, payload: c.payload_hex },
      c.file,
    );
    // The writer produces the same bytes.
    assert.equal(hex(encodeFrame(f, f.payload)), hex(bytes), c.file);
  }
});

test('round trip keeps every field and binary payloads byte for byte', () => {
  const payload = new Uint8Array(266);
  payload.set([0x00, 0xff, 0x00, 0x00, 0x7f, 0x80, 0xff, 0x0a, 0x0d, 0x00]);
  for (let b = 0; b < 256; ++b) payload[10 + b] = b;
  const frame = encodeFrame({ topicId: 0xdeadbeef, seq: 0x123456789a, ordered: false }, payload);
  const f = decodeFrame(frame);
  assert.equal(f.topicId, 0xdeadbeef);
  assert.equal(f.seq, 0x123456789a);
  assert.equal(f.ordered, false);
  assert.deepEqual(f.payload, payload);
  assert.equal(f.payload.buffer, frame.buffer, 'the payload is a view, not a copy');
});
