"""The sequenced frame (PROTOCOL.md section 2), reader and writer side by side.

    offset 0  ID    4 bytes  uint32 big-endian, topic id
    offset 4  SEQ   5 bytes  uint40 big-endian, sequence number within T
    offset 9  QOS   1 byte   ordering flag: 1 ordered, 0 immediate
    offset 10 message        the publisher's payload, unchanged

The same rules as relay/frame.cc. Pure functions, no I/O.
"""
from __future__ import annotations

from dataclasses import dataclass

HEADER_SIZE = 10
MAX_SEQ = 2**40 - 1


class FrameError(ValueError):
    """Bytes that are not a frame; the message says which rule they break."""


@dataclass(frozen=True)
class Frame:
    topic_id: int
    seq: int
    ordered: bool
    payload: bytes


def decode_frame(data: bytes) -> Frame:
    """Decodes one frame; raises FrameError for < 10 bytes, SEQ 0 or a flag other than 0/1."""
    data = bytes(data)
    if len(data) < HEADER_SIZE:
        raise FrameError(f"frame of {len(data)} bytes is shorter than the 10-byte header")
    seq = int.from_bytes(data[4:9], "big")
    if seq == 0:
        raise FrameError("frame has SEQ 0")
    if data[9] > 1:
        raise FrameError(f"frame has ordering flag {data[9]}, expected 0 or 1")
    return Frame(int.from_bytes(data[0:4], "big"), seq, data[9] == 1, data[HEADER_SIZE:])


def encode_frame(topic_id: int, seq: int, payload: bytes | str = b"", ordered: bool = True) -> bytes:
    """The 10-byte header, then the payload (a str is UTF-8). ValueError for an id or SEQ out of range."""
    if not 0 <= topic_id <= 0xFFFFFFFF:
        raise ValueError(f"topic id {topic_id} outside 0..2^32-1")
    if not 1 <= seq <= MAX_SEQ:
        raise ValueError(f"SEQ {seq} outside 1..2^40-1")
    body = payload.encode() if isinstance(payload, str) else bytes(payload)
    return topic_id.to_bytes(4, "big") + seq.to_bytes(5, "big") + bytes([1 if ordered else 0]) + body
