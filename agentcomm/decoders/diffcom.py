r"""Receiver B: diffusion posterior sampling through the known JSCC encoder and channel (DiffCom).

After Wang et al., "DiffCom: Channel Received Signal is a Natural Condition
to Guide Diffusion Posterior Sampling", IEEE JSAC 2025, which applies
diffusion posterior sampling (DPS, Chung et al., ICLR 2023) with the
*received signal* as the measurement and the JSCC encoder followed by the
channel gain as the forward operator:

.. math::
    y = \hat h \odot f_\phi(x_0) + n,\qquad
    \mathcal A(x_0) = \hat h \odot f_\phi(L x_0)

with :math:`f_\phi` the (differentiable, power-normalized) JSCC encoder. At each
reverse step (DPS, Algorithm 1, here with DDIM, :math:`\eta = 0`):

.. math::
    \hat x_0 &= \big(x_t - \sqrt{1 - \bar\alpha_t}\,\epsilon_\theta(x_t, t)\big) / \sqrt{\bar\alpha_t} \\
    x'_{t'} &= \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1 - \bar\alpha_{t'}}\,\epsilon_\theta(x_t, t) \\
    x_{t'} &= x'_{t'} - \zeta\, \nabla_{x_t} \big\| y - \mathcal A(\hat x_0) \big\|_2

The gradient of the *norm* (not its square) is DPS's normalized step
:math:`\zeta_i = \zeta / \|y - \mathcal A(\hat x_0)\|` applied to the squared norm
(up to a factor 2), so ``zeta`` is independent of the noise level. The
gradient runs through the prior's network and the encoder. :math:`\hat x_0`
is clipped to ``[-1, 1]`` with a straight-through gradient, so cells at the
clip bound still feel the measurement.

Start: from pure noise at :math:`t = T-1` (DPS), or, given a
:class:`~agentcomm.decoders.cddm.CDDMReceiver`, from the JSCC estimate at its
SNR-matched step (as in DiffCom's HiFi variant, which starts from the
deterministic decoder's output), which lets few-step sampling work.

Blind variant (no CSI, ``h_hat=None``, block fading). The gain is estimated jointly with
the map: at every guided step the forward operator uses the least-squares (for Gaussian
noise, maximum-likelihood) block gain of :math:`y` against the encoded current estimate,

.. math::
    \hat h_t = \frac{f_\phi(L\hat x_0)^H y}{\|f_\phi(L\hat x_0)\|^2},\qquad
    \mathcal A_t(x_0) = \hat h_t\, f_\phi(L x_0),

one complex scalar per message, computed batched and held fixed (detached) in the
gradient. As :math:`\hat h_t` minimises :math:`\|y - h f_\phi\|` over :math:`h`, the
gradient with it held fixed is the gradient of the profile residual
:math:`\min_h \|y - h f_\phi(L\hat x_0)\|` (envelope theorem): guidance and gain
estimate alternate, EM-style, one update of each per step. The start (with ``start``)
is the CDDM receiver's blind estimate (:meth:`~agentcomm.decoders.cddm.CDDMReceiver.receiver_output`:
the gain against the prior's mean symbols, refitted after decoding), so the first guided
step fits its gain to a map decoded at that estimate rather than to noise. Pilots are
optional: with ``h_hat`` given the receiver uses it as before.

SNR. The normalized step makes the guidance independent of :math:`N_0`; the SNR enters
through the start only (the JSCC estimate and :math:`t^*`), so ``assumed_snr_db`` and the
start's ``estimate_snr`` act there.

Shape legend: ``M`` messages, ``H x W`` grid, ``k`` channel uses.
"""

from __future__ import annotations

import torch

from agentcomm._checks import check_range
from agentcomm.channels.awgn import AWGN
from agentcomm.channels.base import ChannelOutput
from agentcomm.decoders.cddm import CDDMReceiver, check_compatible
from agentcomm.decoders.data import from_unit, to_unit
from agentcomm.decoders.jscc import JSCC, _snr_vector, ls_gain
from agentcomm.decoders.prior import DiffusionPrior, ddim_step_eta

__all__ = ["DiffComReceiver", "select_zeta"]


class DiffComReceiver:
    """Posterior sampling of belief maps given the received symbols.

    Args:
        jscc: the trained codec; its encoder is the forward operator.
        prior: the trained diffusion prior over the same maps.
        steps: DDIM steps (network evaluations, each with one backward pass).
        zeta: guidance step size :math:`\\zeta >= 0` (0 gives unguided sampling).
        start: if given, start from its SNR-matched JSCC estimate; otherwise from noise.
    """

    def __init__(
        self,
        jscc: JSCC,
        prior: DiffusionPrior,
        steps: int = 10,
        zeta: float = 1.0,
        start: CDDMReceiver | None = None,
    ) -> None:
        check_compatible(jscc, prior)
        self.jscc = jscc
        self.prior = prior
        self.steps = int(check_range("steps", steps, 1, prior.num_train_timesteps))
        self.zeta = float(check_range("zeta", zeta, 0.0, None))
        if start is not None and (start.jscc is not jscc or start.prior is not prior):
            raise ValueError("start must be a CDDMReceiver built on the same jscc and prior")
        self.start = start

    def residual(self, x0: torch.Tensor, out: ChannelOutput, snr_db: torch.Tensor) -> torch.Tensor:
        """Measurement residual :math:`\\|y - \\hat h \\odot f_\\phi(L x_0)\\|_2` per message.

        Args:
            x0: float ``[M, H, W]`` normalized maps.
            out: channel output, ``y`` complex ``[M, k]``; with ``h_hat``, or ``None`` (block
                fading): :math:`\\hat h` is then the least-squares gain against
                :math:`f_\\phi(L x_0)`, detached (module docstring, blind variant).
            snr_db: float ``[M]``, the SNR the encoder was conditioned on (dB).
        Returns:
            float ``[M]``.
        """
        z = self.jscc.encoder(from_unit(x0, self.jscc.config.clip), snr_db)
        h = ls_gain(out.y, z).detach() if out.h_hat is None else out.h_hat
        r = out.y - h * z
        return (r.real.square() + r.imag.square()).sum(dim=1).sqrt()

    def decode(
        self,
        out: ChannelOutput,
        snr_db: torch.Tensor | float,
        generator: torch.Generator | None = None,
        assumed_snr_db: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """Sample belief maps consistent with the received symbols.

        Args:
            out: channel output of :meth:`JSCC.encode` symbols, ``y`` complex ``[M, k]``,
                with ``h_hat`` or without (``None``: blind, block fading).
            snr_db: the nominal SNR (dB) the transmitter conditioned its encoder on,
                scalar or ``[M]``.
            generator: source of the initial noise; required when there is no ``start``.
            assumed_snr_db: the channel SNR (dB) the receiver assumes, scalar or ``[M]``;
                the start (JSCC decoding and :math:`t^*`) uses it instead of the channel's.
                ``None``: the channel's. Without ``start`` the SNR enters nowhere.
        Returns:
            float32 ``[M, H, W]`` log-odds in ``[-L, L]`` (nats).
        """
        return self._run(out, snr_db, generator, 1, 0.0, assumed_snr_db)[:, 0]

    def sample(
        self,
        out: ChannelOutput,
        snr_db: torch.Tensor | float,
        samples: int,
        generator: torch.Generator,
        eta: float = 1.0,
        assumed_snr_db: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """Draw ``samples`` guided posterior maps per message in one batched pass.

        The start (JSCC decoding, or the initial noise) is computed once per message and
        repeated ``S`` times; every guided step then runs the prior, the encoder and their
        backward pass once on ``[M * S, H, W]``. With ``eta > 0`` each step adds DDIM
        noise (``eta = 1``: the DDPM posterior's), so the ``S`` copies differ.

        Args:
            out: channel output, ``y`` complex ``[M, k]``, with ``h_hat``.
            snr_db: the encoder's SNR (dB), scalar or ``[M]``.
            samples: ``S >= 1``.
            generator: source of all noise (same state, same maps).
            eta: step noise in ``[0, 1]``.
            assumed_snr_db: the channel SNR (dB) the receiver assumes (:meth:`decode`).
        Returns:
            float32 ``[M, S, H, W]`` log-odds in ``[-L, L]`` (nats).
        """
        s = int(check_range("samples", samples, 1, None))
        check_range("eta", eta, 0.0, 1.0)
        if eta > 0 and generator is None:
            raise ValueError(f"generator is None with eta={eta}: stochastic steps need one")
        return self._run(out, snr_db, generator, s, eta, assumed_snr_db)

    def _run(
        self,
        out: ChannelOutput,
        snr_db: torch.Tensor | float,
        generator: torch.Generator | None,
        s: int,
        eta: float,
        assumed_snr_db: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """``S = s`` guided DDIM chains per message -> log-odds ``[M, S, H, W]``."""
        m = out.y.shape[0]
        snr = _snr_vector(snr_db, m)
        if assumed_snr_db is not None:
            _snr_vector(assumed_snr_db, m, "assumed_snr_db")
        c = self.prior.config
        if self.start is not None:
            with torch.no_grad():
                x_t, t_start = self.start.initial_state(out, assumed_snr_db, snr)
            x_t, t_start = x_t.repeat_interleave(s, dim=0), t_start.repeat_interleave(s)
        else:
            if generator is None:
                raise ValueError("generator is None: sampling from noise needs a generator")
            # Independent start noise for every sample (``s = 1``: as many draws as before).
            x_t = torch.randn(m * s, c.height, c.width, generator=generator)
            t_start = torch.full((m * s,), self.prior.num_train_timesteps - 1, dtype=torch.long)
        if s > 1:
            snr = snr.repeat_interleave(s, dim=0)
            out = ChannelOutput(
                y=out.y.repeat_interleave(s, dim=0),
                h=out.h.repeat_interleave(s, dim=0),
                h_hat=None if out.h_hat is None else out.h_hat.repeat_interleave(s, dim=0),
                noise_var=out.noise_var.repeat_interleave(s, dim=0),
            )
        a = self.prior.alphas_cumprod

        def guided_step(x: torch.Tensor, t: torch.Tensor, abar_prev: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                x = x.detach().requires_grad_(self.zeta > 0)
                raw_a = a[t].view(-1, 1, 1)
                eps = self.prior.eps(x, t)
                x_prev, x0_clipped = ddim_step_eta(x, eps, a[t], abar_prev, eta, generator)
                if self.zeta == 0:
                    return x_prev.detach()
                x0_raw = (x - (1.0 - raw_a).sqrt() * eps) / raw_a.sqrt()
                # Straight-through clip: value of the clipped map, gradient of the raw one.
                x0 = x0_raw + (x0_clipped - x0_raw).detach()
                norm = self.residual(x0, out, snr)
                (grad,) = torch.autograd.grad(norm.sum(), x)
            return (x_prev - self.zeta * grad).detach()

        x0 = self.prior.denoise(x_t, t_start, self.steps, guidance=guided_step)
        return from_unit(x0, c.clip).detach().view(m, s, c.height, c.width)


@torch.no_grad()
def _mse(est: torch.Tensor, maps: torch.Tensor, clip: float) -> float:
    return float((to_unit(est, clip) - to_unit(maps, clip)).square().mean())


def select_zeta(
    jscc: JSCC,
    prior: DiffusionPrior,
    start: CDDMReceiver,
    maps: torch.Tensor,
    zeta_grid: tuple[float, ...],
    snr_db: tuple[float, ...],
    steps: int,
    generator: torch.Generator,
) -> tuple[float, dict[float, float]]:
    """Pick the DiffCom guidance step with the lowest MSE on validation maps (AWGN).

    Every candidate sees the same channel realizations (the generator state is
    restored per candidate), so differences are due to ``zeta`` alone.

    Args:
        jscc, prior, start: the receiver's parts (``start`` gives the SNR-matched start).
        maps: float ``[D, H, W]`` validation log-odds (nats), not used in training.
        zeta_grid: candidates (>= 0).
        snr_db: SNRs (dB) the MSE is averaged over.
        steps: DDIM steps of the receiver.
        generator: source of the channel noise.
    Returns:
        ``(best zeta, {zeta: mean MSE on normalized maps})``.
    """
    clip = jscc.config.clip
    state = generator.get_state()
    scores = {}
    for zeta in zeta_grid:
        generator.set_state(state)
        rx = DiffComReceiver(jscc, prior, steps=steps, zeta=zeta, start=start)
        errs = []
        for snr in snr_db:
            with torch.no_grad():
                out = AWGN().apply(jscc.encode(maps, snr), snr, generator)
            errs.append(_mse(rx.decode(out, snr), maps, clip))
        scores[float(zeta)] = sum(errs) / len(errs)
    return min(scores, key=scores.__getitem__), scores
