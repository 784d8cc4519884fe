// seqrelay-client: the public surface. `connect` is mqtt.connect plus a
// SeqClient on the new connection; the rest is exported for those who bring
// their own mqtt.js client or only need the frame codec.
import mqtt from 'mqtt';

import { defaultRequester, SeqClient } from './seq_client.js';

export { decodeFrame, encodeFrame, FrameError, HEADER_SIZE, MAX_SEQ } from './frame.js';
export { OrderedStream } from './ordered_stream.js';
export { defaultRequester, SeqClient, SeqMessage, Subscription, topicMatches } from './seq_client.js';

// Every SeqClientOptions key (index.d.ts): one left out goes to mqtt.js, which
// ignores it, and the SeqClient takes its default (until 2026-12-07
// maxHeldBytes did: 64 MiB whatever was asked, 0 too).
const SEQ_OPTIONS = ['requester', 'seqPrefix', 'controlPrefix', 'qos', 'gapWait', 'replyTimeout', 'maxAttempts', 'maxOutstanding', 'maxHeldBytes', 'dropLiveFrame'];

/**
 * Connects to the broker (mqtt.js: 'mqtt://host:1883' in Node,
 * 'ws://host:8080' in a browser) and returns a SeqClient on it. Options are
 * mqtt.js's, plus the SeqClient's. The requester (whose replies these are)
 * defaults to defaultRequester(clientId, username): U/C with both (and
 * different), else the one given.
 * seq.end() closes the client and the connection.
 */
export function connect(url, options = {}) {
  const mqttOptions = { ...options };
  const seqOptions = {};
  for (const key of SEQ_OPTIONS) {
    if (key in mqttOptions) seqOptions[key] = mqttOptions[key];
    delete mqttOptions[key];
  }
  seqOptions.requester ??= defaultRequester(mqttOptions.clientId, mqttOptions.username);
  const client = mqtt.connect(url, mqttOptions);
  let seq;
  try {
    seq = new SeqClient(client, seqOptions);
  } catch (error) {
    client.end(true); // a bad requester: no connection left reconnecting behind the error
    throw error;
  }
  seq.end = async (force = false) => {
    seq.close();
    await client.endAsync(force);
  };
  return seq;
}
