"""seqrelay client: decode sequenced frames, deliver each topic in SEQ order exactly once,
and fill gaps from the relay's retransmit topic (PROTOCOL.md)."""
from .client import Message, SeqClient, Stats, Subscription, default_requester, topic_matches
from .frame import HEADER_SIZE, MAX_SEQ, Frame, FrameError, decode_frame, encode_frame
from .ordered_stream import Delivery, OrderedStream

__all__ = [
    "HEADER_SIZE", "MAX_SEQ", "Delivery", "Frame", "FrameError", "Message", "OrderedStream",
    "SeqClient", "Stats", "Subscription", "decode_frame", "default_requester", "encode_frame", "topic_matches",
]
__version__ = "0.1.0"
