"""Typed dataclass configs that validate themselves and round-trip to YAML/JSON.

A config is a plain ``@dataclass`` (frozen or not) that inherits :class:`Config`. Constraints
live beside each field, in its metadata, so the rule and the field cannot
drift apart::

    @dataclass
    class Sensing(Config):
        radius: float = field(default=2.0, metadata=rng(0, None, low_inclusive=False))
        model: str = field(default="bernoulli", metadata=choices("bernoulli"))

Every field is checked against its type annotation as well as its metadata, so bad
input is refused when the config is built, not deep inside a step:

* ``None`` only where the annotation says ``X | None`` (the field documents what it means);
* ``int`` fields take integers (numpy integer scalars are converted; ``bool`` and ``1.5``
  are refused), ``float`` fields take real numbers (numpy scalars converted, ``bool``
  refused) and refuse NaN and +-inf unless the field's :func:`rng` says ``allow_inf``;
* ``str``/``bool`` fields take exactly that type; ``tuple[...]``/``list[...]`` fields take
  a list or tuple whose items are checked the same way; ``dict`` fields take a mapping;
* a nested config takes a mapping of its fields (or an instance), never a bare value.

Rules that tie several fields together go in an override of :meth:`Config.validate` that
calls ``super().validate(prefix)`` first and names each key as ``f"{prefix}key"``.

Unknown keys, wrong types and out-of-range values raise ``ValueError`` naming the key
(with its dotted path for nested configs), the value, and what is allowed. YAML is read
with a safe loader only (:func:`load_yaml`): a config never runs code.
"""

from __future__ import annotations

import contextvars
import copy
import dataclasses
import functools
import json
import math
import numbers
import os
import re
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

from agentcomm._checks import check_choice, check_range
from agentcomm.io import atomic_write_text


class _SafeLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's float rule: PyYAML follows YAML 1.1, which
    reads exponent notation without a decimal point (``1e-3``) as a string."""


_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text safely (no tags that run code), numbers in exponent notation as
    floats."""
    return yaml.load(text, Loader=_SafeLoader)  # noqa: S506 (a SafeLoader subclass)


__all__ = ["Config", "atomic_write_text", "check_type", "choices", "merged", "rng"]

C = TypeVar("C", bound="Config")

#: Set while :meth:`Config.from_dict` builds an instance: it validates once afterwards, with
#: the dotted prefix, so cross-field messages name every key by its full path.
_DEFER_VALIDATION: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "agentcomm_defer_validation", default=False
)


def rng(
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
    allow_inf: bool = False,
) -> dict[str, Any]:
    """Field metadata: the value must lie in an interval (``None``: unbounded).

    An unbounded side is still finite: ``inf`` is refused unless ``allow_inf`` documents
    what an infinite value means for the field.
    """
    return {"range": (low, high, low_inclusive, high_inclusive), "allow_inf": allow_inf}


def choices(*allowed: str) -> dict[str, Any]:
    """Field metadata: the value must be one of ``allowed``."""
    return {"choices": tuple(allowed)}


def _is_config_type(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, Config)


class Config:
    """Mixin for validated dataclass configs (see module docstring)."""

    def __post_init__(self) -> None:
        if not _DEFER_VALIDATION.get():
            self.validate()

    def validate(self, prefix: str = "") -> None:
        """Check every field's type and constraints; raise ``ValueError`` naming the key.

        Values are normalized in place where the type allows it unambiguously (numpy
        scalars to Python numbers, lists to tuples for ``tuple`` fields), so that a config
        that passed holds plain builtins and round-trips through YAML/JSON.
        """
        hints = _type_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            name = f"{prefix}{f.name}"
            value = _check_type(name, getattr(self, f.name), hints[f.name], f.metadata)
            # object.__setattr__: a frozen config normalizes its own fields the same way.
            object.__setattr__(self, f.name, value)
            if isinstance(value, Config):
                value.validate(prefix=f"{name}.")
                continue
            if value is None:
                continue
            if "range" in f.metadata:
                lo, hi, lo_inc, hi_inc = f.metadata["range"]
                check_range(name, value, lo, hi, low_inclusive=lo_inc, high_inclusive=hi_inc)
            if "choices" in f.metadata:
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
        where = _prefix.rstrip(".") or cls.__name__
        if data is not None and not isinstance(data, Mapping):
            raise ValueError(
                f"{where}={data!r} is not allowed; expected a mapping of {cls.__name__} fields"
            )
        data = dict(data or {})
        hints = _type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted((k for k in data if k not in fields), key=str)
        if unknown:
            inside = f" in {_prefix.rstrip('.')}" if _prefix else ""
            raise ValueError(
                f"unknown config key(s) {[f'{_prefix}{k}' for k in unknown]}{inside}; "
                f"allowed: {sorted(fields)}"
            )
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            tp = _unwrap_optional(hints[key])
            if _is_config_type(tp) and not isinstance(value, tp):
                if not isinstance(value, Mapping):
                    raise ValueError(
                        f"{_prefix}{key}={value!r} is not allowed; expected a mapping of "
                        f"{tp.__name__} fields (allowed keys: {_field_names(tp)})"
                    )
                # Overrides merge onto the field's own default (a scenario may default a nested
                # config differently from the nested class's defaults).
                factory = fields[key].default_factory
                base = factory().to_dict() if factory is not dataclasses.MISSING else {}
                _deep_update(base, value)
                kwargs[key] = tp.from_dict(base, _prefix=f"{_prefix}{key}.")
            else:
                kwargs[key] = value
        token = _DEFER_VALIDATION.set(True)
        try:
            obj = cls(**kwargs)
        except TypeError as err:  # e.g. a missing required field
            raise ValueError(f"{_prefix}{cls.__name__}: {err}") from None
        finally:
            _DEFER_VALIDATION.reset(token)
        obj.validate(prefix=_prefix)
        return obj

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
        data = load_yaml(text) if str(path).endswith((".yaml", ".yml")) else json.loads(text)
        if data is not None and not isinstance(data, Mapping):
            raise ValueError(f"config file {path} must hold a mapping, got {type(data).__name__}")
        return cls.from_dict(data or {})


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """``typing.get_type_hints`` of a config class, evaluated once (the annotations are
    strings under ``from __future__ import annotations``, and evaluating them dominated the
    cost of building a config)."""
    return typing.get_type_hints(cls)


def _field_names(cls: type) -> list[str]:
    return sorted(f.name for f in dataclasses.fields(cls))


_NONE = type(None)


def _describe(tp: Any) -> str:
    """What a type annotation allows, in words."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in args if a is not _NONE]
        text = " or ".join(parts)
        return f"{text} or None" if _NONE in args else text
    if tp is Any:
        return "any value"
    if tp is bool:
        return "true or false"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a finite real number"
    if tp is str:
        return "a string"
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        return f"a list of {len(args)} items ({', '.join(_describe(a) for a in args)})"
    if origin is list:
        return f"a list of {_plural(args[0])}" if args else "a list"
    if origin is dict or tp is dict:
        return "a mapping"
    if _is_config_type(tp):
        return f"a mapping of {tp.__name__} fields"
    return getattr(tp, "__name__", str(tp))


def _plural(tp: Any) -> str:
    names = {Any: "values", int: "integers", float: "finite real numbers", str: "strings"}
    return names.get(tp, "booleans" if tp is bool else f"items ({_describe(tp)})")


def _check_type(name: str, value: Any, tp: Any, meta: Mapping[str, Any] | None = None) -> Any:
    """``value`` checked against annotation ``tp`` (normalized); raise naming ``name``."""
    meta = meta or {}
    origin, args = typing.get_origin(tp), typing.get_args(tp)

    def refuse(extra: str = "") -> ValueError:
        return ValueError(f"{name}={value!r} is not allowed; expected {_describe(tp)}{extra}")

    if origin in (typing.Union, types.UnionType):
        if value is None:
            if _NONE in args:
                return None
            raise refuse()
        options = [a for a in args if a is not _NONE]
        errors = []
        for option in options:
            try:
                return _check_type(name, value, option, meta)
            except ValueError as err:
                errors.append(err)
        if len(options) == 1:
            raise errors[0]
        raise refuse()
    if tp is Any:
        return value
    if value is None:
        raise refuse()
    if tp is bool:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise refuse()
    if tp is int:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
            raise refuse()
        return int(value)
    if tp is float:
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise refuse()
        if isinstance(value, numbers.Integral):
            return int(value)  # exact, however large; the range check bounds it
        value = float(value)
        if math.isnan(value):
            raise refuse(": NaN is not a number")
        if math.isinf(value) and not meta.get("allow_inf", False):
            raise refuse(" (infinite values are not allowed here)")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise refuse()
        return value
    if origin is tuple or origin is list:
        if not isinstance(value, (list, tuple)):
            raise refuse()
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise refuse(f", got {len(value)} item(s)")
            items = [_check_type(f"{name}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args))]
        else:
            item_tp = args[0] if args else Any
            items = [_check_type(f"{name}[{i}]", v, item_tp) for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise refuse()
        key_tp, value_tp = args if args else (Any, Any)
        out = {}
        for k, v in value.items():
            if key_tp is str and not isinstance(k, str):
                raise ValueError(f"{name} has the key {k!r}; its keys must be strings")
            out[k] = _check_type(f"{name}.{k}", v, value_tp)
        return out
    if _is_config_type(tp):
        if not isinstance(value, tp):
            raise refuse()
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise refuse()
    return value


def check_type(name: str, value: Any, tp: Any, meta: Mapping[str, Any] | None = None) -> Any:
    """``value`` checked against the annotation ``tp`` (and :func:`rng` / :func:`choices`
    metadata) as a config field is, with the same message; returns it normalized. For
    arguments that mirror a config field outside a config."""
    value = _check_type(name, value, tp, meta)
    meta = meta or {}
    if value is not None and "range" in meta:
        lo, hi, lo_inc, hi_inc = meta["range"]
        check_range(name, value, lo, hi, low_inclusive=lo_inc, high_inclusive=hi_inc)
    if value is not None and "choices" in meta:
        check_choice(name, value, meta["choices"])
    return value


def _unwrap_optional(tp: Any) -> Any:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def merged(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of the nested mapping ``base`` with ``changes`` merged in, section by section
    (a nested mapping updates the one it replaces; any other value replaces it)."""
    out = copy.deepcopy(dict(base))
    _deep_update(out, changes)
    return out


def _deep_update(base: dict[str, Any], changes: Mapping[str, Any]) -> None:
    for k, v in changes.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v
