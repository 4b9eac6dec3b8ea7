"""RLlib RLModule for DPPO: a diffusion actor (frozen base + fine-tuned copy) and a critic.

Shape legend: ``B`` flat batch of agent-steps, ``K'`` fine-tuned denoising steps, ``Da``
action dim, ``Do`` actor observation dim, ``Ds`` critic input dim.

Observations. Either a 1-D ``Box`` (actor and critic both read it) or a ``Dict`` with keys
``"obs"`` (1-D ``Box``, the actor's local observation) and ``"state"`` (1-D ``Box``, a
global state for a centralized critic: CTDE, centralized training with decentralized
execution). The critic reads ``"state"`` when ``model_config["critic_input"] == "state"``,
both concatenated for ``"obs+state"`` (an agent-specific global state, as in MAPPO: the
value of one agent's own reward share depends on which agent it is), and ``"obs"``
otherwise; the actor never sees ``"state"``, so execution stays decentralized.

Actions. A bounded 1-D ``Box``; the policy acts in ``[-1, 1]^Da`` and RLlib's default
``normalize_actions=True`` maps that onto the Box bounds.

``model_config`` keys (all optional):

- ``"pretrained"``: directory of a ``save_policy`` checkpoint (a BC-trained
  ``DiffusionPolicy`` or a ``DPPOPolicy`` export) to start from; its dims must match the
  spaces. Every env runner and learner reads it, so it must be reachable from all nodes.
- ``"policy"``: dict of ``DiffusionConfig`` fields. Without ``"pretrained"`` it sets the
  whole architecture (``obs_dim``/``action_dim`` come from the spaces); with it, only the
  sampling fields may be given (e.g. ``ft_denoising_steps``, ``min_sampling_std``).
- ``"sampler"``: ``"ddpm"`` (default) or ``"ddim"``.
- ``"critic_hidden"``: list of hidden widths of the critic MLP (default ``[256, 256]``).
- ``"critic_input"``: ``"obs"`` (default), ``"state"`` or ``"obs+state"``.
- ``"seed"``: seed of the weight initialisation (default 0), so that every copy of the
  module starts identical before RLlib's first weight sync.

Exploration noise is drawn from torch's global generator, which RLlib seeds per env runner
(``config.debugging(seed=...)``); a single module-level generator would give every env
runner the same noise.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.distribution.distribution import Distribution
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, ValueFunctionAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from agentcomm._checks import check_choice
from agentcomm.policies.activations import Mish
from agentcomm.policies.checkpoint import load_policy
from agentcomm.policies.diffusion import (
    ARCHITECTURE_KEYS,
    DiffusionConfig,
    DPPOPolicy,
)
from agentcomm.policies.networks import init_linear_layers
from agentcomm.policies.ppo_config import CRITIC_INPUTS

__all__ = [
    "DPPO_CHAIN",
    "DPPO_LOGP_NEW",
    "DPPO_LOGP_STEPS",
    "DPPOTorchRLModule",
    "DiffusionChainDistribution",
]

#: Extra model output: the stored latents ``x^(K') ... x^(0)``, ``[B, K'+1, Da]``.
DPPO_CHAIN = "dppo_chain"
#: Extra model output: sampling-time per-step log-likelihoods, ``[B, K']``.
DPPO_LOGP_STEPS = "dppo_logp_steps"
#: ``forward_train`` output: per-step log-likelihoods under the current weights, ``[B, K']``.
DPPO_LOGP_NEW = "dppo_logp_new"

_MODEL_CONFIG_KEYS = ("pretrained", "policy", "sampler", "critic_hidden", "critic_input", "seed")
# Keys RLlib's PPOConfig merges into every module's model_config; this module has no
# shared actor-critic layers, so they are accepted and ignored.
_RLLIB_AUTO_KEYS = ("vf_share_layers",)


class DiffusionChainDistribution(Distribution):
    """Placeholder action distribution for a diffusion policy.

    A diffusion policy's action has no closed-form density; its likelihood lives on the
    denoising chain and is computed by ``DPPOTorchLearner``. RLlib still asks modules for
    an action-distribution class; ``from_logits`` succeeds so that construction never
    breaks, and every density query raises with this explanation. The module always
    returns ``Columns.ACTIONS`` itself, so RLlib never samples from this class.
    """

    def __init__(self, inputs: Any = None) -> None:
        super().__init__()
        self.inputs = inputs

    @classmethod
    def from_logits(cls, logits: Any, **kwargs: Any) -> DiffusionChainDistribution:
        return cls(logits)

    @staticmethod
    def required_input_dim(space: gym.Space, **kwargs: Any) -> int:
        return 0

    def _unsupported(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(
            "a diffusion policy has no action density; its likelihood is over the denoising "
            "chain (DPPOTorchRLModule.policy.chain_logprob), used by DPPOTorchLearner"
        )

    sample = rsample = logp = kl = entropy = _unsupported


def _box_dim(name: str, space: gym.Space) -> int:
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise ValueError(f"{name} must be a 1-D gymnasium Box, got {space!r}")
    return int(space.shape[0])


class DPPOTorchRLModule(TorchRLModule, ValueFunctionAPI, InferenceOnlyAPI):
    """DPPO actor-critic module (see the module docstring for ``model_config``).

    Attributes:
        policy: ``DPPOPolicy``; ``policy.base`` is frozen, ``policy.actor_ft`` is trained.
        critic: MLP ``V(s)`` on the critic input, absent on inference-only copies.
    """

    def setup(self) -> None:
        cfg = dict(self.model_config or {})
        unknown = sorted(set(cfg) - set(_MODEL_CONFIG_KEYS) - set(_RLLIB_AUTO_KEYS))
        if unknown:
            raise ValueError(
                f"unknown DPPO model_config key(s) {unknown}; allowed {list(_MODEL_CONFIG_KEYS)}"
            )
        self.sampler = check_choice("sampler", cfg.get("sampler", "ddpm"), ("ddpm", "ddim"))
        self.critic_input = check_choice(
            "critic_input", cfg.get("critic_input", "obs"), CRITIC_INPUTS
        )
        space = self.observation_space
        if isinstance(space, gym.spaces.Dict):
            keys = {"obs", "state"} if self.critic_input != "obs" else {"obs"}
            missing = sorted(keys - set(space.spaces))
            if missing:
                raise ValueError(f"Dict observation_space lacks key(s) {missing}: {space!r}")
            obs_dim = _box_dim("observation_space['obs']", space["obs"])
            critic_dim = obs_dim if self.critic_input != "state" else 0
            if self.critic_input != "obs":
                critic_dim += _box_dim("observation_space['state']", space["state"])
        else:
            if self.critic_input != "obs":
                raise ValueError(
                    f"critic_input={self.critic_input!r} needs a Dict observation_space with "
                    f"keys 'obs' and 'state', got {space!r}"
                )
            obs_dim = critic_dim = _box_dim("observation_space", space)
        action_dim = _box_dim("action_space", self.action_space)
        if not (
            np.isfinite(self.action_space.low).all() and np.isfinite(self.action_space.high).all()
        ):
            raise ValueError(f"action_space must be bounded, got {self.action_space!r}")

        policy_kw = dict(cfg.get("policy") or {})
        generator = torch.Generator().manual_seed(int(cfg.get("seed", 0)))
        if cfg.get("pretrained") is not None:
            fixed = sorted(set(policy_kw) & set(ARCHITECTURE_KEYS))
            if fixed:
                raise ValueError(
                    f"model_config['policy'] cannot override architecture key(s) {fixed} of "
                    "a pretrained policy"
                )
            loaded = load_policy(
                cfg["pretrained"], expected_config={"obs_dim": obs_dim, "action_dim": action_dim}
            )
            if isinstance(loaded, DPPOPolicy):
                # Resuming a DPPO export: keep both copies (and its eval noise) as saved.
                config = DiffusionConfig.from_dict({**loaded.config.to_dict(), **policy_kw})
                self.policy = DPPOPolicy(config)
                self.policy.load_state_dict(loaded.state_dict())
            else:
                self.policy = DPPOPolicy.from_pretrained(loaded, **policy_kw)
        else:
            config = DiffusionConfig.from_dict(
                {**policy_kw, "obs_dim": obs_dim, "action_dim": action_dim}
            )
            self.policy = DPPOPolicy(config, generator=generator)
        # Fails early if K' exceeds the chosen sampler's number of steps.
        self.policy.num_steps(self.sampler)

        hidden = [int(h) for h in cfg.get("critic_hidden", (256, 256))]
        if not hidden or min(hidden) < 1:
            raise ValueError(f"critic_hidden={hidden!r} must be a non-empty list of widths >= 1")
        layers: list[nn.Module] = []
        width = critic_dim
        for h in hidden:
            layers += [nn.Linear(width, h), Mish()]
            width = h
        layers.append(nn.Linear(width, 1))
        self.critic = nn.Sequential(*layers)
        init_linear_layers(self.critic, generator)
        self.action_dist_cls = DiffusionChainDistribution

    def get_non_inference_attributes(self) -> list[str]:
        return ["critic"]

    def _actor_obs(self, batch: dict[str, Any]) -> torch.Tensor:
        obs = batch[Columns.OBS]
        return obs["obs"] if isinstance(obs, dict) else obs

    def _critic_obs(self, batch: dict[str, Any]) -> torch.Tensor:
        obs = batch[Columns.OBS]
        if not isinstance(obs, dict):
            return obs
        if self.critic_input == "obs+state":
            return torch.cat([obs["obs"], obs["state"]], dim=-1)
        return obs[self.critic_input]

    def _forward_exploration(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Sample actions with the denoising chain.

        Returns:
            ``Columns.ACTIONS [B, Da]``, ``Columns.ACTION_LOGP [B]`` (sum of the per-step
            log-likelihoods), ``DPPO_CHAIN [B, K'+1, Da]``, ``DPPO_LOGP_STEPS [B, K']``.
        """
        with torch.no_grad():
            out = self.policy.sample(self._actor_obs(batch).float(), mode=self.sampler)
        return {
            Columns.ACTIONS: out.action,
            Columns.ACTION_LOGP: out.logprob.sum(dim=-1),
            DPPO_CHAIN: out.chain,
            DPPO_LOGP_STEPS: out.logprob,
        }

    def _forward_inference(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Deterministic actions (fixed initial noise, no step noise), ``[B, Da]``."""
        with torch.no_grad():
            out = self.policy.sample(
                self._actor_obs(batch).float(),
                deterministic=True,
                mode=self.sampler,
                with_logprob=False,
            )
        return {Columns.ACTIONS: out.action}

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Per-step log-likelihoods of the stored chains under the current ``actor_ft``.

        Returns:
            ``DPPO_LOGP_NEW [B, K']``.
        """
        return {
            DPPO_LOGP_NEW: self.policy.chain_logprob(
                self._actor_obs(batch).float(), batch[DPPO_CHAIN].float(), mode=self.sampler
            )
        }

    def compute_values(self, batch: dict[str, Any], embeddings: Any = None) -> torch.Tensor:
        """State values ``V(s)``, ``[B]`` float (``[B, T]`` for a ``[B, T, Ds]`` input)."""
        return self.critic(self._critic_obs(batch).float()).squeeze(-1)
