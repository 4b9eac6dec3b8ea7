"""Gaussian-policy baselines: RLlib PPO (shared or independent) and stable-baselines3 PPO.

Shape legend: ``B`` worlds, ``N`` agents, ``Do`` observation dim, ``Da = 6`` action dim.

Both learn a diagonal Gaussian policy ``a ~ N(mu_theta(o), diag(sigma_theta(o)^2))`` with
PPO's clipped surrogate (Schulman et al. 2017, Eq. 7) on the per-agent observation: the
from-scratch reference that DPPO fine-tuning is compared against. The world clips sampled
actions to ``[-1, 1]``; the stored (unclipped) sample is what the likelihood is taken of,
as RLlib and SB3 do.

Weights of every baseline are exported to safetensors with a JSON config beside them
(:func:`save_gaussian_actor`, :func:`load_gaussian_actor`), so evaluation never unpickles.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from agentcomm._checks import check_choice, check_range
from agentcomm.io import atomic_write, load_model_tensors, read_model_config, save_model_files
from agentcomm.policies.ppo_config import (
    CRITIC_INPUTS,
    MultiAgentMode,
    annealed_lr,
    check_multi_agent,
    multi_agent_policies,
    ppo_settings,
    ppo_skeleton,
    with_state_observations,
)

__all__ = [
    "GaussianActor",
    "gaussian_ppo_config",
    "load_gaussian_actor",
    "save_gaussian_actor",
    "train_sb3_ppo",
]


def gaussian_ppo_config(
    env: str | type,
    *,
    multi_agent: MultiAgentMode | None = None,
    agent_ids: Sequence[str] | None = None,
    hidden: Sequence[int] = (256, 256),
    entropy_coeff: float = 0.0,
    critic_input: str = "obs",
    **ppo: Any,
):
    """RLlib PPO with its default Gaussian MLP module (separate actor and critic towers).

    With ``critic_input="state"`` or ``"obs+state"`` the critic is MAPPO's centralized
    value function on the world's global state
    (:class:`~agentcomm.policies.central_critic.CentralCriticPPOModule`; the env config gets
    ``centralized_critic``); the actor stays RLlib's default on the agent's observation.

    Args:
        env: Registered env name (``"agentcomm/<EnvId>"``).
        multi_agent: ``None``: single-agent config, one module ``"default_policy"`` (the
            batched runner, where every ``(world, agent)`` is an episode); ``"shared"``:
            every agent of a ``MultiAgentEnv`` maps to module ``"shared"``;
            ``"per_agent"``: one module per id of ``agent_ids``
            (:func:`~agentcomm.policies.ppo_config.check_multi_agent`).
        agent_ids: Agent ids, required for ``"per_agent"``.
        hidden: Hidden widths of the actor and critic MLPs (tanh).
        entropy_coeff: Weight of the policy's entropy bonus.
        critic_input: ``"obs"`` (RLlib's default critic on the agent's observation),
            ``"state"`` or ``"obs+state"`` (a centralized critic, CTDE).
        **ppo: The settings both PPO builders share (``env_config``, sampling, learners,
            batch sizes, ``lr``, ``gamma``, ``lambda_``, ``clip_param``, the value loss,
            ``grad_clip``, ``seed``): see :func:`~agentcomm.policies.ppo_config.ppo_skeleton`,
            whose defaults apply.

    Returns:
        A ``PPOConfig``.
    """
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    multi_agent = check_multi_agent(multi_agent)
    check_range("entropy_coeff", entropy_coeff, 0.0)
    check_choice("critic_input", critic_input, CRITIC_INPUTS)
    hidden = [int(h) for h in hidden]
    if not hidden or min(hidden) < 1:
        raise ValueError(f"hidden={hidden!r} must be a non-empty list of widths >= 1")
    settings = ppo_settings(ppo, {})
    settings["env_config"] = with_state_observations(env, settings["env_config"], critic_input)
    config = ppo_skeleton(env, **settings).training(entropy_coeff=entropy_coeff)
    model = DefaultModelConfig(fcnet_hiddens=hidden, fcnet_activation="tanh", vf_share_layers=False)
    ids, mapping = (
        (None, None) if multi_agent is None else multi_agent_policies(multi_agent, agent_ids)
    )
    if critic_input == "obs":
        config = config.rl_module(model_config=model)
    else:
        from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
        from ray.rllib.core.rl_module.rl_module import RLModuleSpec

        from agentcomm.policies.central_critic import CentralCriticPPOModule

        spec = RLModuleSpec(
            module_class=CentralCriticPPOModule,
            model_config={**asdict(model), "critic_input": critic_input},
        )
        if ids is not None:
            spec = MultiRLModuleSpec(rl_module_specs={mid: spec for mid in ids})
        config = config.rl_module(rl_module_spec=spec)
    if ids is None:
        return config
    return config.multi_agent(policies=set(ids), policy_mapping_fn=mapping)


class GaussianActor(torch.nn.Module):
    """The action of an exported Gaussian policy: its mean, or a draw (``sample``).

    Wraps RLlib's default PPO module (``kind="rllib"``) or an SB3 ``ActorCriticPolicy``
    (``kind="sb3"``) rebuilt from its exported weights.

    Args:
        kind: ``"rllib"`` or ``"sb3"``.
        net: The rebuilt module / policy.
    """

    def __init__(self, kind: Literal["rllib", "sb3"], net: torch.nn.Module) -> None:
        super().__init__()
        self.kind = check_choice("kind", kind, ("rllib", "sb3"))
        self.net = net

    @torch.no_grad()
    def distribution(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mean, std)``, both ``[B, Da]``, of the diagonal Gaussian at ``obs [B, Do]``."""
        if self.kind == "sb3":
            dist = self.net.get_distribution(obs).distribution
            return dist.mean, dist.stddev
        from ray.rllib.core.columns import Columns

        inputs = self.net.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
        mean, log_std = inputs.chunk(2, dim=-1)
        return mean, log_std.exp()

    @torch.no_grad()
    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Mean actions ``[B, Da]`` clipped to ``[-1, 1]`` for observations ``[B, Do]``."""
        return self.distribution(obs)[0].clamp(-1.0, 1.0)

    @torch.no_grad()
    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Actions drawn from the policy, ``mean + std z`` clipped to ``[-1, 1]``, ``[B, Da]``.

        This is the policy the agents ran while training (the batched EnvRunner clips its
        actions the same way); ``generator`` (CPU) is the source of ``z``.
        """
        mean, std = self.distribution(obs)
        z = torch.randn(mean.shape, generator=generator, dtype=mean.dtype).to(mean.device)
        return (mean + std * z).clamp(-1.0, 1.0)


def _rllib_module(obs_dim: int, action_dim: int, hidden: Sequence[int]):
    import gymnasium as gym
    import numpy as np
    from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import (
        DefaultPPOTorchRLModule,
    )
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    return DefaultPPOTorchRLModule(
        observation_space=gym.spaces.Box(-1.0, 1.0, (obs_dim,), np.float32),
        action_space=gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32),
        inference_only=True,
        model_config=asdict(
            DefaultModelConfig(
                fcnet_hiddens=list(hidden), fcnet_activation="tanh", vf_share_layers=False
            )
        ),
    )


def _sb3_policy(obs_dim: int, action_dim: int, hidden: Sequence[int]):
    import gymnasium as gym
    import numpy as np
    from stable_baselines3.common.policies import ActorCriticPolicy

    return ActorCriticPolicy(
        gym.spaces.Box(-1.0, 1.0, (obs_dim,), np.float32),
        gym.spaces.Box(-1.0, 1.0, (action_dim,), np.float32),
        lr_schedule=lambda _: 0.0,
        net_arch={"pi": list(hidden), "vf": list(hidden)},
    )


def save_gaussian_actor(
    path_dir: str | os.PathLike,
    kind: Literal["rllib", "sb3"],
    net: torch.nn.Module,
    obs_dim: int,
    action_dim: int,
    hidden: Sequence[int],
    metadata: Mapping[str, Any] | None = None,
    tensors: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Export a Gaussian policy's weights (``model.safetensors``) and ``config.json``
    (which records the weights' SHA-256, checked by :func:`load_gaussian_actor`).

    Args:
        path_dir: Directory (created).
        kind: ``"rllib"`` (a ``DefaultPPOTorchRLModule``) or ``"sb3"`` (an SB3 policy).
        net: The module / policy whose ``state_dict`` is saved.
        obs_dim, action_dim, hidden: What :func:`load_gaussian_actor` rebuilds it from.
        metadata: Extra JSON-serialisable info (e.g. the training config).
        tensors: The weights to save; ``None``: ``net.state_dict()`` (a centralized critic's
            module passes its actor's, :func:`~agentcomm.policies.central_critic.actor_state_dict`).

    Returns:
        The directory.
    """
    check_choice("kind", kind, ("rllib", "sb3"))
    state = net.state_dict() if tensors is None else tensors
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    meta = {
        "kind": f"gaussian-{kind}",
        "obs_dim": int(obs_dim),
        "action_dim": int(action_dim),
        "hidden": [int(h) for h in hidden],
        "metadata": dict(metadata or {}),
    }
    return save_model_files(path_dir, tensors, meta)


def load_gaussian_actor(path_dir: str | os.PathLike) -> GaussianActor:
    """Rebuild an exported Gaussian policy (see :func:`save_gaussian_actor`), in eval mode.

    A damaged ``config.json`` or weights file (one whose SHA-256 differs from the recorded
    one) raises ``ValueError`` naming the file."""
    path = Path(path_dir)
    meta = read_model_config(path, "policy")
    kind = str(meta.get("kind", ""))
    check_choice("kind", kind, ("gaussian-rllib", "gaussian-sb3"))
    build = _rllib_module if kind == "gaussian-rllib" else _sb3_policy
    net = build(meta["obs_dim"], meta["action_dim"], meta["hidden"])
    state = load_model_tensors(path, meta)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"weights in {str(path)!r} do not fit its config.json: {err}") from err
    actor = GaussianActor(kind.removeprefix("gaussian-"), net)
    return actor.eval()


def _atomic_save(path: Path):
    """An SB3 callback that saves the model after each rollout's update and at the end,
    atomically (:func:`agentcomm.io.atomic_write`). Built here because SB3 is imported
    lazily."""
    from stable_baselines3.common.callbacks import BaseCallback

    class AtomicSave(BaseCallback):
        def _on_step(self) -> bool:
            return True

        def _on_rollout_start(self) -> None:
            # Runs before every rollout; after the first one a new update has just ended.
            if self.model.num_timesteps > 0:
                self._save()

        def _on_training_end(self) -> None:
            self._save()

        def _save(self) -> None:
            # The temporary name ends in ".tmp", so SB3 writes it as given (no ".zip" added).
            atomic_write(path, self.model.save)

    return AtomicSave()


class _AnnealedLr:
    """SB3 learning-rate schedule (a picklable callable of SB3's ``progress_remaining``,
    1 -> 0): :func:`~agentcomm.policies.ppo_config.annealed_lr`'s schedule, read at the
    fraction of training done."""

    _STEPS = 1_000_000  # the schedule's resolution over one run

    def __init__(self, lr: float, fraction: float) -> None:
        check_range("lr_anneal_fraction", fraction, 0.0, 1.0, low_inclusive=False)
        points = annealed_lr(lr, self._STEPS, fraction)
        self.steps = [float(t) for t, _ in points]
        self.rates = [float(v) for _, v in points]

    def __call__(self, progress_remaining: float) -> float:
        done = (1.0 - progress_remaining) * self._STEPS
        return float(np.interp(done, self.steps, self.rates))


def train_sb3_ppo(
    env_id: str,
    *,
    env_config: Mapping[str, Any] | None = None,
    total_timesteps: int,
    num_worlds: int = 16,
    n_steps: int = 32,
    batch_size: int = 256,
    n_epochs: int = 5,
    lr: float = 3e-4,
    lr_anneal_fraction: float = 0.0,
    gamma: float = 0.99,
    gae_lambda: float = 0.95,
    clip_range: float = 0.2,
    hidden: Sequence[int] = (256, 256),
    seed: int = 0,
    device: str = "cpu",
    log_dir: str | os.PathLike | None = None,
    progress: bool = False,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
):
    """Train stable-baselines3 PPO with parameter sharing over ``B * N`` (world, agent) slots.

    Args:
        env_id: Scenario id.
        env_config: Scenario overrides.
        total_timesteps: Agent-steps to train for (SB3 counts each slot's step).
        num_worlds: ``B``; SB3 sees ``B * N`` envs.
        n_steps: Steps per slot per rollout (rollout = ``n_steps * B * N`` agent-steps).
        batch_size, n_epochs, lr, gamma, gae_lambda, clip_range: PPO hyperparameters.
        lr_anneal_fraction: ``lr`` decays linearly to 0 over this last fraction of
            ``total_timesteps`` (0: constant), as :func:`~agentcomm.policies.ppo_config.
            annealed_lr` does for RLlib.
        hidden: Actor and critic MLP widths.
        seed: Seeds SB3 and the world.
        device: Torch device of the policy and the world.
        log_dir: SB3's CSV log (``progress.csv``) goes here when given (SB3's TensorBoard
            writer needs the ``tensorboard`` package, which is not a dependency).
        progress: SB3's progress bar (needs ``rich``; falls back silently when absent).
        checkpoint: ``.zip`` path SB3 saves the model (policy, optimizer, step count) to
            after every rollout's update, atomically (written beside, then renamed), so a
            killed run loses at most one rollout.
        resume: Continue from ``checkpoint`` when it exists, up to ``total_timesteps`` in
            all. The policy, optimizer and step count carry on; the worlds and SB3's
            rollout buffer start afresh (seeded with ``seed`` plus the steps done), so a
            resumed run is not bit-identical to an uninterrupted one.

    Returns:
        The trained ``stable_baselines3.PPO``.
    """
    from stable_baselines3 import PPO
    from stable_baselines3.common.logger import configure
    from stable_baselines3.common.vec_env import VecMonitor

    from agentcomm.envs.adapters.sb3 import SB3ParameterSharingVecEnv

    check_range("total_timesteps", total_timesteps, 1)
    check_range("num_worlds", num_worlds, 1)
    if resume and checkpoint is None:
        raise ValueError("resume=True needs a checkpoint path")
    path = Path(checkpoint) if checkpoint is not None else None
    venv = SB3ParameterSharingVecEnv(
        env_id, num_worlds=num_worlds, device=device, **dict(env_config or {})
    )
    if resume and path is not None and path.is_file():
        model = PPO.load(path, env=VecMonitor(venv), device=device)
        venv.seed(seed + model.num_timesteps)
    else:
        venv.seed(seed)
        model = PPO(
            "MlpPolicy",
            VecMonitor(venv),
            n_steps=n_steps,
            batch_size=batch_size,
            n_epochs=n_epochs,
            learning_rate=_AnnealedLr(lr, lr_anneal_fraction) if lr_anneal_fraction else lr,
            gamma=gamma,
            gae_lambda=gae_lambda,
            clip_range=clip_range,
            policy_kwargs={"net_arch": {"pi": list(hidden), "vf": list(hidden)}},
            seed=seed,
            device=device,
            verbose=0,
        )
    if log_dir is not None:
        model.set_logger(configure(str(log_dir), ["csv"]))
    try:
        import rich  # noqa: F401

        bar = progress
    except ImportError:
        bar = False
    remaining = total_timesteps - model.num_timesteps
    if remaining > 0:
        model.learn(
            total_timesteps=remaining,
            progress_bar=bar,
            reset_num_timesteps=False,
            callback=_atomic_save(path) if path is not None else None,
        )
    return model
