"""SeqClient against a scripted relay: v1.1 statuses (first, code, retry, next) and timeouts,
driven without a broker (the paho client is never connected; its publish is recorded)."""
import json
import threading
import time
from types import SimpleNamespace

import pytest

import seqrelay_client.client as client_module
from seqrelay_client import HEADER_SIZE, MAX_SEQ, OrderedStream, SeqClient, encode_frame


class FakeClock:
    """The client's clock in these tests: every time it reads (requests sent, replies seen, ticks)
    is this one's, which only advance() moves."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        time.sleep(seconds)


@pytest.fixture(autouse=True)
def fake_clock(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(client_module, "time", clock)
    Scripted.clock = clock
    return clock


class Scripted:
    def __init__(self, **options):
        self.requests, self.events, self.seen = [], [], []
        options = {"reply_timeout": 0.04, "gap_wait": 0.01, **options}
        self.c = SeqClient(client_id="r1", connect=False,
                           on_lost=lambda e: self.events.append(("lost", e)),
                           on_history=lambda e: self.events.append(("history", e)), **options)
        self.c.mqtt.publish = lambda topic, body, qos: self.requests.append(json.loads(body))
        self.subscribed = []  # the topics subscribed, in order; the mid of each is its index + 1
        self.c.mqtt.subscribe = lambda topic, qos: (self.subscribed.append(topic), (0, len(self.subscribed)))[1]
        self.c._on_connect(None, None, {}, 0)

    def sub(self, topic, **kw):
        return self.c.subscribe(topic, on_message=lambda m: self.seen.append(m.seq), **kw)

    def frame(self, topic, seq, tid=7, ordered=True):
        self.c._on_message(None, None, SimpleNamespace(topic=topic, payload=encode_frame(tid, seq, f"m{seq}", ordered)))

    def status(self, **body):
        self.c._on_message(None, None, SimpleNamespace(topic="relay/replay/r1/status", payload=json.dumps(body).encode()))

    def advance(self, seconds):
        self.clock.now += seconds
        self.c._tick(self.clock.now)

    def advance_until_requests(self, n, steps):
        """Advances 0.01 s at a time, at most `steps` times, until `n` requests were sent."""
        for _ in range(steps):
            if len(self.requests) >= n:
                return
            self.advance(0.01)


class FifoRelay:
    """Serves a Scripted client's requests as relay/replay/retransmit_service.cc does: one after
    another, in the order they came. A request that finds `max_pending` others waiting (the one in
    service not counted) is refused at once with busy. `topics`: name -> (id, last); every SEQ from
    1 to last is stored."""

    def __init__(self, s, topics, max_pending):
        self.s, self.topics, self.max_pending = s, topics, max_pending
        self.read = len(s.requests)  # requests before this index were sent before the relay came
        self.waiting, self.busy = [], 0

    def step(self):
        """What a turn of the relay does: takes the requests sent since the last turn, refusing
        those over the bound, then serves the oldest waiting one whole (frames, then its status);
        then 0.01 s pass."""
        for body in self.s.requests[self.read:]:
            if len(self.waiting) >= self.max_pending:
                self.busy += 1
                self.s.status(**body, status="error", error="too many requests pending", code="busy", retry=True)
            else:
                self.waiting.append(body)
        self.read = len(self.s.requests)
        if self.waiting:
            job = self.waiting.pop(0)
            tid, last = next(v for v in self.topics.values() if v[0] == job["id"])
            to = job.get("to", last)
            sent = 0
            for seq in range(job["from"], min(to, last) + 1):
                self.s.frame("relay/replay/r1", seq, tid=tid)
                sent += 1
            self.s.status(**{**job, "to": max(to, job["from"] - 1)}, sent=sent, last=last, first=1, status="ok")
        self.s.advance(0.01)


def hundred_topics_caught_up_after_a_reconnect(max_pending, count=100, **options):
    """`count` topics with SEQ 1 delivered, then a reconnect: one catch-up each, served by a
    FifoRelay with `max_pending`. Returns the Scripted client and the relay once every topic is at
    SEQ 3 (or after 2000 turns), and the most requests that were out at once."""
    s = Scripted(**options)
    topics = {f"room/{i}": (100 + i, 3) for i in range(count)}
    s.sub("room/#")
    for name, (tid, _) in topics.items():
        s.frame(f"seq/{name}", 1, tid=tid)
    relay = FifoRelay(s, topics, max_pending)
    s.c._on_connect(None, None, {}, 0)  # 2 and 3 of each were published while away
    most = 0
    for _ in range(2000):
        most = max(most, sum(1 for t in s.c._topics.values() if t.asked is not None and not getattr(t, "queued", False)))
        if len(s.seen) == 3 * count or lost(s.events):
            break
        relay.step()
    return s, relay, topics, most


def lost(events):
    return [e for kind, e in events if kind == "lost"]


def gap_2_to_3_asked():
    """chat/a with SEQ 1 delivered and 4 held: the gap 2..3 asked for."""
    s = Scripted()
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    s.frame("seq/chat/a", 4)
    s.advance(0.001)  # the gap is seen
    s.advance(0.02)  # past gap_wait: asked for
    assert s.requests == [{"id": 7, "from": 2, "to": 3}]
    return s


def test_history_starts_at_first():
    s = Scripted()
    s.sub("chat/a", history=True)
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}]
    s.frame("seq/chat/a", 61)  # live, held while the lookup is out
    s.status(topic="chat/a", id=7, **{"from": MAX_SEQ}, to=MAX_SEQ, sent=0, last=60, first=20, status="ok")
    # SEQs 1..19 were deleted: reported once, at once, and never asked for.
    assert s.events == [
        ("history", {"topic": "chat/a", "first": 20, "last": 60, "start": 20}),
        ("lost", {"topic": "chat/a", "from": 1, "to": 19, "reason": "history starts at 20", "code": None, "retry": None}),
    ]
    assert s.requests[1:] == [{"id": 7, "from": 20, "to": 60}]
    for seq in range(20, 61):
        s.frame("relay/replay/r1", seq)
    s.status(topic="chat/a", id=7, **{"from": 20}, to=60, first=20, sent=41, last=61, status="ok")
    assert s.seen == list(range(20, 62))
    assert len(lost(s.events)) == 1 and s.c.stats.gaps_lost == 1 and s.c.stats.gaps_filled == 1


def test_last_below_first_starts_at_first_and_says_so():
    s = Scripted()
    s.sub("chat/a", last=50)
    s.sub("chat/b", last=5)
    s.status(topic="chat/a", id=7, **{"from": MAX_SEQ}, to=MAX_SEQ, sent=0, last=60, first=20, status="ok")
    s.status(topic="chat/b", id=8, **{"from": MAX_SEQ}, to=MAX_SEQ, sent=0, last=60, first=20, status="ok")
    assert s.requests[2:] == [{"id": 7, "from": 20, "to": 60}, {"id": 8, "from": 56, "to": 60}]
    assert lost(s.events) == [{"topic": "chat/a", "from": 11, "to": 19, "reason": "history starts at 20", "code": None, "retry": None}]


def test_gap_reply_with_first_above_the_gap_gives_up_at_once_and_never_asks_again():
    s = Scripted()
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    s.frame("seq/chat/a", 40)
    s.advance(0.02)
    s.advance(0.02)
    assert s.requests == [{"id": 7, "from": 2, "to": 39}]
    # Rows 2..19 were deleted; the reply is cut after 10 frames.
    for seq in range(20, 30):
        s.frame("relay/replay/r1", seq)
    s.status(topic="chat/a", id=7, **{"from": 2}, to=39, first=20, sent=10, last=40, truncated=True, next=30, status="ok")
    # At once: not after the rest of the truncated reply.
    assert lost(s.events) == [{"topic": "chat/a", "from": 2, "to": 19, "reason": "history starts at 20", "code": None, "retry": None}]
    assert s.seen == [1] + list(range(20, 30))
    assert s.requests[1:] == [{"id": 7, "from": 30, "to": 39}]
    for seq in range(30, 40):
        s.frame("relay/replay/r1", seq)
    s.status(topic="chat/a", id=7, **{"from": 30}, to=39, first=20, sent=10, last=40, status="ok")
    s.frame("seq/chat/a", 41)
    for _ in range(20):
        s.advance(0.05)  # any retry or new request would be out by now
    assert len(s.requests) == 2 and len(lost(s.events)) == 1
    assert s.seen == [1] + list(range(20, 42))


def test_gap_reply_with_first_above_the_whole_gap_gives_up_to_first_only_what_is_not_held():
    """The SEQs given up are those really gone: frames held below `first` came before the relay
    deleted their rows, and are delivered, not reported lost (until 2026-12-06 the lost range ran
    over them, and then they came)."""
    s = Scripted()
    s.sub("chat/a")
    for seq in (1, 3, 10, 11, 25):
        s.frame("seq/chat/a", seq)
    s.advance(0.02)
    s.advance(0.02)
    assert s.requests == [{"id": 7, "from": 2, "to": 2}]
    s.status(topic="chat/a", id=7, **{"from": 2}, to=2, first=20, sent=0, last=25, status="ok")

    def gone(from_, to):
        return {"topic": "chat/a", "from": from_, "to": to, "reason": "history starts at 20", "code": None, "retry": None}

    assert lost(s.events) == [gone(2, 2), gone(4, 9), gone(12, 19)]
    assert s.seen == [1, 3, 10, 11] and s.c.stats.gaps_lost == 3
    s.advance(0.02)
    s.advance(0.02)
    assert s.requests[1:] == [{"id": 7, "from": 20, "to": 24}]


def test_a_gap_below_held_frames_whose_reply_says_first_is_above_them_reports_only_the_gap_lost():
    s = Scripted()
    s.sub("chat/a")
    for seq in (4, 10, 11):  # next = 5, 10 and 11 held
        s.frame("seq/chat/a", seq)
    s.advance(0.02)
    s.advance(0.02)
    assert s.requests == [{"id": 7, "from": 5, "to": 9}]
    s.status(topic="chat/a", id=7, **{"from": 5}, to=9, first=12, sent=0, last=11, status="ok")
    assert lost(s.events) == [{"topic": "chat/a", "from": 5, "to": 9, "reason": "history starts at 12", "code": None, "retry": None}]
    assert s.seen == [4, 10, 11]
    s.frame("seq/chat/a", 12)
    assert s.seen == [4, 10, 11, 12]


def test_v1_relay_without_first_history_from_1_and_a_hole_asked_again_then_given_up():
    s = Scripted()
    s.sub("chat/a", history=True)
    s.status(topic="chat/a", id=7, **{"from": MAX_SEQ}, to=MAX_SEQ, sent=0, last=30, status="ok")
    assert s.events == [("history", {"topic": "chat/a", "first": 1, "last": 30, "start": 1})]
    assert s.requests[1] == {"id": 7, "from": 1, "to": 30}
    for seq in range(1, 11):
        if seq != 4:
            s.frame("relay/replay/r1", seq)
    s.status(topic="chat/a", id=7, **{"from": 1}, to=30, sent=9, last=30, truncated=True, next=11, status="ok")
    assert s.requests[2] == {"id": 7, "from": 11, "to": 30}
    assert not lost(s.events) and s.seen == [1, 2, 3]
    for seq in range(11, 31):
        s.frame("relay/replay/r1", seq)
    s.status(topic="chat/a", id=7, **{"from": 11}, to=30, sent=20, last=30, status="ok")
    # 4 may have been dropped by the broker: asked again, up to max_attempts (5) requests in all.
    for n in range(3, 7):
        assert s.requests[n] == {"id": 7, "from": 4, "to": 4}
        assert not lost(s.events)
        s.status(topic="chat/a", id=7, **{"from": 4}, to=4, sent=0, last=30, status="ok")
    assert len(s.requests) == 7
    assert lost(s.events) == [{"topic": "chat/a", "from": 4, "to": 4, "reason": "the relay has no such SEQ", "code": None, "retry": None}]
    assert s.seen == [1, 2, 3] + list(range(5, 31))


def test_a_frame_the_broker_dropped_from_a_reply_is_asked_for_again_and_reported_only_after_max_attempts():
    # The relay keeps no gaps of its own between first and last: a frame of an ok reply that never
    # came was dropped on the way (a reply larger than the broker's queue for a slow client). Until
    # 2026-12-06 it was given up at once as "the relay has no such SEQ".
    s = Scripted()
    s.sub("chat/a", history=True)
    s.status(topic="chat/a", id=7, **{"from": MAX_SEQ}, to=MAX_SEQ, sent=0, last=3, first=1, status="ok")
    assert s.requests[1] == {"id": 7, "from": 1, "to": 3}
    s.frame("relay/replay/r1", 1)
    s.frame("relay/replay/r1", 3)
    s.status(topic="chat/a", id=7, **{"from": 1}, to=3, sent=3, last=3, status="ok")
    assert s.requests[2] == {"id": 7, "from": 2, "to": 2}
    s.frame("relay/replay/r1", 2)
    s.status(topic="chat/a", id=7, **{"from": 2}, to=2, sent=1, last=3, status="ok")
    assert s.seen == [1, 2, 3] and not lost(s.events)
    # Dropped every time: reported after max_attempts requests, saying the relay did send it.
    s.frame("seq/chat/a", 5)
    s.advance(0.02)
    s.advance(0.02)
    for n in range(3, 8):
        assert s.requests[n] == {"id": 7, "from": 4, "to": 4}
        s.status(topic="chat/a", id=7, **{"from": 4}, to=4, sent=1, last=5, status="ok")
    assert len(s.requests) == 8
    assert lost(s.events) == [{"topic": "chat/a", "from": 4, "to": 4, "reason": "sent by the relay, not delivered by the broker",
                               "code": None, "retry": None}]
    assert s.seen == [1, 2, 3, 5]


def test_a_status_of_an_earlier_try_of_the_same_range_is_not_taken_for_the_last_trys_answer():
    """As ClientE2E.AStatusOfAnEarlierTryOfTheSameRangeIsNotTakenForTheLastTrysAnswer: the same range
    asked twice (no status within the reply timeout), and the first try's status comes after the
    second try went out, its frame dropped by the broker on the way. That status is the first try's,
    not the last one's: the client waits for the second's. Until 2026-12-07 it took it for the last
    try's answer, reported SEQ 2 lost, and dropped the second reply's frame as a duplicate: the
    message never reached the application."""
    s = Scripted(reply_timeout=0.3, max_attempts=2)
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    s.frame("seq/chat/a", 3)  # 2 lost
    s.advance_until_requests(2, 100)
    assert s.requests == [{"id": 7, "from": 2, "to": 2}] * 2  # no status within the reply timeout: the last try
    s.status(id=7, **{"from": 2}, to=2, sent=1, last=3, status="ok")  # the first try's: its frame dropped
    s.advance(0.1)
    s.frame("relay/replay/r1", 2)  # the last try's reply
    s.status(id=7, **{"from": 2}, to=2, sent=1, last=3, status="ok")
    assert lost(s.events) == []
    assert s.seen == [1, 2, 3]
    assert s.c.stats.gaps_lost == 0


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
    s.advance(0.07)  # past the busy pause: reply_timeout times 0.5 to 1.5
    assert len(s.requests) == 2 and s.requests[-1] == {"id": 7, "from": 2, "to": 3}
    s.status(id=7, **{"from": 2}, to=3, status="error", error="forbidden", code="forbidden", retry=False)
    assert s.events == [("lost", {"topic": "chat/a", "from": 2, "to": 3, "reason": "forbidden", "code": "forbidden", "retry": False})]
    assert s.seen == [1, 4]


def test_a_frame_above_the_topics_newest_seq_is_dropped_and_nothing_below_it_is_given_up():
    s = Scripted()
    bad = []
    s.c.on_bad_frame = bad.append
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    s.frame("seq/chat/a", 1000000)  # a forged SEQ
    s.advance(0.02)
    s.advance(0.02)
    assert s.requests[-1] == {"id": 7, "from": 2, "to": 999999}
    s.frame("relay/replay/r1", 2)
    s.frame("relay/replay/r1", 3)
    s.status(id=7, **{"from": 2}, to=999999, sent=2, last=3, status="ok")
    assert lost(s.events) == []
    assert s.c.stats.bad_frames == 1 and s.c.stats.gaps_filled == 1
    assert bad == [{"topic": "seq/chat/a", "seqs": [1000000], "reason": "1 frame(s) above SEQ 3, the newest the relay stored"}]
    s.frame("seq/chat/a", 4)
    s.frame("seq/chat/a", 5)
    assert s.seen == [1, 2, 3, 4, 5]


def test_a_frame_that_came_after_the_request_above_the_replys_newest_seq_stays():
    s = Scripted()
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    s.frame("seq/chat/a", 4)
    s.frame("seq/chat/a", 1000000)  # forged, held before the request
    s.advance(0.02)
    s.advance(0.02)
    assert s.requests[-1] == {"id": 7, "from": 2, "to": 3}
    s.frame("seq/chat/a", 6)  # real, below the forged one, committed after the relay read `last`
    s.frame("relay/replay/r1", 2)
    s.frame("relay/replay/r1", 3)  # fills the request before its status
    s.advance(0.02)
    s.advance(0.02)
    assert s.requests[-1] == {"id": 7, "from": 5, "to": 5}
    s.frame("relay/replay/r1", 5)
    assert s.seen == [1, 2, 3, 4, 5, 6]
    # The gap below the forged frame: its status says there is nothing above 6.
    s.advance(0.02)
    s.advance(0.02)
    assert s.requests[-1] == {"id": 7, "from": 7, "to": 999999}
    s.frame("seq/chat/a", 8)  # real, after the request: stays
    s.status(id=7, **{"from": 7}, to=999999, sent=0, last=6, status="ok")
    assert s.c.stats.bad_frames == 1  # the forged one only
    s.advance(0.02)
    s.advance(0.02)
    assert s.requests[-1] == {"id": 7, "from": 7, "to": 7}
    s.frame("relay/replay/r1", 7)
    assert s.seen == list(range(1, 9)) and lost(s.events) == []


def test_history_of_a_topic_with_no_message_yet_is_looked_up_again_after_a_reconnect():
    s = Scripted()
    histories = []
    s.c.on_history = histories.append
    s.sub("chat/a", history=True)
    s.status(topic="chat/a", **{"from": MAX_SEQ}, status="error", error="unknown topic", code="unknown_topic", retry=False)
    s.c._on_connect(None, None, {}, 0)  # a reconnect: 1 and 2 were published while away, nothing live after them
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}] * 2
    s.status(topic="chat/a", id=7, **{"from": MAX_SEQ}, to=MAX_SEQ, sent=0, last=2, first=1, status="ok")
    assert s.requests[2] == {"id": 7, "from": 1, "to": 2}
    s.frame("relay/replay/r1", 1)
    s.frame("relay/replay/r1", 2)
    assert s.seen == [1, 2] and len(histories) == 1
    s.c._on_connect(None, None, {}, 0)  # the topic is known now: caught up by id, not looked up
    assert s.requests[3] == {"id": 7, "from": 3}


def test_a_topic_unsubscribed_from_in_its_history_event_is_not_looked_up_again_after_a_reconnect():
    # Until 2026-12-07 the topic's start was kept after the listener had unsubscribed, and the next
    # reconnect looked it up and read its history for nobody.
    s = Scripted()
    room = s.sub("chat/a", history=True)
    s.c.on_history = lambda _e: room.unsubscribe()
    s.status(topic="chat/a", **{"from": MAX_SEQ}, status="error", error="unknown topic", code="unknown_topic", retry=False)
    s.c._on_connect(None, None, {}, 0)
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}]


def test_a_topic_unsubscribed_from_in_its_reset_on_lost_is_forgotten():
    # Until 2026-12-07 the lookup's end raised (a KeyError, counted as a bad frame) and the topic
    # was started for nobody.
    s = Scripted()
    room = s.sub("chat/a", from_seq=501)
    s.c.on_lost = lambda _e: room.unsubscribe()
    s.status(topic="chat/a", id=7, **{"from": MAX_SEQ}, to=MAX_SEQ, sent=0, last=2, first=1, status="ok")
    assert s.c.stats.bad_frames == 0
    assert not s.c._topics and not s.c._lookups
    s.c._on_connect(None, None, {}, 0)
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}]


def test_the_last_n_of_an_unknown_topic_start_at_1_and_a_failed_lookup_again_loses_nothing():
    s = Scripted(max_attempts=1)
    s.sub("chat/a", last=5)
    s.status(topic="chat/a", **{"from": MAX_SEQ}, status="error", error="unknown topic", code="unknown_topic", retry=False)
    s.c._on_connect(None, None, {}, 0)  # looked up again; the relay refuses it for good this time
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}] * 2
    s.status(topic="chat/a", **{"from": MAX_SEQ}, status="error", error="forbidden", code="forbidden", retry=False)
    s.c._on_connect(None, None, {}, 0)  # and again at the next reconnect, which gets no answer
    assert len(s.requests) == 3
    s.advance(0.1)  # given up
    assert lost(s.events) == []
    s.frame("seq/chat/a", 2)  # 1 came while away: asked for, as the stream starts at 1
    s.advance(0.02)
    s.advance(0.02)
    assert s.requests[-1] == {"id": 7, "from": 1, "to": 1}
    s.frame("relay/replay/r1", 1)
    assert s.seen == [1, 2]


def test_a_resume_from_a_later_seq_of_an_unknown_topic_is_reported_and_the_topic_read_from_seq_1():
    s = Scripted()
    s.sub("chat/a", from_seq=5)  # a position saved against a database since reset
    s.status(topic="chat/a", **{"from": MAX_SEQ}, status="error", error="unknown topic")  # a v1 relay's: no code, no retry
    assert s.events == [("lost", {"topic": "chat/a", "from": 0, "to": 0, "reason": "unknown topic", "code": None})]
    s.frame("seq/chat/a", 2)  # the new database's second message: its first is missing, not an old one
    s.advance(0.02)
    s.advance(0.02)
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}, {"id": 7, "from": 1, "to": 1}]
    s.frame("relay/replay/r1", 1)
    assert s.seen == [1, 2]
    s.c._on_connect(None, None, {}, 0)  # known by id now: caught up, not looked up again
    assert s.requests[2] == {"id": 7, "from": 3}


def test_a_resume_past_a_known_topics_newest_seq_is_reported_and_the_topic_read_from_its_first():
    """A position saved against a database since reset, on a topic the new database has 10
    messages of: SEQ 11 and on were taken for ones delivered before and dropped as duplicates,
    with nothing said. Now the reset is reported and the topic read from its first SEQ."""
    s = Scripted()
    s.sub("chat/a", from_seq=500)
    s.status(topic="chat/a", id=7, **{"from": MAX_SEQ}, to=MAX_SEQ, sent=0, last=10, first=1, status="ok")
    reason = "resumed at 500, past the topic's newest SEQ 10: its history began again"
    assert lost(s.events) == [{"topic": "chat/a", "from": 0, "to": 0, "reason": reason, "code": None}]
    assert s.requests[-1] == {"id": 7, "from": 1, "to": 10}
    for seq in range(1, 11):
        s.frame("relay/replay/r1", seq)
    s.status(id=7, **{"from": 1}, to=10, sent=10, last=10, first=1, status="ok")
    s.frame("seq/chat/a", 11)
    s.frame("seq/chat/a", 12)
    assert s.seen == list(range(1, 13))
    assert s.c.stats.duplicates == 0


def test_a_request_waiting_behind_another_topics_reply_is_not_asked_again_nor_given_up():
    """The relay serves one client's requests one after another: b's reply waits behind a's, and
    b sees none of its frames meanwhile. Until 2026-12-06 b's timeout ran from b's own frames only:
    b was asked again at each timeout and then given up as "no reply from the relay" while a's
    reply still streamed. A frame or a status of a request restarts the timeouts of that request and
    of every request sent after it: they wait behind it at the relay."""
    s = Scripted(max_attempts=3)  # timeouts of 0.04, 0.08, 0.16 s
    s.sub("chat/a", history=True)
    s.sub("chat/b", history=True)
    s.status(topic="chat/a", id=7, **{"from": MAX_SEQ}, to=MAX_SEQ, sent=0, last=50, first=1, status="ok")
    s.status(topic="chat/b", id=8, **{"from": MAX_SEQ}, to=MAX_SEQ, sent=0, last=50, first=1, status="ok")
    assert s.requests[2:] == [{"id": 7, "from": 1, "to": 50}, {"id": 8, "from": 1, "to": 50}]
    # a's reply, cut after 25 frames by the relay's cap: a frame each 0.03 s, 0.75 s.
    for seq in range(1, 26):
        s.advance(0.03)
        s.frame("relay/replay/r1", seq)
    s.advance(0.03)
    s.status(id=7, **{"from": 1}, to=50, sent=25, last=50, first=1, truncated=True, next=26, status="ok")
    assert s.requests[4:] == [{"id": 7, "from": 26, "to": 50}]  # the rest of a: behind b at the relay
    assert [r for r in s.requests if r.get("id") == 8] == [{"id": 8, "from": 1, "to": 50}], "b asked once"
    assert lost(s.events) == []
    # Then b's reply, and then the rest of a's, which waited behind it.
    for seq in range(1, 51):
        s.advance(0.03)
        s.frame("relay/replay/r1", seq, tid=8)
    s.status(id=8, **{"from": 1}, to=50, sent=50, last=50, first=1, status="ok")
    for seq in range(26, 51):
        s.advance(0.03)
        s.frame("relay/replay/r1", seq)
    s.status(id=7, **{"from": 26}, to=50, sent=25, last=50, first=1, status="ok")
    assert len(s.requests) == 5, "each asked for once, and a's rest once"
    assert s.seen == list(range(1, 26)) + list(range(1, 51)) + list(range(26, 51)) and lost(s.events) == []


def test_a_request_whose_reply_is_lost_times_out_while_the_relay_keeps_answering_requests_sent_after_it():
    """The other side of the rule above. From that change until the fix (both on 2026-12-06) any
    word on the reply topics restarted every request's timeout: a request whose reply was lost (a
    relay instance froze, or the reply went out while the client reconnected) never timed out while
    the client's other requests kept being answered; it was never asked again nor reported lost, and
    its ordered topic held every later frame for ever. The relay serves the requests in the order
    they came: replies to requests sent after b's say it is past b, and restart no timeout of b."""
    s = Scripted(max_attempts=2)  # timeouts of 0.04 and 0.08 s
    by_topic = {"chat/a": [], "chat/b": []}
    for name in by_topic:
        s.c.subscribe(name, on_message=lambda m: by_topic[m.topic].append(m.seq))
    s.frame("seq/chat/b", 1, tid=8)
    s.frame("seq/chat/b", 3, tid=8)
    s.advance(0.001)
    s.advance(0.02)
    assert s.requests == [{"id": 8, "from": 2, "to": 2}]  # b's gap: its reply is lost
    # Then a live frame of a every 0.01 s, each after a missing one: a new gap of a each time, asked
    # for after b's and answered, far more often than b's timeout.
    s.frame("seq/chat/a", 1)
    newest, answered = 1, len(s.requests)
    for _ in range(100):
        if lost(s.events):
            break
        newest += 2
        s.frame("seq/chat/a", newest)
        new, answered = s.requests[answered:], len(s.requests)
        for body in (r for r in new if r["id"] == 7):
            for seq in range(body["from"], body["to"] + 1):
                s.frame("relay/replay/r1", seq)
            s.status(**body, sent=body["to"] - body["from"] + 1, last=newest, first=1, status="ok")
        s.advance(0.01)
    assert lost(s.events) == [{"topic": "chat/b", "from": 2, "to": 2, "reason": "no reply from the relay",
                               "code": None, "retry": None}]
    assert [r for r in s.requests if r["id"] == 8] == [{"id": 8, "from": 2, "to": 2}] * 2, "b asked max_attempts times"
    assert by_topic["chat/b"] == [1, 3], "b goes on past the loss"
    assert len([r for r in s.requests if r["id"] == 7]) >= 3, "a was asked and answered meanwhile"
    assert by_topic["chat/a"] == list(range(1, len(by_topic["chat/a"]) + 1))


def test_a_busy_status_delivered_twice_for_a_lookup_gives_one_attempt_back_only():
    """A busy status delivered twice (QoS 1 may deliver a message again) finds the lookup waiting to
    be sent again, not out. Until 2026-12-06 it gave one more attempt back: the lookup was sent
    max_attempts + 1 times unanswered, its first timeout computed for attempt 0, before it was
    given up."""
    s = Scripted(max_attempts=2)
    s.sub("chat/a", last=5)  # (whose start the lookup alone can tell: given up, it is lost)
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}]
    busy = {"topic": "chat/a", "from": MAX_SEQ, "status": "error", "error": "too many requests pending",
            "code": "busy", "retry": True}
    s.status(**busy)
    s.status(**busy)  # the same status again
    for _ in range(100):
        s.advance(0.01)
    assert lost(s.events) == [{"topic": "chat/a", "from": 0, "to": 0, "reason": "no reply from the relay to the lookup",
                               "code": None}]
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}] * 3, "refused once, then sent max_attempts times"


def test_a_history_lookup_never_answered_keeps_its_start_and_the_first_live_frame_asks_from_it():
    """Until 2026-12-06 the topic started at its first live frame, and the SEQs below it were
    reported lost with the lookup (a saved position skipped them for good)."""
    s = Scripted(max_attempts=2)
    s.sub("chat/a", history=True)
    s.frame("seq/chat/a", 5)  # held while the lookup is out
    s.advance_until_requests(3, 100)
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}] * 2 + [{"id": 7, "from": 1, "to": 4}]  # by the frame's id
    assert not lost(s.events) and s.seen == []
    for seq in range(1, 5):
        s.frame("relay/replay/r1", seq)
    assert s.seen == [1, 2, 3, 4, 5] and not lost(s.events)


def test_a_quiet_topic_whose_lookup_went_unanswered_is_looked_up_again_later_and_its_history_delivered():
    """A quiet topic sends no live frame: the lookup is asked again every 16 reply timeouts until
    the relay answers. Until 2026-12-07 nothing came until its next live frame or a reconnect."""
    s = Scripted(max_attempts=2)
    s.sub("chat/a", history=True)
    s.advance_until_requests(3, 200)
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}] * 3
    s.status(topic="chat/a", id=7, to=MAX_SEQ, sent=0, first=1, last=3, status="ok", **{"from": MAX_SEQ})
    assert s.requests[3] == {"id": 7, "from": 1, "to": 3}
    for seq in range(1, 4):
        s.frame("relay/replay/r1", seq)
    assert s.seen == [1, 2, 3] and not lost(s.events)


def test_a_callback_that_unsubscribes_during_a_reconnects_catch_up_ends_no_thread():
    """on_fetch unsubscribes another topic while the client asks for what each missed. Until
    2026-12-07 the catch-up's loop over the topics raised (the dict changed size) in paho's
    network thread, which ended it."""
    subs = {}
    s = Scripted(on_fetch=lambda e: subs.pop("chat/b").unsubscribe() if "chat/b" in subs else None)
    subs["chat/a"], subs["chat/b"] = s.sub("chat/a"), s.sub("chat/b")
    s.frame("seq/chat/a", 1, tid=7)
    s.frame("seq/chat/b", 1, tid=8)
    s.c._on_connect(None, None, {}, 0)  # a reconnect: each topic's catch-up
    assert [r.get("id") for r in s.requests] == [7]
    assert s.c.position("chat/b") == 0 and s.c.position("chat/a") == 1


def test_a_callback_that_unsubscribes_during_the_timers_round_ends_no_thread():
    """A's lookup given up (on_lost) unsubscribes B, whose lookup the same round was about to ask
    again. Until 2026-12-07 that raised a KeyError, which ended the timer's thread: no request was
    retried or given up after it."""
    subs = {}
    s = Scripted(max_attempts=2)
    s.c.on_lost = lambda e: subs.pop("chat/b").unsubscribe() if "chat/b" in subs else None
    subs["chat/a"] = s.sub("chat/a", last=5)  # the last N: given up for good (lost), not kept
    s.advance(0.05)  # A asked again: its last try
    subs["chat/b"] = s.sub("chat/b", last=5)
    s.advance(1.0)  # A given up, B due for its second try in the same round: raised here
    assert not s.c._lookups
    assert [r["topic"] for r in s.requests] == ["chat/a", "chat/a", "chat/b"]


def test_position_of_a_topic_resumed_at_n_is_n_minus_1_while_its_lookup_is_out_and_once_given_up():
    """An app that saves position() resumes there. Until 2026-12-07 a topic not started yet said 0:
    the next run asked for the whole history."""
    s = Scripted(max_attempts=1)
    s.sub("chat/a", from_seq=501)
    assert s.c.position("chat/a") == 500
    for _ in range(100):  # the lookup's tries and their timeouts: given up, its start kept
        s.advance(0.01)
    assert not s.c._lookups and s.c._start_at == {"chat/a": 501}
    assert s.c.position("chat/a") == 500
    assert s.c.position("chat/b") == 0


def kept_start():
    """A resume whose lookup went unanswered: its start (501) kept. A live frame below it is checked
    with the relay before the topic starts. Until 2026-12-07 the topic started at the kept start:
    after a database reset (the relay restarting on it while the lookup went unanswered) the new
    database's SEQs below it were all dropped as duplicates, saying nothing."""
    s = Scripted(max_attempts=1)
    s.sub("chat/a", from_seq=501)
    for _ in range(10):  # the lookup's try and its timeout: given up, its start kept
        s.advance(0.01)
    assert not s.c._lookups and s.c._start_at == {"chat/a": 501}
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}]
    return s


def test_a_live_frame_below_a_kept_start_of_a_database_since_reset_is_checked_and_the_topic_read_from_1():
    s = kept_start()
    s.frame("seq/chat/a", 2)  # the new database's second message
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}] * 2 and s.seen == []
    s.status(topic="chat/a", id=7, **{"from": MAX_SEQ}, to=MAX_SEQ, sent=0, last=2, first=1, status="ok")
    assert [e["reason"] for e in lost(s.events)] == ["resumed at 501, past the topic's newest SEQ 2: its history began again"]
    assert s.requests[2] == {"id": 7, "from": 1, "to": 2}
    s.frame("relay/replay/r1", 1)
    assert s.seen == [1, 2]


def test_a_live_frame_below_a_kept_start_sent_again_by_a_restarted_relay_is_checked_and_dropped():
    s = kept_start()
    s.frame("seq/chat/a", 480)  # a frame the client had before its restart, published again
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}] * 2
    s.status(topic="chat/a", id=7, **{"from": MAX_SEQ}, to=MAX_SEQ, sent=0, last=502, first=1, status="ok")
    assert s.requests[2] == {"id": 7, "from": 501, "to": 502}
    s.frame("relay/replay/r1", 501)
    s.frame("relay/replay/r1", 502)
    assert s.seen == [501, 502] and lost(s.events) == [] and s.c.stats.duplicates == 1


def test_a_live_frame_below_a_kept_start_whose_check_goes_unanswered_starts_the_topic_at_the_kept_start():
    s = kept_start()
    s.frame("seq/chat/a", 480)
    for _ in range(10):  # the check's try and its timeout
        s.advance(0.01)
    assert not s.c._lookups and len(s.requests) == 2, "checked once"
    s.frame("seq/chat/a", 501)
    assert s.seen == [501]


def test_history_or_resume_on_a_topic_whose_start_is_kept_is_refused_and_the_first_subscription_gets_its_history():
    """A topic whose start is kept (its lookup given up unanswered, or answered unknown topic: the
    first live frame must be SEQ 1) is followed too. Until 2026-12-07 a second history or resume was
    taken there: its lookup's answer dropped the kept start, and the first subscription's SEQs below
    the second one's start were neither delivered nor reported lost."""
    s = Scripted(max_attempts=1)
    s.sub("chat/a", history=True)
    for _ in range(10):  # the lookup's try and its timeout: given up, its start kept
        s.advance(0.01)
    assert not s.c._lookups and s.c._start_at == {"chat/a": 1}
    for options in ({"from_seq": 50}, {"history": True}, {"last": 2}):
        with pytest.raises(ValueError, match="is followed already"):
            s.sub("chat/a", **options)
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}], "no second lookup"
    assert s.c.position("chat/a") == 0
    s.frame("seq/chat/a", 60)
    s.advance(0.001)  # the gap is seen
    s.advance(0.02)  # past gap_wait: asked for
    assert s.requests[1:] == [{"id": 7, "from": 1, "to": 59}]
    for seq in range(1, 60):
        s.frame("relay/replay/r1", seq)
    assert s.seen == list(range(1, 61)) and not lost(s.events)

    first = s.sub("chat/b", history=True)
    s.status(topic="chat/b", **{"from": MAX_SEQ}, status="error", error="unknown topic", code="unknown_topic", retry=False)
    with pytest.raises(ValueError, match="is followed already"):
        s.sub("chat/b", from_seq=50)
    first.unsubscribe()
    s.sub("chat/b", from_seq=50)  # forgotten with the last subscription that matched it
    assert s.requests[-1] == {"topic": "chat/b", "from": MAX_SEQ}


def test_a_kept_starts_lookup_is_asked_once_every_16_reply_timeouts_whatever_max_attempts():
    s = Scripted(max_attempts=5)  # given up after 1 + 2 + 4 + 8 + 16 reply timeouts (0.04 s)
    s.sub("chat/a", history=True)
    s.advance_until_requests(5, 200)
    for _ in range(64 + 290):  # the 5th try's timeout (0.64 s: the give-up), then 2.9 s
        s.advance(0.01)
    # A round 0.64 s after the give-up, then every 0.64 s: 4, one request each.
    assert s.requests[5:] == [{"topic": "chat/a", "from": MAX_SEQ}] * 4, len(s.requests) - 5
    assert not lost(s.events)


def test_a_quiet_topic_looked_up_again_and_answered_unknown_topic_is_not_looked_up_again_after_that():
    s = Scripted(max_attempts=1)
    s.sub("chat/a", history=True)
    s.advance_until_requests(2, 200)
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}] * 2
    s.status(topic="chat/a", status="error", error="unknown topic", code="unknown_topic", retry=False,
             **{"from": MAX_SEQ})
    for _ in range(300):  # three rounds' time (16 reply timeouts each)
        s.advance(0.01)
    assert len(s.requests) == 2 and not lost(s.events)


def test_a_request_at_its_last_try_when_the_link_drops_is_asked_once_more_after_the_reconnect():
    """Its reply, published while away, was lost with the old connection; time offline does not count
    against its timeout. Until 2026-12-06 it was given up at the first tick after the reconnect."""
    s = Scripted(max_attempts=2)
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    s.frame("seq/chat/a", 3)
    s.advance_until_requests(2, 100)
    assert s.requests == [{"id": 7, "from": 2, "to": 2}] * 2  # the gap, then its last try
    s.c.mqtt.on_disconnect()
    s.clock.now += 10  # offline, far past the last try's timeout
    s.c._on_connect(None, None, {}, 0)
    for _ in range(100):
        if len(s.requests) >= 3 or lost(s.events):
            break
        s.advance(0.01)
    assert not lost(s.events)
    assert s.requests[2] == {"id": 7, "from": 2, "to": 2}
    s.frame("relay/replay/r1", 2)
    assert s.seen == [1, 2, 3]


def test_a_retry_asks_from_the_next_seq_still_missing():
    """Until 2026-12-06 a retry asked the whole range again, so a reply cut short was sent from its
    start once more."""
    s = Scripted()
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    s.frame("seq/chat/a", 11)
    s.advance(0.02)
    s.advance(0.02)
    assert s.requests == [{"id": 7, "from": 2, "to": 10}]
    for seq in (2, 3, 4, 5):  # and then nothing: the reply was lost
        s.frame("relay/replay/r1", seq)
    s.advance(0.05)
    assert s.requests[1:] == [{"id": 7, "from": 6, "to": 10}]
    for seq in range(6, 11):
        s.frame("relay/replay/r1", seq)
    assert s.seen == list(range(1, 12)) and lost(s.events) == []


def test_after_a_reconnect_with_100_topics_the_catch_ups_go_out_at_most_max_outstanding_at_a_time():
    """The relay holds at most 16 requests of a user waiting; until 2026-12-06 the client sent all
    100 catch-ups at once, the rest were refused busy and asked again all together on the same
    schedule, and some were reported lost. Now at most max_outstanding (8) are out at once, the
    next sent as one completes."""
    sent = []
    s, relay, topics, _ = hundred_topics_caught_up_after_a_reconnect(16, max_attempts=2, on_fetch=sent.append)
    assert lost(s.events) == []
    assert all(s.c.position(name) == 3 for name in topics) and len(s.seen) == 300
    assert relay.busy == 0
    assert len(s.requests) == 100
    assert len(sent) == 100  # each catch-up was asked for once


def test_no_more_than_max_outstanding_requests_are_out_at_once():
    s = Scripted(max_outstanding=3)
    s.sub("room/#")
    for i in range(10):
        s.frame(f"seq/room/{i}", 1, tid=100 + i)
    s.c._on_connect(None, None, {}, 0)
    assert s.requests == [{"id": 100 + i, "from": 2} for i in range(3)]
    s.status(id=100, **{"from": 2}, to=1, sent=0, last=1, first=1, status="ok")  # nothing new: done
    assert s.requests[3:] == [{"id": 103, "from": 2}]
    with pytest.raises(ValueError):
        Scripted(max_outstanding=0)


def test_requests_refused_busy_are_asked_again_after_a_pause_and_never_reported_lost_for_it():
    """The relay's bound is per user: another connection of the same user may hold most of it, and
    the relay refuses this client's requests busy even below max_outstanding. A busy refusal is no
    failed attempt: the request waits and goes out again after a pause with jitter, as long as it
    takes (until 2026-12-06 it counted, and with max_attempts 1 each refused range was reported
    lost)."""
    s, relay, topics, most = hundred_topics_caught_up_after_a_reconnect(2, count=20, max_attempts=1)
    assert lost(s.events) == []
    assert relay.busy > 0
    assert all(s.c.position(name) == 3 for name in topics)
    assert most <= 8


def test_after_a_busy_refusal_nothing_new_goes_out_for_a_while():
    s = Scripted()  # reply_timeout 0.04: the pause is 0.02 to 0.06 s at first
    s.sub("room/#")
    for i in range(10):
        s.frame(f"seq/room/{i}", 1, tid=100 + i)
    s.c._on_connect(None, None, {}, 0)
    assert len(s.requests) == 8
    s.status(id=100, **{"from": 2}, status="error", error="too many requests pending", code="busy", retry=True)
    s.status(id=101, **{"from": 2}, to=1, sent=0, last=1, first=1, status="ok")  # a place frees
    s.advance(0.019)
    assert len(s.requests) == 8, "paused"
    for _ in range(5):
        s.advance(0.01)  # past the pause (and the timeouts of the 6 unanswered: asked again)
    assert [r["id"] for r in s.requests[8:] if r["id"] in (100, 108, 109)] == [108, 109]  # 8 out again
    # 102's, then its retry's (the relay answers each request, in order; the client acts on the last
    # try's status): a place frees.
    s.status(id=102, **{"from": 2}, to=1, sent=0, last=1, first=1, status="ok")
    s.status(id=102, **{"from": 2}, to=1, sent=0, last=1, first=1, status="ok")
    assert [r for r in s.requests[8:] if r["id"] == 100] == [{"id": 100, "from": 2}]  # the refused one, last
    assert lost(s.events) == []


def test_frames_held_past_max_held_bytes_are_dropped_and_asked_for_again_nothing_lost():
    """A relay that answers busy for long (never a failed attempt, so never given up for it) while
    an ordered topic's live frames keep coming: the client holds them behind the gap up to
    max_held_bytes, then drops held frames, the newest but one first; the relay has them, and they
    are asked for again once the gap below is filled: nothing lost. Until 2026-12-07 it held every
    frame for as long as the relay stayed busy (and, for a while that day, gave the gap up). As
    the C++ client's ClientE2E.FramesHeldPastMaxHeldBytesAreDroppedAndAskedForAgainNothingLost."""
    s = Scripted(max_held_bytes=1000)  # reply_timeout 0.04: the busy pause is 0.02 to 0.06 s
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    s.frame("seq/chat/a", 3)  # 2 lost
    s.advance(0.001)  # the gap is seen
    s.advance(0.02)  # past gap_wait: asked for
    ask2 = {"id": 7, "from": 2, "to": 2}
    assert s.requests == [ask2]
    s.status(id=7, **{"from": 2}, to=2, status="error", error="busy", code="busy", retry=True)
    # Each frame held: its payload ("m3" .. "m13") and 96 bytes of record; 3..12 take 983 bytes, 13
    # takes them to 1,082: 12 is dropped (99). The clock stands still meanwhile: the pause runs.
    held = 0
    for seq in range(3, 13):
        if seq > 3:
            s.frame("seq/chat/a", seq)
        held += len(f"m{seq}") + OrderedStream.ENTRY_BYTES
    assert held == 983
    assert s.c.stats.held_bytes == held
    assert s.c.stats.frames_shed == 0
    s.frame("seq/chat/a", 13)
    assert s.c.stats.frames_shed == 1
    assert s.c.stats.held_bytes == 983, "3..11 and 13"
    assert s.seen == [1], "held behind 2"
    assert s.events == []
    # The busy pause over, 2 is asked for again; then 12, once 2..11 are out.
    s.advance(0.019)
    assert s.requests == [ask2], "the busy pause runs"
    s.advance(0.042)  # past the longest pause (0.06 s)
    assert s.requests == [ask2, ask2]
    s.frame("relay/replay/r1", 2)
    s.status(id=7, **{"from": 2}, to=2, sent=1, last=13, status="ok")
    assert s.seen == list(range(1, 12))
    s.advance(0.01)  # the gap 12..12, open since 2's was seen: asked for at the next round
    assert s.requests[2:] == [{"id": 7, "from": 12, "to": 12}]
    s.frame("relay/replay/r1", 12)
    s.status(id=7, **{"from": 12}, to=12, sent=1, last=13, status="ok")
    assert s.seen == list(range(1, 14))
    assert s.events == [], "nothing lost"
    assert s.c.stats.held_bytes == 0
    assert s.c.stats.frames_shed == 1
    assert s.c.stats.gaps_lost == 0
    assert s.c.stats.gaps_filled == 2
    assert len(s.requests) == 3


def test_an_immediate_topics_records_past_max_held_bytes_give_its_gap_up():
    """An immediate topic shows its frames at once and keeps a record of each shown above a gap
    (so that none is shown twice when the gap fills), which cannot be dropped: past max_held_bytes
    its oldest gap is given up, and said so; its records are not walked to be shed either (each
    frame past the bound would walk them all, for nothing). As the C++ client's
    ClientE2E.AnImmediateTopicsRecordsPastMaxHeldBytesGiveItsGapUp."""
    s = Scripted(max_held_bytes=1000)
    s.sub("chat/a")
    s.frame("seq/chat/a", 1, ordered=False)
    stream, sheds = s.c._topics[7].stream, []
    stream.shed = lambda bound: sheds.append(bound) or []
    s.frame("seq/chat/a", 3, ordered=False)  # 2 lost
    s.advance(0.001)  # the gap is seen
    s.advance(0.02)  # past gap_wait: asked for
    assert s.requests == [{"id": 7, "from": 2, "to": 2}]
    s.status(id=7, **{"from": 2}, to=2, status="error", error="busy", code="busy", retry=True)
    # A record is 96 bytes: 3..12 take 960, 13 would take them to 1,056. The clock stands still:
    # the busy pause runs.
    for seq in range(4, 13):
        s.frame("seq/chat/a", seq, ordered=False)
    assert s.seen == [1] + list(range(3, 13)), "shown at once"
    assert s.c.stats.held_bytes == 960
    assert s.events == []
    s.frame("seq/chat/a", 13, ordered=False)
    assert lost(s.events) == [{"topic": "chat/a", "from": 2, "to": 2, "code": None, "retry": None,
                               "reason": "1056 bytes held behind the gap, over max_held_bytes"}]
    assert sheds == [], "an immediate topic is not shed"
    assert s.seen == [1] + list(range(3, 14))
    assert s.c.stats.held_bytes == 0
    assert s.c.stats.frames_shed == 0
    assert s.c.stats.gaps_lost == 1
    for _ in range(20):
        s.advance(0.01)  # past the busy pause: the range given up, which waited in the queue, is not sent
    assert s.requests == [{"id": 7, "from": 2, "to": 2}]


def test_frames_held_behind_a_gap_not_asked_for_yet_past_max_held_bytes_are_dropped_the_newest_kept_and_come_with_the_gap():
    """The same for an ordered topic before the gap is asked for (gap_wait not run yet): frames
    dropped, the newest but one first, never a gap given up; a newest frame bigger than the bound
    stays, alone. Once asked for, the gap's range brings the dropped frames with it. As the
    JavaScript client's test of that name."""
    fetched = []
    s = Scripted(max_held_bytes=300, gap_wait=60, reply_timeout=86400, on_fetch=fetched.append)
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    for seq in [3, 4, 6]:  # 2 and 5 missing; 3 x 98 = 294 bytes held
        s.frame("seq/chat/a", seq)
    assert s.c.stats.held_bytes == 294
    s.frame("seq/chat/a", 7)  # 392: 6 dropped (98)
    assert s.c.stats.frames_shed == 1
    assert s.c.stats.held_bytes == 294
    stream = s.c._topics[7].stream
    assert stream.missing(2, 7) == [(2, 2), (5, 6)]
    # 294 + 496: 7, 4 and 3 dropped; 9 over the bound alone.
    s.c._on_message(None, None, SimpleNamespace(topic="seq/chat/a", payload=encode_frame(7, 9, "x" * 400)))
    assert s.c.stats.frames_shed == 4
    assert s.c.stats.held_bytes == 496
    assert stream.missing(2, 9) == [(2, 8)]
    assert s.seen == [1]
    assert s.events == [] and fetched == []
    assert s.c.stats.gaps_lost == 0
    assert s.requests == []
    # gap_wait over: the gap below 9, the dropped frames in it, asked for whole.
    s.advance(0.001)  # the gap is seen
    s.advance(60)
    assert s.requests == [{"id": 7, "from": 2, "to": 8}]
    for seq in range(2, 9):
        s.frame("relay/replay/r1", seq)
    s.status(id=7, **{"from": 2}, to=8, sent=7, last=9, status="ok")
    assert s.seen == list(range(1, 10))
    assert s.events == [] and fetched == [{"topic": "chat/a", "from": 2, "to": 8}]
    assert s.c.stats.gaps_filled == 1
    assert s.c.stats.held_bytes == 0
    assert len(s.requests) == 1


def test_a_range_given_up_while_it_waits_to_be_sent_keeps_its_place_for_the_topics_next_request():
    """A request given up while it still waits in the queue (behind max_outstanding others or a
    busy pause; here by max_held_bytes) leaves its place there: the topic's next request, if made
    before the queue reaches it, goes out in it, not behind those made since. Until 2026-12-07 the
    Python client took it out of the queue, and the next request went last; the C++ and
    JavaScript clients kept the place."""
    s = Scripted(max_outstanding=1, max_held_bytes=1000, reply_timeout=1)  # no timeout runs here
    s.sub("room/#")
    for name, tid, ordered in [("b", 8, True), ("a", 7, False), ("c", 9, True)]:
        s.frame(f"seq/room/{name}", 1, tid=tid, ordered=ordered)
        s.frame(f"seq/room/{name}", 3, tid=tid, ordered=ordered)  # 2 lost
    s.advance(0.001)  # the gaps are seen
    s.advance(0.02)  # past gap_wait: asked for in that order, b's out, a's and c's waiting
    assert s.requests == [{"id": 8, "from": 2, "to": 2}]
    assert [t.id for t in s.c._waiting] == [7, 9]
    # a is immediate: a record of 96 bytes for each frame shown above its gap; 13 takes them to
    # 1,056, and a's range, still waiting, is given up.
    for seq in range(4, 14):
        s.frame("seq/room/a", seq, tid=7, ordered=False)
    assert lost(s.events) == [{"topic": "room/a", "from": 2, "to": 2, "code": None, "retry": None,
                               "reason": "1056 bytes held behind the gap, over max_held_bytes"}]
    assert s.c.stats.held_bytes == 2 * (len("m3") + OrderedStream.ENTRY_BYTES), "b's 3 and c's 3 only"
    # A new gap of a, 14, asked for while b's request is still out: in a's old place.
    s.frame("seq/room/a", 15, tid=7, ordered=False)
    s.advance(0.001)
    s.advance(0.02)
    assert s.c._topics[7].asked == [14, 14]
    assert [t.id for t in s.c._waiting] == [7, 9], "a keeps its place, before c"
    assert len(s.requests) == 1
    s.frame("relay/replay/r1", 2, tid=8)
    s.status(id=8, **{"from": 2}, to=2, sent=1, last=3, first=1, status="ok")
    assert s.requests[1:] == [{"id": 7, "from": 14, "to": 14}], "a's new request first"
    s.frame("relay/replay/r1", 14, tid=7, ordered=False)
    s.status(id=7, **{"from": 14}, to=14, sent=1, last=15, first=1, status="ok")
    assert s.requests[2:] == [{"id": 9, "from": 2, "to": 2}], "then c's"
    # b's 1, a's 1 and 3 (shown at once), c's 1, a's 4..13 and 15, b's 2 and 3, a's 14.
    assert s.seen == [1, 1, 3, 1, *range(4, 14), 15, 2, 3, 14]
    assert len(lost(s.events)) == 1


def test_live_frames_held_past_max_held_bytes_while_a_lookup_waits_are_dropped_and_asked_for_after_the_history():
    """The same while a history's lookup waits (here unanswered, its timeout far off): the live
    frames held meanwhile, past max_held_bytes, are dropped, the last come first but never the one
    of the highest SEQ, and the lookup waits on. Its answer (the topic's newest SEQ 12 when the
    relay read it) asks for the history to 12; the highest live frame kept, 14, shows the one
    dropped, 13, as a gap, asked for after the history: nothing lost (with 14 dropped instead, as
    when an old frame 4 sent again came last and the frame before the last was dropped, there is
    no third request). Until 2026-12-07 the lookup was given up, and its held frames offered back
    could cross the bound again. As the C++ client's
    ClientE2E.LiveFramesHeldPastMaxHeldBytesWhileALookupWaitsAreDroppedAndAskedForAfterTheHistory."""
    s = Scripted(max_held_bytes=1000)
    s.sub("chat/a", history=True)
    assert s.requests == [{"topic": "chat/a", "from": MAX_SEQ}]
    # Each live frame held: its 10-byte header, its payload ("m5" .. "m14") and 96 bytes of record;
    # 5..13 take 976 bytes, 14 takes them to 1,085: 13 is dropped (109).
    held = 0
    for seq in range(5, 14):
        s.frame("seq/chat/a", seq)
        held += HEADER_SIZE + len(f"m{seq}") + OrderedStream.ENTRY_BYTES
    assert held == 976
    assert s.c.stats.held_bytes == held
    assert s.c.stats.frames_shed == 0
    s.frame("seq/chat/a", 14)
    assert s.c.stats.frames_shed == 1
    assert s.c.stats.held_bytes == 976, "5..12 and 14"
    # An old frame sent again comes last (108 bytes): it is dropped, not 14, the highest SEQ held,
    # which must stay to show 13 as a gap.
    s.frame("seq/chat/a", 4)
    assert s.c.stats.frames_shed == 2
    assert s.c.stats.held_bytes == 976, "5..12 and 14"
    assert [f[HEADER_SIZE:] for f in s.c._held_live["chat/a"].frames] == [f"m{seq}".encode() for seq in [*range(5, 13), 14]]
    assert list(s.c._lookups) == ["chat/a"], "the lookup waits on"
    assert len(s.requests) == 1
    assert s.events == [] and s.seen == []
    s.status(topic="chat/a", id=7, **{"from": MAX_SEQ}, to=MAX_SEQ, sent=0, last=12, first=1, status="ok")
    assert s.requests[1:] == [{"id": 7, "from": 1, "to": 12}]
    for seq in range(1, 13):
        s.frame("relay/replay/r1", seq)
    s.status(id=7, **{"from": 1}, to=12, sent=12, last=14, status="ok")
    assert s.seen == list(range(1, 13))
    s.advance_until_requests(3, 10)  # past gap_wait
    assert s.requests[2:] == [{"id": 7, "from": 13, "to": 13}], "14 kept, 13 dropped: the gap below 14"
    s.frame("relay/replay/r1", 13)
    s.status(id=7, **{"from": 13}, to=13, sent=1, last=14, status="ok")
    assert s.seen == list(range(1, 15))
    assert s.events == [("history", {"topic": "chat/a", "first": 1, "last": 12, "start": 1})], "nothing lost"
    assert s.c.stats.held_bytes == 0
    assert s.c.stats.frames_shed == 2
    assert len(s.requests) == 3


def test_frames_shed_below_a_forged_newest_frame_come_with_a_catch_up_once_it_is_forgotten():
    """A forged frame (a SEQ the relay never stored) held as the topic's newest, frames shed below
    it, then forgotten when a status's last shows it was never stored: the shed SEQs are in no gap
    any more, and a catch-up from next brings them (they were asked for only at the next live frame
    or reconnect). 3 and a forged 1000000 held, 12 and 13 shed under it, 2 given up (one attempt),
    the status's last 13 forgets the forged frame: the catch-up from 12 brings 12 and 13. As the
    C++ client's ClientE2E.FramesShedBelowAForgedNewestFrameComeWithACatchUpOnceItIsForgotten."""
    s = Scripted(max_held_bytes=1000, max_attempts=1)
    bad = []
    s.c.on_bad_frame = bad.append
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    s.frame("seq/chat/a", 3)
    s.frame("seq/chat/a", 1000000)  # forged
    s.advance(0.001)  # the gap is seen
    s.advance(0.02)  # past gap_wait: asked for
    assert s.requests == [{"id": 7, "from": 2, "to": 2}]
    # Held: 3 (98 bytes), the forged frame (104), then 4..11 (786): 988; 12 and 13 are each shed
    # on arrival, the forged frame the newest.
    for seq in range(4, 14):
        s.frame("seq/chat/a", seq)
    assert s.c.stats.frames_shed == 2
    assert s.c.stats.held_bytes == 988
    # 2 never comes (the broker dropped it); the status's last, 13, shows the forged frame was
    # never stored. With one attempt, 2 is given up.
    s.status(id=7, **{"from": 2}, to=2, sent=1, last=13, status="ok")
    assert bad == [{"topic": "seq/chat/a", "seqs": [1000000], "reason": "1 frame(s) above SEQ 13, the newest the relay stored"}]
    assert s.seen == [1] + list(range(3, 12))
    s.advance_until_requests(2, 10)
    assert s.requests[1:] == [{"id": 7, "from": 12}], "the catch-up from 12"
    s.frame("relay/replay/r1", 12)
    s.frame("relay/replay/r1", 13)
    s.status(id=7, **{"from": 12}, to=13, sent=2, last=13, status="ok")
    assert s.seen == [1] + list(range(3, 14))
    assert lost(s.events) == [{"topic": "chat/a", "from": 2, "to": 2, "reason": "sent by the relay, not delivered by the broker",
                               "code": None, "retry": None}]
    assert s.c.stats.bad_frames == 1, "the forged frame"
    assert s.c.stats.held_bytes == 0
    assert len(s.requests) == 2


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


def test_frames_of_a_reply_lost_in_a_reconnect_are_asked_for_again_not_given_up():
    s = gap_2_to_3_asked()
    s.c._on_connect(None, None, {}, 0)  # the relay sent 2 while the client was away: lost with the old connection
    s.frame("relay/replay/r1", 3)
    s.status(id=7, **{"from": 2}, to=3, sent=2, last=4, status="ok")  # the old request's status
    assert {"id": 7, "from": 2, "to": 2} in s.requests
    s.frame("relay/replay/r1", 2)
    s.status(id=7, **{"from": 2}, to=2, sent=1, last=4, status="ok")
    assert s.seen == [1, 2, 3, 4]
    assert lost(s.events) == []


def test_a_retry_sent_after_the_reconnect_does_not_make_the_first_requests_cut_reply_whole():
    s = gap_2_to_3_asked()
    s.c._on_connect(None, None, {}, 0)  # 2 goes out while the client is away
    s.advance(0.05)  # no status in time: asked again, on the new connection
    assert s.requests == [{"id": 7, "from": 2, "to": 3}] * 2
    s.frame("relay/replay/r1", 3)
    s.status(id=7, **{"from": 2}, to=3, sent=2, last=4, status="ok")  # the first request's status
    # The retry's (frame 2 of neither reply came): the client acts on the last try's status, not on
    # an earlier one's.
    s.status(id=7, **{"from": 2}, to=3, sent=2, last=4, status="ok")
    assert s.requests[-1] == {"id": 7, "from": 2, "to": 2}
    assert lost(s.events) == []
    s.frame("relay/replay/r1", 2)
    assert s.seen == [1, 2, 3, 4]


def test_a_reconnect_while_a_gap_request_is_out_asks_for_what_came_meanwhile_once_it_is_done():
    s = gap_2_to_3_asked()
    s.c._on_connect(None, None, {}, 0)  # a reconnect with the gap request out: 5.. came while away
    assert len(s.requests) == 1, "no second request while the first is out"
    for seq in (2, 3):
        s.frame("relay/replay/r1", seq)
    s.status(id=7, **{"from": 2}, to=3, sent=2, last=6, status="ok")
    s.advance(0.001)
    assert s.requests[1:] == [{"id": 7, "from": 5}]
    for seq in (5, 6):
        s.frame("relay/replay/r1", seq)
    s.status(id=7, **{"from": 5}, to=6, sent=2, last=6, status="ok")
    assert s.seen == list(range(1, 7))
    assert s.c.stats.gaps_filled == 2 and not lost(s.events)


def test_a_topic_no_subscription_matches_is_forgotten_and_a_new_subscribe_starts_afresh():
    s = Scripted()
    a = s.sub("chat/a")
    s.sub("chat/b")
    s.frame("seq/chat/a", 5)
    s.frame("seq/chat/b", 3, tid=8)
    a.unsubscribe()
    assert s.c.position("chat/a") == 0 and s.c.position("chat/b") == 3
    s.frame("seq/chat/a", 6)  # still on its way after the UNSUBSCRIBE
    s.c._on_connect(None, None, {}, 0)  # a reconnect: asks for chat/b only
    assert s.requests == [{"id": 8, "from": 4}]
    s.sub("chat/a")
    s.frame("seq/chat/a", 9)  # starts at the first frame, as a first subscribe does
    assert s.seen == [5, 3, 9]
    assert s.c.position("chat/a") == 9


def test_the_default_requester_is_u_slash_c_with_a_username_and_another_client_id():
    from seqrelay_client import default_requester
    import pytest
    assert default_requester("c1", "alice") == "alice/c1"
    assert default_requester("alice", "alice") == "alice"
    assert default_requester("c1", None) == "c1"
    assert default_requester("", "alice") == "alice"
    c = SeqClient(client_id="c1", username="alice", connect=False)
    assert c.request_topic == "relay/retransmit/alice/c1"
    with pytest.raises(ValueError, match="is not R or U/C"):
        SeqClient(client_id="a/b", username="alice", connect=False)
    with pytest.raises(ValueError, match="is not R or U/C"):
        SeqClient(requester="x//y", connect=False)


def test_a_topic_the_relay_never_sequences_over_255_bytes_is_refused():
    """PROTOCOL 1. Until 2026-12-06 the clients took one and waited."""
    import pytest
    s = Scripted()
    s.sub("t" * 255)
    with pytest.raises(ValueError, match="is 256 bytes: the relay sequences topics of at most 255 bytes"):
        s.sub("t" * 256)
    with pytest.raises(ValueError, match="is 256 bytes"):
        s.sub("é" * 128)  # bytes, not characters
    s.sub("t" * 300 + "/#")  # a filter: its topics are the relay's to refuse


def test_history_on_a_followed_topic_and_bad_arguments_are_refused():
    import pytest
    s = Scripted()
    everything = s.sub("chat/#")
    s.frame("seq/chat/a", 5)
    with pytest.raises(ValueError, match="is followed already"):
        s.sub("chat/a", history=True)
    everything.unsubscribe()
    s.sub("chat/a", history=True)  # forgotten with the last subscription that matched it
    assert s.requests[-1] == {"topic": "chat/a", "from": MAX_SEQ}
    for bad in ({"from_seq": 1.5}, {"from_seq": True}, {"last": 0}, {"last": "3"}):
        with pytest.raises(ValueError):
            s.sub("chat/c", **bad)
    with pytest.raises(TypeError):
        s.c.subscribe("")
    s.c._closed = True
    with pytest.raises(RuntimeError, match="closed"):
        s.c.subscribe("chat/d")


def test_a_catch_up_whose_first_try_went_unanswered_ends_with_its_retrys_status():
    """As ClientE2E.ACatchUpWhoseFirstTryWentUnansweredEndsWithItsRetrysStatus: the first try's
    status never comes (its request lost: a relay restarted), the retry's does. It is acted on,
    though one of an earlier try seemed due: a client that waited for the lost one gave the catch-up
    up at its last try's timeout and reported a gap of what it delivered."""
    s = Scripted(max_attempts=2)
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    s.c._on_connect(None, None, {}, 0)  # a reconnect: asks from 2 to the newest
    s.advance(0.05)  # no status in time: asked again
    assert s.requests == [{"id": 7, "from": 2}] * 2
    s.frame("relay/replay/r1", 2)
    s.status(id=7, **{"from": 2}, to=2, sent=1, last=2, status="ok")  # the retry's
    assert s.seen == [1, 2]
    for _ in range(10):
        s.advance(0.1)  # past the last try's timeout
    assert lost(s.events) == []
    assert s.c._topics[7].asked is None


def test_a_catch_up_never_answered_says_so_with_no_end_and_an_unavailable_range_is_given_up_as_such():
    s = Scripted(max_attempts=2)
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    s.c._on_connect(None, None, {}, 0)  # a reconnect: asks from 2 to the newest
    assert s.requests == [{"id": 7, "from": 2}]
    for _ in range(10):
        s.advance(0.1)  # 0.04 then 0.08 of backoff: past both attempts
    assert lost(s.events) == [{"topic": "chat/a", "from": 2, "to": None, "reason": "no reply from the relay",
                               "code": None, "retry": None}]
    s.frame("seq/chat/a", 3)
    s.advance(0.001)
    s.advance(0.02)
    assert s.requests[-1] == {"id": 7, "from": 2, "to": 2}
    # busy never counts as an attempt (see the busy tests); the other codes with retry: true do.
    down = dict(id=7, to=2, status="error", error="database unavailable", code="unavailable", retry=True, **{"from": 2})
    s.status(**down)
    s.advance(0.05)
    s.status(**down)
    for _ in range(10):
        s.advance(0.1)
    assert lost(s.events)[-1] == {"topic": "chat/a", "from": 2, "to": 2, "reason": "database unavailable",
                                  "code": "unavailable", "retry": True}


def test_a_catch_up_refused_for_good_is_reported_lost_from_the_next_seq_with_no_end():
    """A catch-up refused for good was dropped with nothing said (until 2026-12-06): the
    application never learnt that what was published while it was away would not come."""
    s = Scripted(reply_timeout=60)
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    s.c._on_connect(None, None, {}, 0)  # a reconnect: asks from 2 to the newest
    assert s.requests == [{"id": 7, "from": 2}]
    s.status(id=7, **{"from": 2}, status="error", error="forbidden", code="forbidden", retry=False)
    assert lost(s.events) == [{"topic": "chat/a", "from": 2, "to": None, "reason": "forbidden", "code": "forbidden",
                               "retry": False}]
    assert s.c.stats.gaps_lost == 1 and s.c._topics[7].asked is None
    s.frame("seq/chat/a", 2)
    assert s.seen == [1, 2]


def test_a_v1_error_without_code_is_asked_again_unless_final_and_a_final_one_on_a_catch_up_is_reported():
    """docs/clients.md: without `code` (a v1 relay) only "unknown topic", "unknown id" and
    "forbidden" are final. A range request took every v1 error as final, and a catch-up's was
    dropped unreported."""
    s = Scripted()
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    s.c._on_connect(None, None, {}, 0)
    assert s.requests == [{"id": 7, "from": 2}]
    s.status(id=7, **{"from": 2}, status="error", error="database unavailable, try again")
    assert lost(s.events) == []
    s.advance(0.05)  # past the reply timeout: asked again
    assert s.requests[1:] == [{"id": 7, "from": 2}]
    for seq in (2, 3):
        s.frame("relay/replay/r1", seq)
    s.status(id=7, **{"from": 2}, to=3, sent=2, last=3, status="ok")
    assert s.seen == [1, 2, 3] and s.c._topics[7].asked is None
    s.c._on_connect(None, None, {}, 0)  # again, and this time the v1 relay refuses for good
    assert s.requests[-1] == {"id": 7, "from": 4}
    s.status(id=7, **{"from": 4}, status="error", error="forbidden")
    assert lost(s.events) == [{"topic": "chat/a", "from": 4, "to": None, "reason": "forbidden", "code": None,
                               "retry": None}]


def test_a_catch_up_that_learns_its_end_says_what_it_fetches_as_js_does():
    fetches = []
    s = Scripted(on_fetch=fetches.append)
    s.sub("chat/a")
    s.frame("seq/chat/a", 1)
    s.c._on_connect(None, None, {}, 0)  # a reconnect: asks from 2 to the newest
    s.frame("relay/replay/r1", 2)
    s.status(id=7, **{"from": 2}, to=4, sent=3, last=4, truncated=True, next=3, status="ok")
    assert fetches == [{"topic": "chat/a", "from": 2, "to": None}, {"topic": "chat/a", "from": 2, "to": 4}]


def test_an_unread_subscription_keeps_its_newest_max_buffered_messages():
    s = Scripted()
    room = s.c.subscribe("chat/a", max_buffered=3)
    for seq in range(1, 8):
        s.frame("seq/chat/a", seq)
    assert [room.get(timeout=0).seq for _ in range(3)] == [5, 6, 7]
    assert s.c.stats.unread_dropped == 4
    room.unsubscribe()
    with pytest.raises(StopIteration):
        room.get(timeout=0)
    with pytest.raises(ValueError):
        s.c.subscribe("chat/b", max_buffered=0)


def test_a_status_of_the_wrong_shape_is_counted_and_breaks_nothing():
    """Statuses whose fields have the wrong types (from a publisher the broker should not let
    in) raised into paho's network thread, which re-raises and ends: no message after them came.
    Each is now a bad frame, dropped whole, and the real answer is still taken."""
    s = gap_2_to_3_asked()
    bad = [
        {"id": [7], "from": 2, "to": 3, "sent": 0, "last": 4, "status": "ok"},
        {"id": 7, "from": 2, "to": 3, "status": "error", "error": ["busy"]},
        {"topic": "chat/a", "from": MAX_SEQ, "to": MAX_SEQ, "sent": 0, "last": None, "status": "ok"},
        {"id": 7, "from": 2, "to": 3, "sent": 0, "last": 4, "truncated": "yes", "status": "ok"},
    ]
    for body in bad:
        s.status(**body)
    assert s.c.stats.bad_frames == len(bad)
    assert s.events == [] and s.seen == [1]
    s.frame("relay/replay/r1", 2)
    s.frame("relay/replay/r1", 3)
    s.status(id=7, **{"from": 2}, to=3, sent=2, last=4, status="ok")
    assert s.seen == [1, 2, 3, 4]
    assert s.c.stats.gaps_filled == 1


def test_an_ok_lookup_status_without_id_or_last_is_a_bad_frame_and_the_history_is_still_taken():
    """An ok lookup status without `id` deleted the lookup before reading it (a KeyError, counted
    as a bad frame): the history was never asked for, and the live frames held for it stayed held
    for good. Now it is dropped whole before anything changes, and the real answer is taken."""
    s = Scripted()
    s.sub("chat/a", history=True)
    s.frame("seq/chat/a", 4)  # live, held until the lookup's answer
    s.frame("seq/chat/a", 5)
    lookup = {"topic": "chat/a", "from": MAX_SEQ, "to": MAX_SEQ, "sent": 0, "status": "ok"}
    s.status(**lookup, last=3)
    s.status(**lookup, id=7)
    assert s.c.stats.bad_frames == 2
    assert s.events == [] and s.seen == []
    s.status(**lookup, id=7, last=3, first=1)
    assert s.requests[-1] == {"id": 7, "from": 1, "to": 3}
    for seq in (1, 2, 3):
        s.frame("relay/replay/r1", seq)
    assert s.seen == [1, 2, 3, 4, 5]


def test_the_history_of_a_topic_the_relay_does_not_know_is_told_before_its_held_live_frames_as_in_js():
    s = Scripted()
    order = []
    s.c.on_history = lambda e: order.append(("history", e["first"], e["last"]))
    s.c.subscribe("chat/a", on_message=lambda m: order.append(("message", m.seq)), history=True)
    s.frame("seq/chat/a", 1)  # held until the lookup's answer
    s.status(topic="chat/a", **{"from": MAX_SEQ}, status="error", error="unknown topic", code="unknown_topic", retry=False)
    assert order == [("history", 1, 0), ("message", 1)]


def test_a_subscribe_made_while_a_connect_is_handled_sends_its_subscribe():
    """_on_connect subscribes to the filters it finds under the lock, and marked the connection up
    only after releasing it: a subscribe() in between found neither, and sent nothing until the
    next connect. The mark is now set under the lock."""
    s = Scripted()
    other = []

    class MarkedLate(threading.Event):
        """Lets the racing subscribe() run before the mark is set: with the mark set outside the
        lock, it finds the lock free and the connection not marked; under the lock, it waits."""

        def set(self):
            other[0].join(0.5)
            super().set()

    s.c._connected = MarkedLate()  # as after a disconnect: not set
    real_subscribe = s.c._subscribe

    def subscribe_then_race(topic, qos):
        real_subscribe(topic, qos)
        if topic.endswith("/#") and not other:  # _on_connect's last SUBSCRIBE, made under the lock
            other.append(threading.Thread(target=lambda: s.sub("chat/b")))
            other[0].start()  # waits for the lock

    s.c._subscribe = subscribe_then_race
    s.c._on_connect(None, None, {}, 0)
    other[0].join(5)
    assert "seq/chat/b" in s.subscribed


def test_options_and_filters_that_would_subscribe_to_nothing_or_wait_for_ever_are_refused():
    """paho raises for an invalid filter only after subscribe() registered it, and again from every
    later connect callback, which ends paho's network thread; prefixes were never checked, and a
    None or infinite wait ended or stalled the timer thread. Refused when given now, as the C++
    client's CheckOptions does (until 2026-12-06 all of these were taken)."""
    for options, words in [
        ({"seq_prefix": ""}, "seq_prefix '' must be a plain topic prefix"),
        ({"seq_prefix": "seq/"}, "seq_prefix 'seq/'"),
        ({"seq_prefix": "se+q"}, "seq_prefix"),
        ({"control_prefix": "relay/+"}, "control_prefix"),
        ({"control_prefix": "re\0lay"}, "control_prefix"),
        ({"seq_prefix": "s\udcff"}, "UTF-8"),
        ({"qos": 3}, "qos is 0, 1 or 2"),
        ({"gap_wait": float("inf")}, "gap_wait"),
        ({"gap_wait": None}, "gap_wait"),
        ({"reply_timeout": 0}, "reply_timeout"),
        ({"reply_timeout": 10 ** 400}, "reply_timeout"),
        ({"max_attempts": float("nan")}, "max_attempts"),
        ({"max_held_bytes": -1}, "max_held_bytes is a count of bytes >= 0"),
        ({"max_held_bytes": 1.5}, "max_held_bytes"),
        ({"max_held_bytes": True}, "max_held_bytes"),
        ({"max_held_bytes": None}, "max_held_bytes"),
        ({"requester": "r\0"}, "requester"),
    ]:
        with pytest.raises(ValueError, match=words.replace("+", r"\+")):
            SeqClient(client_id="r1", connect=False, **options)
    SeqClient(client_id="r1", connect=False, seq_prefix="a/b", control_prefix="c", qos=0, gap_wait=0,
              reply_timeout=86400, max_held_bytes=0).close()
    c = SeqClient(client_id="r1", connect=False)
    assert c.max_held_bytes == 64 * 1024 * 1024, "the default: 64 MiB a topic"
    c.close()

    s = Scripted()
    for filter_, words in [("a/#/b", "'#' the last"), ("a#", "whole level"), ("a/b+", "whole level"),
                           ("a\0b", "NUL"), ("a\udcff", "UTF-8")]:
        with pytest.raises(ValueError, match=words):
            s.sub(filter_)
    with pytest.raises(ValueError, match="from_seq is a SEQ, 1 to"):
        s.sub("t", from_seq=MAX_SEQ + 1)
    with pytest.raises(ValueError, match="last is a count, 1 to"):
        s.sub("t", last=2 ** 64)
    with pytest.raises(ValueError, match="only one of history, from_seq, last"):
        s.sub("t", history=True, from_seq=5)
    assert s.c._subscriptions == [], "a refused filter is not registered (paho would raise on each connect)"
    s.sub("a/+/c/#")
    assert len(s.c._subscriptions) == 1


def test_a_subscription_the_broker_refuses_is_counted_and_logged_once_connected(caplog):
    """connect() raises for a refusal among the SUBACKs it waits for (test_client); one that comes
    later, of a subscribe() once connected or of a reconnect, is counted and logged (until
    2026-12-06 a SUBACK's 128 was taken for a subscription, and nothing came, silently)."""
    s = Scripted()
    s.sub("chat/a")
    s.sub("chat/b")
    assert s.subscribed == ["relay/replay/r1/#", "seq/chat/a", "seq/chat/b"]

    def refused(topic, code):
        return f"the broker refused the subscription to '{topic}' (SUBACK {code}): its ACL does not let this user read it?"

    s.c._on_subscribe(None, None, 1, (1,))  # granted QoS 1
    s.c._on_subscribe(None, None, 2, (128,))  # MQTT 3.1.1's failure
    s.c._on_subscribe(None, None, 2, (128,))  # a SUBACK of no SUBSCRIBE out: nothing
    s.c._on_subscribe(None, None, 3, (0,))
    assert s.c.stats.subscribe_errors == 1
    assert s.c.stats.last_subscribe_error == refused("seq/chat/a", 128)
    assert refused("seq/chat/a", 128) in caplog.text

    s.c._on_connect(None, None, {}, 0)  # a reconnect subscribes again, the topics first
    assert s.subscribed[3:] == ["seq/chat/a", "seq/chat/b", "relay/replay/r1/#"]
    s.c._on_subscribe(None, None, 3, (128,))  # of the connection that ended: nothing
    s.c._on_subscribe(None, None, 5, (0x87,))  # a v5 reason code: not authorized
    s.c._on_subscribe(None, None, 6, (128,))
    assert s.c.stats.subscribe_errors == 3
    assert s.c.stats.last_subscribe_error == refused("relay/replay/r1/#", 128)
    assert refused("seq/chat/b", 135) in caplog.text
