r"""A few-step prior over belief maps (rectified flow) and the receiver that samples it.

:class:`FlowPrior` is a rectified flow (Liu et al., ICLR 2023) over the same normalized
log-odds maps as the DDPM prior (:class:`~agentcomm.decoders.prior.DiffusionPrior`,
which stays the reference): a velocity field :math:`v_\theta(x_\tau, \tau)` for the
straight path :math:`x_\tau = (1 - \tau)x_0 + \tau\epsilon` (target
:math:`\epsilon - x_0`), read by default from a preconditioned clean-map estimate
(:attr:`FlowConfig.prediction`, ``"skip"``), so that a small network serves both ends of
the path. Its paths are nearly straight, so a few Euler steps reach a clean map where DDIM
needs more. The path, the SNR matching and the
(noisy) Euler step are written out in :mod:`agentcomm.diffusion`, the one sampler module
of the project (:func:`~agentcomm.diffusion.flow_interpolate`,
:func:`~agentcomm.diffusion.flow_start`, :func:`~agentcomm.diffusion.flow_step`).

:class:`FlowReceiver` is the analogue of CDDM (:mod:`agentcomm.decoders.cddm`) on the
flow: the JSCC decoder's estimate :math:`\hat u` with calibrated error variance
:math:`\sigma_e^2(\mathrm{SNR})` (the CDDM calibration table of the same JSCC) enters the
path at :math:`\tau^* = \sigma_e/(1 + \sigma_e)` as :math:`x_{\tau^*} = (1 - \tau^*)\hat u`,
and ``steps`` Euler steps run from there to :math:`\tau = 0`. Its receiver knowledge is
CDDM's (:func:`~agentcomm.decoders.cddm.receiver_output`: an assumed SNR, the SNR
estimated from the residual, and without CSI on block fading the blind gain estimate,
started from the mean symbols of ``reference_samples`` maps drawn once from the flow).
Network calls per decode (with CSI):
one JSCC decoder call plus ``steps`` (at most :data:`MAX_STEPS`, so at most 4 in all),
each one batched call over every message and sample.

Shape legend: ``M`` messages, ``S`` samples, ``H x W`` grid.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from agentcomm._checks import check_range
from agentcomm.channels.base import ChannelOutput
from agentcomm.config import Config, choices, rng
from agentcomm.decoders.cddm import (
    CDDMReceiver,
    _ReceiverKnowledge,
)
from agentcomm.decoders.data import from_unit, to_unit
from agentcomm.decoders.jscc import JSCC, effective_snr_db
from agentcomm.decoders.prior import _MLPDenoiser, train_prior
from agentcomm.diffusion import (
    flow_coefficients,
    flow_interpolate,
    flow_start,
    flow_step,
    flow_timesteps,
)

__all__ = ["MAX_STEPS", "TAU_FLOOR", "FlowConfig", "FlowPrior", "FlowReceiver", "train_flow"]

#: Most Euler steps a :class:`FlowReceiver` takes: with the JSCC decoder, 4 network calls.
MAX_STEPS = 3
#: Smallest :math:`\tau` of training (receivers start at :math:`\tau^* > 0.005` on the
#: shipped calibration, 25 dB).
TAU_FLOOR = 1e-4
#: The network sees :math:`\tau` as a timestep of this scale (its sinusoidal embedding is
#: the DDPM prior's, built for timesteps in ``[0, 1000)``).
_TIME_SCALE = 1000.0


@dataclass(frozen=True)
class FlowConfig(Config):
    r"""Architecture and training path of a :class:`FlowPrior`.

    Attributes:
        height: grid rows ``H``.
        width: grid columns ``W``.
        clip: log-odds bound ``L`` (nats).
        hidden: width of the residual MLP.
        depth: residual blocks.
        focus_fraction: share of each training batch whose :math:`\tau` is drawn from
            ``[0, focus_tau]`` instead of ``[0, 1]``: receivers start at small :math:`\tau`
            (:math:`\tau^* \approx 0.1` at 0 dB), where the velocity field must be sharpest.
        focus_tau: upper end of the focused draws, in ``(0, 1]``.
        prediction: what the network :math:`F` outputs, always read as a clean-map estimate
            :math:`\hat x_0` with :math:`v_\theta = (x_\tau - \hat x_0)/\tau`.
            ``"skip"`` (default): the preconditioned form of Karras et al. ("Elucidating the
            Design Space of Diffusion-Based Generative Models", NeurIPS 2022) on this path,
            :math:`\hat x_0 = \mu + c_{skip} r + c_{out} F(c_{in} r, \tau)` with
            :math:`r = x_\tau - (1 - \tau)\mu`, :math:`D = \sqrt{(1 - \tau)^2\sigma_d^2 +
            \tau^2}`, :math:`c_{skip} = (1 - \tau)\sigma_d^2 / D^2` (the linear estimate of
            :math:`x_0`), :math:`c_{out} = \tau\sigma_d / D`, :math:`c_{in} = 1/D`, trained on
            :math:`\|\hat x_0 - x_0\|^2 / c_{out}^2` (a unit-variance target): near
            :math:`\tau = 0` the map passes through the skip (what a receiver starting
            there needs), near 1 the network draws it, and a network narrower than the
            map carries neither the noise nor the map through. ``"sample"``:
            :math:`\hat x_0 = F`, on :math:`\|\hat x_0 - x_0\|^2/\max(\tau,
            \tau_{min})^2` (Li & He, "Back to Basics: Let Denoising Generative Models
            Denoise", 2025). ``"velocity"``: :math:`v_\theta = F`, on
            :math:`\|v_\theta - (\epsilon - x_0)\|^2`.
        min_tau: :math:`\tau_{min}` of the ``"sample"`` loss weight.
        data_mean: :math:`\mu`, the mean cell of the normalized maps (``"skip"``).
        data_std: :math:`\sigma_d`, their standard deviation (``"skip"``).
    """

    height: int = field(default=16, metadata=rng(1))
    width: int = field(default=16, metadata=rng(1))
    clip: float = field(default=6.0, metadata=rng(0.0, low_inclusive=False))
    hidden: int = field(default=128, metadata=rng(1))
    depth: int = field(default=3, metadata=rng(1))
    focus_fraction: float = field(default=0.5, metadata=rng(0.0, 1.0))
    focus_tau: float = field(default=0.3, metadata=rng(0.0, 1.0, low_inclusive=False))
    prediction: str = field(default="skip", metadata=choices("skip", "sample", "velocity"))
    min_tau: float = field(default=0.05, metadata=rng(0.0, 1.0, low_inclusive=False))
    data_mean: float = field(default=0.0, metadata=rng(-1.0, 1.0))
    data_std: float = field(default=0.5, metadata=rng(0.0, 1.0, low_inclusive=False))


class FlowPrior(nn.Module):
    r""":math:`p_\theta(x_0)` over normalized belief maps as a rectified flow.

    Args:
        config: architecture and training path.

    Example:
        >>> import torch
        >>> flow = FlowPrior(FlowConfig(height=8, width=8, hidden=32, depth=1))
        >>> flow.sample(3, steps=2, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3, 8, 8])
    """

    def __init__(self, config: FlowConfig) -> None:
        super().__init__()
        if not isinstance(config, FlowConfig):
            raise ValueError(f"config must be a FlowConfig, got {type(config).__name__}")
        self.config = config
        self.net = _MLPDenoiser(config.height * config.width, config.hidden, config.depth)

    def velocity(self, x: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        r""":math:`v_\theta(x_\tau, \tau)`: float ``[M, H, W]`` and float ``[M]`` in ``(0, 1]``
        -> float ``[M, H, W]`` (one network call)."""
        if self.config.prediction == "velocity":
            return self.net(x, tau * _TIME_SCALE)
        return (x - self._x0(x, tau)[0]) / tau.view(-1, *([1] * (x.dim() - 1)))

    def _x0(
        self, x: torch.Tensor, tau: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x0_hat, F, c_out)`` of the ``"skip"`` and ``"sample"`` forms (config docstring)."""
        c = self.config
        t = tau.view(-1, *([1] * (x.dim() - 1)))
        if c.prediction == "sample":
            out = self.net(x, tau * _TIME_SCALE)
            return out, out, torch.ones_like(t)
        mu, sd2 = c.data_mean, c.data_std**2
        r = x - (1.0 - t) * mu
        d2 = (1.0 - t).square() * sd2 + t.square()
        c_out = t * c.data_std * d2.rsqrt()
        out = self.net(r * d2.rsqrt(), tau * _TIME_SCALE)
        return mu + (1.0 - t) * sd2 / d2 * r + c_out * out, out, c_out

    def loss(self, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        r"""Flow-matching loss of :attr:`FlowConfig.prediction` at :math:`\tau` drawn as its
        ``focus_*`` fields say (``"velocity"``: :math:`\mathbb E\|\epsilon - x_0 -
        v_\theta(x_\tau, \tau)\|^2`; the clean-map forms: their weighted velocity error).

        Args:
            x0: float ``[M, H, W]`` normalized maps in ``[-1, 1]``.
            generator: source of :math:`\tau` and :math:`\epsilon`.
        Returns:
            scalar tensor.
        """
        m, dev = x0.shape[0], generator.device
        c = self.config
        # tau in [TAU_FLOOR, 1]: the "skip" weight 1 / c_out^2 is unbounded at tau = 0.
        u = 1.0 - torch.rand(m, generator=generator, device=dev)
        focused = torch.rand(m, generator=generator, device=dev) < c.focus_fraction
        tau = torch.where(focused, u * c.focus_tau, u).clamp_min(TAU_FLOOR)
        noise = torch.randn(x0.shape, generator=generator, device=dev)
        x_tau, target = flow_interpolate(x0, noise, tau)
        if c.prediction == "velocity":
            return nn.functional.mse_loss(self.net(x_tau, tau * _TIME_SCALE), target)
        x0_hat, _, c_out = self._x0(x_tau, tau)
        if c.prediction == "skip":
            return ((x0_hat - x0) / c_out).square().mean()
        # (x_tau - x0_hat) / tau - v = (x0 - x0_hat) / tau: the velocity error, with the
        # weight bounded near tau = 0.
        w = tau.clamp_min(c.min_tau).view(-1, *([1] * (x0.dim() - 1)))
        return ((x0_hat - x0) / w).square().mean()

    def denoise(
        self,
        x: torch.Tensor,
        tau_start: torch.Tensor,
        steps: int,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Euler steps from per-map start points down to a clean map.

        Args:
            x: float ``[M, H, W]``, the maps at their start points.
            tau_start: float ``[M]`` in ``(0, 1]``.
            steps: Euler steps (network calls).
            eta: step noise in ``[0, 1]`` (:func:`~agentcomm.diffusion.flow_step`); 0 is the
                deterministic Euler step.
            generator: source of the step noise; required when ``eta > 0``.
        Returns:
            float ``[M, H, W]``: normalized maps in ``[-1, 1]``.
        """
        check_range("eta", eta, 0.0, 1.0)
        if eta > 0 and generator is None:
            raise ValueError(f"generator is None with eta={eta}: stochastic steps need one")
        grid = flow_timesteps(tau_start.to(x.dtype), steps)
        # Every step's coefficients at once ([S, M] each): one op each instead of one per step.
        coef = flow_coefficients(grid[:-1], grid[1:], eta)
        for j in range(steps):
            step = {key: c[j] for key, c in coef.items()}
            v = self.velocity(x, grid[j])
            x, _ = flow_step(x, v, grid[j], grid[j + 1], eta, generator, coefficients=step)
        return x.clamp(-1.0, 1.0)

    @torch.no_grad()
    def sample(self, n: int, steps: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``n`` belief maps with ``steps`` Euler steps from :math:`x_1 \\sim \\mathcal N(0, I)`.

        Returns:
            float32 ``[n, H, W]`` log-odds in ``[-L, L]`` (nats).
        """
        check_range("n", n, 1, None)
        check_range("steps", steps, 1, None)
        c = self.config
        x = torch.randn(n, c.height, c.width, generator=generator, device=generator.device)
        return from_unit(self.denoise(x, torch.ones(n, device=x.device), steps), c.clip)


#: Fit a :class:`FlowPrior` to belief maps by flow matching: the one training loop of the
#: map models, :func:`~agentcomm.decoders.prior.train_prior`, on the flow's own loss.
train_flow = train_prior


def _check_steps(steps: int) -> int:
    if isinstance(steps, bool) or not isinstance(steps, int):
        raise ValueError(f"steps={steps!r} must be an int in [1, {MAX_STEPS}]")
    return int(check_range("steps", steps, 1, MAX_STEPS))


class FlowReceiver(_ReceiverKnowledge):
    """JSCC decoding followed by a few flow steps from the SNR-matched point.

    Args:
        jscc: the trained codec (its decoder gives the map-domain estimate).
        flow: the trained flow over the same maps.
        snr_grid_db: float ``[G]`` increasing SNRs (dB) of the calibration table.
        error_var: float ``[G]`` positive, the decoder's per-cell error variance on
            normalized maps at each grid SNR (the CDDM calibration of ``jscc``).
        steps: Euler steps from :math:`\\tau^*` to 0, in ``[1, MAX_STEPS]``.
        estimate_snr: re-estimate the SNR from the decoding residual (as
            :class:`~agentcomm.decoders.cddm.CDDMReceiver`).
        blind_iters: alternations of the blind gain estimate (used only without CSI).
        reference_samples: flow draws whose mean symbols start the blind gain estimate.

    :meth:`from_cddm` builds one on a calibrated CDDM receiver's table.
    """

    _model = "flow"

    def __init__(
        self,
        jscc: JSCC,
        flow: FlowPrior,
        snr_grid_db: torch.Tensor,
        error_var: torch.Tensor,
        steps: int = 2,
        estimate_snr: bool = False,
        blind_iters: int = 2,
        reference_samples: int = 256,
    ) -> None:
        a, b = jscc.config, flow.config
        for key in ("height", "width", "clip"):
            if getattr(a, key) != getattr(b, key):
                raise ValueError(
                    f"jscc.config.{key}={getattr(a, key)!r} differs from flow.config.{key}="
                    f"{getattr(b, key)!r}; the codec and the flow must describe the same maps"
                )
        self._knowledge(jscc, snr_grid_db, error_var, estimate_snr, blind_iters, reference_samples)
        self.flow = flow
        self.steps = _check_steps(steps)

    @classmethod
    def from_cddm(cls, cddm: CDDMReceiver, flow: FlowPrior, steps: int = 2) -> FlowReceiver:
        """A flow receiver on the JSCC, the calibration table and the receiver-knowledge
        options (``estimate_snr``, ``blind_iters``, ``reference_samples``) of a CDDM receiver."""
        return cls(
            cddm.jscc,
            flow,
            cddm.snr_grid_db,
            cddm.error_var_table,
            steps=steps,
            estimate_snr=cddm.estimate_snr,
            blind_iters=cddm.blind_iters,
            reference_samples=cddm.reference_samples,
        )

    def initial_state(
        self,
        out: ChannelOutput,
        snr_db: torch.Tensor | float | None = None,
        encoder_snr_db: torch.Tensor | float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """JSCC estimate placed on the flow path at its matched point.

        Args:
            out: channel output, ``y`` complex ``[M, k]``, with receiver CSI or, for block
                fading, without (``h_hat=None``: blind gain estimate).
            snr_db: the SNR (dB) the receiver assumes; ``None``: the channel's
                (:meth:`receiver_output`).
            encoder_snr_db: the encoder's SNR (dB); ``None``: the assumed SNR.
        Returns:
            ``(x float [M, H, W], tau_star float [M])`` with :math:`x = (1 - \\tau^*)\\hat u`.
        """
        out = self.receiver_output(out, snr_db, encoder_snr_db)
        u_hat = to_unit(self.jscc.decode(out), self.jscc.config.clip)
        snr = effective_snr_db(out, self.jscc.config.channel_uses).mean(dim=1)
        tau = flow_start(self.error_var(snr)).to(u_hat.dtype)
        return (1.0 - tau).view(-1, 1, 1) * u_hat, tau
