"""The configuration of one training run (:class:`TrainConfig`) and what it implies.

:class:`TrainConfig` is a typed :class:`~agentcomm.config.Config` (YAML/JSON round trip;
unknown keys and bad values raise ``ValueError`` naming the key); the helpers below derive
from it what several training loops need (agent count, module ids, observation size,
device).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from agentcomm.config import Config, choices, rng
from agentcomm.policies.ppo_common import CRITIC_INPUTS

__all__ = [
    "ALGOS",
    "TrainConfig",
    "module_ids",
    "num_agents",
    "scenario_obs_dim",
    "resolve_device",
    "scenario_overrides",
]

#: Training algorithms: behaviour cloning, DPPO fine-tuning, Gaussian PPO (RLlib), SB3 PPO.
ALGOS = ("bc", "dppo", "ppo", "sb3-ppo")
#: DiffusionConfig keys a TrainConfig's ``policy`` dict may not set (they come from the env).
_ENV_KEYS = ("obs_dim", "action_dim")
#: DiffusionConfig keys set by TrainConfig's own fields of the same names (DPPO's loss form).
_LOGPROB_KEYS = ("logprob_reduction", "logprob_min", "logprob_max")


@dataclass
class TrainConfig(Config):
    """Everything one training run needs; unknown keys and bad values raise ``ValueError``."""

    algo: str = field(default="bc", metadata=choices(*ALGOS))
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
    """Actor learning rate (dppo), learning rate (ppo, sb3-ppo). DPPO's per-denoising-step
    likelihood ratios are sensitive to it: too large a step moves them far outside the clip
    range in one Adam update."""
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


def resolve_device(name: str) -> str:
    """``"auto"`` -> ``"cuda"`` when available, else ``"cpu"``; other names unchanged."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def scenario_overrides(env_config: dict[str, Any]) -> dict[str, Any]:
    """``env_config`` without the RLlib adapter's own keys (:data:`ADAPTER_KEYS`): the
    scenario's config overrides."""
    from agentcomm.envs.adapters.rllib import ADAPTER_KEYS

    return {k: v for k, v in env_config.items() if k not in ADAPTER_KEYS}


def num_agents(config: TrainConfig) -> int:
    """Agents in the run's scenario, with its overrides."""
    from agentcomm.envs import env_class

    cls = env_class(config.env)
    return int(cls.config_cls.from_dict(scenario_overrides(config.env_config)).num_agents)


def module_ids(config: TrainConfig) -> list[str]:
    """RLlib module ids the run trains: one shared module, or one per agent."""
    if config.runner == "batched":
        return ["default_policy"]
    if config.multi_agent == "shared":
        return ["shared"]
    return [f"agent_{i}" for i in range(num_agents(config))]


def scenario_obs_dim(config: TrainConfig) -> int:
    """Observation size ``Do`` of the run's scenario, with its overrides."""
    import agentcomm

    world = agentcomm.make_vec(config.env, num_envs=1, **scenario_overrides(config.env_config))
    return int(world.obs_dim)
