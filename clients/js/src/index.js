// seqrelay-client: the public surface. `connect` is mqtt.connect plus a
// SeqClient on the new connection; the rest is exported for those who bring
// their own mqtt.js client or only need the frame codec.
import mqtt from 'mqtt';

import { SeqClient } from './seq_client.js';

export { decodeFrame, encodeFrame, FrameError, HEADER_SIZE, MAX_SEQ } from './frame.js';
export { OrderedStream } from './ordered_stream.js';
export { SeqClient, SeqMessage, Subscription, topicMatches } from './seq_client.js';

const SEQ_OPTIONS = ['requester', 'seqPrefix', 'controlPrefix', 'qos', 'gapWait', 'replyTimeout', 'maxAttempts', 'dropLiveFrame'];

/**
 * Connects to the broker (mqtt.js: 'mqtt://host:1883' in Node,
 * 'ws://host:8080' in a browser) and returns a SeqClient on it. Options are
 * mqtt.js's, plus the SeqClient's. The requester (whose replies these are)
 * defaults to the client id, else the username: with the shipped broker
 * configuration (use_username_as_clientid) the username is the client id.
 * seq.end() closes the client and the connection.
 */
export function connect(url, options = {}) {
  const mqttOptions = { ...options };
  const seqOptions = {};
  for (const key of SEQ_OPTIONS) {
    if (key in mqttOptions) seqOptions[key] = mqttOptions[key];
    delete mqttOptions[key];
  }
  seqOptions.requester ??= mqttOptions.clientId ?? mqttOptions.username;
  const client = mqtt.connect(url, mqttOptions);
  const seq = new SeqClient(client, seqOptions);
  seq.end = async (force = false) => {
    seq.close();
    await client.endAsync(force);
  };
  return seq;
}
