"""Property: any config dict is refused clearly at construction, or runs.

Hypothesis draws config dicts for every scenario from the fields of its config dataclass
(nested sections included): documented values mixed with ``None``, wrong types, inf/nan,
out-of-range and huge or tiny numbers, numpy scalars, non-dict sections and unknown keys.
Each dict must end in one of two ways (:func:`agentcomm.experiments.benchmarks.fuzz_configs.classify`):

* ``make_vec`` raises a ``ValueError`` whose message names a dotted key the dict set, or
* the world resets and runs 3 steps of random actions with finite observations and rewards.

Sizes are capped (grid, agents, budget: :data:`~agentcomm.experiments.benchmarks.fuzz_configs.CAPPED`)
so that a valid draw stays cheap; the property is about validation, not scale.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from agentcomm.experiments.benchmarks.fuzz_configs import (
    CAPPED,
    CODEC_PARAMS,
    ENV_IDS,
    JUNK,
    classify,
)


def _strip_optional(tp: Any) -> Any:
    args = typing.get_args(tp)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return rest[0] if len(rest) == 1 else tp
    return tp


def _documented(name: str, tp: Any, meta: Any) -> st.SearchStrategy:
    """Values the field's documentation allows (cross-field rules may still refuse them)."""
    if name in CAPPED:
        return st.sampled_from(CAPPED[name])
    if name == "codec_params":
        return st.sampled_from([{}, *[dict(p) for ps in CODEC_PARAMS.values() for p in ps]])
    optional = type(None) in typing.get_args(tp)
    tp = _strip_optional(tp)
    if "choices" in meta:
        base: st.SearchStrategy = st.sampled_from(meta["choices"])
    elif tp is bool:
        base = st.booleans()
    elif typing.get_origin(tp) is tuple:
        base = st.lists(
            st.floats(0.0, 4.0),
            min_size=len(typing.get_args(tp)),
            max_size=len(typing.get_args(tp)),
        )
    elif tp in (int, float) and "range" in meta:
        lo, hi, low_inc, high_inc = meta["range"]
        lo = 0.0 if lo is None else lo
        hi = lo + 10.0 if hi is None else min(hi, lo + 10.0 * max(1.0, abs(lo)))
        if tp is int:
            base = st.integers(math.ceil(lo), math.floor(hi))
        else:
            base = st.floats(lo, hi, exclude_min=not low_inc, exclude_max=not high_inc)
    elif tp is int:
        base = st.integers(0, 10)
    elif tp is float:
        base = st.floats(0.0, 10.0)
    else:
        base = st.just("x")
    return st.one_of(st.none(), base) if optional else base


def _out_of_range(meta: Any) -> st.SearchStrategy:
    picks: list[Any] = [-1, -1e9, 10**12]
    if "range" in meta:
        lo, hi, _, _ = meta["range"]
        if lo is not None:
            picks += [lo - 1, lo - 1e-9, lo - 1e6]
        if hi is not None:
            picks += [hi + 1, hi * 2 + 1]
    if "choices" in meta:
        picks += ["nope", meta["choices"][0].upper() + "X", meta["choices"][0] + " "]
    return st.sampled_from(picks)


def _undocumented(meta: Any) -> st.SearchStrategy:
    """Values the documentation does not allow, or edges it is silent about."""
    return st.one_of(
        st.none(),
        st.sampled_from(JUNK),
        st.sampled_from([math.inf, -math.inf, math.nan]),
        st.booleans(),
        st.sampled_from([1e39, 1e300, -1e300, 2**63, 10**30, 1e-300, 5e-324, -1e-300]),
        st.integers(0, 255).map(np.int64),
        st.floats(0.0, 10.0).map(np.float32),
        st.floats(-10.0, 10.0).map(lambda v: v + 0.5),
        _out_of_range(meta),
    )


def _section(cls: type, bad: bool) -> st.SearchStrategy:
    """A dict for config class ``cls``: a random subset of its fields, with documented values
    only (``bad=False``; cross-field rules may still refuse them) or mixed with undocumented
    values, non-dict sections and unknown keys."""
    hints = typing.get_type_hints(cls)
    optional: dict[str, st.SearchStrategy] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        base = _strip_optional(tp)
        if isinstance(base, type) and dataclasses.is_dataclass(base):
            optional[f.name] = _section(base, bad)
            if bad:
                junk = st.sampled_from([None, 3, "comm", [1, 2], 1.5, ()])
                optional[f.name] = st.one_of(optional[f.name], junk)
        elif bad:
            optional[f.name] = st.one_of(
                _documented(f.name, tp, f.metadata), _undocumented(f.metadata)
            )
        else:
            optional[f.name] = _documented(f.name, tp, f.metadata)
    fields = st.fixed_dictionaries({}, optional=optional)
    if not bad:
        return fields
    unknown = st.dictionaries(
        st.sampled_from(["foo", "Budget", "grid", "comm_budget", "pd ", "Seed"]),
        st.sampled_from([1, "x", None, {"a": 1}]),
        max_size=1,
    )
    return st.tuples(fields, unknown).map(lambda parts: {**parts[0], **parts[1]})


def _case(env_id: str) -> st.SearchStrategy:
    from agentcomm.envs import env_class

    seed = st.one_of(
        st.integers(0, 2**31 - 1),
        st.integers(0, 2**31 - 1),
        st.sampled_from([1.5, "7", -1, math.nan, True, None, [0]]),
    )
    cls = env_class(env_id).config_cls
    # Half the dicts hold documented values only, so that many of them reach reset and step.
    config = st.one_of(_section(cls, bad=False), _section(cls, bad=True))
    return st.tuples(st.sampled_from([1, 2]), seed, config)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_every_config_dict_is_refused_by_key_or_runs(env_id):
    @settings(
        max_examples=50,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_case(env_id))
    def check(case):
        num_envs, seed, cfg = case
        note(f"agentcomm.make_vec({env_id!r}, num_envs={num_envs}, seed={seed!r}, **{cfg!r})")
        outcome, detail = classify(env_id, num_envs, seed, cfg)
        assert outcome in ("refused", "ran"), detail

    check()


def test_the_property_fails_on_a_config_that_runs_wrong(monkeypatch):
    """The check above can fail: a world whose step returns NaN is classified wrong."""
    import agentcomm

    world = agentcomm.make_vec("IntentCoverage-v0", num_envs=1, seed=0)
    real = type(world).step

    def nan_step(self, actions):
        obs, rew, term, trunc, info = real(self, actions)
        return obs, rew * math.nan, term, trunc, info

    monkeypatch.setattr(type(world), "step", nan_step)
    assert classify("IntentCoverage-v0", 1, 0, {}) == ("wrong", "step: non-finite reward")
    assert classify("IntentCoverage-v0", 1, 0, {"grid_size": "abc"})[0] == "refused"
