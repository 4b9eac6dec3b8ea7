"""RLlib Learner for DPPO: PPO over the Gaussian steps of the denoising chain.

Shape legend: ``B`` minibatch of agent-steps, ``K'`` fine-tuned denoising steps.

DPPO (Ren et al., "Diffusion Policy Policy Optimization", ICLR 2025, Sec. 4) treats each
environment step as ``K'`` inner-MDP steps ``x^(k) -> x^(k-1)`` whose policies are the
Gaussians of the diffusion policy. The environment-level advantage ``A`` (GAE over env
steps, from RLlib's ``GeneralAdvantageEstimation`` connector with a state-only critic) is
credited to every denoising step ``j = 0..K'-1`` (``j = K'-1`` produces ``x^(0)``),
discounted by the denoising discount ``gamma_denoise^(K'-1-j)``: the reward of the inner
MDP arrives only after the last step, so earlier steps are further from it. The loss is

    L_pi = -mean_{b, j} gamma_denoise^(K'-1-j) min(r_bj A_b, clip(r_bj, 1-eps_j, 1+eps_j) A_b)
    r_bj = exp(log pi_ft(x_b^(j+1) | x_b^(j), o_b) - log pi_old(x_b^(j+1) | x_b^(j), o_b))

where ``log pi(x^(j+1) | x^(j), o)`` is the policy's per-step log-likelihood
(``DiffusionConfig.logprob_reduction``, ``logprob_min``, ``logprob_max``, set through
``dppo_config``), over the ``D = Ta*Da`` dimensions of the latent (``D = 6`` for one
action), with ``mu_j`` the step mean, ``s_j`` its std floored at ``min_logprob_std`` and
``l_d = -(x_d - mu_j,d)^2 / (2 s_j^2) - log s_j - log sqrt(2 pi)``:

* ``"sum"`` (the default; every recipe in this repository was tuned with it): the
  Gaussian's log-density ``log pi = sum_d clamp(l_d)``, so ``r_bj`` is the joint
  likelihood ratio of the step;
* ``"mean"`` (the DPPO reference implementation's form, with the clamp to ``[-5, 2]``):
  ``log pi = (1/D) sum_d clamp(l_d)``, so ``r_bj`` is the geometric mean of the
  per-dimension ratios, the ``D``-th root of the joint one.

``clamp`` bounds each ``l_d`` to ``[logprob_min, logprob_max]`` (the identity when both
are ``None``, the default); a clamped dimension passes no gradient. Old and new
log-likelihoods take the same form: the sampling-time ones (``DPPO_LOGP_STEPS``) and the
loss's (``DPPO_LOGP_NEW``) both come from the policy's ``_chain_logprob``. The two forms
clip differently: with a uniform per-dimension log-ratio ``delta``, ``log r = D delta``
under the sum and ``delta`` under the mean, so a given ``clip_param`` bounds the
per-dimension change ``D`` times tighter (6 times for one 6-dim action) under the sum:
a clip value from the reference, tuned for the mean, is ``D`` times looser per dimension
there than the same value here with the default. (The reference also averages only over
the executed actions of a chunk; with ``Ta > 1`` this code averages over the whole chunk.)

The clip ``eps_j`` grows exponentially from ``clip_param_min`` at the first
(noisiest) fine-tuned step to ``clip_param`` at the last one, since the early steps move
the final action less per unit of likelihood ratio (DPPO Sec. 5, "clipping"):

    eps_j = eps_min + (eps_max - eps_min) (exp(rate j/(K'-1)) - 1) / (exp(rate) - 1)

(``eps_j = eps_max`` when ``K' = 1``). The value loss is RLlib PPO's: squared error to the
GAE value targets, clamped at ``vf_clip_param``. There is no entropy bonus and no KL penalty
(the dppo config sets ``entropy_coeff=0``, ``use_kl_loss=False``).

Learner hyperparameters come from ``config.learner_config_dict``: ``gamma_denoise``
(default 0.99), ``clip_param_min`` (default ``0.1 * clip_param``), ``clip_rate``
(default 3.0), ``critic_lr`` (default ``config.lr``; the actor uses ``config.lr``; either
may be an RLlib schedule ``[[timestep, lr], ...]``) and
``critic_warmup_steps`` (default 0). Critic warm-up (DPPO Sec. 5): a critic trained from
scratch beside a pretrained actor gives advantages that are mostly noise at first, and
the actor's first updates then undo the pretraining; while no more than
``critic_warmup_steps`` env steps have been sampled (RLlib's
``NUM_ENV_STEPS_SAMPLED_LIFETIME``, restored with a checkpoint; agent-steps for the
batched runner) only the critic is trained.

Metrics per module and denoising step ``j``: ``dppo_clip_frac_k{j}``,
``dppo_approx_kl_k{j}`` (the estimator ``E[(r - 1) - log r]``), ``dppo_ratio_min_k{j}``,
``dppo_ratio_max_k{j}``; over all steps ``dppo_ratio_min``/``dppo_ratio_max``.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import torch
from ray.rllib.algorithms.ppo.ppo import (
    LEARNER_RESULTS_KL_KEY,
    LEARNER_RESULTS_VF_EXPLAINED_VAR_KEY,
    LEARNER_RESULTS_VF_LOSS_UNCLIPPED_KEY,
    PPOConfig,
)
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.learner import POLICY_LOSS_KEY, VF_LOSS_KEY
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.metrics import NUM_ENV_STEPS_SAMPLED_LIFETIME
from ray.rllib.utils.torch_utils import explained_variance
from ray.rllib.utils.typing import ModuleID

from agentcomm._checks import check_positive, check_range
from agentcomm.policies.dppo_module import DPPO_LOGP_NEW, DPPO_LOGP_STEPS
from agentcomm.policies.ppo_config import check_lr

__all__ = ["DPPOTorchLearner", "clip_schedule", "denoising_weights", "learner_settings"]

_SETTINGS = ("gamma_denoise", "clip_param_min", "clip_rate", "critic_lr", "critic_warmup_steps")


def clip_schedule(num_steps: int, clip_min: float, clip_max: float, rate: float) -> torch.Tensor:
    """Per-denoising-step PPO clip, exponential from ``clip_min`` (j=0) to ``clip_max`` (j=K'-1).

    Args:
        num_steps: ``K' >= 1``.
        clip_min, clip_max: ``0 < clip_min <= clip_max``.
        rate: Curvature ``> 0`` (larger: stays near ``clip_min`` longer).

    Returns:
        ``[K']`` float64.
    """
    check_range("num_steps", num_steps, 1)
    check_positive("clip_min", clip_min)
    check_range("clip_max", clip_max, clip_min)
    check_positive("rate", rate)
    if num_steps == 1:
        return torch.tensor([clip_max], dtype=torch.float64)
    frac = torch.arange(num_steps, dtype=torch.float64) / (num_steps - 1)
    return clip_min + (clip_max - clip_min) * torch.expm1(rate * frac) / math.expm1(rate)


def denoising_weights(num_steps: int, gamma_denoise: float) -> torch.Tensor:
    """Denoising discount ``gamma_denoise^(K'-1-j)`` for ``j = 0..K'-1``, ``[K']`` float64."""
    check_range("num_steps", num_steps, 1)
    check_range("gamma_denoise", gamma_denoise, 0.0, 1.0, low_inclusive=False)
    return gamma_denoise ** torch.arange(num_steps - 1, -1, -1, dtype=torch.float64)


def learner_settings(config: PPOConfig) -> dict[str, float]:
    """Validated DPPO settings from ``config.learner_config_dict`` with their defaults."""
    raw = dict(config.learner_config_dict or {})
    unknown = sorted(set(raw) - set(_SETTINGS))
    if unknown:
        raise ValueError(f"unknown learner_config_dict key(s) {unknown}; allowed {list(_SETTINGS)}")
    out = {
        "gamma_denoise": float(raw.get("gamma_denoise", 0.99)),
        "clip_param_min": float(raw.get("clip_param_min", 0.1 * config.clip_param)),
        "clip_rate": float(raw.get("clip_rate", 3.0)),
        # A rate or RLlib schedule, like ``config.lr`` (its default).
        "critic_lr": raw.get("critic_lr", config.lr),
        "critic_warmup_steps": float(raw.get("critic_warmup_steps", 0)),
    }
    check_range("gamma_denoise", out["gamma_denoise"], 0.0, 1.0, low_inclusive=False)
    check_positive("clip_param", config.clip_param)
    check_range(
        "clip_param_min", out["clip_param_min"], 0.0, config.clip_param, low_inclusive=False
    )
    check_positive("clip_rate", out["clip_rate"])
    check_lr("critic_lr", out["critic_lr"])
    check_range("critic_warmup_steps", out["critic_warmup_steps"], 0.0)
    return out


class DPPOTorchLearner(PPOTorchLearner):
    """PPO learner whose policy loss is DPPO's per-denoising-step clipped objective.

    Only ``policy.actor_ft`` (optimizer ``"actor"``, ``lr = config.lr``) and ``critic``
    (optimizer ``"critic"``, ``lr = critic_lr``) are optimised; the frozen ``policy.base``
    is never registered with an optimizer.
    """

    #: True while the critic warms up (set per ``update`` call from the sampled env steps).
    _actor_frozen: bool = False

    @functools.cached_property
    def _settings(self) -> dict[str, float]:
        # Validated once: learner_config_dict is algorithm-wide and fixed after build.
        return learner_settings(self.config)

    def before_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        super().before_gradient_based_update(timesteps=timesteps)
        sampled = float(timesteps.get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0))
        self._actor_frozen = sampled <= self._settings["critic_warmup_steps"]

    def configure_optimizers_for_module(
        self, module_id: ModuleID, config: PPOConfig = None
    ) -> None:
        module = self._module[module_id]
        settings = self._settings
        groups = {
            "actor": (list(module.policy.actor_ft.parameters()), config.lr),
            "critic": (list(module.critic.parameters()), settings["critic_lr"]),
        }
        for name, (params, lr) in groups.items():
            # torch's fused Adam: one kernel over all tensors, where torch's default on CPU
            # is a Python loop over the parameter tensors. Same algorithm, same state dict
            # keys.
            fused = all(p.device.type in ("cpu", "cuda") and p.is_floating_point() for p in params)
            self.register_optimizer(
                module_id=module_id,
                optimizer_name=name,
                optimizer=torch.optim.Adam(params, fused=fused or None),
                params=params,
                lr_or_lr_schedule=lr,
            )
            if isinstance(lr, list | tuple):
                # RLlib starts a schedule from its first value rounded to float32 (a tensor
                # variable), later values are Python floats: starting from the exact first
                # value, a schedule's constant stretch runs the same Adam steps, bit for
                # bit, as that constant rate.
                optimizer = self.get_optimizer(module_id, name)
                self._set_optimizer_lr(optimizer, lr=float(lr[0][1]))

    def compute_loss_for_module(
        self,
        *,
        module_id: ModuleID,
        config: PPOConfig,
        batch: dict[str, Any],
        fwd_out: dict[str, Any],
    ) -> torch.Tensor:
        module = self.module[module_id].unwrapped()
        settings = self._settings
        new_logp = fwd_out[DPPO_LOGP_NEW]
        num_ft = new_logp.shape[-1]
        device = new_logp.device

        if Columns.LOSS_MASK in batch:
            mask = batch[Columns.LOSS_MASK].to(new_logp.dtype)
        else:
            mask = torch.ones(new_logp.shape[0], dtype=new_logp.dtype, device=device)
        num_valid = mask.sum().clamp(min=1.0)

        def masked_mean(x: torch.Tensor) -> torch.Tensor:
            """Mean over valid rows of ``[B]`` or ``[B, K']`` (per step for the latter)."""
            m = mask if x.ndim == 1 else mask.unsqueeze(-1)
            return (x * m).sum(dim=0) / num_valid

        log_ratio = new_logp - batch[DPPO_LOGP_STEPS]
        ratio = torch.exp(log_ratio)
        clip = clip_schedule(
            num_ft, settings["clip_param_min"], config.clip_param, settings["clip_rate"]
        ).to(device=device, dtype=ratio.dtype)
        weights = denoising_weights(num_ft, settings["gamma_denoise"]).to(device, ratio.dtype)
        adv = batch[Postprocessing.ADVANTAGES].unsqueeze(-1)
        surrogate = torch.minimum(adv * ratio, adv * torch.clamp(ratio, 1.0 - clip, 1.0 + clip))
        policy_loss = -(masked_mean(surrogate) * weights).mean()
        # A zero weight rather than a dropped term: the actor's gradient is then exactly zero
        # and Adam's moments stay at zero through the warm-up.
        actor_weight = 0.0 if self._actor_frozen else 1.0

        values = module.compute_values(batch)
        vf_err = torch.pow(values - batch[Postprocessing.VALUE_TARGETS], 2.0)
        vf_loss = masked_mean(torch.clamp(vf_err, 0, config.vf_clip_param))
        total = actor_weight * policy_loss + config.vf_loss_coeff * vf_loss

        with torch.no_grad():
            valid = mask.bool()
            ratio_valid = ratio[valid] if bool(valid.any()) else ratio
            clip_frac = masked_mean(((ratio - 1.0).abs() > clip).to(ratio.dtype))
            approx_kl = masked_mean((ratio - 1.0) - log_ratio)
            ratio_min = ratio_valid.min(dim=0).values
            ratio_max = ratio_valid.max(dim=0).values
            stats = {
                POLICY_LOSS_KEY: policy_loss,
                VF_LOSS_KEY: vf_loss,
                LEARNER_RESULTS_VF_LOSS_UNCLIPPED_KEY: masked_mean(vf_err),
                LEARNER_RESULTS_VF_EXPLAINED_VAR_KEY: explained_variance(
                    batch[Postprocessing.VALUE_TARGETS], values
                ),
                LEARNER_RESULTS_KL_KEY: approx_kl.mean(),
                "dppo_ratio_min": ratio_min.min(),
                "dppo_ratio_max": ratio_max.max(),
                "dppo_actor_frozen": float(self._actor_frozen),
            }
            for j in range(num_ft):
                stats[f"dppo_clip_frac_k{j}"] = clip_frac[j]
                stats[f"dppo_approx_kl_k{j}"] = approx_kl[j]
                stats[f"dppo_ratio_min_k{j}"] = ratio_min[j]
                stats[f"dppo_ratio_max_k{j}"] = ratio_max[j]
        self.metrics.log_dict(stats, key=module_id, window=1)
        return total
