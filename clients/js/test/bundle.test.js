// dist/seqrelay.js (the classic-script bundle for pages) exports what
// src/index.js exports, and its codec and client work like the module's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';

import * as esm from '../src/index.js';

const root = fileURLToPath(new URL('..', import.meta.url));

test('the bundle sets globalThis.seqrelay with the module exports, and they work', () => {
  execFileSync(process.execPath, [`${root}/scripts/bundle.js`]);
  const fakeMqtt = { connect: () => ({ on() {}, off() {}, options: {} }) };
  const context = vm.createContext({ mqtt: fakeMqtt, TextDecoder, TextEncoder, setInterval, clearInterval, setTimeout });
  vm.runInContext(readFileSync(`${root}/dist/seqrelay.js`, 'utf8'), context);
  const lib = context.seqrelay;
  assert.deepEqual(Object.keys(lib).sort(), Object.keys(esm).sort());
  const frame = lib.decodeFrame(lib.encodeFrame({ topicId: 7, seq: 17 }, new Uint8Array([1, 2])));
  assert.equal(frame.seq, 17);
  assert.throws(() => lib.decodeFrame(new Uint8Array(9)), (e) => e instanceof lib.FrameError);
  const seq = lib.connect('ws://127.0.0.1:1', { username: 'alice' });
  assert.equal(seq.requester, 'alice', 'connect() used the global mqtt');
  seq.close();
});
