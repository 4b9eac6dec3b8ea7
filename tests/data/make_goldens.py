"""Record (or replay) golden trajectories of every scenario and coordination mode.

A golden is what the batched world computes for a fixed seed and a fixed stream of random
actions: ``tests/test_goldens.py`` replays it and compares bit for bit (``torch.equal``), so
a change that is meant to make the world faster without changing what it computes is
checked against the code as it was before the change.

One file per ``(scenario, mode)``, ``goldens/<EnvId>__<mode>.safetensors``, and one per
extra configuration (:data:`VARIANTS`, shorter runs), exact float32
(integer counts stored as int32, checked lossless, and restored to the world's dtype on
loading; nothing lossy), with, for ``T = STEPS`` steps of ``B = NUM_ENVS`` worlds and ``N`` agents:

* ``reward [T, B, N]``, ``terminated [T, B]``, ``truncated [T, B]``, every ``info`` key
  ``info.<key> [T, ...]`` as the step returned it (its own dtype);
* ``obs0 [B, N, Do]`` the reset observation, and ``obs [ceil(T / OBS_EVERY), B, N, Do]`` the
  observations of every ``OBS_EVERY``-th step (steps ``0, OBS_EVERY, ...``), with the global
  ``state`` at the same steps: the observations are most of the bytes, and a world whose
  state drifted shows it in the next step's rewards and info anyway, so every step's
  observation is not needed to keep the files small (< 5 MB in all);
* after each ``reset_at``: ``reset_obs [R, B, N, Do]`` (``world.observation()``) and
  ``reset_belief_error [R, B, N]`` (``world.reset_info()``).

Finished worlds are reset with ``reset_at(terminated | truncated)`` after a step that
finished any, as every runner does. Actions come from :func:`agentcomm.envs.experts.random_actions` with a
CPU generator seeded once, so they do not depend on the world.

Bit identity holds on one platform: the same torch build on the same kind of CPU (LAPACK and
vectorized math kernels are chosen per CPU, and their last bits differ). Each file records
the :func:`platform_fingerprint` it was made on; :mod:`tests.test_goldens` compares bit for
bit there, and elsewhere within a float tolerance, except for the cases in :data:`CHAOTIC`,
whose trajectories amplify a last-bit difference into another discrete event.

Usage (from the repository root; overwrites the goldens)::

    .venv/bin/python tests/data/make_goldens.py
"""

from __future__ import annotations

import hashlib
import os
import platform

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import torch  # noqa: E402

import agentcomm  # noqa: E402
from agentcomm.envs.experts import random_actions  # noqa: E402

#: Where the golden files live.
GOLDEN_DIR = Path(__file__).resolve().parent / "goldens"
MODES = ("centralized", "distributed", "hybrid")
NUM_ENVS = 4
STEPS = 200
OBS_EVERY = 4
WORLD_SEED = 20240601
ACTION_SEED = 7


#: Extra configurations beyond the defaults (shorter runs): the other fusion rules, codecs,
#: channels, shadowing, erasures, several consensus rounds, small budgets and own-share
#: rewards, so that code paths the default configs never take are pinned too.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "sr-average-shadowing-erasure": (
        "SearchRescue-v0",
        {
            "comm": {"mode": "distributed", "fusion": "average", "consensus_rounds": 2},
            "channel": {"shadowing_std_db": 4.0, "erasure_prob": 0.1},
        },
    ),
    "sr-max-topk-fast": (
        "SearchRescue-v0",
        {
            "comm": {"mode": "hybrid", "fusion": "max", "codec": "topk"},
            "channel": {"name": "rayleigh_fast"},
        },
    ),
    "sr-sum-dct-estimated": (
        "SearchRescue-v0",
        {
            "comm": {"mode": "distributed", "fusion": "sum", "codec": "dct"},
            "channel": {"csi": "estimated"},
        },
    ),
    "sr-linear-rician": (
        "SearchRescue-v0",
        {"comm": {"mode": "centralized", "codec": "linear"}, "channel": {"name": "rician"}},
    ),
    "sr-raw-awgn-shares": (
        "SearchRescue-v0",
        {
            "comm": {"mode": "hybrid", "codec": "raw"},
            "channel": {"name": "awgn"},
            "team_reward_weight": 0.5,
        },
    ),
    "tt-average-erasure": (
        "TargetTracking-v0",
        {"comm": {"mode": "hybrid", "fusion": "average"}, "channel": {"erasure_prob": 0.2}},
    ),
    "ic-small-budget-shares": (
        "IntentCoverage-v0",
        {"comm": {"mode": "hybrid", "budget": 9}, "team_reward_weight": 0.0},
    ),
}
VARIANT_STEPS = 40
#: Cases that are compared only on the platform that recorded them: TargetTracking-v0's
#: covariance intersection picks its weights by a search whose outcome a last-bit
#: difference of a LAPACK kernel can change, and from then on the tracks differ.
CHAOTIC = ("TargetTracking-v0__centralized", "TargetTracking-v0__hybrid")


def platform_fingerprint() -> str:
    """The torch build, the machine and the CPU features its kernels dispatch on."""
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    flags = " ".join(sorted(line.split(":", 1)[1].split()))
                    break
    except OSError:
        flags = platform.processor()
    digest = hashlib.sha1(flags.encode()).hexdigest()[:12]
    capability = torch.backends.cpu.get_cpu_capability()
    return f"torch={torch.__version__} machine={platform.machine()} cpu={capability} flags={digest}"


def golden_path(name: str) -> Path:
    """The file holding the golden ``name`` (a :func:`cases` key)."""
    return GOLDEN_DIR / f"{name}.safetensors"


def cases() -> dict[str, tuple[str, dict[str, Any], int]]:
    """Every golden: ``name -> (env_id, config overrides, steps)``; ``<EnvId>__<mode>`` for
    each scenario under each coordination mode (defaults otherwise), then :data:`VARIANTS`."""
    out = {
        f"{env_id}__{mode}": (env_id, {"comm": {"mode": mode}}, STEPS)
        for env_id in agentcomm.list_envs()
        for mode in MODES
    }
    out.update({name: (env_id, cfg, VARIANT_STEPS) for name, (env_id, cfg) in VARIANTS.items()})
    return out


def record(name: str) -> dict[str, torch.Tensor]:
    """Run the trajectory of golden ``name`` and return its tensors (module docstring)."""
    env_id, config, steps = cases()[name]
    world = agentcomm.make_vec(env_id, num_envs=NUM_ENVS, seed=WORLD_SEED, **config)
    gen = torch.Generator().manual_seed(ACTION_SEED)
    out: dict[str, list[torch.Tensor]] = {"obs": []}
    obs0 = world.reset(seed=WORLD_SEED).clone()
    for t in range(steps):
        actions = random_actions(world, gen)
        obs, reward, terminated, truncated, info = world.step(actions)
        row = {"reward": reward, "terminated": terminated, "truncated": truncated}
        row.update({f"info.{k}": v for k, v in info.items()})
        for key, value in row.items():
            out.setdefault(key, []).append(value.detach().cpu().clone())
        if t % OBS_EVERY == 0:
            out["obs"].append(obs.detach().cpu().clone())
            out.setdefault("state", []).append(world.state().cpu().clone())
        finished = terminated | truncated
        if bool(finished.any()):
            world.reset_at(finished)
            # What a runner reads next: the observations and the reset info after a reset.
            out.setdefault("reset_obs", []).append(world.observation().cpu().clone())
            error = world.reset_info()["belief_error"]
            out.setdefault("reset_belief_error", []).append(error.cpu().clone())
    tensors = {key: torch.stack(values).contiguous() for key, values in out.items()}
    tensors["obs0"] = obs0.cpu().contiguous()
    return tensors


def pack(tensors: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Integer tensors as int32 (the counts are small; checked lossless), the rest as they
    are; returns the tensors and ``{key: original dtype}`` for :func:`unpack`."""
    packed, dtypes = {}, {}
    for key, value in tensors.items():
        dtypes[key] = str(value.dtype).removeprefix("torch.")
        if value.dtype == torch.int64:
            small = value.to(torch.int32)
            if not torch.equal(small.to(torch.int64), value):
                raise ValueError(f"{key} does not fit int32; store it as int64")
            value = small
        packed[key] = value
    return packed, dtypes


def unpack(packed: dict[str, torch.Tensor], dtypes: dict[str, str]) -> dict[str, torch.Tensor]:
    """Undo :func:`pack`: every tensor in the dtype the world returned."""
    return {key: value.to(getattr(torch, dtypes[key])) for key, value in packed.items()}


def load(name: str) -> dict[str, torch.Tensor]:
    """The stored golden ``name``, in the world's dtypes."""
    import json

    from safetensors import safe_open

    with safe_open(str(golden_path(name)), framework="pt") as f:
        dtypes = json.loads(f.metadata()["dtypes"])
        packed = {key: f.get_tensor(key) for key in f.keys()}
    return unpack(packed, dtypes)


def recorded_on(name: str) -> str:
    """The :func:`platform_fingerprint` golden ``name`` was recorded on (``""``: unknown)."""
    from safetensors import safe_open

    with safe_open(str(golden_path(name)), framework="pt") as f:
        return f.metadata().get("platform", "")


def main() -> None:
    import json

    from safetensors.torch import save_file

    torch.set_num_threads(1)
    GOLDEN_DIR.mkdir(parents=True, exist_ok=True)
    total = 0
    for name in cases():
        path = golden_path(name)
        packed, dtypes = pack(record(name))
        meta = {
            "name": name,
            "dtypes": json.dumps(dtypes, sort_keys=True),
            "platform": platform_fingerprint(),
        }
        save_file(packed, str(path), metadata=meta)
        size = path.stat().st_size
        total += size
        print(f"{path.name}: {size / 1024:.0f} KiB")
    print(f"total: {total / 1024**2:.2f} MiB")


if __name__ == "__main__":
    main()
