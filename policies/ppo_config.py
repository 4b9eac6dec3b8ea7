"""What DPPO and the Gaussian PPO baseline share: the RLlib ``PPOConfig`` skeleton.

Both algorithms are RLlib's PPO with the same sampling, learner scale-out and batch
settings; they differ in the module, the learner and a few loss settings, which each
builder adds to the config this returns. The shared settings are the keyword arguments of
:func:`ppo_skeleton`, documented and validated there once: each builder forwards its
``**ppo`` keywords with its own defaults (:func:`ppo_settings`), so both give the same
error message for the same bad value. Both builders name their multi-agent modes the same
way (:data:`MULTI_AGENT_MODES`).
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from agentcomm._checks import check_choice, check_positive, check_range

__all__ = [
    "CRITIC_INPUTS",
    "MULTI_AGENT_MODES",
    "PPO_SETTINGS",
    "SHARED_MODULE_ID",
    "LrSchedule",
    "MultiAgentMode",
    "annealed_lr",
    "check_lr",
    "check_multi_agent",
    "multi_agent_policies",
    "ppo_settings",
    "ppo_skeleton",
    "with_state_observations",
]

#: Module id of the parameter-shared policy.
SHARED_MODULE_ID = "shared"

MultiAgentMode = Literal["shared", "per_agent"]
#: ``"shared"``: every agent maps to one module (:data:`SHARED_MODULE_ID`, parameter
#: sharing); ``"per_agent"``: one module per agent id.
MULTI_AGENT_MODES: tuple[str, ...] = MultiAgentMode.__args__
#: Earlier spellings still accepted, with a warning.
_MULTI_AGENT_ALIASES = {"independent": "per_agent"}

#: What the DPPO critic may read: the local observation, the global state, or both. Here
#: rather than in the RLlib module so that ``TrainConfig`` can validate it without Ray.
CRITIC_INPUTS = ("obs", "state", "obs+state")


#: A learning rate, or RLlib's piecewise-linear schedule ``[[timestep, lr], ...]`` (first
#: timestep 0; timesteps are RLlib's lifetime sampled env steps, agent-steps on the batched
#: runner).
LrSchedule = float | list[list[float]]


def annealed_lr(lr: float, total_steps: int, fraction: float) -> LrSchedule:
    """``lr`` held constant, then decayed linearly to 0 over the last ``fraction`` of
    ``total_steps`` sampled steps, as RLlib's schedule format; ``fraction == 0`` returns
    ``lr`` itself (no schedule), ``fraction == 1`` decays it from the first step.

    RLlib sets each optimizer's rate after an update from the lifetime steps sampled so far,
    so the update of iteration ``i`` (1-based) of ``total_steps / n`` steps each runs at the
    schedule's value at ``(i - 1) * total_steps / n``: the last iteration still learns."""
    check_positive("lr", lr)
    check_range("total_steps", total_steps, 1)
    check_range("fraction", fraction, 0.0, 1.0)
    if fraction == 0.0:
        return float(lr)
    start = round((1.0 - fraction) * total_steps)
    points = [[0, float(lr)], [start, float(lr)], [int(total_steps), 0.0]]
    return points[1:] if start == 0 else points


def check_lr(name: str, lr: Any) -> None:
    """A positive learning rate or a valid :data:`LrSchedule`; else ``ValueError``.

    RLlib's ``Scheduler.validate`` checks a schedule's format only (not the signs of its
    rates), and its message does not name the value; this checks both and says so."""
    if not isinstance(lr, list | tuple):
        check_positive(name, lr)
        return
    ok = (
        len(lr) >= 1
        and all(isinstance(p, list | tuple) and len(p) == 2 for p in lr)
        and lr[0][0] == 0
        and all(a[0] <= b[0] for a, b in zip(lr, lr[1:], strict=False))
        and all(float(p[1]) >= 0.0 for p in lr)
        and float(lr[0][1]) > 0.0
    )
    if not ok:
        raise ValueError(
            f"{name}={lr!r} is not allowed; pass a float > 0 or a schedule "
            "[[0, lr0], [t1, lr1], ...] with timesteps from 0, non-decreasing, lr0 > 0 and "
            "every lr >= 0"
        )


def _shared_mapping(agent_id: Any, episode: Any, **kwargs: Any) -> str:
    return SHARED_MODULE_ID


def _per_agent_mapping(agent_id: Any, episode: Any, **kwargs: Any) -> str:
    return str(agent_id)


def ppo_skeleton(
    env: str | type,
    *,
    env_config: Mapping[str, Any] | None = None,
    num_env_runners: int = 0,
    num_envs_per_env_runner: int = 1,
    rollout_fragment_length: int | Literal["auto"] = "auto",
    num_learners: int = 0,
    num_gpus_per_learner: float = 0,
    train_batch_size: int = 2048,
    minibatch_size: int = 256,
    num_epochs: int = 5,
    lr: LrSchedule = 3e-4,
    gamma: float = 0.99,
    lambda_: float = 0.95,
    clip_param: float = 0.2,
    vf_clip_param: float = 1e4,
    vf_loss_coeff: float = 0.5,
    grad_clip: float | None = 0.5,
    seed: int = 0,
):
    """A validated ``PPOConfig`` with the environment, sampling, learner scale-out, batch
    sizes and the PPO loss settings both algorithms take (no KL penalty; the global-norm
    gradient clip).

    Args:
        env: Registered env name (``"agentcomm/<EnvId>"``) or env class.
        env_config: Passed to the env creator (scenario overrides and the adapter's keys,
            :data:`agentcomm.envs.adapters.rllib.ADAPTER_KEYS`).
        num_env_runners, num_envs_per_env_runner, rollout_fragment_length: Sampling.
        num_learners, num_gpus_per_learner: Learner scale-out (0 learners: local learner).
        train_batch_size, minibatch_size, num_epochs: PPO batch sizes (env steps;
            agent-steps on the batched runner); ``train_batch_size`` is the total over
            learners.
        lr: Learning rate, or an RLlib schedule (:data:`LrSchedule`, :func:`annealed_lr`).
        gamma, lambda_: Discount and GAE lambda.
        clip_param: PPO's ratio clip.
        vf_clip_param, vf_loss_coeff: Clamp on each sample's squared value error, and the
            value loss weight. A sample past the clamp gives the critic no gradient, so it
            must exceed the squared scale of the returns.
        grad_clip: Global-norm gradient clip, or ``None``.
        seed: RLlib's seed.
    """
    from ray.rllib.algorithms.ppo import PPOConfig

    check_range("num_env_runners", num_env_runners, 0)
    check_range("num_learners", num_learners, 0)
    check_range("seed", seed, 0)
    for name, value in (
        ("num_envs_per_env_runner", num_envs_per_env_runner),
        ("train_batch_size", train_batch_size),
        ("num_epochs", num_epochs),
    ):
        check_range(name, value, 1)
    check_range("minibatch_size", minibatch_size, 1, train_batch_size)
    check_range("num_gpus_per_learner", num_gpus_per_learner, 0)
    if rollout_fragment_length != "auto":
        check_range("rollout_fragment_length", rollout_fragment_length, 1)
    check_lr("lr", lr)
    for name, value in (("clip_param", clip_param), ("vf_clip_param", vf_clip_param)):
        check_positive(name, value)
    check_range("gamma", gamma, 0.0, 1.0)
    check_range("lambda_", lambda_, 0.0, 1.0)
    check_range("vf_loss_coeff", vf_loss_coeff, 0.0)
    if grad_clip is not None:
        check_positive("grad_clip", grad_clip)
    return (
        PPOConfig()
        .environment(env, env_config=dict(env_config or {}))
        .env_runners(
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=num_envs_per_env_runner,
            rollout_fragment_length=rollout_fragment_length,
        )
        .learners(num_learners=num_learners, num_gpus_per_learner=num_gpus_per_learner)
        .training(
            train_batch_size_per_learner=train_batch_size // max(1, num_learners),
            minibatch_size=minibatch_size,
            num_epochs=num_epochs,
            lr=lr,
            gamma=gamma,
            lambda_=lambda_,
            clip_param=clip_param,
            vf_clip_param=vf_clip_param,
            vf_loss_coeff=vf_loss_coeff,
            grad_clip=grad_clip,
            grad_clip_by="global_norm",
            use_kl_loss=False,
        )
        .debugging(seed=seed)
    )


#: The keyword arguments of :func:`ppo_skeleton` a builder forwards (all but ``env``), with
#: their defaults.
PPO_SETTINGS: dict[str, Any] = {
    name: p.default for name, p in list(inspect.signature(ppo_skeleton).parameters.items())[1:]
}


def ppo_settings(ppo: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """Every setting of :func:`ppo_skeleton`: a builder's ``**ppo`` keywords over its own
    ``defaults`` over the skeleton's; a keyword that is not a setting raises ``ValueError``
    naming it."""
    unknown = sorted(set(ppo) - set(PPO_SETTINGS))
    if unknown:
        raise ValueError(f"unknown PPO setting(s) {unknown}; allowed: {sorted(PPO_SETTINGS)}")
    return {**PPO_SETTINGS, **defaults, **ppo}


def check_multi_agent(multi_agent: str | None) -> MultiAgentMode | None:
    """``None`` or one of :data:`MULTI_AGENT_MODES`; ``"independent"`` (an earlier name of
    ``"per_agent"``) is read as ``"per_agent"`` with a ``FutureWarning``."""
    if multi_agent is None:
        return None
    if multi_agent in _MULTI_AGENT_ALIASES:
        new = _MULTI_AGENT_ALIASES[multi_agent]
        warnings.warn(
            f"multi_agent={multi_agent!r} is deprecated; use multi_agent={new!r}",
            FutureWarning,
            stacklevel=3,
        )
        return new  # type: ignore[return-value]
    return check_choice("multi_agent", multi_agent, MULTI_AGENT_MODES)  # type: ignore[return-value]


def multi_agent_policies(
    multi_agent: MultiAgentMode, agent_ids: Sequence[str] | None
) -> tuple[list[str], Any]:
    """Module ids and the policy mapping function of a multi-agent config:
    ``[SHARED_MODULE_ID]`` for ``"shared"``, one module per agent id for ``"per_agent"``."""
    if multi_agent == "shared":
        return [SHARED_MODULE_ID], _shared_mapping
    if not agent_ids:
        raise ValueError("multi_agent='per_agent' needs agent_ids (e.g. ['agent_0', ...])")
    return [str(a) for a in agent_ids], _per_agent_mapping


def with_state_observations(
    env: str | type, env_config: Mapping[str, Any] | None, critic_input: str
) -> Mapping[str, Any] | None:
    """``env_config`` with ``centralized_critic`` on when a critic on the state needs it (the
    env then returns ``Dict({"obs", "state"})`` observations; ``env`` a registered name).
    """
    from agentcomm.envs.adapters.rllib import ENV_PREFIX

    if critic_input == "obs" or not (isinstance(env, str) and env.startswith(ENV_PREFIX)):
        return env_config
    given = (env_config or {}).get("centralized_critic", True)
    if not given:
        raise ValueError(
            f"env_config['centralized_critic']={given!r} contradicts "
            f"critic_input={critic_input!r}, which reads the global state; leave the key out "
            "(it is set to True)"
        )
    return {**(env_config or {}), "centralized_critic": True}
