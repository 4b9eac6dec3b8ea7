"""DPPO on RLlib's PPO algorithm: one config builder for single- and multi-agent envs.

``dppo_config`` returns a plain ``PPOConfig`` wired to ``DPPOTorchRLModule`` and
``DPPOTorchLearner``. The same config runs on this CPU machine and on a cluster with GPU
learners by changing only ``num_env_runners``, ``num_learners`` and
``num_gpus_per_learner``.

Multi-agent envs (``ray.rllib.env.MultiAgentEnv``, agents ``"agent_0".."agent_{N-1}"``):

- ``multi_agent="shared"``: parameter sharing, every agent maps to module ``"shared"``; the
  env batch of ``B`` worlds x ``N`` agents is one flat ``[B*N]`` batch for that module.
- ``multi_agent="per_agent"``: one module per agent id in ``agent_ids`` (module id = agent
  id), each with its own diffusion policy and critic.

For a centralized critic (CTDE) the env's per-agent observation space is a ``Dict`` with
``"obs"`` (local) and ``"state"`` (global) and ``critic_input="state"``.

The form of the per-step likelihood the PPO ratio compares (``logprob_reduction``,
``logprob_min``, ``logprob_max``; see ``DPPOTorchLearner``) is a setting of the policy,
which computes it at sampling time and in the loss alike: ``dppo_config`` writes it into
every module's ``DiffusionConfig`` overrides, over whatever a pretrained checkpoint holds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any, Literal

from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from agentcomm._checks import check_choice
from agentcomm.policies.diffusion import check_logprob_form
from agentcomm.policies.dppo_learner import DPPOTorchLearner, learner_settings
from agentcomm.policies.dppo_module import DPPOTorchRLModule
from agentcomm.policies.ppo_config import (
    CRITIC_INPUTS,
    SHARED_MODULE_ID,
    LrSchedule,
    MultiAgentMode,
    check_multi_agent,
    multi_agent_policies,
    ppo_settings,
    ppo_skeleton,
    with_state_observations,
)

__all__ = ["DPPO_PPO_DEFAULTS", "SHARED_MODULE_ID", "dppo_config"]


#: DPPO's own defaults for the settings both PPO builders share (the rest are
#: :func:`~agentcomm.policies.ppo_config.ppo_skeleton`'s): fine-tuning a pretrained policy
#: takes small actor steps and a tight clip (Ren et al. 2025, Sec. 5).
DPPO_PPO_DEFAULTS: dict[str, Any] = {"lr": 1e-4, "clip_param": 0.01, "grad_clip": 1.0}


def dppo_config(
    env: str | type,
    *,
    env_config: Mapping[str, Any] | None = None,
    pretrained: str | os.PathLike | Mapping[str, str | os.PathLike] | None = None,
    policy: Mapping[str, Any] | None = None,
    sampler: Literal["ddpm", "ddim"] = "ddpm",
    critic_hidden: Sequence[int] = (256, 256),
    critic_input: Literal["obs", "state", "obs+state"] = "obs",
    multi_agent: MultiAgentMode | None = None,
    agent_ids: Sequence[str] | None = None,
    critic_lr: LrSchedule = 1e-3,
    clip_param_min: float = 0.001,
    clip_rate: float = 3.0,
    gamma_denoise: float = 0.99,
    critic_warmup_steps: int = 0,
    logprob_reduction: Literal["sum", "mean"] = "sum",
    logprob_min: float | None = None,
    logprob_max: float | None = None,
    **ppo: Any,
) -> PPOConfig:
    """Build a PPOConfig that fine-tunes diffusion policies with DPPO.

    Args:
        env: Registered env name (``ray.tune.register_env``) or env class.
        env_config: Passed to the env creator.
        pretrained: ``save_policy`` checkpoint directory to start every module from, or a
            mapping module id -> directory; ``None`` starts from random weights.
        policy: ``DiffusionConfig`` fields (architecture when not pretrained; sampling
            fields such as ``ft_denoising_steps`` and ``min_sampling_std`` always).
        sampler: ``"ddpm"`` or ``"ddim"`` (``K'`` must not exceed its step count).
        critic_hidden: Hidden widths of the critic MLP.
        critic_input: ``"obs"``, or ``"state"`` for a centralized critic, or
            ``"obs+state"`` for an agent-specific centralized one (both need Dict
            observations with keys ``"obs"`` and ``"state"``). For this package's envs
            (``env`` a string ``"agentcomm/<EnvId>"``) ``env_config["centralized_critic"]``
            is set to match; other envs must provide the Dict themselves.
        multi_agent: ``None`` for a single-agent env, ``"shared"`` or ``"per_agent"``
            (:func:`~agentcomm.policies.ppo_config.check_multi_agent`).
        agent_ids: Agent ids, required for ``multi_agent="per_agent"``.
        critic_lr: Critic learning rate (or schedule); ``lr`` (in ``**ppo``) is the actor's
            (``actor_ft``).
        clip_param_min, clip_rate: Per-denoising-step clip schedule (``DPPOTorchLearner``);
            ``clip_param`` (in ``**ppo``) is the clip at the last step.
        gamma_denoise: Denoising discount in ``(0, 1]``.
        critic_warmup_steps: Env steps sampled (lifetime; agent-steps for the batched
            runner) during which only the critic is trained.
        logprob_reduction, logprob_min, logprob_max: Form of each denoising step's
            log-likelihood in the PPO ratio: ``"sum"`` over the ``Ta*Da`` action dimensions
            (the Gaussian's log-density; the default) or their ``"mean"`` (the DPPO
            reference implementation's), each dimension first clamped to
            ``[logprob_min, logprob_max]`` where given (the reference: ``"mean"``, -5, 2).
            Set here, not in ``policy``.
        **ppo: The settings both PPO builders share (sampling, learners, batch sizes,
            ``lr``, ``gamma``, ``lambda_``, ``clip_param``, the value loss, ``grad_clip``,
            ``seed``, which also seeds the modules' weights): see
            :func:`~agentcomm.policies.ppo_config.ppo_skeleton`, with
            :data:`DPPO_PPO_DEFAULTS` over its defaults.

    Returns:
        A ``PPOConfig``; call ``.build_algo()`` on it.
    """
    check_choice("sampler", sampler, ("ddpm", "ddim"))
    check_choice("critic_input", critic_input, CRITIC_INPUTS)
    form = dict(
        zip(
            ("logprob_reduction", "logprob_min", "logprob_max"),
            check_logprob_form(logprob_reduction, logprob_min, logprob_max),
        )
    )
    twice = sorted(set(policy or {}) & set(form))
    if twice:
        raise ValueError(
            f"policy sets {twice}: pass them as dppo_config's own arguments (the loss's "
            "likelihood form is set in one place)"
        )
    env_config = with_state_observations(env, env_config, critic_input)
    multi_agent = check_multi_agent(multi_agent)
    settings = {**ppo_settings(ppo, DPPO_PPO_DEFAULTS), "env_config": env_config}
    seed = settings["seed"]
    config = ppo_skeleton(env, **settings)
    config = config.learners(
        learner_class=DPPOTorchLearner,
        learner_config_dict={
            "gamma_denoise": gamma_denoise,
            "clip_param_min": clip_param_min,
            "clip_rate": clip_rate,
            "critic_lr": critic_lr,
            "critic_warmup_steps": critic_warmup_steps,
        },
    ).training(kl_coeff=0.0, entropy_coeff=0.0)
    learner_settings(config)  # the learner's own checks, raised here rather than at build

    def module_spec(module_id: str | None) -> RLModuleSpec:
        path = pretrained.get(module_id) if isinstance(pretrained, Mapping) else pretrained
        model_config: dict[str, Any] = {
            "policy": {**(policy or {}), **form},
            "sampler": sampler,
            "critic_hidden": [int(h) for h in critic_hidden],
            "critic_input": critic_input,
            "seed": seed,
        }
        if path is not None:
            model_config["pretrained"] = os.fspath(path)
        return RLModuleSpec(module_class=DPPOTorchRLModule, model_config=model_config)

    if multi_agent is None:
        if isinstance(pretrained, Mapping):
            raise ValueError("pretrained must be a single path when multi_agent is None")
        return config.rl_module(rl_module_spec=module_spec(None))
    ids, mapping = multi_agent_policies(multi_agent, agent_ids)
    if isinstance(pretrained, Mapping):
        missing = sorted(set(ids) - set(pretrained))
        if missing:
            raise ValueError(f"pretrained mapping lacks module id(s) {missing}")
    return config.multi_agent(policies=set(ids), policy_mapping_fn=mapping).rl_module(
        rl_module_spec=MultiRLModuleSpec(rl_module_specs={mid: module_spec(mid) for mid in ids})
    )
