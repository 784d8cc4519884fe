"""SeqClient against the real relay, mosquitto and MariaDB (the session's servers)."""
import contextlib
import itertools
import os
import queue
import socket
import threading
import time

import paho.mqtt.client as paho
import pytest

from seqrelay_client import SeqClient, encode_frame
from servers import DYNSEC_PLUGIN, DynsecBroker, wait_for

_ids = itertools.count(1)


@pytest.fixture
def make_client(servers):
    clients = []

    def make(**options):
        c = SeqClient(port=servers.mqtt_port, client_id=f"py-{next(_ids)}", **options)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def pub(servers):
    kwargs = {"client_id": f"pypub-{next(_ids)}"}
    if hasattr(paho, "CallbackAPIVersion"):
        kwargs["callback_api_version"] = paho.CallbackAPIVersion.VERSION1
    client = paho.Client(**kwargs)
    client.connect("127.0.0.1", servers.mqtt_port)
    client.loop_start()

    def publish(topic, first, last, prefix="m"):
        for i in range(first, last + 1):
            client.publish(topic, f"{prefix}-{i}", qos=1).wait_for_publish(10)

    publish.raw = lambda topic, data: client.publish(topic, data, qos=1).wait_for_publish(10)
    yield publish
    client.disconnect()
    client.loop_stop()


def take(sub, count, timeout=15.0):
    got, end = [], time.monotonic() + timeout
    while len(got) < count:
        try:
            got.append(sub.get(timeout=max(0.01, end - time.monotonic())))
        except queue.Empty:
            raise AssertionError(f"got {len(got)} of {count}: {[m.seq for m in got]}") from None
    return got


def subscribed(c, filter_, timeout=10.0):
    """Waits for the broker's SUBACK of seq/<filter_> (a second SUBSCRIBE of the filter changes
    nothing, and the broker handles a connection's packets in order): a live-only subscription
    sees the first message published after."""
    acked = set()  # the packet ids of the SUBACKs seen
    client_callback = c.mqtt.on_subscribe  # the client's own (it counts refused subscriptions): kept

    def on_subscribe(client, userdata, mid, *rest):
        acked.add(mid)
        client_callback(client, userdata, mid, *rest)

    c.mqtt.on_subscribe = on_subscribe
    _, mid = c.mqtt.subscribe(f"seq/{filter_}", 1)
    wait_for(lambda: mid in acked, f"the SUBACK of seq/{filter_}", timeout)
    c.mqtt.on_subscribe = client_callback


def test_live_in_order_exactly_once(make_client, pub):
    c = make_client()
    room = c.subscribe("chat/py-live")
    subscribed(c, "chat/py-live")
    pub("chat/py-live", 1, 200)
    got = take(room, 200)
    assert [m.seq for m in got] == list(range(1, 201))
    assert [m.text for m in got] == [f"m-{i}" for i in range(1, 201)]
    assert c.stats.requests == 0 and c.stats.bad_frames == 0


def test_lost_frames_are_fetched_once_each(make_client, pub):
    lost = lambda s: s % 7 == 0 or 100 <= s < 150  # noqa: E731
    c = make_client(drop_live_frame=lambda topic, s: lost(s), gap_wait=0.05)
    # With history: SEQ 1 comes even if the publisher's first message is through before the SUBSCRIBE
    # (seen beside the release tests: 299 of 300, SEQ 1 never seen, so never missed).
    room = c.subscribe("chat/py-lossy", history=True)
    pub("chat/py-lossy", 1, 300)
    assert [m.seq for m in take(room, 300, 30)] == list(range(1, 301))
    runs = sum(1 for s in range(1, 301) if lost(s) and not lost(s - 1))
    assert 1 <= c.stats.requests <= runs + 2
    assert c.stats.gaps_lost == 0


@pytest.fixture
def live_frames(servers):
    """Counts the frames the relay publishes live on seq/<topic>, from a raw subscriber."""
    clients = []

    def watch(topic):
        kwargs = {"client_id": f"pywatch-{next(_ids)}"}
        if hasattr(paho, "CallbackAPIVersion"):
            kwargs["callback_api_version"] = paho.CallbackAPIVersion.VERSION1
        client = paho.Client(**kwargs)
        seen, subscribed = [0], []
        client.on_message = lambda *_: seen.__setitem__(0, seen[0] + 1)
        client.on_subscribe = lambda *_: subscribed.append(True)
        client.connect("127.0.0.1", servers.mqtt_port)
        client.loop_start()
        client.subscribe(f"seq/{topic}", qos=1)
        clients.append(client)
        wait_for(lambda: subscribed, "the SUBACK", 10)
        return lambda: seen[0]

    yield watch
    for client in clients:
        client.disconnect()
        client.loop_stop()


def test_history_then_live_with_truncated_replies(servers, make_client, pub, live_frames):
    # Committed is not yet published: the relay publishes a frame only
    # after its commit. Frames still on their way when the client below
    # subscribes would reach it live, and its history would ask for less.
    published = live_frames("chat/py-history")
    pub("chat/py-history", 1, 250)
    wait_for(lambda: published() >= 250, "the history to be published live", 20)
    history = []
    c = make_client(on_history=history.append)
    room = c.subscribe("chat/py-history", history=True)
    pub("chat/py-history", 251, 300)
    got = take(room, 300, 30)
    assert [m.seq for m in got] == list(range(1, 301))
    assert [m.text for m in got] == [f"m-{i}" for i in range(1, 301)]
    assert history[0]["first"] == 1 and history[0]["start"] == 1
    assert c.stats.requests >= 1 + -(-history[0]["last"] // 100), "a lookup, then replies of at most 100"
    assert c.stats.delivered == 300, "each SEQ once (a live frame and its replayed copy: one is dropped)"


def test_resume_and_last(servers, make_client, pub):
    pub("chat/py-resume", 1, 40)
    wait_for(lambda: servers.last_seq("chat/py-resume") >= 40, "commit", 20)
    c = make_client()
    assert [m.seq for m in take(c.subscribe("chat/py-resume", from_seq=31), 10)] == list(range(31, 41))
    assert c.position("chat/py-resume") == 40
    d = make_client()
    assert [m.seq for m in take(d.subscribe("chat/py-resume", last=5), 5)] == list(range(36, 41))


def test_callback_api_and_bad_frames(make_client, pub):
    seen, bad = [], []
    c = make_client(on_bad_frame=bad.append)

    def on_message(m):
        seen.append(m.seq)
        if m.seq == 2:
            raise RuntimeError("listener bug")

    c.subscribe("chat/py-bad", on_message=on_message)
    subscribed(c, "chat/py-bad")
    pub("chat/py-bad", 1, 2)
    wait_for(lambda: len(seen) >= 2, "two messages")
    pub.raw("seq/chat/py-bad", b"short")
    pub.raw("seq/chat/py-bad", bytes.fromhex("00000007000000001102"))
    pub.raw("seq/chat/py-bad", bytes.fromhex("00000007000000000001"))
    pub("chat/py-bad", 3, 4)
    wait_for(lambda: len(seen) >= 4, "two more")
    assert seen == [1, 2, 3, 4]
    assert [b["reason"] for b in bad] == ["frame of 5 bytes is shorter than the 10-byte header",
                                         "frame has ordering flag 2, expected 0 or 1", "frame has SEQ 0"]
    assert c.stats.bad_frames == 3 and c.stats.listener_errors == 1


def test_gap_the_relay_cannot_fill_is_lost(servers, make_client, pub):
    pub("chat/py-hole", 1, 5)
    wait_for(lambda: servers.last_seq("chat/py-hole") >= 5, "commit", 20)
    lost = []
    # 6 and 7 lost on the way, and then gone from the database too.
    c = make_client(on_lost=lost.append, gap_wait=0.02, drop_live_frame=lambda topic, seq: seq in (6, 7))
    room = c.subscribe("chat/py-hole", history=True)
    assert [m.seq for m in take(room, 5)] == [1, 2, 3, 4, 5]
    pub("chat/py-hole", 6, 7)
    wait_for(lambda: servers.last_seq("chat/py-hole") >= 7, "commit", 20)
    servers.sql("DELETE FROM seqrelay.MSG WHERE ID = 'chat/py-hole' AND SEQ IN (6, 7)")
    pub("chat/py-hole", 8, 8)
    assert take(room, 1)[0].seq == 8
    assert lost == [{"topic": "chat/py-hole", "from": 6, "to": 7, "reason": "the relay has no such SEQ",
                     "code": None, "retry": None}]


def test_a_forged_frame_above_the_newest_seq_is_dropped_and_nothing_is_given_up(servers, make_client, pub):
    pub("chat/py-forged", 1, 5)
    wait_for(lambda: servers.last_seq("chat/py-forged") >= 5, "commit", 20)
    lost, bad = [], []
    c = make_client(on_lost=lost.append, on_bad_frame=bad.append, gap_wait=0.02)
    room = c.subscribe("chat/py-forged", history=True)
    assert [m.seq for m in take(room, 5)] == [1, 2, 3, 4, 5]
    tid = c._ids["chat/py-forged"]
    pub.raw("seq/chat/py-forged", encode_frame(tid, 8, "forged"))  # on a topic whose newest SEQ is 5
    wait_for(lambda: bad, "the forged frame reported")
    assert bad == [{"topic": "seq/chat/py-forged", "seqs": [8], "reason": "1 frame(s) above SEQ 5, the newest the relay stored"}]
    pub("chat/py-forged", 6, 7)
    assert [m.seq for m in take(room, 2)] == [6, 7]
    assert lost == []


def test_reconnect_fetches_what_was_missed(servers, make_client, pub):
    c = make_client()
    # With history: SEQs 1.. come whether or not the SUBSCRIBE is through before the publisher's first ones.
    room = c.subscribe("chat/py-away", history=True)
    pub("chat/py-away", 1, 10)
    assert len(take(room, 10)) == 10
    c.mqtt.socket().shutdown(socket.SHUT_RDWR)  # the network drops; paho reconnects by itself
    pub("chat/py-away", 11, 40)
    got = take(room, 30, 20)
    assert [m.seq for m in got] == list(range(11, 41))
    assert c._connects == 2 and c.stats.requests >= 1, "reconnected and asked from SEQ 11"
    with pytest.raises(queue.Empty):
        room.get(timeout=0.3)  # and nothing twice


@contextlib.contextmanager
def scripted_broker(on_connect):
    """A stand-in broker on loopback: for each connection it reads the CONNECT and calls
    on_connect(conn), in its own thread. Yields its port; closes everything after."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    conns = []

    def serve():
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            conns.append(conn)
            conn.recv(1024)  # the CONNECT
            on_connect(conn)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        except OSError:
            pass
        listener.close()
        for conn in conns:
            conn.close()


def test_a_refused_connection_is_an_error_at_once_and_connect_twice_is_harmless(make_client):
    # Every CONNECT refused: CONNACK return code 5, not authorised.
    started = time.monotonic()
    with scripted_broker(lambda conn: conn.sendall(b"\x20\x02\x00\x05")) as port:
        with pytest.raises(ConnectionError, match="refused the connection"):
            SeqClient(port=port, client_id="py-refused")
    assert time.monotonic() - started < 5, "not the whole 10 s timeout"
    c = make_client()
    c.connect()  # connected already: nothing happens
    assert c.mqtt.is_connected()


@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")  # close() must not raise
@pytest.mark.parametrize("connack", [False, True], ids=["before-the-connack", "before-the-subacks"])
def test_close_while_connect_waits_ends_connect_at_once(connack):
    """A broker that never answers the CONNECT, or answers it and never a SUBSCRIBE; close() from
    another thread while connect() waits. Until 2026-12-07 connect() waited on for its timeout
    (10 s), then raised as if the broker had not answered."""
    clients = []

    def answer(conn):
        c = clients[0]
        if connack:
            conn.sendall(b"\x20\x02\x00\x00")
            c._connack_seen.wait(5)  # connect() now waits for the SUBACKs
        c.close()

    started = time.monotonic()
    with scripted_broker(answer) as port:
        c = SeqClient(port=port, client_id="py-closed-while-connecting", connect=False)
        clients.append(c)
        with pytest.raises(ConnectionError, match="closed while connecting"):
            c.connect(timeout=10)
    assert time.monotonic() - started < 5, "not the whole 10 s timeout"
    assert c._connack == (0 if connack else None), "closed in the wait the case names"
    with pytest.raises(RuntimeError, match="closed"):
        c.connect()


@pytest.fixture
def dynsec_broker():
    """A mosquitto of its own that refuses every SUBSCRIBE of an anonymous client; stopped (by PID)
    and its folder removed after the test, passed or failed (a failure shows its log: conftest)."""
    if not os.path.exists(DYNSEC_PLUGIN):
        pytest.skip(f"no {DYNSEC_PLUGIN} (mosquitto's dynamic security plugin)")
    broker = DynsecBroker()
    yield broker
    broker.stop()


def test_a_refused_subscription_is_an_error_of_connect_at_once(dynsec_broker):
    """Until 2026-12-06 connect() took the SUBACK's 128 for a subscription, and the client
    delivered nothing, silently. A refusal on a later connection is counted (test_protocol)."""
    c = SeqClient(port=dynsec_broker.port, client_id=f"py-{next(_ids)}", connect=False)
    try:
        c.subscribe("chat/py-refused")
        started = time.monotonic()
        with pytest.raises(ConnectionError) as refused:
            c.connect()
        assert time.monotonic() - started < 5, "not the whole 10 s timeout"
        # The topic first, then the replies' (as the C++ client subscribes): the first refusal.
        assert str(refused.value) == ("the broker refused the subscription to 'seq/chat/py-refused' (SUBACK 128): "
                                      "its ACL does not let this user read it?")
        assert c.stats.subscribe_errors >= 1
    finally:
        c.close()


def test_close_from_a_callback_on_pahos_thread_returns_and_the_threads_end(make_client, pub):
    # on_message runs on paho's network thread with the client's lock held. Until 2026-12-07 a
    # close() there joined the timer thread, which waited for that lock: it never returned.
    returned = threading.Event()
    c = make_client()

    def on_message(_m):
        c.close()
        returned.set()

    c.subscribe("chat/py-close-in-message", on_message=on_message)
    subscribed(c, "chat/py-close-in-message")
    pub("chat/py-close-in-message", 1, 1)
    assert returned.wait(10), "close() in on_message did not return"
    wait_for(lambda: not c._timer.is_alive(), "the timer thread to end", 10)
    wait_for(lambda: not c._network_thread.is_alive(), "paho's network thread to end", 10)


def test_close_from_a_callback_on_the_timers_thread_returns_and_the_threads_end(make_client, pub):
    # A gap's request is made by the timer (after gap_wait), and on_fetch runs there with the lock
    # held. Until 2026-12-07 a close() there joined paho's thread, which waited for that lock.
    returned = threading.Event()
    fetched_on = []

    def on_fetch(_e):
        fetched_on.append(threading.current_thread().name)
        c.close()
        returned.set()

    c = make_client(drop_live_frame=lambda topic, s: s == 2, gap_wait=0.05, on_fetch=on_fetch)
    room = c.subscribe("chat/py-close-in-fetch")
    subscribed(c, "chat/py-close-in-fetch")
    pub("chat/py-close-in-fetch", 1, 3)
    assert returned.wait(10), "close() in on_fetch did not return"
    assert fetched_on == ["seqrelay-timer"]
    wait_for(lambda: not c._timer.is_alive(), "the timer thread to end", 10)
    wait_for(lambda: not c._network_thread.is_alive(), "paho's network thread to end", 10)
    assert [m.seq for m in room] == [1]  # delivered before the gap; then the iterator ends


def test_subscribe_after_close_is_refused(make_client):
    c = make_client()
    c.close()
    with pytest.raises(RuntimeError, match="closed"):
        c.subscribe("chat/py-after-close")
