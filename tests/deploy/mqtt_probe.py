#!/usr/bin/python3
"""MQTT side of tools/test-docker.sh: publishes, reads frames and asks for
replays on the stack's published port, and checks what comes back by value.

Each subcommand exits 0 when its check holds, 1 with a reason when it does
not, and prints one JSON line of figures. Debian's python3-paho-mqtt (1.6).

  roundtrip  publish one message as an allowed user; its frame must come
             back on seq/T with the payload byte for byte and SEQ = --seq
  load       publish --count messages at QoS 1 at --rate per second (the rest
             unpaced once --hurry-file exists; the last --hold-last wait
             for that file, so the load outlasts what it runs beside), write
             each payload the broker acknowledged (PUBACK) to --acked, and
             wait until every acknowledged payload came back as a frame
  denied     as a user the ACL does not allow: a subscription to seq/T
             delivers nothing while an allowed user gets the frame, and a
             replay request gets status error/forbidden and no frame
  replay     as an allowed user: ask for T from SEQ 1; the frames must be
             SEQ 1..N in order and the status "ok" with sent = N
"""
import argparse
import json
import os
import struct
import sys
import threading
import time

import paho.mqtt.client as mqtt


def parse_frame(payload):
    if len(payload) < 10:
        raise ValueError(f"frame of {len(payload)} bytes")
    topic_id = struct.unpack(">I", payload[0:4])[0]
    seq = int.from_bytes(payload[4:9], "big")
    return topic_id, seq, payload[9], payload[10:]


class Probe:
    """One connection. With use_username_as_clientid the broker names the
    client after its user, so a user has one connection at a time: this one
    both publishes and subscribes."""

    def __init__(self, args, user, password):
        self.cond = threading.Condition()
        self.messages = []  # (topic, payload), in arrival order
        self.subacks = {}  # mid -> granted QoS list
        self.acked = {}  # mid -> True once PUBACKed
        self.connected = False
        self.client = mqtt.Client(client_id=user, clean_session=True)
        self.client.username_pw_set(user, password)
        self.client.max_inflight_messages_set(20)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish
        self.client.connect(args.host, args.port, keepalive=30)
        self.client.loop_start()
        self.wait(lambda: self.connected, 10, "no CONNACK")

    def _on_connect(self, client, userdata, flags, rc):
        with self.cond:
            if rc != 0:
                print(f"connect refused: rc {rc}", file=sys.stderr)
            self.connected = rc == 0
            self.cond.notify_all()

    def _on_message(self, client, userdata, msg):
        with self.cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self.cond.notify_all()

    def _on_subscribe(self, client, userdata, mid, granted):
        with self.cond:
            self.subacks[mid] = list(granted)
            self.cond.notify_all()

    def _on_publish(self, client, userdata, mid):
        with self.cond:
            self.acked[mid] = True
            self.cond.notify_all()

    def wait(self, predicate, timeout, what):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    fail(f"timed out after {timeout} s: {what}")
                self.cond.wait(left)

    def subscribe(self, topic, qos=1):
        rc, mid = self.client.subscribe(topic, qos)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            fail(f"subscribe {topic}: rc {rc}")
        self.wait(lambda: mid in self.subacks, 10, f"no SUBACK for {topic}")
        return self.subacks[mid][0]

    def publish(self, topic, payload, qos=1):
        info = self.client.publish(topic, payload, qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            fail(f"publish {topic}: rc {info.rc}")
        return info.mid

    def on(self, topic):
        with self.cond:
            return [p for t, p in self.messages if t == topic]

    def close(self):
        self.client.disconnect()
        self.client.loop_stop()


def fail(reason):
    print(f"mqtt_probe: {reason}", file=sys.stderr)
    sys.exit(1)


def roundtrip(args):
    p = Probe(args, args.user, args.password)
    if p.subscribe(f"seq/{args.topic}") != 1:
        fail("the allowed user's subscription to seq/T was not granted at QoS 1")
    payload = args.payload.encode()
    p.publish(args.topic, payload)
    p.wait(lambda: p.on(f"seq/{args.topic}"), args.timeout, "no frame on seq/T")
    topic_id, seq, flag, message = parse_frame(p.on(f"seq/{args.topic}")[0])
    p.close()
    print(json.dumps({"id": topic_id, "seq": seq, "flag": flag, "message": message.decode(errors="replace")}))
    if message != payload:
        fail(f"frame carries {message!r}, published {payload!r}")
    if seq != args.seq:
        fail(f"frame has SEQ {seq}, expected {args.seq}")
    if flag != 1:
        fail(f"ordering flag {flag}, expected 1 (ordered, the default)")


def load(args):
    p = Probe(args, args.user, args.password)
    p.subscribe(f"seq/{args.topic}")
    payload_of = {}
    start = time.monotonic()
    hurried = False
    for i in range(args.count):
        # Paced against the clock, so a stall (a kill) is not made up later in
        # a burst bigger than the rate; once --hurry-file exists (what the
        # load ran for is over), the rest goes unpaced.
        hurried = hurried or (args.hurry_file is not None and os.path.exists(args.hurry_file))
        if args.hold_last > 0 and i == args.count - args.hold_last and not hurried:
            deadline = time.monotonic() + args.hold_timeout
            while not os.path.exists(args.hurry_file):
                if time.monotonic() > deadline:
                    fail(f"timed out after {args.hold_timeout} s: no {args.hurry_file} (the last {args.hold_last} wait for it)")
                time.sleep(0.05)
            hurried = True
        delay = start + i / args.rate - time.monotonic()
        if delay > 0 and not hurried:
            time.sleep(delay)
        payload = f"{args.topic}#{i}".encode()
        payload_of[p.publish(args.topic, payload)] = payload
    p.wait(lambda: len(p.acked) >= args.count, args.timeout, "PUBACKs for every publish")
    acked = {payload_of[mid] for mid in p.acked}
    with open(args.acked, "w") as f:
        f.writelines(sorted(x.decode() + "\n" for x in acked))
    seen = lambda: {parse_frame(x)[3] for x in p.on(f"seq/{args.topic}")}
    p.wait(lambda: acked <= seen(), args.timeout, "a frame for every acknowledged message")
    frames = [parse_frame(x) for x in p.on(f"seq/{args.topic}")]
    p.close()
    seq_of = {}
    for _, seq, _, message in frames:
        if seq_of.setdefault(message, seq) != seq:
            fail(f"{message!r} came as SEQ {seq_of[message]} and as SEQ {seq}")
    seqs = sorted(set(seq_of.values()))
    first, last = seqs[0], seqs[-1]
    print(json.dumps({"sent": args.count, "acked": len(acked), "frames": len(frames),
                      "distinct_messages": len(seq_of), "seq_first": first, "seq_last": last,
                      "seconds": round(time.monotonic() - start, 2)}))
    if seqs != list(range(first, last + 1)):
        fail(f"the frames' SEQs {first}..{last} have gaps")


def denied(args):
    p = Probe(args, args.user, args.password)
    # mosquitto 2.0 grants a subscription the ACL does not allow to read and
    # then delivers nothing on it: what counts is what arrives.
    granted = p.subscribe(f"seq/{args.topic}")
    p.subscribe(f"relay/replay/{args.user}/#")
    p.publish(f"relay/retransmit/{args.user}", json.dumps({"topic": args.topic, "from": 1}).encode())
    status_topic = f"relay/replay/{args.user}/status"
    p.wait(lambda: p.on(status_topic), args.timeout, "no replay status")
    status = json.loads(p.on(status_topic)[0])
    # The frame that an allowed publisher now sends must not reach this user
    # either: publish through an allowed user and wait until it has its frame.
    allowed = Probe(args, args.allowed_user, args.allowed_password)
    allowed.subscribe(f"seq/{args.topic}")
    allowed.publish(args.topic, b"while denied watches")
    allowed.wait(lambda: any(parse_frame(x)[3] == b"while denied watches" for x in allowed.on(f"seq/{args.topic}")),
                 args.timeout, "the allowed user's frame")
    allowed.close()
    time.sleep(0.5)  # the broker sends both copies of a frame together; allow for scheduling
    frames = len(p.on(f"seq/{args.topic}"))
    replayed = len(p.on(f"relay/replay/{args.user}"))
    p.close()
    print(json.dumps({"suback": granted, "status": status, "seq_frames": frames, "replay_frames": replayed}))
    # PROTOCOL 5.3 names the refusal in "code"; a v1 relay only in "error".
    if status.get("status") != "error" or status.get("code", status.get("error")) != "forbidden":
        fail(f"replay status {status}, expected error/forbidden")
    if frames or replayed:
        fail(f"the denied user got {frames} frames on seq/T and {replayed} replayed frames")


def replay(args):
    p = Probe(args, args.user, args.password)
    p.subscribe(f"relay/replay/{args.user}/#")
    p.publish(f"relay/retransmit/{args.user}", json.dumps({"topic": args.topic, "from": 1}).encode())
    status_topic = f"relay/replay/{args.user}/status"
    p.wait(lambda: p.on(status_topic), args.timeout, "no replay status")
    status = json.loads(p.on(status_topic)[0])
    seqs = [parse_frame(x)[1] for x in p.on(f"relay/replay/{args.user}")]
    p.close()
    print(json.dumps({"status": status, "frames": len(seqs)}))
    if status.get("status") != "ok" or status.get("sent") != len(seqs) or status.get("last") != len(seqs):
        fail(f"status {status} does not match {len(seqs)} frames")
    if seqs != list(range(1, len(seqs) + 1)):
        fail("replayed SEQs are not 1..N in order")
    if args.expect is not None and len(seqs) != args.expect:
        fail(f"{len(seqs)} frames replayed, expected {args.expect}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["roundtrip", "load", "denied", "replay"])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=1883)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--allowed-user")
    ap.add_argument("--allowed-password")
    ap.add_argument("--topic", required=True)
    ap.add_argument("--payload", default="hello")
    ap.add_argument("--seq", type=int, default=1)
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--rate", type=float, default=100)
    ap.add_argument("--acked")
    ap.add_argument("--hurry-file", help="load: once this file exists, publish the rest unpaced")
    ap.add_argument("--hold-last", type=int, default=0,
                    help="load: the last N messages wait for --hurry-file (then go unpaced)")
    ap.add_argument("--hold-timeout", type=float, default=600,
                    help="load: how long the held messages wait for --hurry-file")
    ap.add_argument("--expect", type=int)
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    if args.hold_last and not args.hurry_file:
        ap.error("--hold-last needs --hurry-file")
    if not 0 <= args.hold_last < args.count:
        ap.error("--hold-last must be at least 0 and below --count")
    globals()[args.command](args)


if __name__ == "__main__":
    main()
