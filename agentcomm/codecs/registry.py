"""Codecs by name: ``make_codec("quantized", (16, 16), bits_per_value=4)``.

Later modules add theirs with :func:`register_codec`, either as a class or as a lazy
``"module:Class"`` entry point that is imported only when the codec is made (the
Gymnasium registry's convention), so importing this package builds nothing heavy.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Sequence
from typing import Any

from agentcomm.codecs.base import Codec
from agentcomm.codecs.dct import DCTCodec
from agentcomm.codecs.linear import LinearAnalogCodec
from agentcomm.codecs.quantized import QuantizedCodec
from agentcomm.codecs.raw import RawCodec
from agentcomm.codecs.topk import TopKCodec

__all__ = ["available_codecs", "codec_class", "make_codec", "register_codec"]

_REGISTRY: dict[str, type[Codec] | str] = {
    "raw": RawCodec,
    "quantized": QuantizedCodec,
    "topk": TopKCodec,
    "dct": DCTCodec,
    "linear": LinearAnalogCodec,
    # The quantized codec delivered by the measured 5G LDPC + 16-QAM BLER table.
    "ldpc_qam": "agentcomm.codecs.ldpc:LDPCQAMCodec",
    # Learned codecs load lazily (torch models and diffusers are imported on first use).
    "jscc": "agentcomm.decoders.codec:JSCCCodec",
    "jscc+cddm": "agentcomm.decoders.codec:JSCCCDDMCodec",
    "jscc+diffcom": "agentcomm.decoders.codec:JSCCDiffComCodec",
    "jscc+flow": "agentcomm.decoders.codec:JSCCFlowCodec",
}


def available_codecs() -> tuple[str, ...]:
    """The registered names, sorted."""
    return tuple(sorted(_REGISTRY))


def register_codec(name: str, cls: type[Codec] | str, *, overwrite: bool = False) -> None:
    """Register a codec class under ``name``.

    Args:
        name: a non-empty string, e.g. ``"jscc"``.
        cls: a :class:`Codec` subclass, or ``"module.path:ClassName"`` resolved on first use.
        overwrite: replace an existing entry instead of raising.
    Raises:
        ValueError: empty name, a name already taken (without ``overwrite``), or ``cls``
            neither a Codec subclass nor a ``"module:Class"`` string.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name={name!r} is not allowed; expected a non-empty string")
    if name in _REGISTRY and not overwrite:
        raise ValueError(
            f"name={name!r} is already registered to {_REGISTRY[name]!r}; "
            "pass overwrite=True to replace it"
        )
    if isinstance(cls, str):
        if cls.count(":") != 1 or not all(cls.split(":")):
            raise ValueError(f"cls={cls!r} is not allowed; expected 'module.path:ClassName'")
    elif not (inspect.isclass(cls) and issubclass(cls, Codec)):
        raise ValueError(f"cls={cls!r} is not allowed; expected a Codec subclass")
    _REGISTRY[name] = cls


def _resolve(name: str) -> type[Codec]:
    entry = _REGISTRY[name]
    if isinstance(entry, str):
        module, _, attr = entry.partition(":")
        entry = getattr(importlib.import_module(module), attr)
        if not (inspect.isclass(entry) and issubclass(entry, Codec)):
            raise ValueError(f"codec {name!r} points to {entry!r}, which is not a Codec subclass")
    return entry


def codec_class(name: str) -> type[Codec]:
    """The class registered as ``name`` (a lazy entry point is imported now)."""
    if name not in _REGISTRY:
        raise ValueError(f"codec={name!r} is not registered; choose one of {available_codecs()}")
    return _resolve(name)


def make_codec(name: str, source_shape: Sequence[int], **params: Any) -> Codec:
    """Build the codec registered as ``name``.

    Args:
        name: one of :func:`available_codecs`.
        source_shape: ``S``, e.g. ``(H, W)``.
        **params: the codec's keyword arguments.
    Raises:
        ValueError: an unknown name (the message lists the registered ones) or a parameter
            the codec does not take (the message lists the ones it does).
    """
    if name not in _REGISTRY:
        raise ValueError(f"codec={name!r} is not registered; choose one of {available_codecs()}")
    cls = _resolve(name)
    signature = inspect.signature(cls)
    try:
        signature.bind(source_shape, **params)
    except TypeError:
        allowed = [p for p in signature.parameters if p != "source_shape"]
        unknown = sorted(set(params) - set(allowed))
        raise ValueError(
            f"codec {name!r} got unknown parameter(s) {unknown}; allowed: {allowed}"
        ) from None
    return cls(source_shape, **params)
