"""OrderedStream: one topic's client-side state (what comes next, what is held, what is missing).

A port of tools/client/ordered_stream.{h,cc}; the C++, JavaScript and Python
clients pass the same tables (clients/testdata/ordered_stream_cases.json).
Ordered topics (flag 1) deliver strictly in SEQ order, holding frames after a
gap; immediate topics (flag 0) deliver at once and mark a gap fill late.
Each SEQ is delivered at most once. Pure logic, not thread-safe: the client
guards it with its lock.
"""
from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

_SHOWN = object()  # an immediate frame above next that was already delivered


@dataclass
class Delivery:
    seq: int
    payload: Any
    late: bool = False


class OrderedStream:
    # What a frame held above next counts in held_bytes besides its payload: its record (an
    # immediate topic's shown SEQ counts this alone). The C++ client's kEntryBytes.
    ENTRY_BYTES = 96

    def __init__(self, next_seq: int = 0) -> None:
        self.next = next_seq  # every SEQ below it was delivered or given up; 0 = nothing seen yet
        self.last_delivered = 0  # the highest SEQ delivered; 0 = none
        self._above: dict = {}  # SEQ above next -> held payload, or _SHOWN
        self._keys: List[int] = []  # the keys of _above, ascending
        # Frames held so far, ever; and when each one held now came (that count after it), so that
        # forget() can spare what came after a given moment.
        self.arrivals = 0
        self._arrived_at: dict = {}
        # What the frames above next hold: their payloads (held back, ordered) and ENTRY_BYTES each
        # for the record. It grows while a gap stays open, and falls as it fills or is given up, or
        # as shed() drops frames: the client bounds it (max_held_bytes). Each entry's share is kept,
        # to take back what it added.
        self.held_bytes = 0
        self._bytes: dict = {}

    def offer(self, seq: int, ordered: bool, payload: Any) -> Tuple[List[Delivery], bool]:
        """Offers one frame; returns (what to deliver now, in order; whether it was a duplicate)."""
        if self.next == 0:
            self.next = seq  # joined here
        if seq < self.next or seq in self._above:
            return [], True
        out: List[Delivery] = []
        if seq == self.next:
            self._deliver(out, seq, payload)
            self.next += 1
            self._drain(out)
        elif ordered:
            self._hold(seq, payload)
        else:
            self._deliver(out, seq, payload)  # immediate: show it now, remember it was shown
            self._hold(seq, _SHOWN)
        return out, False

    def gap(self) -> Optional[Tuple[int, int]]:
        """The oldest open gap (from, to), or None."""
        if not self._keys:
            return None
        return self.next, self._keys[0] - 1

    def give_up(self, to: int) -> List[Delivery]:
        """Gives up every SEQ up to `to` that has not come; returns what becomes deliverable."""
        out: List[Delivery] = []
        if self.next == 0 or to < self.next:
            return out
        k = bisect.bisect_right(self._keys, to)
        for seq in self._keys[:k]:
            payload = self._remove(seq)
            if payload is not _SHOWN:
                self._deliver(out, seq, payload)
        del self._keys[:k]  # at once: a pop(0) each would make a long drain quadratic
        self.next = to + 1
        self._drain(out)
        return out

    def missing(self, from_seq: int, to: float = math.inf) -> List[Tuple[int, float]]:
        """The runs (from, to) of SEQs from `from_seq` to `to` (inf: no end) that are not held,
        ascending. SEQs below next count as missing here: callers start at next where what was
        passed is not wanted."""
        runs: List[Tuple[int, float]] = []
        at = from_seq  # the lowest SEQ not yet placed in a run or passed as held
        for k in range(bisect.bisect_left(self._keys, from_seq), len(self._keys)):
            seq = self._keys[k]
            if seq > to:
                break
            if seq > at:
                runs.append((at, seq - 1))
            at = seq + 1
        if at <= to:
            runs.append((at, to))
        return runs

    def forget(self, from_seq: int, to: float = math.inf, by: float = math.inf) -> List[int]:
        """Forgets every frame held with a SEQ from `from_seq` to `to` that came by the moment
        `arrivals` had the value `by` (ordered: never delivered; immediate: delivered, its SEQ free
        again), as frames the relay never stored. Returns their SEQs, ascending."""
        gone = [seq for seq in self._keys if from_seq <= seq <= to and self._arrived_at[seq] <= by]
        for seq in gone:
            self._remove(seq)
        if gone:
            self._keys = [seq for seq in self._keys if seq in self._above]
            # The highest SEQ delivered may have been a forgotten (immediate) frame: recounted from
            # next - 1 (every SEQ below next is passed; a given-up one there makes no frame late, as
            # none comes below next) and the immediate frames still held.
            shown = [seq for seq in self._keys if self._above[seq] is _SHOWN]
            self.last_delivered = max([max(self.next - 1, 0)] + shown)
        return gone

    def shed(self, bound: int) -> List[int]:
        """Drops held frames (ordered: never delivered), the newest but one first, while held_bytes
        is over `bound`. The newest stays, so that those dropped are missing below it (gap(),
        missing()): asked for again in turn, as any gap. An immediate topic's records are never
        dropped (their frames were shown: a record dropped would let one be shown again). Returns
        the SEQs dropped, ascending. The C++ client's OrderedStream::Shed."""
        dropped: List[int] = []
        k = len(self._keys) - 1  # the newest: kept
        while self.held_bytes > bound and k > 0:
            k -= 1
            seq = self._keys[k]
            if self._above[seq] is _SHOWN:
                continue
            self._remove(seq)
            dropped.append(seq)
        if dropped:
            # One pass over what was walked (from k on), not the whole list: shed() runs at every
            # frame past the bound, with maybe hundreds of thousands held.
            self._keys[k:] = [seq for seq in self._keys[k:] if seq in self._above]
        dropped.reverse()
        return dropped

    def _deliver(self, out: List[Delivery], seq: int, payload: Any) -> None:
        out.append(Delivery(seq, payload, seq < self.last_delivered))
        self.last_delivered = max(self.last_delivered, seq)

    def _drain(self, out: List[Delivery]) -> None:
        k = 0
        while k < len(self._keys) and self._keys[k] == self.next:
            seq = self._keys[k]
            payload = self._remove(seq)
            if payload is not _SHOWN:
                self._deliver(out, seq, payload)
            self.next += 1
            k += 1
        del self._keys[:k]  # at once: a pop(0) each would make a long drain quadratic

    def _hold(self, seq: int, payload: Any) -> None:
        self._above[seq] = payload
        self.arrivals += 1
        self._arrived_at[seq] = self.arrivals
        size = self.ENTRY_BYTES + (0 if payload is _SHOWN else len(payload))
        self._bytes[seq] = size
        self.held_bytes += size
        if not self._keys or self._keys[-1] < seq:
            self._keys.append(seq)
        else:
            bisect.insort(self._keys, seq)

    def _remove(self, seq: int) -> Any:
        """Drops the entry of `seq` from _above (not from _keys: the callers cut that at once) and
        its share of held_bytes; returns its payload."""
        del self._arrived_at[seq]
        self.held_bytes -= self._bytes.pop(seq)
        return self._above.pop(seq)
