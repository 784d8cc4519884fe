"""OrderedStream against the C++ client's tables (clients/testdata) and the exactly-once property."""
import math
import random

from seqrelay_client import OrderedStream


def payload_of(seq):
    return f"p{seq}"


def gap_text(gap):
    return "none" if gap is None else f"{gap[0]}..{gap[1]}"


def outs(deliveries):
    for d in deliveries:
        assert d.payload == payload_of(d.seq)
    return [[d.seq, d.late] for d in deliveries]


def test_offer_table(testdata):
    for c in testdata("ordered_stream_cases.json")["offer"]:
        s = OrderedStream(c["start"])
        for i, step in enumerate(c["steps"]):
            where = f"{c['rule']}, step {i}: offer({step['seq']})"
            deliveries, duplicate = s.offer(step["seq"], c["ordered"], payload_of(step["seq"]))
            assert outs(deliveries) == step["want"], where
            assert duplicate == step["duplicate"], where
            assert s.next == step["next"], where
            assert gap_text(s.gap()) == step["gap"], where
        assert s.last_delivered == c["last_delivered"], c["rule"]


def test_give_up_table(testdata):
    for c in testdata("ordered_stream_cases.json")["give_up"]:
        s = OrderedStream(c["start"])
        for seq in c["offers"]:
            s.offer(seq, c["ordered"], payload_of(seq))
        assert outs(s.give_up(c["to"])) == c["want"], c["rule"]
        assert (s.next, gap_text(s.gap()), s.last_delivered) == (c["next"], c["gap"], c["last_delivered"]), c["rule"]


def test_forget_drops_what_is_held_in_a_range_and_came_by_a_moment():
    """As the JavaScript client's test of forget."""
    for ordered in (True, False):
        s = OrderedStream()
        for seq in (1, 4, 9, 1000000):
            s.offer(seq, ordered, payload_of(seq))
        moment = s.arrivals
        s.offer(12, ordered, payload_of(12))  # came after the moment
        assert s.forget(6, by=moment) == [9, 1000000]
        assert gap_text(s.gap()) == "2..3"
        assert s.last_delivered == (1 if ordered else 12)
        assert s.forget(6, by=moment) == []
        assert s.offer(9, ordered, payload_of(9))[1] is False
        assert s.offer(12, ordered, payload_of(12))[1] is True
        assert s.forget(10, 12) == [12]  # no moment: whenever it came


def test_held_bytes_count_what_waits_above_a_gap_and_fall_as_it_goes():
    """As the C++ client's OrderedStreamTest.HeldBytesCountWhatWaitsAboveAGapAndFallAsItGoes (but
    for MarkShown, which this port has not): an ordered topic's payloads and a record each, an
    immediate topic's records of the SEQs shown; back to nothing once the gap fills, or is given
    up, or its frames are forgotten."""
    entry = OrderedStream.ENTRY_BYTES
    assert entry == 96
    for ordered in (True, False):
        payload = 10 if ordered else 0  # "payload-NN": shown at once, an immediate payload is not held
        s = OrderedStream(1)
        s.offer(1, ordered, "payload-01")
        assert s.held_bytes == 0, "delivered at once: nothing held"
        for seq in (10, 11, 12, 20):
            s.offer(seq, ordered, f"payload-{seq}")
        assert s.held_bytes == 4 * (payload + entry), ordered
        assert s.offer(11, ordered, "payload-11")[1] is True  # a duplicate adds nothing
        assert s.held_bytes == 4 * (payload + entry), ordered
        assert s.forget(20, 20) == [20]
        assert s.held_bytes == 3 * (payload + entry), ordered
        s.give_up(5)  # 2..5 given up; 6..9 still missing
        assert s.held_bytes == 3 * (payload + entry), ordered
        for seq in (8, 7):
            s.offer(seq, ordered, f"payload-0{seq}")
        assert s.held_bytes == 5 * (payload + entry), ordered
        s.offer(6, ordered, "payload-06")  # 6..8 out; 9 still missing
        assert s.held_bytes == 3 * (payload + entry), ordered
        s.offer(9, ordered, "payload-09")  # fills the gap: 9..12 out
        assert s.held_bytes == 0, ordered
        s.offer(30, ordered, "payload-30")
        assert s.held_bytes == payload + entry, ordered
        s.give_up(29)
        assert s.held_bytes == 0, ordered


def test_shed_drops_held_frames_newest_but_one_first_and_keeps_the_newest():
    """As the C++ client's OrderedStreamTest.ShedDropsHeldFramesNewestButOneFirstAndKeepsTheNewest:
    past a bound, an ordered topic's held frames are dropped, the newest but one first; the newest
    stays, so the dropped show as missing below it and are asked for again; an immediate topic's
    records are never dropped."""
    frame = 10 + OrderedStream.ENTRY_BYTES  # "payload-0N"
    s = OrderedStream(1)
    for seq in (3, 4, 5, 6, 9):
        s.offer(seq, True, f"payload-0{seq}")
    assert s.held_bytes == 5 * frame
    assert s.shed(5 * frame) == [], "not over the bound"
    assert s.shed(3 * frame) == [5, 6]
    assert s.held_bytes == 3 * frame
    assert gap_text(s.gap()) == "1..2"
    assert s.missing(1, 9) == [(1, 2), (5, 8)]
    assert s.shed(0) == [3, 4]
    assert s.held_bytes == frame, "the newest stays, whatever the bound"
    # What was dropped comes again, and everything is delivered in order.
    delivered = []
    for seq in (1, 2, 3, 4, 5, 6, 7, 8):
        out, duplicate = s.offer(seq, True, f"payload-0{seq}")
        assert duplicate is False, seq
        delivered += [d.seq for d in out]
    assert delivered == [1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert s.held_bytes == 0

    immediate = OrderedStream(1)
    for seq in (3, 4, 9):
        immediate.offer(seq, False, f"payload-0{seq}")
    assert immediate.shed(0) == [], "records of frames shown stay"
    assert immediate.held_bytes == 3 * OrderedStream.ENTRY_BYTES


def shuffled_with_duplicates(seed, last):
    rng = random.Random(seed)
    seqs = []
    for seq in range(1, last + 1):
        seqs.append(seq)
        if rng.random() < 0.1:
            seqs.append(seq)
    extra = len(seqs) - last
    rng.shuffle(seqs)
    return seqs, extra


def test_random_order_ordered_exactly_once_in_order():
    for seed in (1, 2, 42, 1234, 987654321):
        seqs, extra = shuffled_with_duplicates(seed, 500)
        s = OrderedStream(1)
        delivered, duplicates = [], 0
        for seq in seqs:
            out, dup = s.offer(seq, True, payload_of(seq))
            assert not any(d.late for d in out)
            delivered += [d.seq for d in out]
            duplicates += dup
        assert delivered == list(range(1, 501)), seed
        assert duplicates == extra
        assert (s.next, s.gap()) == (501, None)


def test_random_order_immediate_every_seq_once():
    for seed in (1, 2, 42, 1234, 987654321):
        seqs, extra = shuffled_with_duplicates(seed, 500)
        s = OrderedStream(1)
        delivered, duplicates, highest = [], 0, 0
        for seq in seqs:
            out, dup = s.offer(seq, False, payload_of(seq))
            for d in out:
                assert d.late == (d.seq < highest)
                highest = max(highest, d.seq)
                delivered.append(d.seq)
            duplicates += dup
        assert sorted(delivered) == list(range(1, 501)), seed
        assert duplicates == extra


def test_missing_lists_the_runs_of_a_range_that_are_not_held():
    held, shown = OrderedStream(5), OrderedStream(5)
    for seq in (7, 10, 11, 20):
        held.offer(seq, True, payload_of(seq))
        shown.offer(seq, False, payload_of(seq))  # delivered, still above next
    for s in (held, shown):
        assert s.missing(5, 19) == [(5, 6), (8, 9), (12, 19)]
        assert s.missing(10, 11) == []
        assert s.missing(11) == [(12, 19), (21, math.inf)]
        assert s.missing(1, 4) == [(1, 4)]  # below next counts as missing
    assert OrderedStream(0).missing(3, 3) == [(3, 3)]
