"""The frame codec against the C++ codec's tables and the golden files of tests/data."""
import pytest

from seqrelay_client import MAX_SEQ, FrameError, decode_frame, encode_frame
from servers import REPO


def test_encode_golden_bytes(testdata):
    for c in testdata("frame_cases.json")["encode"]:
        assert encode_frame(c["topic_id"], c["seq"], ordered=c["ordered"]).hex() == c["hex"], c["rule"]


def test_encode_payload_follows_header_and_str_is_utf8():
    assert encode_frame(7, 17, b"hi").hex() == "000000070000000011016869"
    assert encode_frame(7, 17, "hi") == encode_frame(7, 17, b"hi")


def test_encode_seq_and_id_limits(testdata):
    for c in testdata("frame_cases.json")["seq_limits"]:
        if c["ok"]:
            assert len(encode_frame(7, c["seq"])) == 10, c["rule"]
        else:
            with pytest.raises(ValueError):
                encode_frame(7, c["seq"])
    with pytest.raises(ValueError):
        encode_frame(2**32, 1)
    assert MAX_SEQ == 1099511627775


def test_decode_table_and_error_texts(testdata):
    for c in testdata("frame_cases.json")["decode"]:
        data = bytes.fromhex(c["hex"])
        if c["ok"]:
            decode_frame(data)
        else:
            with pytest.raises(FrameError, match=c["error"]):
                decode_frame(data)


def test_golden_files_decode_as_their_names_say(testdata):
    for c in testdata("frame_cases.json")["golden_files"]:
        data = (REPO / "tests/data" / c["file"]).read_bytes()
        assert len(data) == c["size"], c["file"]
        if not c["ok"]:
            with pytest.raises(FrameError):
                decode_frame(data)
            continue
        f = decode_frame(data)
        assert (f.topic_id, f.seq, f.ordered, f.payload.hex()) == (c["topic_id"], c["seq"], c["ordered"], c["payload_hex"])
        assert encode_frame(f.topic_id, f.seq, f.payload, f.ordered) == data


def test_round_trip_binary_payload():
    payload = bytes([0, 255, 0, 0, 127, 128, 255, 10, 13, 0]) + bytes(range(256))
    f = decode_frame(encode_frame(0xDEADBEEF, 0x123456789A, payload, ordered=False))
    assert (f.topic_id, f.seq, f.ordered, f.payload) == (0xDEADBEEF, 0x123456789A, False, payload)
