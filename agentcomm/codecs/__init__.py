"""Belief codecs: raw (ideal), quantized and top-k (digital), linear and DCT (analog), and
the quantized codec over 5G NR LDPC + 16-QAM (``ldpc_qam``, a measured BLER table).

Use :func:`make_codec` to build one by name and :func:`transmit` to send ``M`` beliefs
over a channel with exact accounting (:class:`Transmission`).
"""

from __future__ import annotations

from agentcomm.codecs.base import (
    Codec,
    Message,
    Received,
    Transmission,
    quantize_scale,
    transmit,
)
from agentcomm.codecs.dct import DCTCodec, dct_matrix, diagonal_order
from agentcomm.codecs.intent import intent_distance, intent_order, intent_weight, selection_order
from agentcomm.codecs.ldpc import BLERTable, LDPCQAMCodec
from agentcomm.codecs.linear import LinearAnalogCodec
from agentcomm.codecs.quantized import QuantizedCodec, UniformQuantizer
from agentcomm.codecs.raw import RawCodec
from agentcomm.codecs.registry import available_codecs, make_codec, register_codec
from agentcomm.codecs.topk import TopKCodec

__all__ = [
    "BLERTable",
    "Codec",
    "DCTCodec",
    "LDPCQAMCodec",
    "LinearAnalogCodec",
    "Message",
    "QuantizedCodec",
    "RawCodec",
    "Received",
    "TopKCodec",
    "Transmission",
    "UniformQuantizer",
    "available_codecs",
    "dct_matrix",
    "diagonal_order",
    "intent_distance",
    "intent_order",
    "intent_weight",
    "make_codec",
    "quantize_scale",
    "register_codec",
    "selection_order",
    "transmit",
]
