"""SeqClient against a scripted relay: v1.1 statuses (first, code, retry, next) and timeouts,
driven without a broker (the paho client is never connected; its publish is recorded)."""
import json
from types import SimpleNamespace

from seqrelay_client import MAX_SEQ, SeqClient, encode_frame


class Scripted:
    def __init__(self, **options):
        self.requests, self.events, self.seen = [], [], []
        self.c = SeqClient(client_id="r1", connect=False, reply_timeout=0.04, gap_wait=0.01,
                           on_lost=lambda e: self.events.append(("lost", e)),
                           on_history=lambda e: self.events.append(("history", e)), **options)
        self.c.mqtt.publish = lambda topic, body, qos: self.requests.append(json.loads(body))
        self.c.mqtt.subscribe = lambda *a: None
        self.c._on_connect(None, None, {}, 0)
        self.now = 0.0

    def sub(self, topic, **kw):
        return self.c.subscribe(topic, on_message=lambda m: self.seen.append(m.seq), **kw)

    def frame(self, topic, seq, tid=7):
        self.c._on_message(None, None, SimpleNamespace(topic=topic, payload=encode_frame(tid, seq, f"m{seq}")))

    def status(self, **body):
        self.c._on_message(None, None, SimpleNamespace(topic="relay/replay/r1/status", payload=json.dumps(body).encode()))

    def advance(self, seconds):
        self.now += seconds
        self.c._tick(self.now)


def test_history_starts_at_first():
    s = Scripted()
    s.sub("chat/a", history=True)
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}]
    s.status(topic="chat/a", id=7, **{"from": MAX_SEQ}, to=MAX_SEQ, sent=0, last=30, first=21, status="ok")
    assert s.events[0] == ("history", {"topic": "chat/a", "first": 21, "last": 30, "start": 21})
    assert s.requests[1] == {"id": 7, "from": 21, "to": 30}
    for seq in range(21, 31):
        s.frame("relay/replay/r1", seq)
    assert s.seen == list(range(21, 31))


def test_first_past_the_gap_is_reported_as_where_history_starts():
    s = Scripted()
    s.sub("chat/a", from_seq=5)
    s.status(topic="chat/a", id=7, **{"from": MAX_SEQ}, to=MAX_SEQ, sent=0, last=10, first=1, status="ok")
    for seq in (8, 9, 10):
        s.frame("relay/replay/r1", seq)
    s.status(topic="chat/a", id=7, **{"from": 5}, to=10, sent=3, last=10, first=8, status="ok")
    assert ("lost", {"topic": "chat/a", "from": 5, "to": 7, "reason": "history starts at 8", "code": None, "retry": None}) in s.events
    assert s.seen == [8, 9, 10]


def test_retry_true_asks_again_and_retry_false_gives_up_with_code():
    s = Scripted()
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    s.frame("seq/chat/a", 4)
    s.advance(0.02)
    s.advance(0.02)
    assert s.requests[-1] == {"id": 7, "from": 2, "to": 3}
    s.status(id=7, **{"from": 2}, to=3, status="error", error="busy", code="busy", retry=True)
    assert not s.events
    s.advance(0.05)
    assert len(s.requests) == 2 and s.requests[-1] == {"id": 7, "from": 2, "to": 3}
    s.status(id=7, **{"from": 2}, to=3, status="error", error="forbidden", code="forbidden", retry=False)
    assert s.events == [("lost", {"topic": "chat/a", "from": 2, "to": 3, "reason": "forbidden", "code": "forbidden", "retry": False})]
    assert s.seen == [1, 4]


def test_no_reply_gives_up_after_max_attempts_and_goes_on():
    s = Scripted(max_attempts=3)
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    s.frame("seq/chat/a", 3)
    for _ in range(100):
        s.advance(0.01)
    assert len(s.requests) == 3
    assert s.events[0][1]["reason"] == "no reply from the relay"
    s.frame("seq/chat/a", 4)
    assert s.seen == [1, 3, 4]
