"""Train policies on agentcomm's scenarios: BC, DPPO fine-tuning, Gaussian PPO, SB3 PPO.

One typed config (:class:`TrainConfig`, YAML/JSON via ``--config FILE``) and one entry
point, :func:`train`, read top to bottom per algorithm:

* ``bc``: collect expert demonstrations in the batched world (every agent-step of ``B``
  worlds), fit a :class:`~agentcomm.policies.diffusion.DiffusionPolicy` with the DDPM loss
  (:func:`~agentcomm.policies.bc.train_bc`), save it with ``save_policy``.
* ``dppo``: RLlib PPO with the DPPO module and learner (:func:`~agentcomm.policies.dppo.
  dppo_config`), starting from a BC checkpoint (``pretrained``; without one a BC stage
  runs first into ``OUT/bc``). Exports the frozen base + fine-tuned copy.
* ``ppo``: RLlib PPO with a Gaussian MLP from scratch (:mod:`~agentcomm.policies.baselines`).
* ``sb3-ppo``: stable-baselines3 PPO with parameter sharing.

Multi-agent: ``multi_agent="shared"`` (one policy for all agents; the default) runs on the
batched EnvRunner (:mod:`~agentcomm.policies.env_runner`) unless ``runner="stock"``;
``"per_agent"`` needs the stock ``MultiAgentEnvRunner`` on the RLlib adapter.
``critic_input="state"`` gives the DPPO critic the global state (CTDE), ``"obs+state"``
both (needed with per-agent reward shares, ``env_config={"team_reward_weight": w < 1}``).

Output directory (``out``)::

    train_config.yaml     the full config (``--resume OUT`` reads it back)
    progress.csv          one row per iteration (RLlib algos) / epoch (bc: bc_loss.csv)
    tb/                   TensorBoard scalars (tensorboardX)
    rllib/iter_NNNNN/     RLlib checkpoint after iteration NNNNN (last two kept)
    rllib/LATEST.json     {"iteration": i, "path": "iter_..."}: the last *complete* one
    sb3/                  sb3-ppo: SB3's progress.csv and model.zip (saved after every
                          rollout's update, written beside and renamed; ``--resume``)
    policy/               exported policy (safetensors + config.json), per agent for
                          per-agent policies: policy/agent_0/, ...
    eval.json             deterministic evaluation of the exported policy (on the
                          ``eval_split`` worlds of seed index ``seed``)

A checkpoint is written to its own directory and only then named in ``LATEST.json``
(atomic rename), so a ``kill -9`` at any moment loses at most the iteration in progress.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from agentcomm.config import Config, atomic_write_text, choices, rng
from agentcomm.policies.ppo_common import CRITIC_INPUTS, annealed_lr

__all__ = ["TrainConfig", "TrainResult", "add_arguments", "main", "train"]

_ALGOS = ("bc", "dppo", "ppo", "sb3-ppo")
_LATEST = "LATEST.json"
_KEEP_CHECKPOINTS = 2
#: DiffusionConfig keys a TrainConfig's ``policy`` dict may not set (they come from the env).
_ENV_KEYS = ("obs_dim", "action_dim")
#: DiffusionConfig keys set by TrainConfig's own fields of the same names (DPPO's loss form).
_LOGPROB_KEYS = ("logprob_reduction", "logprob_min", "logprob_max")


@dataclass
class TrainConfig(Config):
    """Everything one training run needs; unknown keys and bad values raise ``ValueError``."""

    algo: str = field(default="bc", metadata=choices(*_ALGOS))
    """Algorithm: bc, dppo (fine-tune a BC policy), ppo (Gaussian, RLlib), sb3-ppo."""
    env: str = "SearchRescue-v0"
    """Scenario id."""
    env_config: dict[str, Any] = field(default_factory=dict)
    """Scenario config overrides (nested dicts for sensing, channel, comm)."""
    out: str = "runs/train"
    """Output directory."""
    seed: int = field(default=0, metadata=rng(0, 2**31 - 1))
    device: str = field(default="cpu", metadata=choices("cpu", "cuda", "auto"))
    """Device of the batched world, the env runner's module and (bc) the BC training."""
    progress: bool = True
    """tqdm bars and one printed line per iteration."""

    # --- demonstrations and behaviour cloning
    demo_steps: int = field(default=64, metadata=rng(1, None))
    """World steps per world of expert demonstrations."""
    demo_envs: int = field(default=64, metadata=rng(1, None))
    """Worlds collecting demonstrations in parallel (rows = demo_steps * demo_envs * N)."""
    bc_epochs: int = field(default=50, metadata=rng(1, None))
    bc_batch_size: int = field(default=1024, metadata=rng(1, None))
    bc_lr: float = field(default=1e-3, metadata=rng(0.0, None, low_inclusive=False))
    bc_ema_decay: float = field(default=0.99, metadata=rng(0.0, 1.0, high_inclusive=False))
    policy: dict[str, Any] = field(default_factory=dict)
    """DiffusionConfig fields (architecture for bc; sampling fields such as
    ft_denoising_steps or min_sampling_std for dppo)."""
    sampler: str = field(default="ddim", metadata=choices("ddpm", "ddim"))
    """Diffusion chain used for fine-tuning and evaluation."""

    # --- reinforcement learning (RLlib: dppo, ppo; sb3-ppo uses the sizes below)
    pretrained: str | None = None
    """BC policy directory for dppo, or ``"shipped:NAME"`` (e.g.
    ``"shipped:searchrescue-bc"``); None trains one first (into OUT/bc)."""
    iterations: int = field(default=10, metadata=rng(1, None))
    runner: str = field(default="batched", metadata=choices("batched", "stock"))
    """Env runner: the batched torch runner, or RLlib's MultiAgentEnvRunner on the adapter."""
    multi_agent: str = field(default="shared", metadata=choices("shared", "per_agent"))
    critic_input: str = field(default="obs", metadata=choices(*CRITIC_INPUTS))
    """What the DPPO critic reads: the agent's observation, the world's global state
    (centralized critic), or both (agent-specific centralized critic)."""
    num_envs: int = field(default=32, metadata=rng(1, None))
    """Worlds per env runner (batched) or sub-envs per env runner (stock)."""
    num_env_runners: int = field(default=0, metadata=rng(0, None))
    num_learners: int = field(default=0, metadata=rng(0, None))
    num_gpus_per_learner: float = field(default=0.0, metadata=rng(0.0, None))
    train_batch_size: int = field(default=4096, metadata=rng(1, None))
    """Agent-steps per iteration (batched runner; world steps x N)."""
    minibatch_size: int = field(default=1024, metadata=rng(1, None))
    num_epochs: int = field(default=5, metadata=rng(1, None))
    lr: float = field(default=1e-4, metadata=rng(0.0, None, low_inclusive=False))
    """Actor learning rate (dppo), learning rate (ppo, sb3-ppo). For dppo on SearchRescue-v0
    (3x256 denoiser, 0.1 likelihood std floor) 1e-5 was needed: 3e-4 moved the per-step
    likelihood ratios to [0.002, 11] in one Adam step."""
    lr_anneal_fraction: float = field(default=0.0, metadata=rng(0.0, 1.0))
    """``lr`` (the DPPO actor's, PPO's, SB3 PPO's) is held, then decays linearly to 0 over
    this last fraction of ``iterations * train_batch_size`` sampled steps; 0 keeps it
    constant, 1 is the linear decay from the start. The schedule is set by ``iterations``:
    a resumed run given more iterations follows the longer one."""
    critic_lr: float = field(default=1e-3, metadata=rng(0.0, None, low_inclusive=False))
    vf_clip_param: float = field(default=1e4, metadata=rng(0.0, None, low_inclusive=False))
    """Clamp on each sample's squared value error (dppo, ppo). A sample past it gives the
    critic no gradient: RLlib's default of 10 stops the critic once returns err by more
    than 3.2, which on SearchRescue-v0 (returns of 5-30) is nearly every sample."""
    gamma: float = field(default=0.99, metadata=rng(0.0, 1.0))
    lambda_: float = field(default=0.95, metadata=rng(0.0, 1.0))
    clip_param: float | None = field(default=None, metadata=rng(0.0, None, low_inclusive=False))
    """PPO clip; None: 0.01 for dppo (last denoising step), 0.2 for ppo / sb3-ppo."""
    clip_param_min: float | None = field(default=None, metadata=rng(0.0, None, low_inclusive=False))
    """DPPO clip at the first fine-tuned step; None: clip_param / 10."""
    gamma_denoise: float = field(default=0.99, metadata=rng(0.0, 1.0, low_inclusive=False))
    critic_warmup_iterations: int = field(default=0, metadata=rng(0, None))
    """DPPO: iterations at the start during which only the critic is trained."""
    logprob_reduction: str = field(default="sum", metadata=choices("sum", "mean"))
    """DPPO: each denoising step's log-likelihood in the PPO ratio, over the ``D`` dimensions
    of its latent (``D = 6``, one action): ``sum`` (the Gaussian log-density; every recipe
    here was tuned with it) or ``mean`` (the DPPO reference implementation's form, whose
    ratio is the ``D``-th root of the sum's: a given clip_param then allows ``D`` times
    larger per-dimension changes). See :mod:`~agentcomm.policies.dppo_learner`."""
    logprob_min: float | None = None
    """DPPO: floor on each dimension's log-density before the reduction (the reference:
    -5, with ``mean``); None: no floor."""
    logprob_max: float | None = None
    """DPPO: ceiling on each dimension's log-density (the reference: 2); None: none."""
    time_budget_s: float | None = field(default=None, metadata=rng(0.0, None, low_inclusive=False))
    """RLlib algos: stop after the first iteration that ends past this many seconds of
    training (this run only, not counting a resumed run's earlier time); None: no limit.
    ``iterations`` stays an upper bound."""
    entropy_coeff: float = field(default=0.0, metadata=rng(0.0, None))
    """Gaussian PPO entropy bonus."""
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Gaussian PPO actor/critic MLP widths."""
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """DPPO critic MLP widths."""
    eval_episodes: int = field(default=64, metadata=rng(0, None))
    """Deterministic evaluation episodes after training (0: skip)."""
    eval_split: str = field(default="selection", metadata=choices("selection", "evaluation"))
    """World-seed split of that evaluation (:mod:`agentcomm.worlds`, seed index ``seed``):
    ``selection`` for runs whose figure chooses anything (sweeps, recipes, checkpoints),
    ``evaluation`` only for a final reported figure."""

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        from agentcomm.envs import list_envs

        if self.env not in list_envs():
            raise ValueError(
                f"{prefix}env={self.env!r} is not allowed; choose one of {list_envs()}"
            )
        bad = sorted(set(self.policy) & set(_ENV_KEYS))
        if bad:
            raise ValueError(f"{prefix}policy cannot set {bad}: they come from the env")
        bad = sorted(set(self.policy) & set(_LOGPROB_KEYS))
        if bad:
            raise ValueError(
                f"{prefix}policy cannot set {bad}: set them as the top-level keys of the same names"
            )
        low, high = self.logprob_min, self.logprob_max
        for name, value in (("logprob_min", low), ("logprob_max", high)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{prefix}{name}={value!r} must be finite or None")
        if low is not None and high is not None and low >= high:
            raise ValueError(
                f"{prefix}logprob_min={low!r} must be below {prefix}logprob_max={high!r}"
            )
        form = (self.logprob_reduction, low, high)
        if form != ("sum", None, None) and self.algo in ("ppo", "sb3-ppo"):
            raise ValueError(
                f"{prefix}logprob_reduction={self.logprob_reduction!r}, "
                f"{prefix}logprob_min={low!r}, {prefix}logprob_max={high!r} set DPPO's loss; "
                f"algo={self.algo!r} has a Gaussian policy: leave them at 'sum', None, None"
            )
        if self.minibatch_size > self.train_batch_size:
            raise ValueError(
                f"{prefix}minibatch_size={self.minibatch_size} exceeds "
                f"{prefix}train_batch_size={self.train_batch_size}"
            )
        if self.multi_agent == "per_agent" and self.runner == "batched":
            raise ValueError(
                f"{prefix}multi_agent='per_agent' needs {prefix}runner='stock' (the batched "
                "runner serves one shared module)"
            )
        if self.critic_input != "obs" and self.algo != "dppo":
            raise ValueError(
                f"{prefix}critic_input={self.critic_input!r} is implemented for algo='dppo' "
                "only; the other algorithms' critics read 'obs'"
            )
        weight = self.env_config.get("team_reward_weight", 1.0)
        if self.critic_input == "state" and weight != 1.0:
            raise ValueError(
                f"{prefix}critic_input='state' needs the shared team reward, but "
                f"{prefix}env_config['team_reward_weight']={weight!r}: the critic sees only "
                "the global state, not which agent's own share it values; use 'obs+state'"
            )
        for name in ("hidden", "critic_hidden"):
            widths = getattr(self, name)
            if not widths or any(not isinstance(h, int) or h < 1 for h in widths):
                raise ValueError(f"{prefix}{name}={widths!r} must be a non-empty list of ints >= 1")


@dataclass
class TrainResult:
    """What :func:`train` produced.

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


def _device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rewrite a CSV atomically (columns: union of the rows' keys, in first-seen order)."""
    keys: list[str] = []
    for row in rows:
        keys += [k for k in row if k not in keys]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def _read_csv(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        return [
            {k: float(v) if v not in ("", None) else math.nan for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


def _plot(path: Path, x: list[float], ys: dict[str, list[float]], xlabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(ys), figsize=(4.5 * len(ys), 3.2), squeeze=False)
    for ax, (name, values) in zip(axes[0], ys.items()):
        ax.plot(x, values, marker="." if len(x) < 50 else None)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _metadata(config: TrainConfig, **extra: Any) -> dict[str, Any]:
    return {
        "env_id": config.env,
        "env_config": _scenario_overrides(config.env_config),
        "algo": config.algo,
        "sampler": config.sampler,
        "seed": config.seed,
        **extra,
    }


def _evaluate(config: TrainConfig, policy_dir: Path, out: Path) -> dict[str, float] | None:
    from agentcomm.policies.evaluate import evaluate, load_actor

    if config.eval_episodes == 0:
        return None
    device = _device(config.device)
    actor, _ = load_actor(policy_dir, device=device, sampler=config.sampler)
    result = asdict(
        evaluate(
            actor,
            config.env,
            config.eval_episodes,
            num_envs=min(64, config.eval_episodes),
            seed=config.seed,
            env_config=_scenario_overrides(config.env_config),
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


# ---------------------------------------------------------------------- behaviour cloning
def _train_bc(config: TrainConfig, out: Path) -> TrainResult:
    from agentcomm.policies.bc import train_bc
    from agentcomm.policies.demos import collect_demos
    from agentcomm.policies.diffusion import DiffusionConfig, DiffusionPolicy

    device = _device(config.device)
    demos = collect_demos(
        config.env,
        config.demo_steps,
        num_envs=config.demo_envs,
        seed=config.seed,
        device=device,
        env_config=config.env_config,
        progress=config.progress,
    )
    generator = torch.Generator().manual_seed(config.seed)
    policy_cfg = DiffusionConfig.from_dict(
        {**config.policy, "obs_dim": demos.obs.shape[1], "action_dim": demos.actions.shape[1]}
    )
    policy = DiffusionPolicy.from_config(policy_cfg, generator=generator).to(device)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    start = time.perf_counter()
    result = train_bc(
        policy,
        demos.obs.to(device),
        demos.actions.to(device),
        epochs=config.bc_epochs,
        batch_size=config.bc_batch_size,
        lr=config.bc_lr,
        ema_decay=config.bc_ema_decay,
        generator=gen,
        progress=config.progress,
        save_dir=out / "policy",
        save_metadata=_metadata(
            config,
            demos=int(demos.obs.shape[0]),
            expert_success_rate=demos.success_rate,
        ),
    )
    rows = [{"epoch": i + 1, "loss": loss} for i, loss in enumerate(result.losses)]
    _write_csv(out / "bc_loss.csv", rows)
    _plot(out / "bc_loss.png", [r["epoch"] for r in rows], {"BC loss": result.losses}, "epoch")
    try:
        from tensorboardX import SummaryWriter

        with SummaryWriter(str(out / "tb")) as writer:
            for row in rows:
                writer.add_scalar("bc/loss", row["loss"], row["epoch"])
    except ImportError:
        pass
    if config.progress:
        print(
            f"[bc] {demos.obs.shape[0]} demos (expert success {demos.success_rate:.3f}), "
            f"{config.bc_epochs} epochs in {time.perf_counter() - start:.1f}s, "
            f"final loss {result.losses[-1]:.4f}"
        )
    evaluation = _evaluate(config, out / "policy", out)
    return TrainResult(str(out), str(out / "policy"), rows, evaluation)


# ---------------------------------------------------------------------- RLlib
def _rllib_config(config: TrainConfig, pretrained: str | None):
    env_config = dict(config.env_config)  # dppo_config adds the state a critic reads
    device = _device(config.device)
    if device != "cpu":
        env_config["device"] = device
    from agentcomm.envs.adapters.rllib import ENV_PREFIX

    env_name = f"{ENV_PREFIX}{config.env}"
    batched = config.runner == "batched"
    if not batched:
        from agentcomm.envs.adapters.rllib import register_rllib_envs

        register_rllib_envs()
    agent_ids = [f"agent_{i}" for i in range(_num_agents(config))]
    common = dict(
        env_config=env_config,
        num_env_runners=config.num_env_runners,
        num_envs_per_env_runner=config.num_envs,
        num_learners=config.num_learners,
        num_gpus_per_learner=config.num_gpus_per_learner,
        train_batch_size=config.train_batch_size,
        minibatch_size=config.minibatch_size,
        num_epochs=config.num_epochs,
        lr=annealed_lr(
            config.lr, config.iterations * config.train_batch_size, config.lr_anneal_fraction
        ),
        gamma=config.gamma,
        lambda_=config.lambda_,
        vf_clip_param=config.vf_clip_param,
        seed=config.seed,
    )
    if config.algo == "dppo":
        from agentcomm.policies.diffusion import ARCHITECTURE_KEYS
        from agentcomm.policies.dppo import dppo_config

        clip = config.clip_param if config.clip_param is not None else 0.01
        clip_min = config.clip_param_min if config.clip_param_min is not None else clip / 10
        rl_config = dppo_config(
            env_name,
            pretrained=pretrained,
            # The architecture comes from the BC checkpoint; only sampling keys pass on.
            policy={k: v for k, v in config.policy.items() if k not in ARCHITECTURE_KEYS},
            sampler=config.sampler,
            critic_hidden=config.critic_hidden,
            critic_input=config.critic_input,
            multi_agent=None if batched else config.multi_agent,
            agent_ids=agent_ids,
            critic_lr=config.critic_lr,
            clip_param=clip,
            clip_param_min=clip_min,
            gamma_denoise=config.gamma_denoise,
            critic_warmup_steps=config.critic_warmup_iterations * config.train_batch_size,
            logprob_reduction=config.logprob_reduction,
            logprob_min=config.logprob_min,
            logprob_max=config.logprob_max,
            **common,
        )
    else:
        from agentcomm.policies.baselines import gaussian_ppo_config

        mode = {"shared": "shared", "per_agent": "independent"}[config.multi_agent]
        rl_config = gaussian_ppo_config(
            env_name,
            multi_agent=None if batched else mode,
            agent_ids=agent_ids,
            hidden=config.hidden,
            clip_param=config.clip_param if config.clip_param is not None else 0.2,
            entropy_coeff=config.entropy_coeff,
            **common,
        )
    if batched:
        from agentcomm.policies.env_runner import BatchedCommEnvRunner

        rl_config = rl_config.env_runners(env_runner_cls=BatchedCommEnvRunner)
    return rl_config


def _num_agents(config: TrainConfig) -> int:
    from agentcomm.envs import env_class

    cls = env_class(config.env)
    return int(cls.config_cls.from_dict(_scenario_overrides(config.env_config)).num_agents)


def _scenario_overrides(env_config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in env_config.items() if k not in ("centralized_critic", "device")}


def _module_ids(config: TrainConfig) -> list[str]:
    if config.runner == "batched":
        return ["default_policy"]
    if config.multi_agent == "shared":
        return ["shared"]
    return [f"agent_{i}" for i in range(_num_agents(config))]


def _latest_checkpoint(out: Path) -> tuple[int, Path] | None:
    """``(iteration, directory)`` that ``rllib/LATEST.json`` names, or ``None`` without one;
    a damaged pointer, or one naming a missing directory, raises ``ValueError`` naming it."""
    from agentcomm._integrity import read_json_file

    pointer = out / "rllib" / _LATEST
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


#: TrainConfig keys a resumed run may change: how long it runs, what it prints, where it
#: computes and how it is evaluated afterwards. Any other difference from the run's
#: ``train_config.yaml`` would make the checkpoint and its recorded config disagree.
_RESUME_MAY_CHANGE = frozenset(
    {"iterations", "time_budget_s", "progress", "device", "eval_episodes", "eval_split"}
)


def _check_resume(config: TrainConfig, out: Path) -> None:
    """Refuse a resume that would lose or misdescribe a run, before anything is written.

    A resume needs the run's ``train_config.yaml`` and a complete checkpoint (RLlib:
    ``rllib/LATEST.json``; SB3: ``sb3/model.zip``); without one the run would restart from
    iteration 0 and overwrite ``progress.csv`` and the checkpoints. ``config`` may differ
    from the recorded config only in :data:`_RESUME_MAY_CHANGE`.
    """
    recorded = out / "train_config.yaml"
    if not recorded.is_file():
        raise ValueError(
            f"resume: {out} holds no train_config.yaml, so it is not a training run directory "
            "(or not one this run wrote); pass the --out of the run to resume"
        )
    stored = TrainConfig.load(recorded)
    new, old = config.to_dict(), stored.to_dict()
    conflicts = sorted(k for k in new if k not in _RESUME_MAY_CHANGE and new[k] != old.get(k))
    if conflicts:
        detail = ", ".join(f"{k}: run has {old.get(k)!r}, given {new[k]!r}" for k in conflicts)
        raise ValueError(
            f"resume: the overrides conflict with {recorded} ({detail}); a resumed run may "
            f"change only {sorted(_RESUME_MAY_CHANGE)}. Drop those overrides, or start a "
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
    pointer = out / "rllib" / _LATEST
    if _latest_checkpoint(out) is None:
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


def _save_checkpoint(algo: Any, out: Path, iteration: int) -> None:
    root = out / "rllib"
    name = f"iter_{iteration:05d}"
    target = root / name
    if target.exists():
        shutil.rmtree(target)
    # RLlib reads a relative path as a URI without scheme: give it an absolute one.
    algo.save_to_path(str(target.resolve()))
    atomic_write_text(root / _LATEST, json.dumps({"iteration": iteration, "path": name}))
    done = sorted(p for p in root.glob("iter_*") if p.is_dir())
    for old in done[:-_KEEP_CHECKPOINTS]:
        shutil.rmtree(old, ignore_errors=True)


def _row(result: dict[str, Any], iteration: int, seconds: float, ids: list[str]) -> dict[str, Any]:
    er = result.get("env_runners", {})
    row: dict[str, Any] = {
        "iteration": iteration,
        "agent_steps": er.get("num_env_steps_sampled_lifetime", math.nan),
        "world_steps": er.get("world_steps_sampled", math.nan),
        "episode_return_mean": er.get("episode_return_mean", math.nan),
        "success_rate": er.get("episode_success_rate", math.nan),
        "channel_uses_per_agent_step": er.get("channel_uses_per_agent_step", math.nan),
        "episode_len_mean": er.get("episode_len_mean", math.nan),
        "seconds": seconds,
    }
    learners = result.get("learners", {})
    for mid in ids:
        stats = learners.get(mid, {})
        suffix = "" if len(ids) == 1 else f"/{mid}"
        for key in ("policy_loss", "vf_loss", "mean_kl_loss", "vf_explained_var", "entropy"):
            if key in stats:
                row[f"{key}{suffix}"] = float(stats[key])
        # The learning rate RLlib set after this iteration's update (the DPPO actor's, or
        # PPO's one optimizer's): what lr_anneal_fraction makes of lr.
        for key in ("actor_learning_rate", "default_optimizer_learning_rate"):
            if key in stats:
                row[f"lr{suffix}"] = float(stats[key])
    return {k: float(v) for k, v in row.items()}


def _export(algo: Any, config: TrainConfig, out: Path, obs_dim: int) -> Path:
    from agentcomm.policies.baselines import save_gaussian_actor
    from agentcomm.policies.checkpoint import save_policy

    ids = _module_ids(config)
    root = out / "policy"
    for mid in ids:
        module = algo.get_module(mid)
        target = root if len(ids) == 1 else root / mid
        meta = _metadata(config, module_id=mid)
        if config.algo == "dppo":
            save_policy(target, module.policy, meta)
        else:
            save_gaussian_actor(target, "rllib", module, obs_dim, 6, config.hidden, meta)
    return root


def _train_rllib(config: TrainConfig, out: Path, resume: bool) -> TrainResult:
    pretrained = config.pretrained
    if config.algo == "dppo" and pretrained is None:
        bc_out = out / "bc"
        if not (bc_out / "policy" / "config.json").is_file():
            bc_cfg = config.replace(algo="bc", out=str(bc_out), eval_episodes=0)
            bc_out.mkdir(parents=True, exist_ok=True)
            bc_cfg.save(bc_out / "train_config.yaml")
            _train_bc(bc_cfg, bc_out)
        pretrained = str(bc_out / "policy")
    if pretrained is not None:
        from agentcomm.policies.checkpoint import policy_path

        pretrained = os.path.abspath(policy_path(pretrained))
    rl_config = _rllib_config(config, pretrained)
    algo = rl_config.build_algo()
    ids = _module_ids(config)
    history: list[dict[str, Any]] = []
    start_iter = 0
    latest = _latest_checkpoint(out) if resume else None
    if latest is not None:
        start_iter, path = latest
        algo.restore_from_path(str(path.resolve()))
        history = [r for r in _read_csv(out / "progress.csv") if r["iteration"] <= start_iter]
        if config.progress:
            print(f"[resume] from iteration {start_iter} ({path})")
    from tensorboardX import SummaryWriter
    from tqdm.auto import tqdm

    obs_dim = _obs_dim(config)
    writer = SummaryWriter(str(out / "tb"))
    try:
        bar = tqdm(
            range(start_iter, config.iterations),
            desc=config.algo,
            disable=not config.progress,
            initial=start_iter,
            total=config.iterations,
        )
        t_loop = time.perf_counter()
        for it in bar:
            t0 = time.perf_counter()
            result = algo.train()
            row = _row(result, it + 1, time.perf_counter() - t0, ids)
            history.append(row)
            _write_csv(out / "progress.csv", history)
            for key, value in row.items():
                if key != "iteration" and math.isfinite(value):
                    writer.add_scalar(f"train/{key}", value, int(row["agent_steps"]))
            writer.flush()
            _save_checkpoint(algo, out, it + 1)
            bar.set_postfix(
                ret=f"{row['episode_return_mean']:.2f}",
                succ=f"{row['success_rate']:.2f}",
                steps=int(row["agent_steps"]),
            )
            if config.time_budget_s is not None and t0 - t_loop + row["seconds"] > (
                config.time_budget_s
            ):
                break
        policy_dir = _export(algo, config, out, obs_dim)
    finally:
        writer.close()
        algo.stop()
    if history:
        _plot(
            out / "progress.png",
            [r["agent_steps"] for r in history],
            {
                "episode return": [r["episode_return_mean"] for r in history],
                "success rate": [r["success_rate"] for r in history],
            },
            "agent-steps",
        )
    evaluation = _evaluate(config, policy_dir if len(ids) == 1 else out, out)
    return TrainResult(str(out), str(policy_dir), history, evaluation)


def _obs_dim(config: TrainConfig) -> int:
    import agentcomm

    world = agentcomm.make_vec(config.env, num_envs=1, **_scenario_overrides(config.env_config))
    return int(world.obs_dim)


# ---------------------------------------------------------------------- SB3
def _train_sb3(config: TrainConfig, out: Path, resume: bool) -> TrainResult:
    from agentcomm.policies.baselines import save_gaussian_actor, train_sb3_ppo

    # SB3's CSV logger rewrites progress.csv: keep the rows of the run being resumed.
    checkpoint = out / "sb3" / "model.zip"
    earlier = _read_csv(out / "sb3" / "progress.csv") if resume and checkpoint.is_file() else []
    device = _device(config.device)
    n = _num_agents(config)
    n_steps = max(1, math.ceil(config.train_batch_size / (config.num_envs * n)))
    model = train_sb3_ppo(
        config.env,
        env_config=_scenario_overrides(config.env_config),
        total_timesteps=config.iterations * n_steps * config.num_envs * n,
        num_worlds=config.num_envs,
        n_steps=n_steps,
        batch_size=config.minibatch_size,
        n_epochs=config.num_epochs,
        lr=config.lr,
        lr_anneal_fraction=config.lr_anneal_fraction,
        gamma=config.gamma,
        gae_lambda=config.lambda_,
        clip_range=config.clip_param if config.clip_param is not None else 0.2,
        hidden=config.hidden,
        seed=config.seed,
        device=device,
        log_dir=out / "sb3",
        progress=config.progress,
        checkpoint=checkpoint,
        resume=resume,
    )
    policy_dir = save_gaussian_actor(
        out / "policy", "sb3", model.policy, _obs_dim(config), 6, config.hidden, _metadata(config)
    )
    history = earlier + _read_csv(out / "sb3" / "progress.csv")
    if earlier:
        _write_csv(out / "sb3" / "progress.csv", history)
    from tensorboardX import SummaryWriter

    with SummaryWriter(str(out / "tb")) as writer:
        for row in history:
            step = int(row.get("time/total_timesteps", 0))
            for key, value in row.items():
                if math.isfinite(value):
                    writer.add_scalar(key, value, step)
    evaluation = _evaluate(config, policy_dir, out)
    return TrainResult(str(out), str(policy_dir), history, evaluation)


# ---------------------------------------------------------------------- entry point
def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Run one training job (see the module docstring for the output layout).

    Args:
        config: The run's configuration.
        resume: Continue from ``config.out``'s latest complete checkpoint: RLlib's
            (``dppo``, ``ppo``) or SB3's ``sb3/model.zip`` (``sb3-ppo``).

    Returns:
        ``TrainResult``.
    """
    if resume and config.algo == "bc":
        raise ValueError("resume is supported for algo 'dppo', 'ppo' and 'sb3-ppo', not 'bc'")
    out = Path(config.out)
    if resume:
        _check_resume(config, out)  # before train_config.yaml is rewritten
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "train_config.yaml")
    torch.manual_seed(config.seed)
    if config.algo == "bc":
        return _train_bc(config, out)
    if config.algo == "sb3-ppo":
        return _train_sb3(config, out, resume)
    return _train_rllib(config, out, resume)


# ---------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``agentcomm train``: ``--config FILE`` plus overrides of its keys."""
    parser.add_argument("--config", default=None, help="YAML/JSON TrainConfig file")
    parser.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue the run in DIR from its latest complete checkpoint (reads "
        "DIR/train_config.yaml; --iterations may extend it)",
    )
    parser.add_argument("--algo", choices=_ALGOS, default=None)
    parser.add_argument("--env", default=None, help="scenario id")
    parser.add_argument("--out", default=None, help="output directory")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument(
        "--pretrained", default=None, help="BC policy directory or shipped:NAME (dppo)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any TrainConfig key; VALUE is parsed as YAML (repeatable), e.g. "
        "--set bc_epochs=20 --set 'env_config={comm: {budget: 16}}'",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def main(args: argparse.Namespace) -> int:
    """Run ``agentcomm train``."""
    import yaml

    if args.resume is not None:
        recorded = Path(args.resume) / "train_config.yaml"
        if args.config is not None:
            raise ValueError(
                f"--config and --resume exclude each other: a resumed run reads its own {recorded}"
            )
        if args.out is not None and Path(args.out) != Path(args.resume):
            raise ValueError(
                f"--out={args.out!r} conflicts with --resume={args.resume!r}: a run resumes "
                "in its own directory"
            )
        if not recorded.is_file():
            raise ValueError(
                f"--resume={args.resume!r}: {recorded} does not exist; pass the output "
                "directory of the run to resume"
            )
        base = TrainConfig.load(recorded)
    elif args.config is not None:
        base = TrainConfig.load(args.config)
    else:
        base = TrainConfig()
    changes: dict[str, Any] = {}
    for name in ("algo", "env", "out", "seed", "device", "iterations", "pretrained"):
        value = getattr(args, name)
        if value is not None:
            changes[name] = value
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--set {item!r} must look like KEY=VALUE")
        changes[key.strip()] = yaml.safe_load(raw)
    if args.quiet:
        changes["progress"] = False
    if args.resume is not None:
        changes["out"] = args.resume
    config = base.replace(**changes) if changes else base
    result = train(config, resume=args.resume is not None)
    print(f"policy: {result.policy_dir}")
    return 0
