"""Typed dataclass configs that validate themselves and round-trip to YAML/JSON.

A config is a plain ``@dataclass`` that inherits :class:`Config`. Constraints
live beside each field, in its metadata, so the rule and the field cannot
drift apart::

    @dataclass
    class Sensing(Config):
        radius: float = field(default=2.0, metadata=rng(0, None, low_inclusive=False))
        model: str = field(default="bernoulli", metadata=choices("bernoulli"))

Unknown keys and out-of-range values raise ``ValueError`` naming the key
(with its dotted path for nested configs) and what is allowed. YAML is read
with ``yaml.safe_load`` only: a config never runs code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

from agentcomm._checks import check_choice, check_range

__all__ = ["Config", "atomic_write_text", "choices", "rng"]

C = TypeVar("C", bound="Config")


def rng(
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> dict[str, Any]:
    """Field metadata: the value must lie in an interval (``None``: unbounded)."""
    return {"range": (low, high, low_inclusive, high_inclusive)}


def choices(*allowed: str) -> dict[str, Any]:
    """Field metadata: the value must be one of ``allowed``."""
    return {"choices": tuple(allowed)}


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _is_config_type(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Config)


class Config:
    """Mixin for validated dataclass configs (see module docstring)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, prefix: str = "") -> None:
        """Check every field's constraints; raise ``ValueError`` naming the key."""
        hints = typing.get_type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            name = f"{prefix}{f.name}"
            value = getattr(self, f.name)
            if isinstance(value, Config):
                value.validate(prefix=f"{name}.")
                continue
            if "range" in f.metadata and value is not None:
                lo, hi, lo_inc, hi_inc = f.metadata["range"]
                tp = hints.get(f.name)
                if tp is int and (isinstance(value, bool) or not isinstance(value, int)):
                    raise ValueError(f"{name}={value!r} must be an integer")
                check_range(name, value, lo, hi, low_inclusive=lo_inc, high_inclusive=hi_inc)
            if "choices" in f.metadata and value is not None:
                check_choice(name, value, f.metadata["choices"])

    # ----------------------------------------------------------------- dict I/O
    def to_dict(self) -> dict[str, Any]:
        """A plain nested dict of builtins (tuples become lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            v = getattr(self, f.name)
            if isinstance(v, Config):
                v = v.to_dict()
            elif isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, dict):
                v = dict(v)
            out[f.name] = v
        return out

    @classmethod
    def from_dict(cls: type[C], data: Mapping[str, Any] | None = None, _prefix: str = "") -> C:
        """Build from a (nested) mapping; unknown keys raise ``ValueError`` naming them."""
        data = dict(data or {})
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields))
        if unknown:
            where = f" in {_prefix.rstrip('.')}" if _prefix else ""
            raise ValueError(
                f"unknown config key(s) {[_prefix + k for k in unknown]}{where}; "
                f"allowed: {sorted(fields)}"
            )
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            tp = _unwrap_optional(hints[key])
            if _is_config_type(tp) and isinstance(value, Mapping):
                # Overrides merge onto the field's own default (a scenario may default a nested
                # config differently from the nested class's defaults).
                factory = fields[key].default_factory
                base = factory().to_dict() if factory is not dataclasses.MISSING else {}
                _deep_update(base, value)
                kwargs[key] = tp.from_dict(base, _prefix=f"{_prefix}{key}.")
            elif typing.get_origin(tp) is tuple and isinstance(value, list):
                kwargs[key] = tuple(value)
            else:
                kwargs[key] = value
        try:
            return cls(**kwargs)
        except TypeError as err:  # e.g. a missing required field
            raise ValueError(f"{_prefix}{cls.__name__}: {err}") from None
        except ValueError as err:
            # Field checks name the bare key; prefix the nested path so the user finds it.
            if _prefix and not str(err).startswith(_prefix):
                raise ValueError(f"{_prefix}{err}") from None
            raise

    def replace(self: C, **changes: Any) -> C:
        """A copy with ``changes`` applied (nested dicts merge into nested configs)."""
        merged = self.to_dict()
        _deep_update(merged, changes)
        return type(self).from_dict(merged)

    # ----------------------------------------------------------------- file I/O
    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: str | os.PathLike) -> None:
        """Write YAML (``.yaml``/``.yml``) or JSON (anything else), atomically."""
        text = self.to_yaml() if str(path).endswith((".yaml", ".yml")) else self.to_json()
        atomic_write_text(path, text)

    @classmethod
    def load(cls: type[C], path: str | os.PathLike) -> C:
        """Read YAML (``safe_load``) or JSON written by :meth:`save` (or by hand)."""
        text = Path(path).read_text()
        data = yaml.safe_load(text) if str(path).endswith((".yaml", ".yml")) else json.loads(text)
        if data is not None and not isinstance(data, Mapping):
            raise ValueError(f"config file {path} must hold a mapping, got {type(data).__name__}")
        return cls.from_dict(data or {})


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _deep_update(base: dict[str, Any], changes: Mapping[str, Any]) -> None:
    for k, v in changes.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v
