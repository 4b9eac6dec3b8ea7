"""Experiment specifications: one small YAML per experiment, composed through
``extends`` (a parent file whose keys the child overrides), read with
a safe loader only (:func:`agentcomm.config.load_yaml`).

An experiment is a set of *points* (environment overrides) crossed with policies
and seeds. Points come from ``axes`` (a Cartesian product over dotted keys such
as ``comm.budget``) plus explicit ``points``, all on top of ``overrides``::

    extends: base.yaml
    name: bandwidth
    axes:
      comm.mode: [centralized, distributed, hybrid]
      comm.budget: [0, 4, 12, 32, 64, 128]
    points:
      - {comm.codec: raw}
"""

from __future__ import annotations

import dataclasses
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentcomm.config import Config, load_yaml, rng

__all__ = ["ExperimentConfig", "expand_points", "load_experiment", "nest"]


@dataclass
class ExperimentConfig(Config):
    name: str = "experiment"
    """Names the results folder (``results/<name>``): letters, digits, ``_``, ``-`` and ``.``
    only, so it cannot point outside ``results/``."""
    env_id: str = "SearchRescue-v0"
    policies: tuple[str, ...] = ("expert",)
    """``expert``, ``random`` or policy checkpoint directories."""
    episodes: int = field(default=64, metadata=rng(1, 1_000_000))
    """Episodes per (point, policy, seed): parallel worlds of one batched environment."""
    seeds: tuple[int, ...] = (0, 1, 2)
    overrides: dict[str, Any] = field(default_factory=dict)
    axes: dict[str, list[Any]] = field(default_factory=dict)
    points: list[dict[str, Any]] = field(default_factory=list)
    device: str = "cpu"
    quick: dict[str, Any] = field(default_factory=dict)
    """Changes of a smoke run (``agentcomm run --quick``): fields of this config (e.g. fewer
    ``axes`` values, ``episodes``), applied over the rest; empty: the run as it is, with the
    smoke run's episodes and seed."""

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        if not _NAME.fullmatch(self.name) or set(self.name) == {"."}:
            raise ValueError(
                f"{prefix}name={self.name!r} is not allowed; it names the folder results/<name>, "
                "so use letters, digits, '_', '-' and '.' only (no '/', no '..')"
            )
        if not self.seeds:
            raise ValueError(f"{prefix}seeds is empty; give at least one seed")
        for i, seed in enumerate(self.seeds):
            if not 0 <= seed < 2**31:
                raise ValueError(
                    f"{prefix}seeds[{i}]={seed!r} is out of range; seeds are integers in "
                    "[0, 2**31 - 1]"
                )
        if not self.policies:
            raise ValueError(f"{prefix}policies is empty; give at least one policy")
        for key, values in self.axes.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"{prefix}axes.{key}={values!r} must be a non-empty list")
        fields = {f.name for f in dataclasses.fields(self)} - {"quick"}
        unknown = sorted(set(self.quick) - fields)
        if unknown:
            raise ValueError(
                f"{prefix}quick={self.quick!r} changes unknown field(s) {unknown}; "
                f"allowed: {sorted(fields)}"
            )

    def smoke(self) -> ExperimentConfig:
        """The smoke-run version: :attr:`quick` applied, ``quick`` itself emptied."""
        changes = {k: v for k, v in self.quick.items() if k not in ("axes", "points")}
        out = self.replace(**changes)
        # quick, axes and points are replaced whole, not merged key by key.
        whole = {k: self.quick[k] for k in ("axes", "points") if k in self.quick}
        out = dataclasses.replace(out, quick={}, **whole)
        out.validate()
        return out


_NAME = re.compile(r"[A-Za-z0-9_.-]{1,128}")


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"comm.budget": 4}`` -> ``{"comm": {"budget": 4}}`` (nested dicts merge)."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        parts = key.split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ValueError(f"override key {key!r} conflicts with a non-dict value at {p!r}")
        if isinstance(value, dict) and isinstance(node.get(parts[-1]), dict):
            node[parts[-1]].update(value)
        else:
            node[parts[-1]] = value
    return out


def expand_points(cfg: ExperimentConfig) -> list[dict[str, Any]]:
    """The flat (dotted-key) override dicts of every point, axes first, in order; an
    experiment with neither axes nor points has one point, its ``overrides``."""
    points: list[dict[str, Any]] = []
    keys = list(cfg.axes)
    # Without axes the overrides alone are a point only if no explicit point is given.
    combos = itertools.product(*(cfg.axes[k] for k in keys)) if keys else [()]
    for combo in combos if keys or not cfg.points else []:
        points.append({**cfg.overrides, **dict(zip(keys, combo))})
    for extra in cfg.points:
        if not isinstance(extra, dict):
            raise ValueError(f"points entries must be mappings, got {extra!r}")
        points.append({**cfg.overrides, **extra})
    return points


def _read(path: Path, seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    path = path.resolve()
    if path in seen:
        raise ValueError(f"config {path} extends itself through {[str(p) for p in seen]}")
    data = load_yaml(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping, got {type(data).__name__}")
    parent = data.pop("extends", None)
    if parent is None:
        return data
    base = _read(path.parent / parent, (*seen, path))
    for key in ("overrides", "axes", "quick"):
        if key in base and key in data:
            data[key] = {**base[key], **data[key]}
    return {**base, **data}


def load_experiment(path: str | Path) -> ExperimentConfig:
    """Read an experiment YAML (following ``extends``) into a validated config."""
    return ExperimentConfig.from_dict(_read(Path(path)))
