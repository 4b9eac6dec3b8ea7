"""The configuration of one training run (:class:`TrainConfig`) and what it implies.

:class:`TrainConfig` is a typed :class:`~agentcomm.config.Config` (YAML/JSON round trip;
unknown keys and bad values raise ``ValueError`` naming the key by its dotted path). It has
a common part (what to train, on which scenario, where to write, how to evaluate) and one
section per group of algorithms, so that each setting sits where it means something:

============  ===================================  =======================================
section       read by                              settings
============  ===================================  =======================================
``bc``        ``bc``; ``dppo`` without             expert demonstrations and the
              ``dppo.pretrained`` (its BC stage)   behaviour-cloning loop
``ppo``       ``dppo``, ``ppo``, ``sb3-ppo``       the PPO loop: iterations, sizes, actor
                                                   learning rate and its schedule,
                                                   returns (``gamma``, ``lambda_``), clip
``rllib``     ``dppo``, ``ppo``                    RLlib: env runner, multi-agent mapping,
                                                   scale-out, value clip, time budget
``dppo``      ``dppo``                             starting policy, critic, per-step clip,
                                                   denoising discount, likelihood form
``gaussian``  ``ppo``, ``sb3-ppo``                 the Gaussian MLP policy
============  ===================================  =======================================

Every section is present in every config (at its defaults when not set); a section the
run's algorithm does not read is not used. Settings that ask a run for something its
algorithm does not implement are refused (a centralized critic or DPPO's likelihood form
for a Gaussian policy, an entropy bonus for SB3 PPO).

Overrides name a section's key by its dotted path: ``--set dppo.critic_lr=1e-3``, or
``{"dppo": {"critic_lr": 1e-3}}`` in a file. The flat keys of earlier versions (``lr``,
``bc_epochs``, ``critic_lr``, ...; the recorded ``train_config.yaml`` of older run
directories holds them) are read through :data:`LEGACY_KEYS` with a ``FutureWarning``
naming each key's new place; an old key and its new key given different values raise a
``ValueError`` naming both.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from agentcomm.config import Config, choices, rng
from agentcomm.policies.ppo_config import CRITIC_INPUTS

__all__ = [
    "ALGOS",
    "BCSettings",
    "SECTIONS",
    "DPPOSettings",
    "GaussianSettings",
    "LEGACY_KEYS",
    "PPOSettings",
    "RLlibSettings",
    "TrainConfig",
    "module_ids",
    "num_agents",
    "scenario_obs_dim",
    "resolve_device",
    "scenario_overrides",
    "upgrade_legacy_keys",
]

#: Training algorithms: behaviour cloning, DPPO fine-tuning, Gaussian PPO (RLlib), SB3 PPO.
ALGOS = ("bc", "dppo", "ppo", "sb3-ppo")
#: DiffusionConfig keys a TrainConfig's ``policy`` dict may not set (they come from the env).
_ENV_KEYS = ("obs_dim", "action_dim")
#: DiffusionConfig keys set by the ``dppo`` section's fields of the same names (DPPO's loss).
_LOGPROB_KEYS = ("logprob_reduction", "logprob_min", "logprob_max")


def _check_widths(name: str, widths: list[int]) -> None:
    if not widths or any(not isinstance(h, int) or h < 1 for h in widths):
        raise ValueError(f"{name}={widths!r} must be a non-empty list of ints >= 1")


@dataclass
class BCSettings(Config):
    """Expert demonstrations and behaviour cloning (``algo="bc"``, and the BC stage of a
    ``dppo`` run without ``dppo.pretrained``)."""

    demo_steps: int = field(default=64, metadata=rng(1, None))
    """World steps per world of expert demonstrations."""
    demo_envs: int = field(default=64, metadata=rng(1, None))
    """Worlds collecting demonstrations in parallel (rows = demo_steps * demo_envs * N)."""
    epochs: int = field(default=50, metadata=rng(1, None))
    """Passes over the demonstrations."""
    batch_size: int = field(default=1024, metadata=rng(1, None))
    lr: float = field(default=1e-3, metadata=rng(0.0, None, low_inclusive=False))
    """AdamW learning rate of the denoiser."""
    ema_decay: float = field(default=0.99, metadata=rng(0.0, 1.0, high_inclusive=False))
    """Decay of the exponential moving average of the weights (the saved policy)."""
    dagger_rounds: int = field(default=0, metadata=rng(0, None))
    """DAgger rounds after behaviour cloning: each runs the current policy for ``demo_steps``
    steps in ``demo_envs`` worlds, labels every state with the expert's action, adds them to
    the data and trains ``dagger_epochs`` more passes (0: plain behaviour cloning)."""
    dagger_epochs: int = field(default=20, metadata=rng(1, None))
    """Passes over the aggregated data after each DAgger round."""
    modes: tuple[str, ...] | None = None
    """Coordination modes to demonstrate in (``comm.mode`` values, each at most once): the
    ``demo_envs`` worlds of every collection are split evenly between them, so a policy that
    observes its operating point (``observe_operating_point``: the mode one-hot) is cloned
    in every mode it will be run in. None: the scenario config's mode only."""
    expert: str = "default"
    """The teacher that demonstrates and labels (DAgger): the scenario's expert
    (``"default"``) or one of its named variants (:func:`agentcomm.envs.experts.expert_variants`,
    e.g. IntentCoverage-v0's ``"on_demand"``, event-triggered messages). Checked against the
    scenario by :class:`TrainConfig`."""

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        if self.modes is None:
            return
        from agentcomm.topology import COORDINATION_MODES

        bad = [m for m in self.modes if m not in COORDINATION_MODES]
        if not self.modes or bad or len(set(self.modes)) != len(self.modes):
            raise ValueError(
                f"{prefix}modes={list(self.modes)!r} is not allowed; expected null or a "
                f"non-empty list of distinct modes from {list(COORDINATION_MODES)}"
            )
        if self.demo_envs < len(self.modes):
            raise ValueError(
                f"{prefix}demo_envs={self.demo_envs} is fewer than the {len(self.modes)} "
                f"modes of {prefix}modes; each mode needs at least one world"
            )


@dataclass
class PPOSettings(Config):
    """The PPO loop every reinforcement-learning algorithm runs (``dppo``, ``ppo``,
    ``sb3-ppo``)."""

    iterations: int = field(default=10, metadata=rng(1, None))
    """Training iterations of ``train_batch_size`` agent-steps each (an upper bound when
    ``rllib.time_budget_s`` is set)."""
    num_envs: int = field(default=32, metadata=rng(1, None))
    """Worlds per env runner (batched runner, SB3) or sub-envs per env runner (stock)."""
    train_batch_size: int = field(default=4096, metadata=rng(1, None))
    """Agent-steps per iteration (world steps x N)."""
    minibatch_size: int = field(default=1024, metadata=rng(1, None))
    num_epochs: int = field(default=5, metadata=rng(1, None))
    lr: float = field(default=1e-4, metadata=rng(0.0, None, low_inclusive=False))
    """Actor learning rate (dppo), learning rate (ppo, sb3-ppo). DPPO's per-denoising-step
    likelihood ratios are sensitive to it: too large a step moves them far outside the clip
    range in one Adam update."""
    lr_anneal_fraction: float = field(default=0.0, metadata=rng(0.0, 1.0))
    """``lr`` is held, then decays linearly to 0 over this last fraction of
    ``iterations * train_batch_size`` sampled steps; 0 keeps it constant, 1 is the linear
    decay from the start. The schedule is set by ``iterations``: a resumed run given more
    iterations follows the longer one."""
    gamma: float = field(default=0.99, metadata=rng(0.0, 1.0))
    lambda_: float = field(default=0.95, metadata=rng(0.0, 1.0))
    clip_param: float | None = field(default=None, metadata=rng(0.0, None, low_inclusive=False))
    """PPO clip; None: 0.01 for dppo (its last denoising step), 0.2 for ppo / sb3-ppo."""

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        if self.minibatch_size > self.train_batch_size:
            raise ValueError(
                f"{prefix}minibatch_size={self.minibatch_size} exceeds "
                f"{prefix}train_batch_size={self.train_batch_size}"
            )


@dataclass
class RLlibSettings(Config):
    """How the RLlib algorithms (``dppo``, ``ppo``) sample, scale and stop."""

    runner: str = field(default="batched", metadata=choices("batched", "stock"))
    """Env runner: the batched torch runner, or RLlib's MultiAgentEnvRunner on the adapter."""
    multi_agent: str = field(default="shared", metadata=choices("shared", "per_agent"))
    """One policy for all agents, or one per agent (needs ``runner="stock"``)."""
    num_env_runners: int = field(default=0, metadata=rng(0, None))
    num_learners: int = field(default=0, metadata=rng(0, None))
    num_gpus_per_learner: float = field(default=0.0, metadata=rng(0.0, None))
    vf_clip_param: float = field(default=1e4, metadata=rng(0.0, None, low_inclusive=False))
    """Clamp on each sample's squared value error. A sample past it gives the critic no
    gradient: RLlib's default of 10 stops the critic once returns err by more than 3.2,
    which on SearchRescue-v0 (returns of 5-30) is nearly every sample."""
    time_budget_s: float | None = field(default=None, metadata=rng(0.0, None, low_inclusive=False))
    """Stop after the first iteration that ends past this many seconds of training (this
    run only, not counting a resumed run's earlier time); None: no limit.
    ``ppo.iterations`` stays an upper bound."""

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        if self.multi_agent == "per_agent" and self.runner == "batched":
            raise ValueError(
                f"{prefix}multi_agent='per_agent' needs {prefix}runner='stock' (the batched "
                "runner serves one shared module)"
            )


@dataclass
class DPPOSettings(Config):
    """DPPO fine-tuning of a diffusion policy (``algo="dppo"``)."""

    pretrained: str | None = None
    """BC policy directory, or ``"shipped:NAME"`` (e.g. ``"shipped:searchrescue-bc"``);
    None trains one first (into OUT/bc, with the ``bc`` section)."""
    critic_lr: float = field(default=1e-3, metadata=rng(0.0, None, low_inclusive=False))
    critic_hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Critic MLP widths."""
    critic_input: str = field(default="obs", metadata=choices(*CRITIC_INPUTS))
    """What the critic reads: the agent's observation, the world's global state
    (centralized critic), or both (agent-specific centralized critic)."""
    critic_warmup_iterations: int = field(default=0, metadata=rng(0, None))
    """Iterations at the start during which only the critic is trained."""
    clip_param_min: float | None = field(default=None, metadata=rng(0.0, None, low_inclusive=False))
    """Clip at the first fine-tuned denoising step (``ppo.clip_param`` is the last one's);
    None: a tenth of the last one's."""
    gamma_denoise: float = field(default=0.99, metadata=rng(0.0, 1.0, low_inclusive=False))
    """Discount across the denoising steps of one environment step."""
    logprob_reduction: str = field(default="sum", metadata=choices("sum", "mean"))
    """Each denoising step's log-likelihood in the PPO ratio, over the ``D`` dimensions of
    its latent (``D = 6``, one action): ``sum`` (the Gaussian log-density; every recipe
    here was tuned with it) or ``mean`` (the DPPO reference implementation's form, whose
    ratio is the ``D``-th root of the sum's: a given clip then allows ``D`` times larger
    per-dimension changes). See :mod:`~agentcomm.policies.dppo_learner`."""
    logprob_min: float | None = None
    """Floor on each dimension's log-density before the reduction (the reference: -5,
    with ``mean``); None: no floor."""
    logprob_max: float | None = None
    """Ceiling on each dimension's log-density (the reference: 2); None: none."""

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        _check_widths(f"{prefix}critic_hidden", self.critic_hidden)
        low, high = self.logprob_min, self.logprob_max
        for name, value in (("logprob_min", low), ("logprob_max", high)):
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{prefix}{name}={value!r} must be finite or None")
        if low is not None and high is not None and low >= high:
            raise ValueError(
                f"{prefix}logprob_min={low!r} must be below {prefix}logprob_max={high!r}"
            )

    @property
    def default_loss(self) -> bool:
        """Whether the likelihood form is the default (the Gaussian log-density, unclamped)."""
        return (self.logprob_reduction, self.logprob_min, self.logprob_max) == ("sum", None, None)


@dataclass
class GaussianSettings(Config):
    """The Gaussian MLP policy of ``ppo`` and ``sb3-ppo``."""

    hidden: list[int] = field(default_factory=lambda: [256, 256])
    """Actor and critic MLP widths."""
    entropy_coeff: float = field(default=0.0, metadata=rng(0.0, None))
    """Entropy bonus (RLlib's ``ppo``; ``sb3-ppo`` has none)."""
    critic_input: str = field(default="obs", metadata=choices(*CRITIC_INPUTS))
    """What RLlib ``ppo``'s critic reads: ``"obs"`` (RLlib's default, the agent's
    observation), ``"state"`` (MAPPO's centralized critic on the global state) or
    ``"obs+state"`` (:mod:`agentcomm.policies.central_critic`); ``sb3-ppo`` reads ``"obs"``."""

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        _check_widths(f"{prefix}hidden", self.hidden)


#: Section name -> its settings class, in the order the sections are written.
SECTIONS: dict[str, type[Config]] = {
    "bc": BCSettings,
    "ppo": PPOSettings,
    "rllib": RLlibSettings,
    "dppo": DPPOSettings,
    "gaussian": GaussianSettings,
}

#: The flat keys of earlier versions -> the dotted key that replaces each. The one table
#: through which old configs, recorded ``train_config.yaml`` files and ``--set`` keys load.
LEGACY_KEYS: dict[str, str] = {
    "demo_steps": "bc.demo_steps",
    "demo_envs": "bc.demo_envs",
    "bc_epochs": "bc.epochs",
    "bc_batch_size": "bc.batch_size",
    "bc_lr": "bc.lr",
    "bc_ema_decay": "bc.ema_decay",
    "iterations": "ppo.iterations",
    "num_envs": "ppo.num_envs",
    "train_batch_size": "ppo.train_batch_size",
    "minibatch_size": "ppo.minibatch_size",
    "num_epochs": "ppo.num_epochs",
    "lr": "ppo.lr",
    "lr_anneal_fraction": "ppo.lr_anneal_fraction",
    "gamma": "ppo.gamma",
    "lambda_": "ppo.lambda_",
    "clip_param": "ppo.clip_param",
    "runner": "rllib.runner",
    "multi_agent": "rllib.multi_agent",
    "num_env_runners": "rllib.num_env_runners",
    "num_learners": "rllib.num_learners",
    "num_gpus_per_learner": "rllib.num_gpus_per_learner",
    "vf_clip_param": "rllib.vf_clip_param",
    "time_budget_s": "rllib.time_budget_s",
    "pretrained": "dppo.pretrained",
    "critic_lr": "dppo.critic_lr",
    "critic_hidden": "dppo.critic_hidden",
    "critic_input": "dppo.critic_input",
    "critic_warmup_iterations": "dppo.critic_warmup_iterations",
    "clip_param_min": "dppo.clip_param_min",
    "gamma_denoise": "dppo.gamma_denoise",
    "logprob_reduction": "dppo.logprob_reduction",
    "logprob_min": "dppo.logprob_min",
    "logprob_max": "dppo.logprob_max",
    "hidden": "gaussian.hidden",
    "entropy_coeff": "gaussian.entropy_coeff",
}


def upgrade_legacy_keys(data: Mapping[str, Any], *, stacklevel: int = 2) -> dict[str, Any]:
    """``data`` (a TrainConfig mapping) with its flat keys of earlier versions moved to
    their sections (:data:`LEGACY_KEYS`), warning once (``FutureWarning``) with each old
    key and its new one.

    Raises:
        ValueError: An old key and its new dotted key are both given, with different values;
            both are named.
    """
    out = dict(data)
    moved: list[str] = []
    for old in [k for k in data if k in LEGACY_KEYS]:
        new = LEGACY_KEYS[old]
        section, name = new.split(".")
        value = out.pop(old)
        target = out.get(section)
        if isinstance(target, Config):
            target = target.to_dict()
        if target is None:
            target = {}
        if not isinstance(target, Mapping):
            raise ValueError(
                f"{old}={value!r} is the old name of {new}, but {section}={target!r} is not "
                f"a mapping of {section} settings"
            )
        target = dict(target)
        if name in target and target[name] != value:
            raise ValueError(
                f"{old}={value!r} (the old name of {new}) conflicts with "
                f"{new}={target[name]!r}; set {new} only"
            )
        target[name] = value
        out[section] = target
        moved.append(f"{old} -> {new}")
    if moved:
        warnings.warn(
            f"TrainConfig keys renamed: {', '.join(moved)}; write the new keys (the old ones "
            "will be refused in a future release)",
            FutureWarning,
            stacklevel=stacklevel,
        )
    return out


def _home_of(key: str) -> str | None:
    """Where ``key`` lives in a TrainConfig, as a dotted path (``None``: nowhere)."""
    if key in LEGACY_KEYS:
        return LEGACY_KEYS[key]
    for section, cls in SECTIONS.items():
        if key in {f.name for f in fields(cls)}:
            return f"{section}.{key}"
    if key in {f.name for f in fields(TrainConfig)}:
        return key
    return None


def _check_section_keys(data: Mapping[str, Any]) -> None:
    """Refuse a key set in the wrong section, naming the key where it belongs."""
    for section, cls in SECTIONS.items():
        given = data.get(section)
        if not isinstance(given, Mapping):
            continue
        allowed = sorted(f.name for f in fields(cls))
        for key in given:
            if key in allowed:
                continue
            home = _home_of(str(key))
            hint = ""
            if home is not None and "." in home:
                hint = f" ({key} belongs in {home})"
            elif home is not None:
                hint = f" ({key} is a top-level key)"
            raise ValueError(
                f"unknown config key(s) ['{section}.{key}'] in {section}{hint}; allowed: {allowed}"
            )


@dataclass
class TrainConfig(Config):
    """Everything one training run needs; unknown keys and bad values raise ``ValueError``.

    The common fields come first, then one section per group of algorithms (see the module
    docstring). Build it from a mapping with :meth:`from_dict` / :meth:`load` (which also
    read the flat keys of earlier versions) or from section instances::

        TrainConfig(algo="dppo", dppo=DPPOSettings(pretrained="shipped:searchrescue-bc"))
    """

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
    policy: dict[str, Any] = field(default_factory=dict)
    """DiffusionConfig fields of a diffusion policy (architecture for bc; sampling fields
    such as ft_denoising_steps or min_sampling_std for dppo)."""
    sampler: str = field(default="ddim", metadata=choices("ddpm", "ddim"))
    """Diffusion chain used for fine-tuning and evaluation."""
    eval_episodes: int = field(default=64, metadata=rng(0, None))
    """Deterministic evaluation episodes after training (0: skip)."""
    eval_split: str = field(default="selection", metadata=choices("selection", "evaluation"))
    """World-seed split of that evaluation (:mod:`agentcomm.worlds`, seed index ``seed``):
    ``selection`` for runs whose figure chooses anything (sweeps, recipes, checkpoints),
    ``evaluation`` only for a final reported figure."""

    bc: BCSettings = field(default_factory=BCSettings)
    ppo: PPOSettings = field(default_factory=PPOSettings)
    rllib: RLlibSettings = field(default_factory=RLlibSettings)
    dppo: DPPOSettings = field(default_factory=DPPOSettings)
    gaussian: GaussianSettings = field(default_factory=GaussianSettings)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None = None, _prefix: str = "") -> TrainConfig:
        """Build from a (nested) mapping; flat keys of earlier versions are moved to their
        sections (:func:`upgrade_legacy_keys`), a key in the wrong section is refused
        naming where it belongs, unknown keys raise ``ValueError`` naming them."""
        if isinstance(data, Mapping) and not _prefix:
            data = upgrade_legacy_keys(data, stacklevel=3)
            _check_section_keys(data)
        return super().from_dict(data, _prefix)

    def replace(self, **changes: Any) -> TrainConfig:
        """A copy with ``changes`` applied (section mappings merge into the sections; flat
        keys of earlier versions are moved to their sections first)."""
        return super().replace(**upgrade_legacy_keys(changes, stacklevel=3))

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
                f"{prefix}policy cannot set {bad}: set them as {[f'{prefix}dppo.{k}' for k in bad]}"
            )
        from agentcomm.envs.experts import expert_variants

        variants = expert_variants(self.env)
        if self.bc.expert not in variants:
            raise ValueError(
                f"{prefix}bc.expert={self.bc.expert!r} is not allowed for env={self.env!r}; "
                f"choose one of {list(variants)}"
            )
        dppo = self.dppo
        if not dppo.default_loss and self.algo in ("ppo", "sb3-ppo"):
            raise ValueError(
                f"{prefix}dppo.logprob_reduction={dppo.logprob_reduction!r}, "
                f"{prefix}dppo.logprob_min={dppo.logprob_min!r}, "
                f"{prefix}dppo.logprob_max={dppo.logprob_max!r} set DPPO's loss; "
                f"algo={self.algo!r} has a Gaussian policy: leave them at 'sum', None, None"
            )
        # BC trains no critic: a ``dppo`` run's BC stage (its config with algo="bc") keeps
        # the critic settings of the run.
        if dppo.critic_input != "obs" and self.algo in ("ppo", "sb3-ppo"):
            raise ValueError(
                f"{prefix}dppo.critic_input={dppo.critic_input!r} is implemented for "
                "algo='dppo' only; the other algorithms' critics read 'obs'"
            )
        gaussian = self.gaussian
        if gaussian.critic_input != "obs" and self.algo in ("dppo", "sb3-ppo"):
            raise ValueError(
                f"{prefix}gaussian.critic_input={gaussian.critic_input!r} is implemented for "
                "algo='ppo' only; set dppo.critic_input for 'dppo' ('sb3-ppo' reads 'obs')"
            )
        weight = self.env_config.get("team_reward_weight", 1.0)
        key = "dppo" if self.algo == "dppo" else "gaussian"
        critic = dppo.critic_input if self.algo == "dppo" else gaussian.critic_input
        if critic == "state" and weight != 1.0:
            raise ValueError(
                f"{prefix}{key}.critic_input='state' needs the shared team reward, but "
                f"{prefix}env_config['team_reward_weight']={weight!r}: the critic sees only "
                "the global state, not which agent's own share it values; use 'obs+state'"
            )
        if self.algo == "sb3-ppo" and self.gaussian.entropy_coeff != 0.0:
            raise ValueError(
                f"{prefix}gaussian.entropy_coeff={self.gaussian.entropy_coeff!r} is "
                "implemented for algo='ppo' only; algo='sb3-ppo' trains without an entropy "
                "bonus: leave it at 0.0"
            )


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
    if config.rllib.runner == "batched":
        return ["default_policy"]
    if config.rllib.multi_agent == "shared":
        return ["shared"]
    return [f"agent_{i}" for i in range(num_agents(config))]


def scenario_obs_dim(config: TrainConfig) -> int:
    """Observation size ``Do`` of the run's scenario, with its overrides."""
    import agentcomm

    world = agentcomm.make_vec(config.env, num_envs=1, **scenario_overrides(config.env_config))
    return int(world.obs_dim)
