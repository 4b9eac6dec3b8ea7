"""The files of a training run directory: progress CSVs, plots, checkpoints, evaluation.

Layout (see :mod:`agentcomm.policies.train`)::

    progress.csv          one row per iteration, rewritten atomically after each
    rllib/iter_NNNNN/     RLlib checkpoint after iteration NNNNN (last two kept), with
                          the resume state (:mod:`~agentcomm.policies.resume_state`)
    rllib/LATEST.json     {"iteration": i, "path": "iter_..."}: the last *complete* one
    eval.json             deterministic evaluation of the exported policy

A checkpoint is written to its own directory and only then named in ``LATEST.json``
(atomic rename), so a ``kill -9`` at any moment loses at most the iteration in progress.
:func:`check_resume` refuses, before anything is written, a resume that would lose or
misdescribe a run.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agentcomm.io import atomic_write, atomic_write_text
from agentcomm.policies.resume_state import save_resume_state
from agentcomm.policies.train_config import (
    SECTIONS,
    TrainConfig,
    resolve_device,
    scenario_overrides,
)

__all__ = [
    "KEEP_CHECKPOINTS",
    "LATEST",
    "RESUME_MAY_CHANGE",
    "TrainResult",
    "check_resume",
    "evaluate_run",
    "latest_checkpoint",
    "plot_curves",
    "policy_metadata",
    "read_csv",
    "save_checkpoint",
    "write_csv",
]

#: Name of the pointer to the last complete checkpoint, in ``rllib/``.
LATEST = "LATEST.json"
#: RLlib checkpoints kept (the newest ones).
KEEP_CHECKPOINTS = 2


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite a CSV atomically (columns: union of the rows' keys, in first-seen order)."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]

    def write(tmp: str) -> None:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(path, write)


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV as floats (empty cells: NaN); ``[]`` when the file does not exist."""
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [
            {k: float(v) if v not in ("", None) else math.nan for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


def plot_curves(path: Path, x: list[float], ys: dict[str, list[float]], xlabel: str) -> None:
    """One panel per curve of ``ys`` against ``x``, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import EngFormatter

    fig, axes = plt.subplots(1, len(ys), figsize=(4.5 * len(ys), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], ys.items()):
        ax.plot(x, values, marker="." if len(x) < 50 else None)
        # 819,200 agent-steps read 819k: full integers run into each other under the axis.
        ax.xaxis.set_major_formatter(EngFormatter(sep=""))
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def latest_checkpoint(out: Path) -> tuple[int, Path] | None:
    """``(iteration, directory)`` that ``rllib/LATEST.json`` names, or ``None`` without one;
    a damaged pointer, or one naming a missing directory, raises ``ValueError`` naming it."""
    from agentcomm._integrity import read_json_file

    pointer = out / "rllib" / LATEST
    if not pointer.is_file():
        return None
    info = read_json_file(pointer, "checkpoint pointer")
    iteration, name = info.get("iteration"), info.get("path")
    if isinstance(iteration, bool) or not isinstance(iteration, int) or not isinstance(name, str):
        raise ValueError(
            f'{pointer} must hold {{"iteration": N, "path": "iter_..."}}; got {info!r}'
        )
    path = out / "rllib" / name
    if not path.is_dir():
        raise ValueError(f"{pointer} names {name!r}, but {path} does not exist")
    return iteration, path


#: TrainConfig keys (dotted within a section) a resumed run may change: how long it runs,
#: what it prints, where it computes and how it is evaluated afterwards. Any other
#: difference from the run's ``train_config.yaml`` would make the checkpoint and its
#: recorded config disagree.
RESUME_MAY_CHANGE = frozenset(
    {"ppo.iterations", "rllib.time_budget_s", "progress", "device", "eval_episodes", "eval_split"}
)


def _flat_settings(config: TrainConfig) -> dict[str, Any]:
    """``config`` as ``{key: value}`` with each section's keys dotted (``ppo.lr``); the
    ``env_config`` and ``policy`` mappings stay whole."""
    out: dict[str, Any] = {}
    for key, value in config.to_dict().items():
        if key in SECTIONS:
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def check_resume(config: TrainConfig, out: Path) -> None:
    """Refuse a resume that would lose or misdescribe a run, before anything is written.

    A resume needs the run's ``train_config.yaml`` and a complete checkpoint (RLlib:
    ``rllib/LATEST.json``; SB3: ``sb3/model.zip``); without one the run would restart from
    iteration 0 and overwrite ``progress.csv`` and the checkpoints. ``config`` may differ
    from the recorded config only in :data:`RESUME_MAY_CHANGE`. A ``train_config.yaml``
    written with the flat keys of earlier versions is read through
    :data:`~agentcomm.policies.train_config.LEGACY_KEYS` (the resumed run rewrites it with
    the sections).
    """
    recorded = out / "train_config.yaml"
    if not recorded.is_file():
        raise ValueError(
            f"resume: {out} holds no train_config.yaml, so it is not a training run directory "
            "(or not one this run wrote); pass the --out of the run to resume"
        )
    stored = TrainConfig.load(recorded)
    new, old = _flat_settings(config), _flat_settings(stored)
    conflicts = sorted(k for k in new if k not in RESUME_MAY_CHANGE and new[k] != old.get(k))
    if conflicts:
        detail = ", ".join(f"{k}: run has {old.get(k)!r}, given {new[k]!r}" for k in conflicts)
        raise ValueError(
            f"resume: the overrides conflict with {recorded} ({detail}); a resumed run may "
            f"change only {sorted(RESUME_MAY_CHANGE)}. Drop those overrides, or start a "
            "new run with another --out"
        )
    if config.algo == "sb3-ppo":
        if not (out / "sb3" / "model.zip").is_file():
            found = (
                sorted(p.name for p in (out / "sb3").iterdir()) if (out / "sb3").is_dir() else []
            )
            raise ValueError(
                f"resume: {out / 'sb3' / 'model.zip'} does not exist (found in sb3/: {found}); "
                "there is nothing to resume from, and restarting would overwrite "
                "sb3/progress.csv. Start a new run with another --out"
            )
        return
    pointer = out / "rllib" / LATEST
    if latest_checkpoint(out) is None:
        root = out / "rllib"
        found = sorted(p.name for p in root.glob("iter_*") if p.is_dir()) if root.is_dir() else []
        if found:
            newest = found[-1]
            hint = (
                f"checkpoints found: {found}. To resume from one, write {pointer} as "
                f'{{"iteration": {int(newest.split("_")[-1])}, "path": "{newest}"}} (the newest '
                "may be incomplete if the run was killed while saving it: then name the one "
                "before it)"
            )
        else:
            hint = f"no checkpoints found under {root}"
        raise ValueError(
            f"resume: {pointer} is missing, so no checkpoint is known to be complete; "
            "refusing to restart from iteration 0 (that would overwrite progress.csv and the "
            f"checkpoints). {hint}; or start a new run with another --out"
        )


def save_checkpoint(algo: Any, out: Path, iteration: int) -> None:
    """Write ``rllib/iter_NNNNN`` (RLlib's checkpoint and the resume state), then name it
    in ``LATEST.json``, then drop all but the newest :data:`KEEP_CHECKPOINTS`."""
    root = out / "rllib"
    name = f"iter_{iteration:05d}"
    target = root / name
    if target.exists():
        shutil.rmtree(target)
    # RLlib reads a relative path as a URI without scheme: give it an absolute one.
    algo.save_to_path(str(target.resolve()))
    save_resume_state(algo, target)
    atomic_write_text(root / LATEST, json.dumps({"iteration": iteration, "path": name}))
    done = sorted(p for p in root.glob("iter_*") if p.is_dir())
    for old in done[:-KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)


@dataclass
class TrainResult:
    """What :func:`agentcomm.policies.train.train` produced.

    Attributes:
        out: Output directory.
        policy_dir: Exported policy directory.
        history: Per-iteration (RLlib) or per-epoch (bc) metric rows.
        eval: :class:`~agentcomm.policies.evaluate.EvalResult` as a dict, or ``None``.
    """

    out: str
    policy_dir: str
    history: list[dict[str, float]]
    eval: dict[str, float] | None


def policy_metadata(config: TrainConfig, **extra: Any) -> dict[str, Any]:
    """What an exported policy records about the run that trained it (plus ``extra``)."""
    return {
        "env_id": config.env,
        "env_config": scenario_overrides(config.env_config),
        "algo": config.algo,
        "sampler": config.sampler,
        "seed": config.seed,
        **extra,
    }


def evaluate_run(config: TrainConfig, policy_dir: Path, out: Path) -> dict[str, float] | None:
    """Evaluate the exported policy deterministically (``eval_episodes`` on the
    ``eval_split`` worlds of seed index ``seed``) and write ``eval.json``; ``None`` when
    ``eval_episodes`` is 0."""
    from agentcomm.policies.evaluate import evaluate, load_actor

    if config.eval_episodes == 0:
        return None
    device = resolve_device(config.device)
    actor, _ = load_actor(policy_dir, device=device, sampler=config.sampler)
    result = asdict(
        evaluate(
            actor,
            config.env,
            config.eval_episodes,
            num_envs=min(64, config.eval_episodes),
            seed=config.seed,
            env_config=scenario_overrides(config.env_config),
            device=device,
            split=config.eval_split,
        )
    )
    atomic_write_text(out / "eval.json", json.dumps(result, indent=2))
    if config.progress:
        print(
            f"[eval] success {result['success_rate']:.3f}  return {result['return_mean']:.2f}  "
            f"channel uses/agent/step {result['channel_uses_per_agent_step']:.2f}"
        )
    return result
