"""Fuzz the scenario configs: random config dicts through ``make_vec`` -> ``reset`` -> 3 steps.

Every generated dict (valid values mixed with ``None``, wrong types, inf/nan, out-of-range
numbers, non-dict sections, numpy scalars and unknown keys at random depths, over every
registered scenario) ends in one of three outcomes:

* ``refused``: a ``ValueError`` at construction whose message names a dotted key that the
  dict set (bad input stopped at the door, with a message that points at it);
* ``ran``: reset and 3 steps with random actions gave finite observations and rewards;
* ``wrong``: anything else (another exception type, a ``ValueError`` from reset/step, NaN
  or inf outputs, a refusal that does not name the key).

The generator is seeded, so one ``--seed`` gives the same sequence of dicts; ``--seconds``
bounds the run (``--max-cases`` bounds it by count instead, for comparing two versions of
the code on exactly the same dicts). Sizes are capped (``num_envs`` 1-2, small grids) so a
case cannot allocate gigabytes. The last line is ``RESULT refused=.. ran=.. wrong=.. total=..``.

    python -m agentcomm.experiments.benchmarks.fuzz_configs --seconds 120 --seed 0
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import math
import random
import re
import sys
import time
import typing
from typing import Any

__all__ = ["CAPPED", "CODEC_PARAMS", "ENV_IDS", "JUNK", "classify", "generate", "main"]

ENV_IDS = ("IntentCoverage-v0", "SearchRescue-v0", "TargetTracking-v0")

# Valid values for fields whose documented range would allow costly worlds (the fuzz
# tests validation, not scale); other fields draw from their documented range.
CAPPED: dict[str, tuple[Any, ...]] = {
    "grid_size": (4, 8, 12, 16, 24, 32),
    "num_agents": (1, 2, 3, 4, 6),
    "obs_map_size": (1, 2, 4, 8),
    "num_victims": (1, 2, 3, 5),
    "num_targets": (1, 2, 3),
    "crop_size": (1, 3, 5, 7),
    "max_steps": (1, 2, 3, 10, 60),
    "consensus_rounds": (1, 2, 3),
    "budget": (0, 1, 4, 16, 64, 256),
    "intent_max_age": (1, 5, 10),
    "intent_bits": (1, 4, 6, 12, 24),
    "compile_fusion": (False,),  # each shape would compile for ~40 s
}
CODEC_PARAMS: dict[str, tuple[dict[str, Any], ...]] = {
    "quantized": ({"bits_per_value": 2}, {"rate": 1.0}, {"range": (-4.0, 4.0)}),
    "topk": ({"value_bits": 3}, {"intent_scale": 2.0}),
    "dct": ({"scale_bits": 12},),
    "linear": ({"scale_bits": 16},),
    "raw": ({},),
}
JUNK: tuple[Any, ...] = ("abc", "", [1, 2], {"x": 1}, (), object, 1 + 2j, b"x")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _strip_optional(tp: Any) -> tuple[Any, bool]:
    args = typing.get_args(tp)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        return (rest[0] if len(rest) == 1 else tp), True
    return tp, False


def _valid(r: random.Random, name: str, tp: Any, meta: Any, section: str) -> Any:
    """A value the field's documentation allows (not always one the cross-field rules do)."""
    if name in CAPPED:
        return r.choice(CAPPED[name])
    if name == "codec_params":
        return dict(r.choice(CODEC_PARAMS["quantized"])) if r.random() < 0.3 else {}
    tp, optional = _strip_optional(tp)
    if optional and r.random() < 0.3:
        return None
    if "choices" in meta:
        return r.choice(meta["choices"])
    if tp is bool:
        return r.random() < 0.5
    if typing.get_origin(tp) is tuple:
        return [round(r.uniform(0.0, 4.0), 2) for _ in typing.get_args(tp)]
    if tp in (int, float) and "range" in meta:
        lo, hi, _, _ = meta["range"]
        lo = 0.0 if lo is None else lo
        hi = lo + 10.0 if hi is None else min(hi, lo + 10.0 * max(1.0, abs(lo)))
        if tp is int:
            return r.randint(int(math.ceil(lo)), int(hi))
        v = r.uniform(lo, hi)
        return v if v != lo else (lo + hi) / 2
    if tp is int:
        return r.randint(0, 10)
    if tp is float:
        return r.uniform(0.0, 10.0)
    if tp is str:
        return "x"
    return None


def _out_of_range(r: random.Random, meta: Any) -> Any:
    if "range" in meta:
        lo, hi, _, _ = meta["range"]
        picks = []
        if lo is not None:
            picks += [lo - 1, lo - 1e-9, lo - 1e6]
        if hi is not None:
            picks += [hi + 1, hi * 2 + 1, 10**12]
        if picks:
            return r.choice(picks)
    if "choices" in meta:
        return r.choice(["nope", "DISTRIBUTED", meta["choices"][0] + " "])
    return r.choice([-1, -1e9, 10**12])


def _bad(r: random.Random, name: str, tp: Any, meta: Any) -> tuple[str, Any]:
    """A value the documentation does not allow (or an edge it is silent about)."""
    kind = r.choice(
        ("none", "type", "inf", "nan", "range", "bool", "numpy", "float_int", "huge", "tiny")
    )
    if kind == "huge":
        return kind, r.choice([1e39, 1e300, -1e300, 2**63, 10**30, 1e20])
    if kind == "tiny":
        return kind, r.choice([1e-300, 5e-324, -1e-300, 1e-45])
    if kind == "none":
        return kind, None
    if kind == "type":
        return kind, r.choice(JUNK)
    if kind == "inf":
        return kind, r.choice([math.inf, -math.inf])
    if kind == "nan":
        return kind, math.nan
    if kind == "bool":
        return kind, r.choice([True, False])
    if kind == "numpy":
        import numpy as np

        v = _valid(r, name, tp, meta, "")
        if isinstance(v, bool) or v is None:
            return kind, v
        if isinstance(v, int):
            return kind, r.choice([np.int64, np.int32, np.uint8])(v) if 0 <= v < 256 else v
        if isinstance(v, float):
            return kind, np.float64(v) if r.random() < 0.5 else np.float32(v)
        return kind, v
    if kind == "float_int":
        v = _valid(r, name, tp, meta, "")
        return kind, (v + 0.5 if isinstance(v, int) and not isinstance(v, bool) else v)
    return kind, _out_of_range(r, meta)


def _junk_key(r: random.Random) -> str:
    return r.choice(["foo", "Budget", "grid", "comm_budget", "pd ", "x" * r.randint(1, 3), "Seed"])


def _section(r: random.Random, cls: type, p_bad: float, depth: int, section: str) -> Any:
    hints = _hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if r.random() > 0.35:
            continue
        tp = hints[f.name]
        base, _ = _strip_optional(tp)
        if isinstance(base, type) and dataclasses.is_dataclass(base):
            if r.random() < p_bad:
                out[f.name] = r.choice([None, 3, "comm", [1, 2], 1.5, ()])
            else:
                out[f.name] = _section(r, base, p_bad, depth + 1, f.name)
            continue
        if r.random() < p_bad:
            _, out[f.name] = _bad(r, f.name, tp, f.metadata)
        else:
            out[f.name] = _valid(r, f.name, tp, f.metadata, section)
    if r.random() < p_bad / 3:
        out[_junk_key(r)] = r.choice([1, "x", None, {"a": 1}])
    if depth > 0 and r.random() < p_bad / 6:
        out[r.choice([3, ("t",), "nested"])] = 1
    return out


def generate(r: random.Random) -> tuple[str, int, Any, dict[str, Any]]:
    """One case: ``(env_id, num_envs, seed, config)``."""
    from agentcomm.envs import env_class

    env_id = r.choice(ENV_IDS)
    cls = env_class(env_id).config_cls
    p_bad = r.choice((0.0, 0.05, 0.15, 0.4))
    cfg = _section(r, cls, p_bad, 0, "")
    # Codec choice and its parameters go together more often than chance would pair them.
    comm = cfg.get("comm")
    if isinstance(comm, dict) and isinstance(comm.get("codec"), str) and r.random() < 0.5:
        params = CODEC_PARAMS.get(comm["codec"])
        if params:
            comm["codec_params"] = dict(r.choice(params))
        elif r.random() < p_bad:
            comm["codec_params"] = {"bogus": 1}
    seed: Any = r.randint(0, 2**31 - 1)
    if r.random() < p_bad / 2:
        seed = r.choice([1.5, "7", -1, math.nan, True, None, [0]])
    return env_id, r.choice((1, 2)), seed, cfg


def _dotted(cfg: Any, prefix: str = "") -> list[str]:
    keys: list[str] = []
    if isinstance(cfg, dict):
        for k, v in cfg.items():
            path = f"{prefix}{k}"
            keys.append(path)
            keys.extend(_dotted(v, f"{path}."))
    return keys


def _names_a_key(message: str, keys: list[str]) -> bool:
    for key in keys:
        if re.search(rf"(?<![\w.]){re.escape(key)}(?![\w])", message):
            return True
    return False


def classify(env_id: str, num_envs: int, seed: Any, cfg: dict[str, Any]) -> tuple[str, str]:
    """Run one case; ``(outcome, detail)`` with outcome ``refused``, ``ran`` or ``wrong``."""
    import torch

    import agentcomm

    keys = [*_dotted(cfg), "seed"]
    try:
        world = agentcomm.make_vec(env_id, num_envs=num_envs, seed=seed, **cfg)
    except ValueError as err:
        msg = str(err)
        if _names_a_key(msg, keys):
            return "refused", msg
        return "wrong", f"construction: ValueError not naming a key: {msg}"
    except Exception as err:  # noqa: BLE001 - every other failure is what the fuzz counts
        return "wrong", f"construction: {type(err).__name__}: {err}"
    try:
        gen = torch.Generator().manual_seed(0)
        obs = world.reset()
        if not bool(torch.isfinite(obs).all()):
            return "wrong", "reset: non-finite observation"
        for _ in range(3):
            shape = (world.num_envs, world.num_agents, 6)
            actions = torch.rand(shape, generator=gen) * 2 - 1
            obs, rew, term, trunc, _info = world.step(actions)
            if not bool(torch.isfinite(obs).all()):
                return "wrong", "step: non-finite observation"
            if not bool(torch.isfinite(rew).all()):
                return "wrong", "step: non-finite reward"
            done = term | trunc
            if bool(done.any()):
                world.reset_at(done)
    except Exception as err:  # noqa: BLE001
        return "wrong", f"reset/step: {type(err).__name__}: {err}"
    return "ran", ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="time budget")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dict generator")
    parser.add_argument("--max-cases", type=int, default=None, help="stop after this many")
    parser.add_argument("--show", type=int, default=0, help="print this many wrong cases")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    r = random.Random(args.seed)
    counts = collections.Counter({"refused": 0, "ran": 0, "wrong": 0})
    kinds: collections.Counter[str] = collections.Counter()
    shown = 0
    start = time.monotonic()
    while time.monotonic() - start < args.seconds:
        if args.max_cases is not None and sum(counts.values()) >= args.max_cases:
            break
        case = generate(r)
        outcome, detail = classify(*case)
        counts[outcome] += 1
        if outcome == "wrong":
            kinds[re.sub(r"[=(\[].*", "", detail)[:90]] += 1
            if shown < args.show:
                shown += 1
                print(f"WRONG {case!r}\n    {detail[:300]}")
    for kind, n in kinds.most_common(15):
        print(f"  {n:6d}  {kind}")
    total = sum(counts.values())
    print(
        f"RESULT refused={counts['refused']} ran={counts['ran']} wrong={counts['wrong']} "
        f"total={total}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
