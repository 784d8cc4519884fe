#!/usr/bin/python3
"""The paper's measurement with the Python client library.

Hwang, Park and Son measured their messenger with 10 clients, each sending a
20-byte message every 0.1 s, 1,000 messages each, into one room; the
response time of a message is the time from its send to its sender
receiving it back. They report 0.37 s through their sequencing server and
0.20 s over plain MQTT, with no loss.

This script runs the same load twice against throwaway servers (the relay,
mosquitto and MariaDB of clients/python/tests/servers.py, on loopback):
  relay: clients publish on the raw topic and read seq/<topic> through
         seqrelay_client.SeqClient (ordered, exactly once, gaps filled);
  mqtt:  clients publish and subscribe on a raw topic the relay does not
         sequence (plain paho-mqtt, QoS 1).
It prints the paper's table beside ours and writes a plot of the
response-time distribution.

    tools/paper_experiment.py [--messages 1000] [--clients 10] [--plot docs/paper-experiment.png]

The relay is $SEQTEST_RELAY_BINARY, else build/relay/seqrelay. A full run takes
about 2 x (messages x 0.1 s) plus ~10 s.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "clients/python"), str(ROOT / "clients/python/tests")]

import paho.mqtt.client as paho  # noqa: E402

from seqrelay_client import SeqClient  # noqa: E402
from seqrelay_client.client import _no_delay  # noqa: E402
from servers import TestServers  # noqa: E402

PAPER = {"relay": 0.37, "mqtt": 0.20}
RELAY_TOPIC = "paper/room"  # sequenced
PLAIN_TOPIC = "plain/room"  # not sequenced (the relay runs with --source paper/#)
PAYLOAD_SIZE = 20


def payload(client: int, k: int) -> bytes:
    body = f"{client:02d}:{k:06d}:".encode()
    return body + b"x" * (PAYLOAD_SIZE - len(body))


def paho_client(client_id: str) -> paho.Client:
    kwargs = {"client_id": client_id}
    if hasattr(paho, "CallbackAPIVersion"):
        kwargs["callback_api_version"] = paho.CallbackAPIVersion.VERSION1
    return paho.Client(**kwargs)


class Participant:
    """One client: sends every `interval`, records when its own messages come back."""

    def __init__(self, index: int, mode: str, port: int, messages: int):
        self.index, self.mode, self.messages = index, mode, messages
        self.sent: dict[int, float] = {}
        self.echo: dict[int, float] = {}
        self.received = 0  # every message of every client this one received
        self.order_ok = True  # relay mode: SEQ strictly +1 each time
        self._last_seq = 0
        self._lock = threading.Lock()
        self._subacks = 0
        self.subscribed = threading.Event()  # every SUBACK came: it receives what is sent from now on
        if mode == "relay":
            self.seq = SeqClient(port=port, client_id=f"paper-{index}", connect=False)
            self.out = self.seq.mqtt
            self.out.on_subscribe = lambda *_: self._suback(2)  # the replies' topic and seq/<room>
            self.seq.connect()
            self.seq.subscribe(RELAY_TOPIC, on_message=self._on_seq_message)
        else:
            self.seq = None
            self.out = paho_client(f"plain-{index}")
            self.out.on_message = lambda c, u, m: self._on_payload(m.payload)
            self.out.on_subscribe = lambda *_: self._suback(1)
            self.out.on_connect = lambda *_: _no_delay(self.out)  # as SeqClient does: a fair comparison
            self.out.connect("127.0.0.1", port)
            self.out.subscribe(PLAIN_TOPIC, 1)
            self.out.loop_start()

    def _suback(self, wanted: int) -> None:
        self._subacks += 1
        if self._subacks >= wanted:
            self.subscribed.set()

    def _on_seq_message(self, m) -> None:
        if self._last_seq and m.seq != self._last_seq + 1:
            self.order_ok = False
        self._last_seq = m.seq
        self._on_payload(m.payload)

    def _on_payload(self, data: bytes) -> None:
        now = time.monotonic()
        with self._lock:
            self.received += 1
            if int(data[0:2]) == self.index:
                self.echo.setdefault(int(data[3:9]), now)

    def run(self, start: float, interval: float) -> None:
        topic = RELAY_TOPIC if self.mode == "relay" else PLAIN_TOPIC
        for k in range(self.messages):
            due = start + k * interval
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)  # pacing the sends, as the paper's clients did
            with self._lock:
                self.sent[k] = time.monotonic()
            self.out.publish(topic, payload(self.index, k), qos=1)

    def close(self) -> None:
        if self.seq:
            self.seq.close()
        else:
            self.out.disconnect()
            self.out.loop_stop()


def run_mode(mode: str, port: int, clients: int, messages: int, interval: float) -> dict:
    people = [Participant(i, mode, port, messages) for i in range(clients)]
    for p in people:
        if not p.subscribed.wait(10):
            raise RuntimeError(f"client {p.index} was not subscribed after 10 s")
    start = time.monotonic() + 0.2
    threads = [threading.Thread(target=p.run, args=(start + i * interval / clients, interval)) for i, p in enumerate(people)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Everything should be back within a few seconds of the last send.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(len(p.echo) < messages for p in people):
        time.sleep(0.05)
    for p in people:
        p.close()
    latencies = [p.echo[k] - p.sent[k] for p in people for k in p.echo]
    sent = clients * messages
    lost = sent - len(latencies)
    latencies.sort()
    return {
        "mode": mode,
        "latencies": latencies,
        "mean": statistics.fmean(latencies),
        "p50": latencies[len(latencies) // 2],
        "p99": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "max": latencies[-1],
        "sent": sent,
        "lost": lost,
        "received_all": all(p.received == sent for p in people),
        "in_order": all(p.order_ok for p in people) if mode == "relay" else None,
        "requests": sum(p.seq.stats.requests for p in people if p.seq),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--messages", type=int, default=1000, help="per client (paper: 1000)")
    ap.add_argument("--interval", type=float, default=0.1, help="seconds between a client's sends (paper: 0.1)")
    ap.add_argument("--plot", default=str(ROOT / "docs/paper-experiment.png"))
    args = ap.parse_args()

    servers = TestServers([f"--source={RELAY_TOPIC}"])
    try:
        results = [run_mode(m, servers.mqtt_port, args.clients, args.messages, args.interval) for m in ("relay", "mqtt")]
        rows = int(servers.sql(f"SELECT COUNT(*) FROM seqrelay.MSG WHERE ID = '{RELAY_TOPIC}'").strip())
    finally:
        servers.stop()

    print(f"\n{args.clients} clients x {args.messages} messages of {PAYLOAD_SIZE} bytes every {args.interval} s, "
          "response time = send to own echo (loopback, one 2-core machine)\n")
    print(f"{'path':<8} {'paper mean':>10} {'our mean':>9} {'p50':>8} {'p99':>8} {'max':>8} {'loss':>7} {'paper loss':>10}")
    for r in results:
        print(f"{r['mode']:<8} {PAPER[r['mode']]:>9.2f}s {r['mean']:>8.4f}s {r['p50']:>7.4f}s {r['p99']:>7.4f}s "
              f"{r['max']:>7.4f}s {100 * r['lost'] / r['sent']:>6.2f}% {'0%':>10}")
    relay = results[0]
    print(f"\nrelay path: every client received all {relay['sent']} messages: {relay['received_all']}; "
          f"in SEQ order without gap or duplicate: {relay['in_order']}; retransmit requests: {relay['requests']}; "
          f"MSG rows: {rows}")
    print(f"plain MQTT: every client received all {results[1]['sent']} messages: {results[1]['received_all']}")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r, colour in zip(results, ("#2f5bd3", "#d3812f")):
        ms = [x * 1000 for x in r["latencies"]]
        ax.plot(ms, [i / len(ms) for i in range(len(ms))], color=colour,
                label=f"{'seqrelay' if r['mode'] == 'relay' else 'plain MQTT'}: mean {r['mean'] * 1000:.2f} ms")
        ax.axvline(PAPER[r["mode"]] * 1000, color=colour, linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("response time, send to own echo (ms, log scale); dotted: the paper's means")
    ax.set_ylabel("fraction of messages")
    ax.set_title(f"{args.clients} clients x {args.messages} msgs, 20 B every {args.interval} s")
    ax.legend(loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=100)
    print(f"plot: {args.plot}")
    ok = all(r["lost"] == 0 for r in results) and relay["in_order"]
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
