"""SeqClient: the seqrelay client module on paho-mqtt.

The Python twin of tools/client/seq_client.{h,cc} and clients/js: it
subscribes to <seq-prefix>/<filter>, decodes every frame, keeps one
OrderedStream per topic id (in SEQ order, exactly once, duplicates dropped)
and asks <control-prefix>/retransmit/<requester> for what is missing: a gap
after `gap_wait`, with retries and backoff; a truncated reply from its
`next`; a topic's history on join; everything after the last SEQ delivered
after a reconnect. At most `max_outstanding` requests are out at the relay at
once; the rest wait their turn. What waits behind a topic's gaps, or behind its
lookup, is at most `max_held_bytes` (past it held frames are dropped, the
newest but one first, and asked for again; a lookup's held live frames the last
come first, never the one of the highest SEQ; an immediate topic's oldest gap
is given up). v1.1 statuses (`first`, `code`, `retry`, `next`) are understood
when present.

    with SeqClient(port=1883, client_id="alice") as client:
        for m in client.subscribe("chat/room1", history=True):
            print(m.seq, m.text)

Threads: paho's network thread and the client's timer thread call into the
client; one lock (self._lock) guards all its state. Callbacks (on_message,
on_lost, ...) run on those threads, one at a time, in delivery order, with
the lock held; they may call close(), which then returns without waiting
for the two threads (they end once the callback returns). A callback that raises is
counted (stats.listener_errors) and logged; the stream goes on. Bad frames
are counted (stats.bad_frames) and reported to on_bad_frame, never
delivered; so are statuses whose fields have the wrong types. Nothing a
broker delivers raises into paho's network thread, whose end would stop
the client for good.

A subscription the broker refuses in its SUBACK (its ACL does not let this
user read the topic) would deliver nothing, silently: connect() raises
ConnectionError for one of the SUBSCRIBEs it sends; any other (a subscribe()
once connected, a reconnect) is counted (stats.subscribe_errors,
stats.last_subscribe_error) and logged, as the C++ client does.
"""
from __future__ import annotations

import json
import logging
import math
import queue
import random
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Set

import paho.mqtt.client as paho

from .frame import MAX_SEQ, FrameError, decode_frame
from .ordered_stream import Delivery, OrderedStream

log = logging.getLogger("seqrelay_client")

# A lookup asks from the highest SEQ there can be: no frames, and the status
# says the topic's id and newest SEQ.
LOOKUP_FROM = MAX_SEQ
# The `to` of an open-ended request, until its status names the newest SEQ.
OPEN_END = None
TICK = 0.025
# v1 relays send no `code`: these error texts mean the request can never succeed.
FINAL_ERRORS = {"unknown topic", "unknown id", "forbidden"}
# A status's fields and their types (PROTOCOL.md 3, 5.3); any other type
# makes it a bad one, dropped whole.
_STATUS_FIELDS = {
    **{key: int for key in ("id", "from", "to", "sent", "last", "first", "next")},
    **{key: str for key in ("status", "error", "code", "topic")},
    **{key: bool for key in ("retry", "truncated")},
}


# A SUBACK code from 0x80 on refuses the subscription: 0x80 on MQTT 3.1.1, a reason code on v5
# (mosquitto's dynamic security plugin answers so for a topic the user may not read; an acl_file
# never refuses a SUBSCRIBE).
SUBACK_REFUSED = 0x80


def refused_reason(topic: str, code) -> str:
    """Why the subscription to `topic` failed (the same words in the three client libraries)."""
    return (f"the broker refused the subscription to '{topic}' (SUBACK {code}): "
            "its ACL does not let this user read it?")


def reset_reason(start: int, last: int) -> str:
    """Why a resume at `start` past the topic's newest SEQ `last` is given up (the same words in the
    three client libraries)."""
    return f"resumed at {start}, past the topic's newest SEQ {last}: its history began again"


def _status_shape_error(s: dict) -> Optional[str]:
    """Why the status `s` is not of the protocol's shape, or None."""
    for key, kind in _STATUS_FIELDS.items():
        if key not in s:
            continue
        value = s[key]
        if kind is int and (type(value) is not int or value < 0):
            return f"{key!r} is not a non-negative integer"
        if kind is not int and type(value) is not kind:
            return f"{key!r} is not a {kind.__name__}"
    if s.get("status") == "ok":
        for key in ("id", "last"):  # every ok status names the topic's id and newest SEQ (PROTOCOL 3)
            if key not in s:
                return f"an ok status without {key!r}"
    return None


@dataclass(frozen=True)
class Message:
    topic: str  # the raw topic T (without the seq/ prefix)
    topic_id: int
    seq: int
    ordered: bool
    late: bool  # immediate topics: filled a gap after later frames were shown
    payload: bytes

    @property
    def text(self) -> str:
        return self.payload.decode("utf-8", errors="replace")


@dataclass
class Stats:
    delivered: int = 0
    duplicates: int = 0
    requests: int = 0  # retransmit and lookup requests sent
    gaps_filled: int = 0
    gaps_lost: int = 0  # ranges given up (reported to on_lost)
    bad_frames: int = 0
    listener_errors: int = 0
    unread_dropped: int = 0  # messages a Subscription without on_message dropped, its buffer full
    # Subscriptions (seq/<filter>, the reply topic) the broker refused in a SUBACK, or paho would not
    # send; those of the SUBSCRIBEs connect() sends are its ConnectionError as well.
    subscribe_errors: int = 0
    last_subscribe_error: str = ""  # the last of them: which topic, why
    # What waits behind gaps and lookups, over all topics, as max_held_bytes counts it per topic (a
    # gauge): computed when SeqClient.stats is read, under the client's lock.
    held_bytes: int = 0
    # Held frames dropped to stay within max_held_bytes, each asked for again later (not lost).
    frames_shed: int = 0


@dataclass(eq=False)  # compared and hashed by identity: kept in sets of requests
class _Topic:
    id: int
    name: str
    stream: OrderedStream
    ordered: bool = True
    asked: Optional[list] = None  # the outstanding request [from, to]; to may be OPEN_END
    sent_seq: int = 0  # _sends when it was last sent (see _heard)
    wait_from: float = 0.0  # when its reply timeout started: its last sending, or a reply since (see _heard)
    attempts: int = 0
    gap_seen: float = 0.0  # when the current gap was first seen; 0 = no gap
    catch_up_owed: bool = False  # a reconnect came while a request was out: ask for what came meanwhile after it
    shed: bool = False  # frames of it were shed (max_held_bytes) since it last had no gap: a forged frame forgotten above them may leave them in no gap
    refusal: Optional[dict] = None  # the outstanding request's last status with retry: true, if any
    sent: Optional[tuple] = None  # the range last asked for, and stream.arrivals when it first was
    # Statuses of that range not come yet, one a send: the relay answers each request, in order, so
    # while more than one is due, a status of the range is an earlier send's, not the last one's (or
    # the last one's after an earlier one was lost: a relay restarted, a reconnect).
    statuses_due: int = 0
    asked_on: int = 0  # _connects when the request was last sent: one sent before a reconnect may have lost frames
    # `asked` waits to be sent (in _waiting), behind max_outstanding others or a busy pause. Left set
    # when a waiting request is done or given up: its entry keeps the place for the next one, and
    # nothing reads `queued` while `asked` is None.
    queued: bool = False


@dataclass
class _HeldLive:
    """The live frames of a topic held while its lookup is out, and what they count against
    max_held_bytes: each frame's bytes and OrderedStream.ENTRY_BYTES."""
    frames: List[bytes] = field(default_factory=list)
    size: int = 0
    top: int = 0  # frames[top] has the highest SEQ
    top_seq: int = 0

    def add(self, data: bytes) -> None:
        try:
            seq = decode_frame(data).seq
        except FrameError:
            seq = 0  # (its offer counts it bad)
        if not self.frames or seq > self.top_seq:
            self.top, self.top_seq = len(self.frames), seq
        self.frames.append(data)
        self.size += len(data) + OrderedStream.ENTRY_BYTES


@dataclass(eq=False)  # compared and hashed by identity: kept in sets of requests
class _Lookup:
    name: str  # the topic looked up
    start: int  # first SEQ wanted; -N = the last N
    sent_seq: int = 0  # _sends when it was last sent (see _heard); 0 = waiting to be sent
    wait_from: float = 0.0  # when its reply timeout started: its last sending, or a reply since
    attempts: int = 0
    again: bool = False  # after a reconnect, of a topic the relay had no message of: the history was told
    round: bool = False  # a kept start's round (_unanswered_starts): one try, one reply timeout
    check: bool = False  # of a live frame below a kept start (see _handle_frame): given up, the start stands


def _no_delay(client: paho.Client) -> None:
    """Nagle's algorithm off, as the C++ client does (MOSQ_OPT_TCP_NODELAY): with it, a small
    publish can wait for the delayed ACK of the previous one, tens of milliseconds."""
    sock = client.socket()
    if isinstance(sock, socket.socket) and sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def default_requester(client_id: str, username: Optional[str]) -> str:
    """The requester a connection gets by default (its replies' topic): U/C (PROTOCOL 5.4) with
    a username U and another client id C, which the shipped ACL allows whatever the broker does
    with client ids; else the username or the client id (with the shipped broker's
    use_username_as_clientid the two are the same)."""
    if username and client_id and client_id != username:
        return f"{username}/{client_id}"
    return username or client_id


def topic_matches(filter_: str, topic: str) -> bool:
    """MQTT topic filter matching: '+' one level, '#' the rest."""
    f, t = filter_.split("/"), topic.split("/")
    for i, part in enumerate(f):
        if part == "#":
            return True
        if i >= len(t) or (part != "+" and part != t[i]):
            return False
    return len(f) == len(t)


class Subscription:
    """One subscribe(): iterate it (blocking) or give it an on_message callback."""

    def __init__(self, client: "SeqClient", filter_: str, on_message: Optional[Callable[[Message], None]],
                 max_buffered: int):
        self.filter = filter_
        self.on_message = on_message
        self._client = client
        # Without on_message, what is not read yet waits here, up to max_buffered messages: past
        # that the oldest goes (counted in stats.unread_dropped and logged), not the memory.
        # (Unbounded as a queue.Queue, so that the end marker None always fits.)
        self._queue: "queue.Queue[Optional[Message]]" = queue.Queue()
        self._max_buffered = max_buffered
        self.closed = False

    def _deliver(self, message: Message) -> None:
        if self.on_message is not None:
            self.on_message(message)
            return
        while self._queue.qsize() >= self._max_buffered:
            try:
                dropped = self._queue.get_nowait()
            except queue.Empty:
                break  # a reader took them meanwhile
            if dropped is None:  # unsubscribed: the end marker stays, and nothing more comes
                self._queue.put(None)
                return
            stats = self._client._stats
            stats.unread_dropped += 1
            if stats.unread_dropped == 1 or stats.unread_dropped % 10000 == 0:
                log.warning("seqrelay_client: subscription %r is not read: dropped %d unread messages so far "
                            "(the oldest first; SEQ %d of %r now)", self.filter, stats.unread_dropped,
                            dropped.seq, dropped.topic)
        self._queue.put(message)

    def get(self, timeout: Optional[float] = None) -> Message:
        """The next message; queue.Empty after `timeout` seconds; StopIteration once unsubscribed."""
        item = self._queue.get(timeout=timeout)
        if item is None:
            self._queue.put(None)  # other readers stop too
            raise StopIteration
        return item

    def __iter__(self):
        return self

    def __next__(self) -> Message:
        return self.get()

    def unsubscribe(self) -> None:
        if not self.closed:
            self.closed = True
            self._client._unsubscribe(self)
            self._queue.put(None)


_DAY_S = 86_400


def filter_error(filter_: object) -> Optional[str]:
    """What is wrong with a topic filter as MQTT takes it (None if nothing): '#' alone in the last
    level, '+' alone in its level, no NUL, valid UTF-8, at most 65535 bytes. The relay's rule
    (relay/core/topic_filter.cc), and the C++ and JavaScript clients'."""
    if not isinstance(filter_, str) or not filter_:
        return "a topic filter is a non-empty string"
    if "\0" in filter_:
        return f"topic filter {filter_!r} contains a NUL"
    try:
        size = len(filter_.encode("utf-8"))
    except UnicodeEncodeError:
        return f"topic filter {filter_!r} is not valid UTF-8"
    if size > 65535:
        return "topic filter longer than 65535 bytes"
    levels = filter_.split("/")
    for i, level in enumerate(levels):
        if (level == "#" and i < len(levels) - 1) or (level not in ("+", "#") and ("+" in level or "#" in level)):
            return f"'+' and '#' must fill a whole level, '#' the last, in topic filter {filter_!r}"
    return None


def _check_prefix(name: str, prefix: object) -> None:
    ok = isinstance(prefix, str) and prefix and not any(c in prefix for c in "+#\0") \
        and not prefix.startswith("/") and not prefix.endswith("/")
    if ok:
        try:
            prefix.encode("utf-8")
        except UnicodeEncodeError:
            ok = False
    if not ok:
        raise ValueError(f"{name} {prefix!r} must be a plain topic prefix: UTF-8, no '+', '#' or NUL, no leading or "
                         "trailing '/'")


def _seconds(name: str, value: object, least: float, inclusive: bool) -> None:
    real = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not (real and (value >= least if inclusive else value > least) and value <= _DAY_S):
        raise ValueError(f"{name} is seconds, {'from' if inclusive else 'more than'} {least} to 86400 (a day); "
                         f"got {value!r}")


class SeqClient:
    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        client_id: str = "",
        username: Optional[str] = None,
        password: Optional[str] = None,
        requester: Optional[str] = None,
        seq_prefix: str = "seq",
        control_prefix: str = "relay",
        qos: int = 1,
        gap_wait: float = 0.2,
        reply_timeout: float = 2.0,
        max_attempts: int = 5,
        max_outstanding: int = 8,
        max_held_bytes: int = 64 * 1024 * 1024,
        on_lost: Optional[Callable[[dict], None]] = None,
        on_fetch: Optional[Callable[[dict], None]] = None,
        on_history: Optional[Callable[[dict], None]] = None,
        on_bad_frame: Optional[Callable[[dict], None]] = None,
        drop_live_frame: Optional[Callable[[str, int], bool]] = None,
        connect: bool = True,
        transport: str = "tcp",
    ) -> None:
        """Connects (unless connect=False; then call connect()). The requester (whose replies
        these are) defaults to default_requester(client_id, username): U/C with both (and
        different), else the one given. max_outstanding: requests (ranges and lookups) out at the
        relay at once, at most; the relay holds 16 of a user waiting and refuses more busy, and 8
        leaves room for a second connection of the same user. max_held_bytes: per topic, what may
        wait behind its gaps (its OrderedStream's held_bytes: an ordered topic's payloads and 96
        bytes a frame for the record, an immediate topic's records of the SEQs shown) or, while
        its lookup is out, its live frames (each frame's bytes and the same 96). A relay that
        answers busy for long, which is never a failed attempt, would otherwise have the client
        hold every frame that comes meanwhile. Past it, held frames are dropped, the newest but one
        first (the newest stays): the relay has them, and they are asked for again in turn, as a
        gap (a lookup waits on: its held live frames are dropped the last come first, never the one
        of the highest SEQ, which shows them as a gap once the lookup is answered, within the
        history's range or asked for after it); stats.frames_shed counts them. An immediate
        topic's records cannot be dropped (a frame would be shown twice): its oldest gap is given
        up instead (on_lost, "N bytes held behind the gap, over max_held_bytes"; an asked range
        whole, then the gap above it). 0: no bound; 64 MiB by default. stats.held_bytes is what all topics hold now."""
        self.requester = requester or default_requester(client_id, username)
        if not self.requester:
            raise ValueError("give a client_id, username or requester: it names the retransmit topics")
        if "+" in self.requester or "#" in self.requester:
            raise ValueError(f"requester {self.requester!r} holds a wildcard")
        if "\0" in self.requester or filter_error(self.requester) is not None:
            raise ValueError(f"requester {self.requester!r} is not valid UTF-8 without NUL")
        levels = self.requester.split("/")
        if len(levels) > 2 or "" in levels:
            raise ValueError(f"requester {self.requester!r} is not R or U/C (PROTOCOL 3 and 5.4: one or two "
                             "non-empty levels)")
        self.host, self.port = host, port
        self.seq_prefix, self.control_prefix, self.qos = seq_prefix, control_prefix, qos
        self.gap_wait, self.reply_timeout, self.max_attempts = gap_wait, reply_timeout, max_attempts
        if not isinstance(max_outstanding, int) or isinstance(max_outstanding, bool) or max_outstanding < 1:
            raise ValueError("max_outstanding is a count >= 1 (an int)")
        # What would subscribe to nothing, ask on the wrong topics, wait for ever or end a thread
        # of the client's is refused here, as the C++ client's CheckOptions does.
        _check_prefix("seq_prefix", seq_prefix)
        _check_prefix("control_prefix", control_prefix)
        if qos not in (0, 1, 2) or isinstance(qos, bool):
            raise ValueError(f"qos is 0, 1 or 2; got {qos!r}")
        _seconds("gap_wait", gap_wait, 0, True)
        _seconds("reply_timeout", reply_timeout, 0, False)
        if not isinstance(max_attempts, int) or isinstance(max_attempts, bool) or max_attempts < 1:
            raise ValueError("max_attempts is a count >= 1 (an int)")
        if not isinstance(max_held_bytes, int) or isinstance(max_held_bytes, bool) or max_held_bytes < 0:
            raise ValueError("max_held_bytes is a count of bytes >= 0 (an int; 0: no bound)")
        self.max_held_bytes = max_held_bytes
        self.max_outstanding = max_outstanding
        self.on_lost, self.on_fetch, self.on_history, self.on_bad_frame = on_lost, on_fetch, on_history, on_bad_frame
        self.drop_live_frame = drop_live_frame  # test hook: live frames it returns True for are dropped
        self.request_topic = f"{control_prefix}/retransmit/{self.requester}"
        self.reply_topic = f"{control_prefix}/replay/{self.requester}"
        self._stats = Stats()

        self._lock = threading.RLock()
        self._topics: Dict[int, _Topic] = {}  # topic id -> state
        self._ids: Dict[str, int] = {}  # topic name -> id
        self._lookups: Dict[str, _Lookup] = {}
        self._held_live: Dict[str, _HeldLive] = {}  # live frames of topics being looked up, and their bytes
        self._start_at: Dict[str, int] = {}  # topics the relay had no message of yet -> first SEQ wanted
        # Of those, the ones whose lookup went unanswered (_give_up_lookup): a quiet topic sends no
        # live frame to start it, so they are looked up again every 16 reply timeouts (_tick), and at
        # the next reconnect.
        self._unanswered_starts: Set[str] = set()
        self._kept_lookups_at = 0.0
        self._subscriptions: List[Subscription] = []
        self._connects = 0
        # Requests sent (_request): each sending gets the next number, its sent_seq, so that the
        # order in which the relay serves them is known (see _heard).
        self._sends = 0
        # The requests out at the relay and not answered yet: topics with a range sent (asked, not
        # queued) and lookups sent (an entry of _lookups with sent_seq != 0). At most max_outstanding;
        # _pump drops those answered, given up or forgotten, and sends what waits.
        self._in_flight: set = set()
        # Requests made and not sent yet, in the order they were made (a dict as an ordered set):
        # topics with `queued`, and lookups with sent_seq == 0. A topic's entry stays when its
        # request is done or given up before it is sent: _pump skips it, and a new request of the
        # topic made meanwhile takes it (see _abandon).
        self._waiting: dict = {}
        # busy (PROTOCOL 5.3): nothing waiting is sent before _busy_until (time.monotonic(); 0 = no
        # pause). _busy_rounds: pauses since the relay last served this client (a frame or an ok
        # status), each twice the one before.
        self._busy_until = 0.0
        self._busy_rounds = 0
        self._connected = threading.Event()
        self._connack: Optional[int] = None
        self._connack_seen = threading.Event()  # any CONNACK, refusals included
        # The SUBSCRIBEs of the current connection awaiting their SUBACK: mid -> the topic.
        self._subscribing: Dict[int, str] = {}
        # connect() waits for the SUBACKs of the first connection: _subscribe_error is the first
        # refusal among them, and _subacked is set once they all came or one was refused.
        self._awaiting_subacks = False
        self._subscribe_error: Optional[str] = None
        self._subacked = threading.Event()
        self._closed = False
        self._network_thread: Optional[threading.Thread] = None  # paho's, once it called back
        # paho's loop_start() and loop_stop(), one at a time: a close() on another thread while
        # connect() is in loop_start() joined a thread made and not started (RuntimeError).
        self._net_lock = threading.Lock()

        kwargs = {"client_id": client_id, "clean_session": True, "transport": transport}
        if hasattr(paho, "CallbackAPIVersion"):  # paho-mqtt 2
            kwargs["callback_api_version"] = paho.CallbackAPIVersion.VERSION1
        self.mqtt = paho.Client(**kwargs)
        if username is not None:
            self.mqtt.username_pw_set(username, password)
        self.mqtt.reconnect_delay_set(1, 30)
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_disconnect = self._on_disconnect
        self.mqtt.on_message = self._on_message
        self.mqtt.on_subscribe = self._on_subscribe
        self._timer = threading.Thread(target=self._tick_loop, name="seqrelay-timer", daemon=True)
        if connect:
            self.connect()

    # ---- lifecycle --------------------------------------------------------------

    def connect(self, timeout: float = 10.0) -> None:
        """Connects and waits for the CONNACK, then for the SUBACKs of the subscriptions it sends
        (the reply topic, and the filters subscribed before with connect=False); ConnectionError
        if the connection or one of those subscriptions is refused (at once), or unanswered. Once
        connected, a second call does nothing."""
        if self._closed:
            raise RuntimeError("the client is closed")
        if self._timer.is_alive():
            return
        with self._lock:
            self._awaiting_subacks = True
        self.mqtt.connect(self.host, self.port, keepalive=30)
        with self._net_lock:  # a close() meanwhile stops no thread: none is started
            if self._closed:
                self.mqtt.disconnect()
                raise ConnectionError("closed while connecting")
            self.mqtt.loop_start()
        if not self._connack_seen.wait(timeout) or not self._connected.is_set():
            closed = self._closed  # by another thread or a callback, meanwhile
            self.close()
            if closed:
                self._stop_network()
                raise ConnectionError("closed while connecting")
            if self._connack:
                raise ConnectionError(f"{self.host}:{self.port} refused the connection: "
                                      f"{paho.connack_string(self._connack)}")
            raise ConnectionError(f"no CONNACK from {self.host}:{self.port} within {timeout} s")
        # Subscribed, or told why not: a topic the broker's ACL does not let this user read would
        # otherwise deliver nothing, silently.
        subacked = self._subacked.wait(timeout)
        with self._lock:
            self._awaiting_subacks = False
            error = self._subscribe_error
            closed = self._closed
        if closed:  # by another thread or a callback, meanwhile
            self._stop_network()
            raise ConnectionError("closed while connecting")
        if error is not None or not subacked:
            self.close()
            raise ConnectionError(error or f"no SUBACK from {self.host}:{self.port} within {timeout} s")
        with self._lock:
            if self._closed:  # just now
                raise ConnectionError("closed while connecting")
            self._timer.start()

    def _stop_network(self) -> None:
        """After a close() that came while connect() waited: from a callback, close() left paho's
        thread to end by itself; it is joined here, on connect()'s thread."""
        self.mqtt.disconnect()
        with self._net_lock:
            self.mqtt.loop_stop()

    def close(self) -> None:
        """Disconnects; iterators end. Idempotent. A callback may call it too: the client's threads
        then end by themselves, once the callback returns."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            subs = list(self._subscriptions)
        # A connect() waiting for the CONNACK or the SUBACKs returns at once. (Until 2026-12-07
        # it waited for them up to its timeout.)
        self._connack_seen.set()
        self._subacked.set()
        for sub in subs:
            sub.closed = True
            sub._queue.put(None)
        self.mqtt.disconnect()  # paho's network thread ends its loop once the DISCONNECT is out
        # From a callback (with the lock held, on paho's thread or the timer's), each thread would
        # wait for the other: the one waits for the lock, the other joins it. (Until 2026-12-07 a
        # close() in a callback hung so.) The timer sees _closed at its next round.
        here = threading.current_thread()
        if here is self._timer or here is self._network_thread:
            return
        with self._net_lock:  # not inside connect()'s loop_start()
            self.mqtt.loop_stop()
        if self._timer.is_alive():
            self._timer.join()

    def __enter__(self) -> "SeqClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- API ----------------------------------------------------------------------

    def subscribe(
        self,
        filter_: str,
        history: bool = False,
        from_seq: Optional[int] = None,
        last: Optional[int] = None,
        on_message: Optional[Callable[[Message], None]] = None,
        max_buffered: int = 100_000,
    ) -> Subscription:
        """Subscribes to seq/<filter_>. history=True reads from SEQ 1 first, from_seq=N resumes
        at N, last=N starts N back; those need a topic without wildcards. Without on_message,
        iterate the returned Subscription."""
        if self._closed:
            raise RuntimeError("the client is closed")
        if not isinstance(filter_, str) or not filter_:
            raise TypeError("a topic filter is a non-empty string")
        bad = filter_error(filter_)
        if bad is not None:
            raise ValueError(bad)
        size = len(filter_.encode("utf-8"))
        if "+" not in filter_ and "#" not in filter_ and size > 255:  # PROTOCOL 1: never sequenced
            raise ValueError(f"topic '{filter_[:40]}...' is {size} bytes: the relay sequences topics of at most 255 bytes")
        if (from_seq is not None) + (last is not None) + bool(history) > 1:
            raise ValueError("give only one of history, from_seq, last")
        start: Optional[int] = None

        def whole(n) -> bool:
            return isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= MAX_SEQ

        if from_seq is not None:
            if not whole(from_seq):
                raise ValueError(f"from_seq is a SEQ, 1 to {MAX_SEQ} (an int)")
            start = from_seq
        elif last is not None:
            if not whole(last):
                raise ValueError(f"last is a count, 1 to {MAX_SEQ} (an int)")
            start = -last
        elif history:
            start = 1
        if start is not None and ("+" in filter_ or "#" in filter_):
            raise ValueError(f"history and resume need a topic without '+' or '#': {filter_!r}")
        if not isinstance(max_buffered, int) or isinstance(max_buffered, bool) or max_buffered < 1:
            raise ValueError("max_buffered is a count >= 1 (an int)")
        sub = Subscription(self, filter_, on_message, max_buffered)
        with self._lock:
            if self._closed:  # again, under the lock: close() ends only the subscriptions it found
                raise RuntimeError("the client is closed")
            if start is not None and (filter_ in self._ids or filter_ in self._lookups or filter_ in self._start_at):
                # Its stream has a position already: history below it would be dropped as duplicates.
                # So has a topic with a start kept (a lookup given up unanswered, or a topic the
                # relay had no message of): a second lookup would replace that start, and its answer
                # drop it, so the first subscription's SEQs below the new start would be neither
                # delivered nor reported (until 2026-12-07 it was taken).
                raise ValueError(f"{filter_!r} is followed already: history and resume apply to a topic's "
                                 "first subscription (unsubscribe every subscription that matches it first)")
            if start is not None:
                # Before the SUBSCRIBE: a live frame that came first would start the stream there.
                self._lookups[filter_] = _Lookup(filter_, start)
            self._subscriptions.append(sub)
            if self._connected.is_set():
                self._subscribe(f"{self.seq_prefix}/{filter_}", self.qos)
                if start is not None:
                    self._ask(self._lookups[filter_])
        return sub

    def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> paho.MQTTMessageInfo:
        """Publishes a raw message for the relay to sequence."""
        return self.mqtt.publish(topic, payload, qos)

    def position(self, topic: str) -> int:
        """The last SEQ delivered or given up of `topic` (0 = none): resume with from_seq=position+1.
        A topic not started yet (its lookup out, or given up with its start kept) says where it starts."""
        with self._lock:
            tid = self._ids.get(topic)
            if tid is not None and tid in self._topics:
                return max(0, self._topics[tid].stream.next - 1)
            # Until 2026-12-07 such a topic said 0: an app that saved it at exit asked for the
            # whole history at its next start.
            lookup = self._lookups.get(topic)
            start = lookup.start if lookup is not None else self._start_at.get(topic, 0)
            return max(0, start - 1)

    @property
    def stats(self) -> Stats:
        """The client's counters (the same object each time, counting on); held_bytes is computed
        now, under the lock, from what every topic holds."""
        with self._lock:
            self._stats.held_bytes = (sum(t.stream.held_bytes for t in self._topics.values())
                                      + sum(held.size for held in self._held_live.values()))
            return self._stats

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscriptions:
                self._subscriptions.remove(sub)
            if not any(s.filter == sub.filter for s in self._subscriptions) and not self._closed:
                self.mqtt.unsubscribe(f"{self.seq_prefix}/{sub.filter}")
            # Topics no subscription matches any more are forgotten: a reconnect asks nothing
            # for them, and a later subscribe starts afresh.
            for tid, t in list(self._topics.items()):
                if not self._wanted(t.name):
                    del self._topics[tid]
                    self._ids.pop(t.name, None)
            for table in (self._lookups, self._held_live, self._start_at):
                for name in [n for n in table if not self._wanted(n)]:
                    del table[name]
            self._unanswered_starts = {n for n in self._unanswered_starts if self._wanted(n)}
            if not self._closed and self._connected.is_set():
                self._pump()  # their places go to requests waiting

    def _wanted(self, topic: str) -> bool:
        return any(topic_matches(s.filter, topic) for s in self._subscriptions)

    # ---- paho callbacks (network thread) --------------------------------------------

    # Nothing may raise into paho: its network thread would end, and with it the client's traffic.

    def _on_connect(self, _client, _userdata, _flags, rc) -> None:
        self._network_thread = threading.current_thread()
        self._connack = rc
        try:
            if rc == 0:
                self._connected_anew()
        except Exception:
            log.exception("seqrelay_client: the connection's set-up failed")
        finally:
            self._connack_seen.set()

    def _connected_anew(self) -> None:
        try:
            _no_delay(self.mqtt)
        except OSError:
            pass  # a socket the broker already closed: the disconnect comes next
        with self._lock:
            self._connects += 1
            self._subscribing = {}  # the SUBACKs of a connection that ended do not come
            # The replies' topic before any request, and the topics before their lookups; the
            # topics first, as the C++ client does (a broker that refuses both reports the topic).
            for f in dict.fromkeys(s.filter for s in self._subscriptions):
                self._subscribe(f"{self.seq_prefix}/{f}", self.qos)
            self._subscribe(f"{self.reply_topic}/#", 1)
            if not self._subscribing and self._awaiting_subacks:
                self._subacked.set()  # nothing went out: no SUBACK to wait for
            for lookup in list(self._lookups.values()):
                if lookup.sent_seq == 0:
                    self._ask(lookup)
            if self._connects > 1:
                self._catch_up()
            # Under the lock: a subscribe() made after the loop above must see the connection and
            # send its own SUBSCRIBE (set after the lock, one in between sent none until the next
            # connect).
            self._connected.set()

    def _on_disconnect(self, *_args) -> None:
        with self._lock:  # a timer round runs wholly before or after it (see _tick_loop)
            self._connected.clear()

    def _on_subscribe(self, _client, _userdata, mid, granted_qos, *_properties) -> None:
        try:
            self._subacked_one(mid, granted_qos)
        except Exception:
            log.exception("seqrelay_client: a SUBACK could not be handled")

    def _subacked_one(self, mid, granted_qos) -> None:
        with self._lock:
            topic = self._subscribing.pop(mid, None)
            if topic is None:
                return  # not ours (the application's own, on self.mqtt), or of a connection that ended
            # 128 (3.1.1) or a v5 reason code from 0x80 on: refused, as mosquitto's dynamic security
            # plugin does with a topic the user may not read.
            codes = [getattr(code, "value", code) for code in granted_qos or ()]
            if not codes or codes[0] >= SUBACK_REFUSED:
                self._subscribe_failed(refused_reason(topic, codes[0] if codes else "empty"))
            if not self._subscribing and self._awaiting_subacks:
                self._subacked.set()

    def _on_message(self, _client, _userdata, msg) -> None:
        try:
            topic = msg.topic
        except UnicodeDecodeError:  # not a topic of ours (a broker that let a non-UTF-8 one through)
            log.warning("seqrelay_client: a message on a topic that is not UTF-8 dropped: %r", msg._topic)
            return
        with self._lock:
            try:
                if topic == f"{self.reply_topic}/status":
                    self._handle_status(msg.payload)
                elif topic == self.reply_topic:
                    self._handle_frame(None, msg.payload, replayed=True)
                elif topic.startswith(f"{self.seq_prefix}/"):
                    self._handle_frame(topic[len(self.seq_prefix) + 1 :], msg.payload, replayed=False)
                else:
                    return  # the application's own subscription
                self._pump()  # a request answered or done: its place goes to the next waiting
            except Exception:  # paho re-raises, and its network thread would end: counted, logged, dropped
                self._stats.bad_frames += 1
                log.exception("seqrelay_client: a message on %r could not be handled", topic)

    # ---- the protocol (lock held) -----------------------------------------------------

    def _subscribe(self, topic: str, qos: int) -> None:
        """Sends a SUBSCRIBE; its SUBACK (_on_subscribe) says whether the broker took it."""
        rc, mid = self.mqtt.subscribe(topic, qos)
        if rc == paho.MQTT_ERR_SUCCESS:
            self._subscribing[mid] = topic
        elif rc != paho.MQTT_ERR_NO_CONN:  # offline: the next connection subscribes again
            self._subscribe_failed(f"cannot subscribe to '{topic}': {paho.error_string(rc)}")

    def _subscribe_failed(self, why: str) -> None:
        """A subscription failed (`why` names the topic): connect()'s error if it waits for the
        SUBACKs of the first connection, else counted and logged."""
        self._stats.subscribe_errors += 1
        self._stats.last_subscribe_error = why
        if self._awaiting_subacks:
            if self._subscribe_error is None:
                self._subscribe_error = why
            self._subacked.set()
        else:
            log.warning("seqrelay_client: %s", why)

    def _call(self, callback, value) -> None:
        if callback is None:
            return
        try:
            callback(value)
        except Exception:  # a listener's bug must not break the stream
            self._stats.listener_errors += 1
            log.exception("seqrelay_client: a callback raised")

    def _bad_frame(self, topic: str, reason: str) -> None:
        self._stats.bad_frames += 1
        self._call(self.on_bad_frame, {"topic": topic, "reason": reason})

    def _handle_frame(self, name: Optional[str], data: bytes, replayed: bool) -> None:
        try:
            frame = decode_frame(data)
        except FrameError as e:
            self._bad_frame(self.reply_topic if replayed else f"{self.seq_prefix}/{name}", str(e))
            return
        if replayed:
            self._busy_rounds = 0  # the relay is serving this client
        if not replayed and self.drop_live_frame and self.drop_live_frame(name, frame.seq):
            return
        t = self._topics.get(frame.topic_id)
        if t is None:
            if replayed:
                return  # not asked for
            if name in self._lookups:
                self._hold_live(name, data)
                return
            if not self._wanted(name):
                return  # a frame of a topic unsubscribed from, still on its way: not a new topic
            # A start kept from a lookup the relay did not answer, and a live frame below it: an old
            # frame sent again (a relay's restart), or one of a database since reset, whose SEQs
            # below the start would all be dropped as duplicates, saying nothing. Only the relay
            # can tell: the frame waits for a lookup, asked now, once (given up, the topic starts
            # at the kept start, as it did for every frame until 2026-12-07).
            kept = self._start_at.get(name, 0)
            if kept > frame.seq and name in self._unanswered_starts:
                self._unanswered_starts.discard(name)
                lookup = _Lookup(name, kept, again=True, check=True)
                self._lookups[name] = lookup
                self._hold_live(name, data)
                self._ask(lookup)
                return
            if name in self._ids:  # a topic keeps its id for the life of the database
                self._bad_frame(f"{self.seq_prefix}/{name}", f"{name!r} is topic id {self._ids[name]}, not {frame.topic_id}")
                return
            t = self._new_topic(frame.topic_id, name, self._start_at.pop(name, 0))
            self._unanswered_starts.discard(name)
        elif not replayed and t.name != name:
            self._bad_frame(f"{self.seq_prefix}/{name}", f"topic id {frame.topic_id} is {t.name!r}, not {name!r}")
            return
        if replayed and self._is_out(t):
            self._heard(t)  # before the frame may complete the request
        t.ordered = frame.ordered
        deliveries, duplicate = t.stream.offer(frame.seq, frame.ordered, frame.payload)
        if duplicate:
            self._stats.duplicates += 1
        self._deliver(t, deliveries)
        self._bound_held(t)

    def _bound_held(self, t: _Topic) -> None:
        """Keeps `t` within max_held_bytes: a relay that answers busy for long, which is never a
        failed attempt, would otherwise have it hold every frame that comes meanwhile. An ordered
        topic's held frames are shed, the newest but one first: the relay has its frames, and
        those dropped are asked for again in turn, so nothing is lost however long it stays busy
        (until 2026-12-07 the gap was given up, which could cut a range the relay was still
        replaying). An immediate topic's records of frames shown cannot be dropped (so they are
        not walked either): its oldest gaps are given up instead, each turn moving next on: the
        asked range given up (then the gap above it, if the range ended below it), or the gap
        itself. A callback that unsubscribed (on_message, on_lost) ends it: the topic is
        forgotten. The C++ client's BoundHeldLocked."""
        bound = self.max_held_bytes
        if not bound or self._topics.get(t.id) is not t or t.stream.held_bytes <= bound:
            return
        if t.ordered:
            shed = len(t.stream.shed(bound))
            self._stats.frames_shed += shed
            t.shed = t.shed or shed > 0
            return  # (over still only by one frame bigger than the bound)
        while self._topics.get(t.id) is t and t.stream.held_bytes > bound and t.stream.gap() is not None:
            why = f"{t.stream.held_bytes} bytes held behind the gap, over max_held_bytes"
            if t.asked is not None:
                self._abandon(t, why, None)
            else:
                gap = t.stream.gap()
                self._lose(t, gap[0], gap[1], why, None)

    def _new_topic(self, tid: int, name: str, start: int) -> _Topic:
        t = _Topic(tid, name, OrderedStream(start))
        self._topics[tid] = t
        self._ids[name] = tid
        return t

    def _deliver(self, t: _Topic, deliveries: List[Delivery]) -> None:
        for d in deliveries:
            self._stats.delivered += 1
            message = Message(t.name, t.id, d.seq, t.ordered, d.late, d.payload)
            for sub in list(self._subscriptions):
                if topic_matches(sub.filter, t.name):
                    self._call(sub._deliver, message)
        # Done once every SEQ asked for was delivered or given up.
        if t.asked and t.asked[1] is not OPEN_END and t.stream.next > t.asked[1]:
            if t.asked[1] >= t.asked[0]:  # a catch-up that found nothing new filled nothing
                self._stats.gaps_filled += 1
            t.asked, t.attempts, t.refusal = None, 0, None
        if t.stream.gap() is None:
            t.gap_seen = 0.0
            t.shed = False  # every SEQ shed below the newest has come (or was given up)

    def _handle_status(self, data: bytes) -> None:
        try:
            s = json.loads(data)
        except ValueError:
            return
        if not isinstance(s, dict):
            return
        why = _status_shape_error(s)
        if why is not None:
            self._bad_frame(f"{self.reply_topic}/status", f"malformed status: {why}")
            return
        ok = s.get("status") == "ok"
        if ok:
            self._busy_rounds = 0
        if s.get("from") == LOOKUP_FROM and s.get("topic") in self._lookups:
            self._lookup_answered(s, ok)
            return
        t = self._topics.get(s.get("id"))
        if t is None or t.asked is None or t.queued:  # one waiting to be sent has nothing to answer
            return
        # Only the answer to the outstanding request: an older request's status can come late.
        if s.get("from") != t.asked[0] or (t.asked[1] is not OPEN_END and s.get("to") != t.asked[1]):
            return
        self._heard(t)
        # The same range asked again (no status within the reply timeout): the statuses of the earlier
        # tries come first. One of them may give nothing up, nor ask again (below): the last try's reply
        # may bring what it did not (until 2026-12-07 the first try's status, its frame dropped by the
        # broker, gave up the SEQ the last try's reply was bringing). What else it says holds for the
        # later tries too.
        earlier_try = t.sent is not None and t.sent[:2] == (t.asked[0], t.asked[1]) and t.statuses_due > 1
        t.statuses_due = t.statuses_due - 1 if earlier_try else 0
        if not ok and s.get("code") == "busy":
            self._refused_busy(t)
            return
        # busy, unavailable, stopping, internal (PROTOCOL 5.3), and a v1 relay's error without
        # `retry` other than the final ones (as for lookups): the timer asks again after the backoff;
        # `stopping` says where to go on from.
        retry = not ok and s.get("retry", s.get("error") not in FINAL_ERRORS)
        if retry:
            t.refusal = s
            nxt = s.get("next")
            if isinstance(nxt, int) and nxt > t.asked[0]:
                t.asked = [nxt, t.asked[1]]
            return  # the timer asks again after the backoff
        last = s.get("last") if ok and isinstance(s.get("last"), int) else None
        if last is not None and t.sent is not None and t.sent[:2] == (t.asked[0], t.asked[1]):
            # `last` is the topic's newest SEQ once the relay had the request. A frame held since
            # before the request was first sent, and above it, was never stored by the relay: not
            # its frame (a publisher on seq/ the broker should not let in). Forgotten, so that the
            # SEQs below it, which do not exist yet, are not given up for it. A frame that came
            # later may be newer than the reply: it stays.
            seqs = t.stream.forget(last + 1, by=t.sent[2])
            if seqs:  # `seqs`: an immediate topic showed them already
                self._stats.bad_frames += len(seqs)
                # Frames shed below a forgotten one (max_held_bytes) may be in no gap now: a catch-up
                # from next brings them, once this request is done.
                if t.shed:
                    t.catch_up_owed, t.shed = True, False
                self._call(self.on_bad_frame, {"topic": f"{self.seq_prefix}/{t.name}", "seqs": seqs,
                                               "reason": f"{len(seqs)} frame(s) above SEQ {last}, the newest the relay stored"})
        if t.asked[1] is OPEN_END and isinstance(s.get("to", s.get("last")), int):
            # A catch-up learns its end: done if its frames came already.
            t.asked = [t.asked[0], s.get("to", s.get("last"))]
            if t.stream.next > t.asked[1]:
                self._deliver(t, [])
                return
            self._call(self.on_fetch, {"topic": t.name, "from": t.asked[0], "to": t.asked[1]})  # as JS does
        first = s.get("first")
        if ok and isinstance(first, int) and first > t.asked[0] and first > t.stream.next:
            # PROTOCOL 5.2: the relay deleted everything below `first`. Give it up now, so delivery
            # goes on from `first` (without waiting for the rest of a truncated reply), and never
            # ask for it again. What is left of the request starts at `first`, or nothing is.
            t.asked = [first, t.asked[1]] if t.asked[1] is OPEN_END or first <= t.asked[1] else None
            if t.asked is None:
                t.attempts = 0
            self._lose(t, t.stream.next, first - 1, f"history starts at {first}", None)
            if t.asked is None:
                return  # done: the frames from `first` on came already, or none were asked for
        # Sent before the latest reconnect: frames of the reply published while the client was away
        # never came (its session is clean), so what is missing is no sign that the relay lacks it:
        # asked for again.
        stale = t.asked_on != self._connects
        if ok and s.get("truncated") is True and isinstance(s.get("next"), int):
            t.asked = [min(s["next"], t.stream.next) if stale else s["next"], t.asked[1]]
            self._request_range(t)
            return
        if t.asked[1] is OPEN_END:
            # A catch-up refused for good before its end was known: given up as one never
            # answered is (until 2026-12-06 it was dropped unreported).
            if not ok:
                self._abandon(t, s.get("error", "refused"), s)
            t.asked, t.attempts = None, 0  # ok without `to` or `last`: nothing to go by
            return
        # Frames come before their status: what is still missing, the relay does not have (an
        # operator's purge), or the broker dropped on the way (a reply larger than its queue for a
        # slow client: mosquitto's max_queued_messages, 1,000 by default). The relay keeps no gaps
        # of its own between `first` and `last`, so it is asked for again, up to max_attempts
        # requests, before it is reported.
        asked, gap, attempts = t.asked, t.stream.gap(), t.attempts
        t.asked, t.attempts = None, 0
        missing_to = asked[1]
        if gap and gap[0] <= asked[1]:
            missing_to = min(asked[1], gap[1])
        if last is not None:
            missing_to = min(missing_to, last)  # nothing above it exists yet
        if t.stream.next > missing_to:
            if missing_to >= asked[0]:
                self._stats.gaps_filled += 1  # everything asked for that exists came (the rest was above `last`)
            return
        if earlier_try:
            # The request stays out: the last try's status, or its timeout (an earlier try's status
            # lost leaves one due for good), decides.
            t.asked, t.attempts = asked, attempts
            return
        if ok and attempts < self.max_attempts:
            # attempts + 1: reconnects that keep cutting replies short end in a report too
            t.asked, t.attempts = [t.stream.next, missing_to], attempts + 1
            self._call(self.on_fetch, {"topic": t.name, "from": t.asked[0], "to": t.asked[1]})
            self._request_range(t)
            return
        # The last reply says which: did the relay send every SEQ it was asked for?
        top = asked[1] if last is None else min(asked[1], last)
        sent = s.get("sent")
        all_sent = isinstance(sent, int) and not isinstance(sent, bool) and sent >= max(0, top - asked[0] + 1)
        if not ok:
            reason = s.get("error", "refused")
        else:
            reason = "sent by the relay, not delivered by the broker" if all_sent else "the relay has no such SEQ"
        self._lose(t, t.stream.next, missing_to, reason, None if ok else s)

    def _lookup_answered(self, s: dict, ok: bool) -> None:
        name = s["topic"]
        lookup = self._lookups[name]
        # A lookup waiting to be sent (again) has nothing out to answer: a busy status for it is one
        # delivered twice, and gives no attempt back.
        out = self._is_out(lookup)
        if out:
            self._heard(lookup)
        if not ok and s.get("code") == "busy":
            if out:
                self._refused_busy(lookup)
            return
        if not ok:
            retry = s.get("retry", s.get("error") not in FINAL_ERRORS)
            if s.get("code") == "unknown_topic" or s.get("error") == "unknown topic":
                # Nothing said yet: the first live frame must be SEQ 1. Nothing is missing for the
                # history or the last N of nothing; a resume from a later SEQ (a position saved against
                # a database since reset) asked for SEQs that do not exist, and is told so.
                resumed = lookup.start > 1
                self._unanswered_starts.discard(name)  # answered: it starts at its first live frame
                if resumed:
                    self._call(self.on_lost, {"topic": name, "from": 0, "to": 0,
                                              "reason": s.get("error", "unknown topic"), "code": s.get("code")})
                if not lookup.again and not resumed:  # before the held live frames, as in JS
                    self._call(self.on_history, {"topic": name, "first": 1, "last": 0, "start": 1})
                self._end_lookup(name, 1)
            elif not retry or lookup.attempts >= self.max_attempts:
                self._give_up_lookup(name, lookup, s.get("error", "lookup failed"), s.get("code"), refused=not retry)
            return
        last = s.get("last", 0)
        first = s.get("first") if isinstance(s.get("first"), int) else 1  # a v1 relay deletes nothing
        wanted = max(1, last + lookup.start + 1) if lookup.start < 0 else lookup.start
        # The lookup ends before any callback: one that unsubscribes from the topic finds nothing of
        # it left, and nothing is made of it after (until 2026-12-07 an unsubscribe in the reset's
        # on_lost made the lookup's end raise, and the topic was started for nobody).
        del self._lookups[name]
        self._start_at.pop(name, None)
        self._unanswered_starts.discard(name)
        if wanted > last + 1:
            # A resume past the topic's newest SEQ (a position saved against a database since reset):
            # the SEQs up to it would be taken for ones delivered before and dropped. The topic began
            # again: told so, and read from its oldest SEQ, as a topic the relay does not know is.
            self._call(self.on_lost, {"topic": name, "from": 0, "to": 0, "reason": reset_reason(wanted, last),
                                      "code": None})
            wanted = first
            if not self._wanted(name):
                return
        start = max(wanted, first)  # PROTOCOL 5.2: older SEQs are gone; do not ask or wait for them
        t = self._topics.get(s["id"]) or self._new_topic(s["id"], name, start)
        if not lookup.again:
            self._call(self.on_history, {"topic": name, "first": first, "last": last, "start": start})
        if wanted < first:
            self._lose(t, wanted, first - 1, f"history starts at {first}", None)
        if not self._wanted(name):
            return  # a callback above unsubscribed: the topic is forgotten
        if start <= last:
            t.asked, t.attempts = [start, last], 1
            self._call(self.on_fetch, {"topic": name, "from": start, "to": last})
            self._ask(t)
        self._offer_held(name)

    def _give_up_lookup(self, name: str, lookup, reason: str, code, refused: bool = False) -> None:
        # Unanswered, its start known (a saved position, history, a given SEQ): kept, so that the
        # first live frame shows the SEQs from it on as a gap, asked for by the frame's topic id as
        # any other, when the relay may answer again (until 2026-12-06 the topic started at its
        # first live frame, and a position saved then skipped the SEQs below it for good). The last
        # N, which needs the newest SEQ, and a lookup refused for good (`refused`: forbidden) are
        # given up. A lookup again after a reconnect loses nothing.
        if lookup.check:  # the check of a live frame below a kept start: the start stands
            self._end_lookup(name, lookup.start)
            return
        if lookup.start > 0 and not refused:
            if not self._unanswered_starts:
                self._kept_lookups_at = time.monotonic() + self.reply_timeout * 16
            self._unanswered_starts.add(name)
            self._end_lookup(name, lookup.start)
            return
        self._unanswered_starts.discard(name)
        if not lookup.again:
            self._call(self.on_lost, {"topic": name, "from": 0, "to": 0, "reason": reason, "code": code})
        self._end_lookup(name, 0)

    def _end_lookup(self, name: str, start: int) -> None:
        self._lookups.pop(name, None)
        # Not for a topic a callback unsubscribed from meanwhile: the next reconnect would look it
        # up and read its history for nobody.
        if start > 0 and self._wanted(name):
            self._start_at[name] = start
        self._offer_held(name)

    def _hold_live(self, name: str, data: bytes) -> None:
        """Holds a live frame of `name`, whose lookup is out, within max_held_bytes: past it frames
        are dropped, the last come first, but never the one of the highest SEQ (an old frame sent
        again may come last): offered once the lookup ends, it shows those dropped as a gap, asked
        for in turn (within the history's range, or after it). The lookup waits on (until
        2026-12-07 it was given up, and the held frames offered back could cross the bound again,
        losing the history's gap). The C++ client's HoldLiveLocked."""
        held = self._held_live.setdefault(name, _HeldLive())
        held.add(data)
        bound = self.max_held_bytes
        i = len(held.frames)
        while bound and held.size > bound and i > 0:
            i -= 1
            if i == held.top:
                continue
            held.size -= len(held.frames[i]) + OrderedStream.ENTRY_BYTES
            del held.frames[i]
            if i < held.top:
                held.top -= 1
            self._stats.frames_shed += 1

    def _offer_held(self, name: str) -> None:
        held = self._held_live.pop(name, None)
        for data in held.frames if held is not None else []:
            self._handle_frame(name, data, replayed=False)

    def _abandon(self, t: _Topic, reason: str, status: Optional[dict]) -> None:
        """Gives the outstanding request up: a range to its end; an open end (a catch-up) only
        what is known missing, below the first held frame, and with nothing known, on_lost says so
        with no end (to None)."""
        gap = t.stream.gap()
        open_end = t.asked[1] is OPEN_END
        to = t.asked[1] if not open_end else (gap[1] if gap else t.stream.next - 1)
        # One still waiting to be sent (_bound_held gives those up too, during a busy pause or
        # behind max_outstanding others) keeps its place in _waiting, `queued` left set: _pump skips
        # it (asked is None), and the topic's next request, if made before, goes out in that place,
        # as in the C++ and JavaScript clients (until 2026-12-07 it left the queue, and the next
        # request went last).
        t.asked, t.attempts, t.refusal = None, 0, None
        if to >= t.stream.next:
            self._lose(t, t.stream.next, to, reason, status)
        elif open_end:
            self._stats.gaps_lost += 1
            self._call(self.on_lost, {"topic": t.name, "from": t.stream.next, "to": None, "reason": reason,
                                      "code": (status or {}).get("code"), "retry": (status or {}).get("retry")})

    def _lose(self, t: _Topic, from_: int, to: int, reason: str, status: Optional[dict]) -> None:
        """Gives up every SEQ up to `to`. Reported lost are only the SEQs from `from_` that are not
        held, one report per run: a held frame is delivered, not gone (until 2026-12-06 the lost
        range ran over held frames, which then came)."""
        for run_from, run_to in t.stream.missing(from_, to):
            self._stats.gaps_lost += 1
            self._call(self.on_lost, {"topic": t.name, "from": run_from, "to": run_to, "reason": reason,
                                      "code": (status or {}).get("code"), "retry": (status or {}).get("retry")})
        self._deliver(t, t.stream.give_up(to))

    def _ask(self, item) -> None:
        """A new request of `item` (a _Topic with `asked` set, or a _Lookup): it waits its turn behind
        those made before it, and goes out when fewer than max_outstanding are out (at once, if none
        waits and a place is free)."""
        if isinstance(item, _Topic):
            item.queued = True
        else:
            item.sent_seq = 0
        self._waiting.setdefault(item, None)  # one that waits already (or was given up waiting) keeps its place
        self._pump()

    def _is_out(self, item) -> bool:
        """True if `item` has a request out at the relay: a range sent and not done, or a lookup sent
        and not answered, of a topic still followed."""
        if isinstance(item, _Topic):
            return self._topics.get(item.id) is item and item.asked is not None and not item.queued
        return self._lookups.get(item.name) is item and item.sent_seq != 0

    def _is_waiting(self, item) -> bool:
        """True if `item` still has a request to send."""
        if isinstance(item, _Topic):
            return self._topics.get(item.id) is item and item.asked is not None and item.queued
        return self._lookups.get(item.name) is item and item.sent_seq == 0

    def _pump(self) -> None:
        """Sends what waits, oldest first, while fewer than max_outstanding are out and no busy
        pause runs."""
        self._in_flight = {item for item in self._in_flight if self._is_out(item)}
        if not self._waiting or time.monotonic() < self._busy_until:
            return
        for item in list(self._waiting):
            if len(self._in_flight) >= self.max_outstanding:
                break
            del self._waiting[item]
            if not self._is_waiting(item):
                continue  # done, given up or forgotten meanwhile
            self._in_flight.add(item)
            if isinstance(item, _Topic):
                item.queued = False
                self._request_range(item)
            else:
                self._send_lookup(item.name)

    def _refused_busy(self, item) -> None:
        """busy (PROTOCOL 5.3): the relay holds too many requests of this user (with its other
        connections') or of everyone. No failed attempt, and nothing is given up for it: the request
        waits again, behind the others (a range, from its first SEQ still missing when it goes out),
        and nothing waiting is sent for a pause of reply_timeout, doubled for each pause since the
        relay last served this client (at most 16 times), times a random 0.5 to 1.5, so that clients
        refused together do not come back together. (Until 2026-12-06 a busy answer counted as an
        attempt, and every refused request was asked again on the same schedule, together.)"""
        if isinstance(item, _Lookup) and item.attempts > 0:
            item.attempts -= 1  # its sending counted one
        now = time.monotonic()
        if now >= self._busy_until:  # else refused during the pause that runs: the same round
            self._busy_until = now + self.reply_timeout * 2 ** min(self._busy_rounds, 4) * random.uniform(0.5, 1.5)
            self._busy_rounds += 1
        self._ask(item)

    def _send_lookup(self, name: str) -> None:
        lookup = self._lookups[name]
        lookup.attempts += 1
        self._request(lookup, {"topic": name, "from": LOOKUP_FROM})

    def _request_range(self, t: _Topic, retry: bool = False) -> None:
        # retry: the request again (what is left of it), after no status came in time.
        # Never asked again is what came already: the range starts at its first SEQ not delivered
        # or held (a retry after part of the reply came; until 2026-12-06 a retry asked the whole
        # range again).
        missing = t.stream.missing(max(t.asked[0], t.stream.next), math.inf if t.asked[1] is OPEN_END else t.asked[1])
        if missing and missing[0][0] > t.asked[0]:
            t.asked = [missing[0][0], t.asked[1]]
        # Which frames were held when this range was first asked for (see _handle_status). Kept
        # for the retries: an earlier moment only spares more frames.
        if t.sent is None or t.sent[:2] != (t.asked[0], t.asked[1]):
            t.sent = (t.asked[0], t.asked[1], t.stream.arrivals)
            t.statuses_due = 0
        t.statuses_due += 1
        if not retry:  # a retry keeps the connection the request first went out on
            t.asked_on = self._connects
        body = {"id": t.id, "from": t.asked[0]}
        if t.asked[1] is not OPEN_END:
            body["to"] = t.asked[1]
        self._request(t, body)

    def _request(self, item, body: dict) -> None:
        """Sends `item`'s request `body`: every sending of a range or a lookup (first, retry,
        continuation, again after a reconnect) comes here, and starts the request's reply timeout
        anew. Closed (a callback of this round called close()), nothing more goes out: the round
        runs on with the lock held, and a publish could wait for paho, which may be waiting for the
        lock to report the disconnect."""
        if self._closed:
            return
        self._sends += 1
        item.sent_seq, item.wait_from = self._sends, time.monotonic()
        self._stats.requests += 1
        self.mqtt.publish(self.request_topic, json.dumps(body), 1)

    def _catch_up(self) -> None:
        # Requests out at the reconnect: their replies, published while away, are lost with the old
        # connection. Each has at least one more try, on the new connection: once its timeout has run
        # (time offline counts), the next tick asks again. (Until 2026-12-06 a request whose last try
        # went out before the disconnect was given up at that tick, never asked on the new
        # connection. Its timeout is not restarted here: a link that drops more often than the
        # timeout would then hold it unsent.)
        for q in [*self._lookups.values(), *self._topics.values()]:
            if self._is_out(q):
                q.attempts = min(q.attempts, self.max_attempts - 1)
        # A topic the relay had no message of when it was looked up starts at its first live frame,
        # SEQ `start`: what was published while away would wait for a later live frame to show as
        # a gap. Looked up again.
        for name, start in list(self._start_at.items()):
            if name not in self._lookups and name in self._start_at:
                self._lookups[name] = _Lookup(name, start, again=True)
                self._ask(self._lookups[name])
        for t in list(self._topics.values()):  # a callback may unsubscribe (see _tick)
            if self._topics.get(t.id) is not t or t.stream.next == 0:
                continue
            if t.asked:
                # A request is out: its range ends where it ends, and what was published while
                # away comes after it. Asked for once it is done.
                t.catch_up_owed = True
                continue
            self._start_catch_up(t)
            self._ask(t)

    def _start_catch_up(self, t: _Topic) -> None:
        """An open-ended request from the next SEQ not delivered yet."""
        t.catch_up_owed, t.refusal = False, None
        t.asked, t.attempts = [t.stream.next, OPEN_END], 1
        self._call(self.on_fetch, {"topic": t.name, "from": t.stream.next, "to": None})

    def _backoff(self, attempts: int) -> float:
        """The reply timeout of a request sent `attempts` times (at least once)."""
        return self.reply_timeout * 2 ** min(max(attempts, 1) - 1, 10)

    def _heard(self, q) -> None:
        """Traffic on the reply topics that belongs to `q`, a request out at the relay: a replayed
        frame of its topic, or a status that answers it. The relay serves this client's requests one
        after another, in the order they came, so `q` and every request sent after it are still
        waiting their turn: their reply timeouts start anew. Those sent before `q` are not waiting:
        the relay is past them, and their replies came or were lost (a relay instance froze, or the
        reply went out while the client reconnected); their timeouts run on, so that a lost reply is
        asked again and, after max_attempts, given up. (Until 2026-12-06 only frames of its own topic
        restarted a request's timeout: a request behind another's long reply was asked again at each
        timeout, each time a new job queued at the relay, and then given up as unanswered. For a
        while that day any word on the reply topics restarted every timeout, and a lost reply never
        timed out while the client's other requests were answered.)"""
        now = time.monotonic()
        for p in self._in_flight:
            if p.sent_seq >= q.sent_seq and self._is_out(p):
                p.wait_from = now

    def _tick_loop(self) -> None:
        while not self._closed:
            time.sleep(TICK)
            if self._connected.is_set():
                with self._lock:
                    # Again under the lock: a disconnect handled while this waited for it ends the
                    # round (offline, nothing is asked again or given up).
                    if not self._closed and self._connected.is_set():
                        try:
                            self._tick(time.monotonic())
                        except Exception:  # the timer must not end: no retry or give-up would come again
                            log.exception("seqrelay_client: the timer's round failed")

    def _tick(self, now: float) -> None:
        # A callback called from here (on_lost, on_fetch, ...) may unsubscribe, which forgets
        # topics and lookups: each is looked at only while it is still the client's. (Until
        # 2026-12-07 a lookup forgotten so was asked again, a KeyError ended the timer's thread,
        # and no request was retried or given up from then on.)
        for name, lookup in list(self._lookups.items()):
            if self._lookups.get(name) is not lookup:
                continue
            if lookup.sent_seq == 0 or now - lookup.wait_from < self._backoff(1 if lookup.round else lookup.attempts):
                continue
            if lookup.round or lookup.attempts >= self.max_attempts:
                self._give_up_lookup(name, lookup, "no reply from the relay to the lookup", None)
            else:
                self._send_lookup(name)
        if self._unanswered_starts and now >= self._kept_lookups_at:
            self._kept_lookups_at = now + self.reply_timeout * 16
            for name in sorted(self._unanswered_starts):
                if name not in self._lookups and name in self._start_at:  # one try a round, with one reply timeout
                    self._lookups[name] = _Lookup(name, self._start_at[name], again=True, round=True)
                    self._ask(self._lookups[name])
        for t in list(self._topics.values()):
            if self._topics.get(t.id) is not t:
                continue
            gap = t.stream.gap()
            if t.asked:
                if t.queued:
                    continue  # not sent yet: no reply is due
                if now - t.wait_from < self._backoff(t.attempts):
                    continue
                if t.attempts >= self.max_attempts:
                    refusal = t.refusal  # the last answer, if the relay kept asking for a retry (unavailable, ...)
                    self._abandon(t, refusal.get("error", "refused") if refusal else "no reply from the relay", refusal)
                    continue
                t.attempts += 1  # no status in time: ask again
                self._request_range(t, retry=True)
                continue
            elif t.catch_up_owed:
                self._start_catch_up(t)  # from the next SEQ: any gap is in it
            else:
                if gap is None:
                    continue
                if t.gap_seen == 0:
                    t.gap_seen = now
                if now - t.gap_seen < self.gap_wait:
                    continue
                t.asked, t.attempts, t.refusal = list(gap), 1, None
                self._call(self.on_fetch, {"topic": t.name, "from": gap[0], "to": gap[1]})
            self._ask(t)
        self._pump()  # places freed by requests given up, or a busy pause over
