r"""Receiver A: channel denoising with a diffusion prior from the SNR-matched step (CDDM).

After Wu et al., "CDDM: Channel Denoising Diffusion Models for Wireless
Semantic Communications", IEEE TWC 2024: a received estimate is treated as a
sample of the diffusion's forward process at the step whose noise level
matches the channel's, and the reverse process runs from there to step 0.

Where the denoising happens, and why
------------------------------------
CDDM proper denoises the *received latent* with a prior over the JSCC
encoder's symbols. Here the denoising runs on the **map-domain estimate of the
JSCC decoder**, with the same prior over belief maps that DiffCom
(:mod:`agentcomm.decoders.diffcom`) and the environment use:

* our encoder is SNR-conditioned (FiLM), so its latent distribution changes
  with the SNR and a latent prior would itself have to be SNR-conditioned;
* a denoised latent would need a decoder retrained on denoised latents (CDDM's
  third training stage), while a map-domain prior needs nothing new;
* one prior over belief maps serves both receivers and can be trained from
  environment rollouts directly.

The price is a modelling approximation: the decoder error
:math:`\hat u - u` is treated as white Gaussian noise whose variance
:math:`\sigma_e^2(\mathrm{SNR})` is *calibrated* on validation data
(:meth:`CDDMReceiver.calibrate`), whereas it is really an MMSE error (neither
Gaussian nor independent of :math:`u`). Since the JSCC decoder is trained for
MSE it approximates :math:`E[u \mid y]`, so no post-processing of its output
can lower the MSE much; what CDDM adds is maps that look like belief maps
(the prior's support), not a lower MSE (measurements: ``docs/receivers.md``).

SNR matching
------------
With :math:`\hat u = u + \sigma_e \epsilon` and the forward process
:math:`x_t = \sqrt{\bar\alpha_t} u + \sqrt{1 - \bar\alpha_t}\,\epsilon`,

.. math::
    \sqrt{\bar\alpha_t}\,\hat u = \sqrt{\bar\alpha_t}\,u + \sqrt{\bar\alpha_t}\,\sigma_e\,\epsilon
    \quad\text{has the law of } x_t \iff \frac{1 - \bar\alpha_t}{\bar\alpha_t} = \sigma_e^2 .

So :math:`t^* = \arg\min_t \big|\log\frac{1 - \bar\alpha_t}{\bar\alpha_t} - \log \sigma_e^2\big|`
(nearest in dB: noise levels span decades; as the ratio increases with
:math:`t` this is one of the two steps around the exact match), the start is
:math:`x_{t^*} = \sqrt{\bar\alpha_{t^*}}\,\hat u`, and DDIM runs ``steps``
steps from :math:`t^*` to 0 (CDDM, Sec. III-C, uses the same
:math:`\sqrt{\bar\alpha}` scaling of the equalized signal).

Receiver knowledge
------------------
By default the receiver uses the channel output as it comes: the CSI ``h_hat`` and the
channel's :math:`N_0`. Three options relax that (:func:`receiver_output`, which the CDDM
and the flow receiver (:mod:`agentcomm.decoders.flow`) both call):

* ``snr_db`` (per call): the SNR the receiver *assumes*; the JSCC decoder and the
  SNR-matched step :math:`t^*` both use it instead of the true one
  (:func:`~agentcomm.decoders.jscc.assume_snr`), which models SNR mismatch.
* no CSI (``h_hat=None``, block fading): the gain is estimated jointly with the map
  (:func:`~agentcomm.decoders.jscc.estimate_gain`, started from the mean symbols of
  ``reference_samples`` maps drawn once from the prior, then ``blind_iters`` alternations
  of decoding and least-squares refitting).
* ``estimate_snr=True``: after that, the SNR is re-estimated from the decoding residual
  (:func:`~agentcomm.decoders.jscc.residual_snr_db`) and replaces the assumed one for the
  decoding and for :math:`t^*`, so a wrong assumption costs one extra decode, not a
  mismatched start.

Shape legend: ``M`` messages, ``H x W`` grid, ``k`` channel uses, ``G`` calibration SNRs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

from agentcomm._checks import check_range, check_tensor
from agentcomm._integrity import load_tensors, tensors_metadata
from agentcomm.channels.base import Channel, ChannelOutput
from agentcomm.decoders.data import check_maps, from_unit, to_unit
from agentcomm.decoders.jscc import (
    JSCC,
    _snr_vector,
    assume_snr,
    effective_snr_db,
    estimate_gain,
    residual_snr_db,
)
from agentcomm.decoders.prior import DiffusionPrior
from agentcomm.io import atomic_write

__all__ = [
    "CALIBRATION_FILE",
    "CDDMReceiver",
    "check_compatible",
    "interp_log",
    "receiver_output",
]

#: File name of a saved calibration table, written beside the JSCC checkpoint it belongs to.
CALIBRATION_FILE = "cddm.safetensors"


def check_compatible(jscc: JSCC, prior: DiffusionPrior) -> None:
    """Raise ``ValueError`` unless the codec and the prior share grid and clip bound."""
    a, b = jscc.config, prior.config
    for key in ("height", "width", "clip"):
        if getattr(a, key) != getattr(b, key):
            raise ValueError(
                f"jscc.config.{key}={getattr(a, key)!r} differs from prior.config.{key}="
                f"{getattr(b, key)!r}; the codec and the prior must describe the same maps"
            )


def check_calibration(snr_grid_db: torch.Tensor, error_var: torch.Tensor) -> None:
    """Check a calibration table: ``snr_grid_db [G]`` (dB, ``G >= 2``, strictly increasing)
    and ``error_var [G]`` (positive), both finite; the receivers built on it
    (:class:`CDDMReceiver`, :class:`~agentcomm.decoders.flow.FlowReceiver`) share it."""
    check_tensor("snr_grid_db", snr_grid_db, ndim=1, finite=True)
    check_tensor("error_var", error_var, shape=(snr_grid_db.shape[0],), finite=True)
    if snr_grid_db.shape[0] < 2 or not bool((snr_grid_db.diff() > 0).all()):
        raise ValueError("snr_grid_db must hold at least 2 strictly increasing SNRs (dB)")
    if not bool((error_var > 0).all()):
        raise ValueError(f"error_var must be positive; got min {float(error_var.min())}")


def interp_log(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Interpolate positive values ``fp`` at ``x`` linearly in ``log fp`` (clamped at the ends).

    Error variances fall roughly exponentially in SNR (dB), so interpolating
    their logarithm is accurate on a coarse grid.

    Args:
        x: float ``[M]`` query points.
        xp: float ``[G]`` increasing grid.
        fp: float ``[G]`` positive values on the grid.
    Returns:
        float ``[M]``.
    """
    xc = x.clamp(float(xp[0]), float(xp[-1]))
    i = torch.searchsorted(xp, xc).clamp(1, xp.shape[0] - 1)
    w = (xc - xp[i - 1]) / (xp[i] - xp[i - 1])
    lf = fp.log()
    return torch.exp(lf[i - 1] + w * (lf[i] - lf[i - 1]))


def receiver_output(
    jscc: JSCC,
    out: ChannelOutput,
    reference_maps: Callable[[], torch.Tensor],
    blind_iters: int,
    estimate_snr: bool,
    snr_db: torch.Tensor | float | None = None,
    encoder_snr_db: torch.Tensor | float | None = None,
) -> ChannelOutput:
    """The channel output as a receiver on ``jscc`` uses it (module docstring, receiver
    knowledge): the one implementation behind :meth:`CDDMReceiver.receiver_output` and
    :meth:`~agentcomm.decoders.flow.FlowReceiver.receiver_output`.

    Args:
        jscc: the codec whose decoder and encoder the estimates use.
        out: channel output, ``y`` complex ``[M, k]``, ``h_hat`` or ``None`` (block fading).
        reference_maps: returns float ``[R, H, W]`` typical maps (nats); called only without
            CSI (their mean symbols start the blind gain estimate).
        blind_iters: alternations of the blind gain estimate, ``>= 0``.
        estimate_snr: re-estimate the SNR from the decoding residual.
        snr_db: the SNR (dB) the receiver assumes, finite, scalar or ``[M]``; ``None``: the
            channel's.
        encoder_snr_db: the SNR (dB) the encoder was conditioned on (re-encoding of the
            blind and residual estimates); ``None``: the assumed SNR.
    Returns:
        ``out`` itself with CSI, ``snr_db=None`` and ``estimate_snr=False``; otherwise a
        copy with ``noise_var`` (assumed or estimated) and ``h_hat`` (blind estimate where
        missing) replaced.
    """
    rx = out if snr_db is None else assume_snr(out, snr_db, "snr_db")
    if rx.h_hat is not None and not estimate_snr:
        return rx
    m = rx.y.shape[0]
    if encoder_snr_db is None:
        enc = -10.0 * torch.log10(rx.noise_var.reshape(m).float())
    else:
        enc = _snr_vector(encoder_snr_db, m, "encoder_snr_db")
    if rx.h_hat is None:
        h_hat = estimate_gain(jscc, rx, enc, reference_maps(), blind_iters)
        rx = ChannelOutput(y=rx.y, h=rx.h, h_hat=h_hat, noise_var=rx.noise_var)
    if estimate_snr:
        rx = assume_snr(rx, residual_snr_db(jscc, rx, enc), "estimated snr_db")
    return rx


class _ReceiverKnowledge:
    """What a receiver started from the JSCC estimate knows of the channel, shared by
    :class:`CDDMReceiver` and :class:`~agentcomm.decoders.flow.FlowReceiver`: its options
    (``steps``, ``estimate_snr``, ``blind_iters``, ``reference_samples``), the reference maps
    of the blind gain estimate and :func:`receiver_output` with them. ``_model`` names the
    attribute holding the generative model (``sample(n, steps, generator)`` draws maps)."""

    _model: str

    def _knowledge(
        self,
        jscc: JSCC,
        snr_grid_db: torch.Tensor,
        error_var: torch.Tensor,
        estimate_snr: bool,
        blind_iters: int,
        reference_samples: int,
    ) -> None:
        """Check and hold what both receivers know: the JSCC, the calibration table and the
        options other than ``steps``."""
        check_calibration(snr_grid_db, error_var)
        self.jscc = jscc
        self.snr_grid_db = snr_grid_db.float()
        self.error_var_table = error_var.float()
        if not isinstance(estimate_snr, bool):
            raise ValueError(f"estimate_snr={estimate_snr!r} must be a bool")
        self.estimate_snr = estimate_snr
        self.blind_iters = int(check_range("blind_iters", blind_iters, 0, 100))
        self.reference_samples = int(check_range("reference_samples", reference_samples, 1, None))
        self._reference: torch.Tensor | None = None

    def error_var(self, snr_db: torch.Tensor) -> torch.Tensor:
        """Calibrated :math:`\\sigma_e^2` at SNRs (dB) float ``[M]`` -> float ``[M]``."""
        return interp_log(snr_db.float(), self.snr_grid_db, self.error_var_table)

    def options(self, **changes):
        """A copy sharing the models and the calibration, with ``steps``, ``estimate_snr``,
        ``blind_iters`` or ``reference_samples`` changed."""
        kw = {
            "steps": self.steps,
            "estimate_snr": self.estimate_snr,
            "blind_iters": self.blind_iters,
            "reference_samples": self.reference_samples,
        }
        unknown = set(changes) - set(kw)
        if unknown:
            raise ValueError(f"unknown options {sorted(unknown)}; allowed {sorted(kw)}")
        kw.update(changes)
        model = getattr(self, self._model)
        return type(self)(self.jscc, model, self.snr_grid_db, self.error_var_table, **kw)

    @torch.no_grad()
    def reference_maps(self) -> torch.Tensor:
        """``reference_samples`` maps drawn once from the receiver's generative model (fixed
        seed, 20 steps), cached: float ``[R, H, W]`` log-odds (nats). They give the blind
        gain estimate its mean symbols."""
        if self._reference is None:
            g = torch.Generator().manual_seed(0)
            self._reference = getattr(self, self._model).sample(self.reference_samples, 20, g)
        return self._reference

    def receiver_output(
        self,
        out: ChannelOutput,
        snr_db: torch.Tensor | float | None = None,
        encoder_snr_db: torch.Tensor | float | None = None,
    ) -> ChannelOutput:
        """The channel output as this receiver uses it (:func:`receiver_output` with this
        receiver's options and :meth:`reference_maps`).

        Args:
            out: channel output, ``y`` complex ``[M, k]``, ``h_hat`` or ``None`` (block fading).
            snr_db: the SNR (dB) the receiver assumes, finite, scalar or ``[M]``; ``None``:
                the channel's.
            encoder_snr_db: the SNR (dB) the encoder was conditioned on (re-encoding of the
                blind and residual estimates); ``None``: the assumed SNR.
        Returns:
            ``out`` itself with the defaults (CSI given, ``snr_db=None``,
            ``estimate_snr=False``); otherwise a copy with ``noise_var`` (assumed or
            estimated) and ``h_hat`` (blind estimate where missing) replaced.
        """
        return receiver_output(
            self.jscc,
            out,
            self.reference_maps,
            self.blind_iters,
            self.estimate_snr,
            snr_db,
            encoder_snr_db,
        )

    @torch.no_grad()
    def decode(
        self,
        out: ChannelOutput,
        snr_db: torch.Tensor | float | None = None,
        encoder_snr_db: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """Reconstruct belief maps from a channel output: the receiver's deterministic steps
        (DDIM with :math:`\\eta = 0`, or the flow's Euler steps) from its matched start
        (:meth:`initial_state`).

        Args:
            out: channel output of :meth:`JSCC.encode` symbols, ``y`` complex ``[M, k]``, with
                CSI or (block fading) without.
            snr_db: the SNR (dB) the receiver assumes; ``None``: the channel's.
            encoder_snr_db: the encoder's SNR (dB); ``None``: the assumed SNR.
        Returns:
            float32 ``[M, H, W]`` log-odds in ``[-L, L]`` (nats).
        """
        model = getattr(self, self._model)
        x, start = self.initial_state(out, snr_db, encoder_snr_db)
        return from_unit(model.denoise(x, start, self.steps), model.config.clip)

    @torch.no_grad()
    def sample(
        self,
        out: ChannelOutput,
        samples: int,
        generator: torch.Generator,
        eta: float = 1.0,
        snr_db: torch.Tensor | float | None = None,
        encoder_snr_db: torch.Tensor | float | None = None,
    ) -> torch.Tensor:
        """Draw ``samples`` posterior maps per message in one batched pass.

        The JSCC decoder runs once on the ``M`` messages (after the blind gain estimate
        without CSI); the ``M * S`` copies of their matched starts then take the ``steps``
        reverse steps together, each one network call on ``[M * S, H, W]``. With ``eta = 1``
        each step adds its full noise (for DDIM the DDPM posterior's), so the maps are
        draws from the posterior given the matched start.

        Args:
            out: channel output, ``y`` complex ``[M, k]``, with CSI or (block fading) without.
            samples: ``S >= 1``.
            generator: source of the step noise (same state, same maps).
            eta: step noise in ``[0, 1]``; 0 makes every sample equal to :meth:`decode`.
            snr_db: the SNR (dB) the receiver assumes; ``None``: the channel's.
            encoder_snr_db: the encoder's SNR (dB); ``None``: the assumed SNR.
        Returns:
            float32 ``[M, S, H, W]`` log-odds in ``[-L, L]`` (nats).
        """
        s = int(check_range("samples", samples, 1, None))
        model = getattr(self, self._model)
        x, start = self.initial_state(out, snr_db, encoder_snr_db)
        m, h, w = x.shape
        x0 = model.denoise(
            x.repeat_interleave(s, dim=0),
            start.repeat_interleave(s),
            self.steps,
            eta=eta,
            generator=generator,
        )
        return from_unit(x0, model.config.clip).view(m, s, h, w)


class CDDMReceiver(_ReceiverKnowledge):
    """JSCC decoding followed by diffusion denoising from the SNR-matched step.

    Args:
        jscc: the trained codec (its decoder gives the map-domain estimate).
        prior: the trained diffusion prior over the same maps.
        snr_grid_db: float ``[G]`` increasing SNRs (dB) of the calibration table.
        error_var: float ``[G]`` positive, the decoder's per-cell error variance
            :math:`\\sigma_e^2` on normalized maps at each grid SNR.
        steps: DDIM steps from :math:`t^*` to 0 (network evaluations).
        estimate_snr: re-estimate the SNR from the decoding residual instead of trusting
            the channel's or the assumed one (module docstring).
        blind_iters: alternations of the blind gain estimate (used only without CSI).
        reference_samples: prior draws whose mean symbols start the blind gain estimate.

    Use :meth:`calibrate` to build one from validation data.
    """

    _model = "prior"

    def __init__(
        self,
        jscc: JSCC,
        prior: DiffusionPrior,
        snr_grid_db: torch.Tensor,
        error_var: torch.Tensor,
        steps: int = 5,
        estimate_snr: bool = False,
        blind_iters: int = 2,
        reference_samples: int = 256,
    ) -> None:
        check_compatible(jscc, prior)
        self._knowledge(jscc, snr_grid_db, error_var, estimate_snr, blind_iters, reference_samples)
        self.prior = prior
        self.steps = int(check_range("steps", steps, 1, prior.num_train_timesteps))

    @classmethod
    @torch.no_grad()
    def calibrate(
        cls,
        jscc: JSCC,
        prior: DiffusionPrior,
        maps: torch.Tensor,
        channel: Channel,
        generator: torch.Generator,
        snr_grid_db: torch.Tensor | None = None,
        steps: int = 5,
    ) -> CDDMReceiver:
        """Measure the JSCC decoder's error variance against SNR and build a receiver.

        Args:
            jscc: the trained codec.
            prior: the trained prior.
            maps: float ``[D, H, W]`` validation log-odds (nats), not used in training.
            channel: the calibration channel; use AWGN, so that nominal and effective SNR agree.
            generator: source of the channel noise.
            snr_grid_db: float ``[G]``; default -5 to 30 dB in 1 dB steps.
            steps: DDIM steps of the receiver.
        Returns:
            A :class:`CDDMReceiver` with :math:`\\sigma_e^2` = mean squared error of the
            normalized maps at each grid SNR.
        """
        c = jscc.config
        check_maps("maps", maps, c.height, c.width)
        grid = torch.arange(-5.0, 30.5, 1.0) if snr_grid_db is None else snr_grid_db.float()
        u = to_unit(maps, c.clip)
        err = []
        for snr in grid.tolist():
            est, _ = jscc.transmit(maps, channel, snr, generator)
            err.append((to_unit(est, c.clip) - u).square().mean())
        return cls(jscc, prior, grid, torch.stack(err).clamp_min(1e-8), steps=steps)

    def save_calibration(self, directory: str | os.PathLike[str]) -> Path:
        """Write the calibration table to ``directory / cddm.safetensors``.

        Saved beside the JSCC checkpoint it was measured on, so that loading needs no
        recalibration (:meth:`from_calibration`). The file holds ``snr_grid_db`` and
        ``error_var`` (float32 ``[G]``); its metadata the DDIM ``steps`` and the JSCC's
        ``channel_uses``, checked at load.

        Returns:
            The path of the written file.
        """
        out = Path(directory)
        meta = {"steps": str(self.steps), "channel_uses": str(self.jscc.config.channel_uses)}
        tensors = {"snr_grid_db": self.snr_grid_db.cpu(), "error_var": self.error_var_table.cpu()}
        path = out / CALIBRATION_FILE
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
        return path

    @classmethod
    def from_calibration(
        cls,
        jscc: JSCC,
        prior: DiffusionPrior,
        directory: str | os.PathLike[str],
        steps: int | None = None,
    ) -> CDDMReceiver:
        """Build a receiver from a table written by :meth:`save_calibration`.

        Args:
            jscc: the codec the table was measured on.
            prior: the prior.
            directory: the folder holding ``cddm.safetensors``.
            steps: DDIM steps; default: the saved value.
        Raises:
            ValueError: no table, or one measured on a JSCC with another ``channel_uses``.
        """
        path = Path(directory) / CALIBRATION_FILE
        if not path.is_file():
            raise ValueError(f"directory={str(directory)!r} holds no {CALIBRATION_FILE}")
        meta = tensors_metadata(path)
        k = jscc.config.channel_uses
        if meta.get("channel_uses") != str(k):
            raise ValueError(
                f"{path} was calibrated for channel_uses={meta.get('channel_uses')}; "
                f"the given jscc uses {k}"
            )
        table = load_tensors(path)
        return cls(
            jscc,
            prior,
            table["snr_grid_db"],
            table["error_var"],
            steps=int(meta["steps"]) if steps is None else steps,
        )

    def start_step(self, noise_to_signal: torch.Tensor) -> torch.Tensor:
        """SNR-matched start step: :math:`t^* = \\arg\\min_t |\\log\\frac{1-\\bar\\alpha_t}{\\bar\\alpha_t} - \\log r|`.

        Args:
            noise_to_signal: float ``[M]``, positive ratios :math:`r = \\sigma_e^2`.
        Returns:
            long ``[M]`` in ``[0, T-1]``.
        """
        check_tensor("noise_to_signal", noise_to_signal, ndim=1, finite=True)
        if not bool((noise_to_signal > 0).all()):
            raise ValueError("noise_to_signal must be positive")
        table = self.prior.noise_to_signal().log()
        return (table.unsqueeze(0) - noise_to_signal.float().log().unsqueeze(1)).abs().argmin(1)

    def initial_state(
        self,
        out: ChannelOutput,
        snr_db: torch.Tensor | float | None = None,
        encoder_snr_db: torch.Tensor | float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """JSCC estimate mapped into the diffusion at its matched step.

        Args:
            out: channel output, ``y`` complex ``[M, k]``, with receiver CSI or, for block
                fading, without (``h_hat=None``: blind gain estimate).
            snr_db: the SNR (dB) the receiver assumes; ``None``: the channel's
                (:meth:`receiver_output`).
            encoder_snr_db: the encoder's SNR (dB); ``None``: the assumed SNR.
        Returns:
            ``(x_t float [M, H, W], t_star long [M])`` with :math:`x_{t^*} = \\sqrt{\\bar\\alpha_{t^*}}\\hat u`.
        """
        out = self.receiver_output(out, snr_db, encoder_snr_db)
        u_hat = to_unit(self.jscc.decode(out), self.jscc.config.clip)
        snr = effective_snr_db(out, self.jscc.config.channel_uses).mean(dim=1)
        t_star = self.start_step(self.error_var(snr))
        return self.prior.alphas_cumprod[t_star].sqrt().view(-1, 1, 1) * u_hat, t_star
