r"""Diffusion schedules and the DDPM / DDIM reverse steps, shared by every diffusion model.

Both diffusion models of the project, the action policies (:mod:`agentcomm.policies.diffusion`)
and the prior over belief maps (:mod:`agentcomm.decoders.prior`), take their schedules and
their step equations from here.

Forward process (Ho et al., "Denoising Diffusion Probabilistic Models", NeurIPS 2020, eq. 4)
with :math:`\bar\alpha_t = \prod_{s \le t} (1 - \beta_s)` from diffusers'
:class:`~diffusers.DDPMScheduler` (:func:`ddpm_scheduler`):

.. math::
    x_t = \sqrt{\bar\alpha_t}\, x_0 + \sqrt{1 - \bar\alpha_t}\, \epsilon,
    \qquad \epsilon \sim \mathcal N(0, I).

Clean-sample estimate from a noise prediction (Ho et al., eq. 15), clipped to the data
range :math:`[-1, 1]`:

.. math::
    \hat x_0 = \mathrm{clip}\Big(\frac{x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon_\theta}
        {\sqrt{\bar\alpha_t}}, -1, 1\Big).

DDPM reverse step (Ho et al., eq. 6-7), the Gaussian posterior
:math:`q(x_{t-1} \mid x_t, \hat x_0)` (:func:`ddpm_posterior`):

.. math::
    \tilde\mu_t = \frac{\sqrt{\bar\alpha_{t-1}}\beta_t}{1 - \bar\alpha_t}\hat x_0
        + \frac{\sqrt{1 - \beta_t}(1 - \bar\alpha_{t-1})}{1 - \bar\alpha_t} x_t, \qquad
    \tilde\beta_t = \frac{1 - \bar\alpha_{t-1}}{1 - \bar\alpha_t}\beta_t .

DDIM reverse step from :math:`t` to an earlier :math:`t'` (Song et al., "Denoising Diffusion
Implicit Models", ICLR 2021, eq. 12 and 16), with :math:`\epsilon` re-derived from the
clipped :math:`\hat x_0` (diffusers' ``use_clipped_model_output=True``):

.. math::
    \hat\epsilon = \frac{x_t - \sqrt{\bar\alpha_t}\hat x_0}{\sqrt{1 - \bar\alpha_t}},\qquad
    x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1 - \bar\alpha_{t'} - \sigma_t^2}\,
        \hat\epsilon + \sigma_t z,\qquad
    \sigma_t(\eta) = \eta \sqrt{\frac{1 - \bar\alpha_{t'}}{1 - \bar\alpha_t}
        \Big(1 - \frac{\bar\alpha_t}{\bar\alpha_{t'}}\Big)} .

The same DDIM step has two numerical forms here: :func:`ddim_step` evaluates it as
written, per sample, for the receivers (each message starts from its own SNR-matched step,
and diffusers' ``step`` takes one timestep for the whole batch); :func:`ddim_coefficients`
folds it into ``x_{t'} = c_0 \hat x_0 + c_t x_t`` for the policies, whose chains run at
batch 1 where each tensor op costs more than its arithmetic. Tests check both against
``DDIMScheduler.step`` and against each other.
"""

from __future__ import annotations

from typing import Literal

import torch
from diffusers import DDIMScheduler, DDPMScheduler

from agentcomm._checks import check_range

__all__ = [
    "BETA_SCHEDULES",
    "PREDICTIONS",
    "BetaSchedule",
    "Prediction",
    "ddim_coefficients",
    "ddim_sigma",
    "ddim_step",
    "ddim_timesteps",
    "ddim_uniform_timesteps",
    "ddpm_posterior",
    "ddpm_scheduler",
    "eps_from_prediction",
]

BetaSchedule = Literal["linear", "scaled_linear", "squaredcos_cap_v2"]
#: diffusers beta schedules (``"squaredcos_cap_v2"`` is the cosine schedule of Nichol &
#: Dhariwal, ICML 2021).
BETA_SCHEDULES: tuple[str, ...] = BetaSchedule.__args__
Prediction = Literal["epsilon", "sample", "v_prediction"]
#: What a denoising network may output: the noise, the clean sample, or
#: :math:`v = \sqrt{\bar\alpha_t}\epsilon - \sqrt{1-\bar\alpha_t}x_0` (Salimans & Ho, ICLR 2022).
PREDICTIONS: tuple[str, ...] = Prediction.__args__


def ddpm_scheduler(
    num_train_timesteps: int, beta_schedule: BetaSchedule, prediction: Prediction = "epsilon"
) -> DDPMScheduler:
    """diffusers' DDPM schedule (``betas``, ``alphas_cumprod``, ``add_noise``,
    ``get_velocity``) with the data clipped to ``[-1, 1]``."""
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule=beta_schedule,
        prediction_type=prediction,
        clip_sample=True,
    )


def eps_from_prediction(
    out: torch.Tensor, x_t: torch.Tensor, abar_t: torch.Tensor, prediction: Prediction
) -> torch.Tensor:
    r"""The noise :math:`\epsilon` a network output implies.

    Args:
        out: ``[M, ...]``, the network's output (``prediction`` says what it is).
        x_t: ``[M, ...]``, the noisy input.
        abar_t: ``[M]``, :math:`\bar\alpha_t` of each sample.
        prediction: ``"epsilon"`` (returned as is), ``"v_prediction"``
            (:math:`\epsilon = \sqrt{1-\bar\alpha_t}x_t + \sqrt{\bar\alpha_t}v`) or
            ``"sample"`` (:math:`\epsilon = (x_t - \sqrt{\bar\alpha_t}x_0)/\sqrt{1-\bar\alpha_t}`).
    Returns:
        ``[M, ...]``.
    """
    if prediction == "epsilon":
        return out
    a = abar_t.view(-1, *([1] * (x_t.dim() - 1)))
    if prediction == "v_prediction":
        return (1.0 - a).sqrt() * x_t + a.sqrt() * out
    return (x_t - a.sqrt() * out) / (1.0 - a).sqrt()


def ddpm_posterior(betas: torch.Tensor, alphas_cumprod: torch.Tensor) -> dict[str, torch.Tensor]:
    r"""Tables of the DDPM reverse step for every timestep (module docstring).

    Args:
        betas, alphas_cumprod: ``[T]`` (float64 keeps the folded tables exact to float32).
    Returns:
        ``[T]`` tables, indexed by ``t``, in the folded form of :func:`ddim_coefficients`:
        ``x0_from_xt`` :math:`1/\sqrt{\bar\alpha_t}` and ``x0_from_eps``
        :math:`-\sqrt{1/\bar\alpha_t - 1}` (:math:`\hat x_0` before clipping), ``coef_x0``
        and ``coef_xt`` (:math:`\tilde\mu_t` from :math:`\hat x_0` and :math:`x_t`), and
        ``variance`` :math:`\tilde\beta_t`.
    """
    acp = alphas_cumprod
    acp_prev = torch.cat([torch.ones(1, dtype=acp.dtype), acp[:-1]])
    return {
        "x0_from_xt": acp.rsqrt(),
        "x0_from_eps": -(1.0 / acp - 1.0).sqrt(),
        "coef_x0": acp_prev.sqrt() * betas / (1.0 - acp),
        "coef_xt": (1.0 - betas).sqrt() * (1.0 - acp_prev) / (1.0 - acp),
        "variance": betas * (1.0 - acp_prev) / (1.0 - acp),
    }


def ddim_uniform_timesteps(
    num_train_timesteps: int, steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' DDIM timestep grid (``"leading"`` spacing) and each step's target.

    Returns:
        ``(t [S], t_prev [S])``, long; ``t`` decreasing, ``t_prev = t - T // S`` (negative:
        the clean sample, :math:`\\bar\\alpha = 1`).
    """
    check_range("steps", steps, 1, num_train_timesteps)
    ddim = DDIMScheduler(num_train_timesteps=num_train_timesteps, set_alpha_to_one=True)
    ddim.set_timesteps(steps)
    t = ddim.timesteps.long()
    return t, t - num_train_timesteps // steps


def ddim_timesteps(t_start: torch.Tensor, steps: int) -> torch.Tensor:
    """Per-sample DDIM grids from ``t_start`` down towards 0, evenly spaced.

    :math:`\\tau_j = \\lfloor t_{start} (S - j) / S \\rfloor`, ``j = 0..S-1``; the step after
    :math:`\\tau_{S-1}` goes to :math:`\\bar\\alpha = 1` (the clean sample).

    Args:
        t_start: long ``[M]``, the first timestep of each sample.
        steps: ``S >= 1``.
    Returns:
        long ``[S, M]``, non-increasing along the first axis.
    """
    check_range("steps", steps, 1, None)
    j = torch.arange(steps, device=t_start.device).unsqueeze(1)
    return torch.div(t_start.unsqueeze(0) * (steps - j), steps, rounding_mode="floor")


def ddim_sigma(abar_t: torch.Tensor, abar_prev: torch.Tensor, eta: float) -> torch.Tensor:
    r""":math:`\sigma_t(\eta)` of Song et al. eq. 16, elementwise (``eta = 0``: deterministic
    DDIM; ``eta = 1``: the DDPM posterior's standard deviation)."""
    return eta * ((1 - abar_prev) / (1 - abar_t) * (1 - abar_t / abar_prev)).sqrt()


def ddim_coefficients(
    abar_t: torch.Tensor, abar_prev: torch.Tensor, sigma: torch.Tensor
) -> dict[str, torch.Tensor]:
    r"""The DDIM step folded into a few multiply-adds, elementwise over its inputs.

    With :math:`a = \sqrt{\bar\alpha_t}`, :math:`b = \sqrt{1 - \bar\alpha_t}`,
    :math:`c = \sqrt{\bar\alpha_{t'}}`, :math:`d = \sqrt{1 - \bar\alpha_{t'} - \sigma_t^2}`:
    :math:`\hat x_0 = \mathrm{clip}(x_t / a - (b / a)\epsilon_\theta)`, and the re-derived
    :math:`\hat\epsilon = (x_t - a\hat x_0)/b` makes the mean :math:`(c - d a / b)\hat x_0 +
    (d / b) x_t`.

    Returns:
        ``x0_from_xt`` :math:`1/a`, ``x0_from_eps`` :math:`-b/a` (:math:`\hat x_0` before
        clipping), ``coef_x0`` :math:`c - d a / b`, ``coef_xt`` :math:`d / b`: the step is
        ``coef_x0 * clip(x0_from_xt * x_t + x0_from_eps * eps) + coef_xt * x_t``.
    """
    sqrt_acp, sqrt_1m_acp = abar_t.sqrt(), (1 - abar_t).sqrt()
    dir_coef = (1 - abar_prev - sigma.square()).clamp(min=0).sqrt()
    return {
        "x0_from_xt": 1 / sqrt_acp,
        "x0_from_eps": -sqrt_1m_acp / sqrt_acp,
        "coef_x0": abar_prev.sqrt() - dir_coef * sqrt_acp / sqrt_1m_acp,
        "coef_xt": dir_coef / sqrt_1m_acp,
    }


def ddim_step(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    abar_t: torch.Tensor,
    abar_prev: torch.Tensor,
    clip_x0: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic DDIM step (module docstring, :math:`\\eta = 0`), per sample.

    Args:
        x_t: float ``[M, ...]``.
        eps: float ``[M, ...]``, the predicted noise :math:`\\epsilon_\\theta(x_t, t)`.
        abar_t: float ``[M]``, :math:`\\bar\\alpha_t`.
        abar_prev: float ``[M]``, :math:`\\bar\\alpha_{t'}` of the next (less noisy) step.
        clip_x0: clip :math:`\\hat x_0` to ``[-1, 1]`` (the data range) before re-noising;
            :math:`\\epsilon` is then re-derived from the clipped :math:`\\hat x_0`, as
            diffusers does.
    Returns:
        ``(x_prev [M, ...], x0_hat [M, ...])``.
    """
    shape = (-1, *([1] * (x_t.dim() - 1)))
    a_t = abar_t.view(shape)
    a_p = abar_prev.view(shape)
    x0 = (x_t - (1.0 - a_t).sqrt() * eps) / a_t.sqrt()
    if clip_x0:
        x0 = x0.clamp(-1.0, 1.0)
        eps = (x_t - a_t.sqrt() * x0) / (1.0 - a_t).sqrt()
    return a_p.sqrt() * x0 + (1.0 - a_p).sqrt() * eps, x0
