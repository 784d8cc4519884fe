// Compiled (never run) by types.test.js with tsc --strict: the declarations
// in src/index.d.ts accept the README's usage and refuse misuse.
import mqtt from 'mqtt';
import { connect, decodeFrame, encodeFrame, FrameError, OrderedStream, SeqClient, type SeqMessage } from '../src/index.js';

async function readme(): Promise<void> {
  const seq = connect('ws://127.0.0.1:8080', { username: 'alice', password: 'secret' });
  const room = seq.subscribe('chat/room1', { history: true });
  room.on('message', (m: SeqMessage) => console.log(m.seq, m.text, m.late));
  room.on('fetch', (e) => console.log(e.from, e.to ?? 'newest'));
  room.on('lost', (e) => console.log(e.reason, e.code, e.retry));
  seq.on('badframe', (e) => console.log(e.reason));
  seq.on('error', (e) => console.log(e, seq.stats.subscribeErrors, seq.stats.lastSubscribeError.length));
  for await (const m of room) console.log(m.topic, m.payload.byteLength);
  await seq.publish('chat/room1', 'hello');
  await seq.end();

  const own = new SeqClient(mqtt.connect('mqtt://127.0.0.1:1883'), { requester: 'bob', gapWait: 100, maxHeldBytes: 1 << 20 });
  console.log(own.stats.heldBytes + own.stats.framesShed + OrderedStream.ENTRY_BYTES);
  own.subscribe('chat/+');
  own.subscribe('chat/room1', { from: own.position('chat/room1') + 1 });
  own.close();

  const f = decodeFrame(encodeFrame({ topicId: 7, seq: 17 }, 'hi'));
  const n: number = f.seq + f.topicId;
  const s = new OrderedStream<string>(1);
  const out: string[] = s.offer(1, true, 'a').deliveries.map((d) => d.payload);
  const shed: number[] = s.shed(1 << 10);
  console.log(shed.length);
  try {
    decodeFrame(new Uint8Array(3));
  } catch (e) {
    if (e instanceof FrameError) console.log(e.reason, n, out);
  }
  // @ts-expect-error: no such event
  room.on('mesage', () => {});
  // @ts-expect-error: history is a boolean
  seq.subscribe('chat/room1', { history: 'all' });
}
void readme;
