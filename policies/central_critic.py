"""RLlib's default Gaussian PPO actor with a centralized critic (MAPPO-style CTDE).

The Gaussian PPO baseline (:func:`~agentcomm.policies.gaussian_ppo.gaussian_ppo_config`) keeps
RLlib's own actor, :class:`DefaultPPOTorchRLModule`'s encoder and policy head on the agent's
observation, so the exported actor is exactly the one the obs-critic baseline exports
(:func:`~agentcomm.policies.gaussian_ppo.load_gaussian_actor` rebuilds both). Only the
value function changes: an MLP (the actor's widths, tanh) on the world's global state
(``critic_input="state"``, MAPPO's centralized value function, Yu et al. 2022) or on the
agent's observation and the global state (``"obs+state"``, MAPPO's agent-specific state),
read from the env's ``Dict({"obs", "state"})`` observations (``centralized_critic``). The
actor never sees the state, so execution stays decentralized.

The default module's own critic is built too (its catalog builds both towers) but never
called; it gets no gradients, and neither critic is exported (:func:`actor_state_dict`).

Shape legend: ``B`` batch, ``Do`` observation dim, ``Ds`` state dim.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import torch
from ray.rllib.algorithms.ppo.torch.default_ppo_torch_rl_module import DefaultPPOTorchRLModule
from ray.rllib.core.columns import Columns

from agentcomm._checks import check_choice

__all__ = ["CENTRAL_CRITIC_INPUTS", "CentralCriticPPOModule", "actor_state_dict"]

#: The critic inputs of :class:`CentralCriticPPOModule`.
CENTRAL_CRITIC_INPUTS = ("state", "obs+state")


def _check_space(space: Any) -> gym.spaces.Dict:
    if not (isinstance(space, gym.spaces.Dict) and set(space.spaces) == {"obs", "state"}):
        raise ValueError(
            f"observation_space={space!r} is not allowed; a centralized critic needs the "
            "env's Dict({'obs', 'state'}) observations (env_config centralized_critic=True)"
        )
    return space


class CentralCriticPPOModule(DefaultPPOTorchRLModule):
    """:class:`DefaultPPOTorchRLModule` on ``obs["obs"]`` with a value function on the state.

    ``model_config``: RLlib's default model config (``fcnet_hiddens``, ``fcnet_activation``,
    ``vf_share_layers=False``) plus ``"critic_input"``: ``"state"`` or ``"obs+state"``.
    """

    def __init__(self, *args: Any, observation_space: gym.Space | None = None, **kwargs: Any):
        space = _check_space(observation_space)
        self._obs_dim = int(space["obs"].shape[0])
        self._state_dim = int(space["state"].shape[0])
        model_config = dict(kwargs.pop("model_config", None) or {})
        self.critic_input = check_choice(
            "critic_input", model_config.pop("critic_input", "state"), CENTRAL_CRITIC_INPUTS
        )
        # The default catalog builds the actor on the agent's own observation (a Box).
        super().__init__(*args, observation_space=space["obs"], model_config=model_config, **kwargs)
        self.full_observation_space = space

    def setup(self) -> None:
        super().setup()
        if self.inference_only:
            return
        width = self._state_dim + (self._obs_dim if self.critic_input == "obs+state" else 0)
        layers: list[torch.nn.Module] = []
        for h in self.model_config["fcnet_hiddens"]:
            layers += [torch.nn.Linear(width, h), torch.nn.Tanh()]
            width = h
        layers.append(torch.nn.Linear(width, 1))
        self.central_vf = torch.nn.Sequential(*layers)

    def get_non_inference_attributes(self) -> list[str]:
        return [*super().get_non_inference_attributes(), "central_vf"]

    @staticmethod
    def _actor_batch(batch: dict[str, Any]) -> dict[str, Any]:
        return {**batch, Columns.OBS: batch[Columns.OBS]["obs"]}

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        return super()._forward(self._actor_batch(batch), **kwargs)

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # Only the actor's outputs: the value comes from compute_values on the state.
        return super()._forward(self._actor_batch(batch), **kwargs)

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        """``[B]`` values from the global state (with the observation for ``"obs+state"``)."""
        obs = batch[Columns.OBS]
        x = obs["state"]
        if self.critic_input == "obs+state":
            x = torch.cat([obs["obs"], x], dim=-1)
        return self.central_vf(x).squeeze(-1)


def actor_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights an inference-only module keeps: ``module.state_dict()`` without the
    attributes RLlib drops for inference (``get_non_inference_attributes``: the default
    critic's tower and this module's centralized critic), i.e. the actor that
    :func:`~agentcomm.policies.gaussian_ppo.load_gaussian_actor` rebuilds."""
    drop = tuple(f"{name}." for name in module.get_non_inference_attributes())
    return {k: v for k, v in module.state_dict().items() if not k.startswith(drop)}
