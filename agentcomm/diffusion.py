r"""Diffusion schedules, the DDPM / DDIM reverse steps and the rectified-flow steps, shared
by every diffusion model.

The diffusion models of the project, the action policies (:mod:`agentcomm.policies.diffusion`),
the DDPM prior over belief maps (:mod:`agentcomm.decoders.prior`) and its few-step
rectified-flow counterpart (:mod:`agentcomm.decoders.flow`), take their schedules and their
step equations from here.

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

Rectified flow (Liu et al., "Flow Straight and Fast", ICLR 2023; Lipman et al., "Flow
Matching for Generative Modeling", ICLR 2023): the straight path from data to noise,
:math:`\tau \in [0, 1]`,

.. math::
    x_\tau = (1 - \tau)\, x_0 + \tau\, \epsilon, \qquad
    v = \frac{\mathrm d x_\tau}{\mathrm d\tau} = \epsilon - x_0,

learned by regressing :math:`v_\theta(x_\tau, \tau)` on :math:`\epsilon - x_0`
(:func:`flow_interpolate`). One network output gives both ends,
:math:`\hat x_0 = \mathrm{clip}(x_\tau - \tau v_\theta, -1, 1)` and
:math:`\hat\epsilon = (x_\tau - (1 - \tau)\hat x_0)/\tau` (re-derived from the
clipped :math:`\hat x_0`, as for DDIM). The Euler step from :math:`\tau` to
:math:`\tau' < \tau` (:func:`flow_step`, ``eta = 0``),

.. math::
    x_{\tau'} = x_\tau + (\tau' - \tau)\, v_\theta = (1 - \tau')\hat x_0 + \tau'\hat\epsilon,

is the DDIM step of this path (:math:`\alpha_\tau = 1 - \tau`, :math:`\sigma_\tau = \tau`
in place of :math:`\sqrt{\bar\alpha_t}`, :math:`\sqrt{1 - \bar\alpha_t}`). With noise
(``eta > 0``) the step keeps the path's marginals and, at ``eta = 1``, is the Gaussian
posterior :math:`q(x_{\tau'} \mid x_\tau, \hat x_0)` (ancestral sampling):

.. math::
    x_{\tau'} = (1 - \tau')\hat x_0 + \sqrt{\tau'^2 - s^2}\,\hat\epsilon + s z,\qquad
    s = \eta\,\tau' \sqrt{1 - \Big(\frac{(1 - \tau)\,\tau'}{(1 - \tau')\,\tau}\Big)^2} .

A point estimate :math:`\hat u = u + \sigma_e \epsilon` of a map matches the path at
:math:`\tau^* = \sigma_e / (1 + \sigma_e)`, where :math:`\tau/(1 - \tau) = \sigma_e`:
:math:`(1 - \tau^*)\hat u` has the law of :math:`x_{\tau^*}` (:func:`flow_start`; the
analogue of the SNR-matched DDPM step, exact here since :math:`\tau` is continuous).
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
    "flow_coefficients",
    "flow_interpolate",
    "flow_sigma",
    "flow_start",
    "flow_step",
    "flow_timesteps",
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


def flow_interpolate(
    x0: torch.Tensor, noise: torch.Tensor, tau: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""A point of the rectified-flow path and its velocity (module docstring).

    Args:
        x0: float ``[M, ...]``, clean samples.
        noise: float ``[M, ...]``, :math:`\epsilon \sim \mathcal N(0, I)`.
        tau: float ``[M]`` in ``[0, 1]``.
    Returns:
        ``(x_tau [M, ...], v [M, ...])``: :math:`(1 - \tau)x_0 + \tau\epsilon` and the
        regression target :math:`\epsilon - x_0`.
    """
    t = tau.view(-1, *([1] * (x0.dim() - 1))).to(x0.dtype)
    return (1.0 - t) * x0 + t * noise, noise - x0


def flow_timesteps(tau_start: torch.Tensor, steps: int) -> torch.Tensor:
    r"""Per-sample Euler grids from ``tau_start`` down to 0, evenly spaced.

    :math:`\tau_j = \tau_{start} (S - j) / S`, ``j = 0..S``.

    Args:
        tau_start: float ``[M]`` in ``(0, 1]``.
        steps: ``S >= 1`` (network evaluations).
    Returns:
        float ``[S + 1, M]``, decreasing along the first axis, the last row 0.
    """
    check_range("steps", steps, 1, None)
    j = torch.arange(steps, -1, -1, device=tau_start.device, dtype=tau_start.dtype)
    return tau_start.unsqueeze(0) * (j / steps).unsqueeze(1)


def flow_start(error_var: torch.Tensor, tau_max: float = 1.0) -> torch.Tensor:
    r""":math:`\tau^* = \sigma_e / (1 + \sigma_e)`, the point of the path whose noise
    matches an estimate's (module docstring).

    Args:
        error_var: float ``[M]``, :math:`\sigma_e^2 > 0` per estimate (normalized maps).
        tau_max: upper bound of the result, in ``(0, 1]``.
    Returns:
        float ``[M]`` in ``(0, tau_max]``.
    """
    check_range("tau_max", tau_max, 0.0, 1.0, low_inclusive=False)
    sigma = error_var.clamp_min(0.0).sqrt()
    return (sigma / (1.0 + sigma)).clamp(max=tau_max)


def flow_sigma(tau: torch.Tensor, tau_next: torch.Tensor, eta: float) -> torch.Tensor:
    r"""The noise :math:`s` of the step from :math:`\tau` to :math:`\tau' < \tau`,
    elementwise (module docstring; ``eta = 1``: the posterior :math:`q(x_{\tau'} \mid
    x_\tau, x_0)`'s standard deviation, 0 when :math:`\tau' = 0`)."""
    ratio = (1.0 - tau) * tau_next / ((1.0 - tau_next) * tau)
    return eta * tau_next * (1.0 - ratio.square()).clamp_min(0.0).sqrt()


def flow_coefficients(
    tau: torch.Tensor, tau_next: torch.Tensor, eta: float = 0.0
) -> dict[str, torch.Tensor]:
    r"""The flow step of :func:`flow_step` folded into a few multiply-adds, elementwise.

    With :math:`d = \sqrt{\tau'^2 - s^2}` and :math:`\hat\epsilon = (x_\tau - (1 - \tau)
    \hat x_0)/\tau`, the step :math:`(1 - \tau')\hat x_0 + d\,\hat\epsilon + s z` is
    ``coef_x0 * x0 + coef_x * x + noise * z``.

    Args:
        tau: float ``[...]`` in ``(0, 1]``.
        tau_next: float ``[...]`` in ``[0, tau)``.
        eta: step noise in ``[0, 1]``.
    Returns:
        ``coef_x0`` :math:`(1 - \tau') - d(1 - \tau)/\tau`, ``coef_x`` :math:`d/\tau`,
        ``noise`` :math:`s` (:func:`flow_sigma`).
    """
    s = flow_sigma(tau, tau_next, eta)
    d = (tau_next.square() - s.square()).clamp_min(0.0).sqrt()
    return {"coef_x0": (1.0 - tau_next) - d * (1.0 - tau) / tau, "coef_x": d / tau, "noise": s}


def flow_step(
    x: torch.Tensor,
    v: torch.Tensor,
    tau: torch.Tensor,
    tau_next: torch.Tensor,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    clip_x0: bool = True,
    coefficients: dict[str, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One step of the rectified flow from :math:`\tau` to :math:`\tau'`, per sample.

    ``eta = 0``: the Euler step :math:`x + (\tau' - \tau) v` with :math:`v` re-derived from
    the clipped :math:`\hat x_0` (exactly the Euler step when nothing is clipped);
    ``eta > 0``: the noisy step of the module docstring. Evaluated in the folded form of
    :func:`flow_coefficients`.

    Args:
        x: float ``[M, ...]``, :math:`x_\tau`.
        v: float ``[M, ...]``, the predicted velocity :math:`v_\theta(x_\tau, \tau)`.
        tau: float ``[M]`` in ``(0, 1]``.
        tau_next: float ``[M]`` in ``[0, tau)``.
        eta: step noise in ``[0, 1]``.
        generator: source of :math:`z`; required when ``eta > 0``.
        clip_x0: clip :math:`\hat x_0` to ``[-1, 1]`` (the data range).
        coefficients: :func:`flow_coefficients` of ``(tau, tau_next, eta)`` when the caller
            has them already (a sampler computes every step's at once), each ``[M]``.
    Returns:
        ``(x_next [M, ...], x0_hat [M, ...])``.
    """
    if not 0.0 <= eta <= 1.0:
        check_range("eta", eta, 0.0, 1.0)
    if eta > 0 and generator is None:
        raise ValueError(f"generator is None with eta={eta}: stochastic steps need one")
    shape = (-1, *([1] * (x.dim() - 1)))
    c = flow_coefficients(tau, tau_next, eta) if coefficients is None else coefficients
    x0 = x - tau.view(shape).to(x.dtype) * v
    if clip_x0:
        x0 = x0.clamp(-1.0, 1.0)
    out = c["coef_x0"].view(shape) * x0 + c["coef_x"].view(shape) * x
    if eta > 0:
        z = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        out = out + c["noise"].view(shape) * z
    return out, x0
