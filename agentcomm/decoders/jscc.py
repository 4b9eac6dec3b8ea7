r"""Learned analog joint source-channel coding (deep JSCC) of belief maps.

An SNR-adaptive deep JSCC in the spirit of Bourtsoulatze et al. (IEEE TCCN
2019) and its attention/FiLM-conditioned variants (Xu et al., ADJSCC, IEEE
TCSVT 2022): the encoder maps a log-odds map to ``k`` complex channel symbols
of unit average energy, the decoder maps MMSE-equalized received symbols back
to a log-odds map. Both are conditioned on the SNR through FiLM layers
(Perez et al., AAAI 2018): :math:`h \mapsto (1 + \gamma(s)) \odot h + \beta(s)`.

Domain and loss. Maps enter as :math:`u = \mathrm{clip}(\ell, -L, L)/L \in [-1, 1]`
(the same domain as the diffusion prior in :mod:`agentcomm.decoders.prior`)
and the loss is the MSE on :math:`u`, i.e. on clipped log-odds. Why not BCE on
probabilities: receivers fuse beliefs by *adding* log-odds, so an error of
one nat matters as much in a confident cell as in an uncertain one, while
a loss on probabilities saturates in confident cells and lets their
log-odds drift by several nats at almost no cost.

Decoder input. Per symbol the decoder sees the MMSE-equalized symbol
:math:`\hat x_i = \hat h_i^* y_i / (|\hat h_i|^2 + N_0)` and its effective SNR
:math:`|\hat h_i|^2 / N_0` (dB), so one model serves AWGN, block and fast
Rayleigh fading; FiLM gets the message's mean effective SNR (dB).

Receiver assumptions. :math:`N_0` in that input is the channel output's ``noise_var``;
``decode(out, snr_db=...)`` replaces it by the SNR the receiver *assumes*
(:func:`assume_snr`), which is how SNR mismatch is modelled. Without CSI (``h_hat=None``)
the decoder gets the unequalised :math:`y` (the receiver takes :math:`\hat h = 1`) and the
assumed SNR for every symbol; :func:`estimate_gain` instead estimates a block-fading gain
jointly with the map (no pilots needed):

.. math::
    \hat h(\hat\ell) = \frac{f_\phi(\hat\ell)^H y}{\|f_\phi(\hat\ell)\|^2}
    = \arg\min_h \|y - h f_\phi(\hat\ell)\|^2 ,

the least-squares (and, for Gaussian noise, maximum-likelihood) gain of :math:`y` against
the re-encoded map :math:`\hat\ell`, alternated with decoding at that gain and started
from the gain against the mean symbols :math:`\bar z = E[f_\phi(\ell)]`.

The encoder and decoder are MLPs rather than conv nets: belief grids are
small (``16 x 16``), an MLP is several times faster at batch 1 than a conv
stack of similar quality, and its receptive field is the whole map.

Shape legend: ``M`` messages, ``H x W`` grid, ``k`` complex channel uses.

This module also holds the checkpoint format shared by every decoder model, written
through :mod:`agentcomm.io`: a ``model.safetensors`` file whose metadata carries the class
name and the config JSON, and a human-readable ``config.json`` beside it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

import torch
from torch import nn

from agentcomm._checks import check_choice, check_positive, check_range, check_tensor
from agentcomm._integrity import check_sha256, load_tensors, tensors_metadata
from agentcomm.channels.base import Channel, ChannelOutput, power_normalize
from agentcomm.config import Config, rng
from agentcomm.decoders.data import check_maps, from_unit, to_unit
from agentcomm.decoders.optimize import fit
from agentcomm.io import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    check_config_match,
    read_model_config,
    save_model_files,
)

__all__ = [
    "JSCC",
    "JSCCConfig",
    "JSCCDecoder",
    "JSCCEncoder",
    "assume_snr",
    "effective_snr_db",
    "estimate_gain",
    "evaluate_jscc",
    "ls_gain",
    "mean_symbols",
    "residual_snr_db",
    "load_checkpoint",
    "save_checkpoint",
    "train_jscc",
]

_SNR_SCALE_DB = 20.0  # SNRs in dB are divided by this before entering a network


@dataclass(frozen=True)
class JSCCConfig(Config):
    """Architecture of a :class:`JSCC` codec.

    Attributes:
        height: grid rows ``H``.
        width: grid columns ``W``.
        channel_uses: complex symbols per message ``k``.
        clip: log-odds bound ``L`` (nats); maps are clipped to ``[-L, L]``.
        hidden: width of the hidden layers.
        depth: number of FiLM-conditioned hidden layers in the encoder and in the decoder.
    """

    height: int = field(default=16, metadata=rng(1))
    width: int = field(default=16, metadata=rng(1))
    channel_uses: int = field(default=32, metadata=rng(1))
    clip: float = field(default=6.0, metadata=rng(0.0, low_inclusive=False))
    hidden: int = field(default=256, metadata=rng(1))
    depth: int = field(default=2, metadata=rng(1))


class _FiLMMLP(nn.Module):
    """``depth`` layers of Linear -> FiLM(cond) -> SiLU, then a linear head."""

    def __init__(self, n_in: int, hidden: int, n_out: int, depth: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.Linear(n_in if i == 0 else hidden, hidden) for i in range(depth)
        )
        self.film = nn.ModuleList(nn.Linear(1, 2 * hidden) for _ in range(depth))
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = x
        for layer, film in zip(self.layers, self.film):
            gamma, beta = film(cond).chunk(2, dim=-1)
            h = nn.functional.silu(layer(h) * (1.0 + gamma) + beta)
        return self.head(h)


class JSCCEncoder(nn.Module):
    """Belief map -> ``k`` unit-energy complex symbols, conditioned on the SNR."""

    def __init__(self, config: JSCCConfig) -> None:
        super().__init__()
        self.config = config
        n = config.height * config.width
        self.net = _FiLMMLP(n, config.hidden, 2 * config.channel_uses, config.depth)
        # Per-cell standardization of the input, fitted to the training data by
        # :func:`train_jscc`. Without it the shared mean map dominates the
        # power-normalized symbols and training stalls at predicting the mean.
        self.register_buffer("in_mean", torch.zeros(n))
        self.register_buffer("in_std", torch.ones(n))

    def forward(self, logodds: torch.Tensor, snr_db: torch.Tensor) -> torch.Tensor:
        """Encode.

        Args:
            logodds: float ``[M, H, W]`` (nats).
            snr_db: float ``[M]``, the channel's nominal :math:`E_s/N_0` (dB).
        Returns:
            complex64 ``[M, k]`` with :math:`\\frac1k\\sum_i |x_i|^2 = 1` per message.
        """
        c = self.config
        u = to_unit(logodds, c.clip).flatten(1).float()
        u = (u - self.in_mean) / self.in_std
        z = self.net(u, snr_db.float().unsqueeze(-1) / _SNR_SCALE_DB)
        x = torch.view_as_complex(z.view(-1, c.channel_uses, 2).contiguous())
        return power_normalize(x)


class JSCCDecoder(nn.Module):
    """Equalized symbols and their effective SNRs -> log-odds map."""

    def __init__(self, config: JSCCConfig) -> None:
        super().__init__()
        self.config = config
        n = config.height * config.width
        self.net = _FiLMMLP(3 * config.channel_uses, config.hidden, n, config.depth)
        # The output is ``mean + std * net``, with the per-cell statistics the
        # encoder standardizes by: the net only predicts the deviation from the
        # mean map, which trains much faster than a saturating tanh output.
        self.register_buffer("out_mean", torch.zeros(n))
        self.register_buffer("out_std", torch.ones(n))

    def forward(self, x_eq: torch.Tensor, snr_eff_db: torch.Tensor) -> torch.Tensor:
        """Decode.

        Args:
            x_eq: complex ``[M, k]``, MMSE-equalized symbols.
            snr_eff_db: float ``[M, k]``, per-symbol effective SNR :math:`|\\hat h_i|^2/N_0` (dB).
        Returns:
            float32 ``[M, H, W]`` log-odds in ``[-L, L]`` (nats).
        """
        c = self.config
        return from_unit(self.forward_unit(x_eq, snr_eff_db), c.clip).view(-1, c.height, c.width)

    def forward_unit(self, x_eq: torch.Tensor, snr_eff_db: torch.Tensor) -> torch.Tensor:
        """Like :meth:`forward` but returns the unclipped normalized map float32 ``[M, H*W]``.

        Training uses this: clipping to ``[-1, 1]`` would zero the gradient of
        cells that overshoot the bound.
        """
        s = snr_eff_db.float() / _SNR_SCALE_DB
        feats = torch.cat([torch.view_as_real(x_eq.to(torch.complex64)).flatten(1), s], dim=1)
        return self.out_mean + self.out_std * self.net(feats, s.mean(dim=1, keepdim=True))


def effective_snr_db(out: ChannelOutput, k: int, floor_db: float = -30.0) -> torch.Tensor:
    """Per-symbol effective SNR :math:`10\\log_{10}(|\\hat h_i|^2 / N_0)` seen by the receiver.

    Args:
        out: a channel output with CSI (``h_hat`` not ``None``), ``y`` complex ``[M, k]``.
        k: symbols per message.
        floor_db: lower bound (dB) so that deep fades stay finite.
    Returns:
        float32 ``[M, k]`` (dB).
    """
    if out.h_hat is None:
        raise ValueError(
            "out.h_hat is None: the JSCC decoder needs channel state information; "
            "use a channel with csi='perfect' or csi='estimated'"
        )
    gain = out.h_hat.real.square() + out.h_hat.imag.square()
    snr = 10.0 * torch.log10((gain / out.noise_var).clamp_min(1e-30))
    return snr.clamp_min(floor_db).expand(out.y.shape[0], k).float()


class JSCC(nn.Module):
    """Encoder + decoder of a deep JSCC link.

    Args:
        config: the architecture.

    Example:
        >>> import torch
        >>> from agentcomm.channels import AWGN
        >>> g = torch.Generator().manual_seed(0)
        >>> model = JSCC(JSCCConfig(height=8, width=8, channel_uses=8, hidden=32))
        >>> est, out = model.transmit(torch.zeros(2, 8, 8), AWGN(), 10.0, g)
        >>> est.shape, out.y.shape
        (torch.Size([2, 8, 8]), torch.Size([2, 8]))
    """

    def __init__(self, config: JSCCConfig) -> None:
        super().__init__()
        if not isinstance(config, JSCCConfig):
            raise ValueError(f"config must be a JSCCConfig, got {type(config).__name__}")
        self.config = config
        self.encoder = JSCCEncoder(config)
        self.decoder = JSCCDecoder(config)

    def encode(self, logodds: torch.Tensor, snr_db: torch.Tensor | float) -> torch.Tensor:
        """Belief maps float ``[M, H, W]`` (nats) at nominal SNR (dB, scalar or ``[M]``) -> complex64 ``[M, k]``."""
        c = self.config
        check_maps("logodds", logodds, c.height, c.width)
        return self.encoder(logodds, _snr_vector(snr_db, logodds.shape[0]))

    def decode(
        self, out: ChannelOutput, snr_db: torch.Tensor | float | None = None
    ) -> torch.Tensor:
        r"""MMSE-equalize a channel output and decode it.

        Args:
            out: channel output, ``y`` complex ``[M, k]``.
            snr_db: the SNR (dB) the receiver assumes, scalar or ``[M]``; it replaces
                ``out.noise_var`` (:func:`assume_snr`). ``None``: the channel's own.
                Required when ``out.h_hat`` is None: the decoder then gets the unequalised
                ``y`` with this SNR for every symbol (the receiver takes :math:`\hat h = 1`).
        Returns:
            float32 ``[M, H, W]`` log-odds in ``[-L, L]`` (nats).
        """
        k = self.config.channel_uses
        check_tensor("out.y", out.y, ndim=2)
        if out.y.shape[1] != k:
            raise ValueError(f"out.y has {out.y.shape[1]} symbols per message; this model uses {k}")
        if snr_db is not None:
            out = assume_snr(out, snr_db, "snr_db")
            if out.h_hat is None:
                snr_eff = -10.0 * torch.log10(out.noise_var.float())
                return self.decoder(out.y, snr_eff.expand(out.y.shape[0], k))
        return self.decoder(out.equalized("mmse"), effective_snr_db(out, k))

    def _decode_unit(self, out: ChannelOutput) -> torch.Tensor:
        k = self.config.channel_uses
        return self.decoder.forward_unit(out.equalized("mmse"), effective_snr_db(out, k))

    def transmit(
        self,
        logodds: torch.Tensor,
        channel: Channel,
        snr_db: torch.Tensor | float,
        generator: torch.Generator | None,
    ) -> tuple[torch.Tensor, ChannelOutput]:
        """Encode, pass through ``channel`` (differentiable in the symbols) and decode.

        Args:
            logodds: float ``[M, H, W]`` (nats).
            channel: any :class:`~agentcomm.channels.base.Channel` with receiver CSI.
            snr_db: :math:`E_s/N_0` (dB), scalar or ``[M]``.
            generator: source of the channel's randomness.
        Returns:
            ``(estimate float32 [M, H, W] log-odds, channel output with y complex [M, k])``.
        """
        snr = _snr_vector(snr_db, logodds.shape[0])
        out = channel.apply(self.encode(logodds, snr), snr, generator)
        return self.decode(out), out


def _snr_vector(snr_db: torch.Tensor | float, m: int, name: str = "snr_db") -> torch.Tensor:
    """Broadcast an SNR (dB) to float32 ``[M]`` and reject non-finite values (named ``name``)."""
    try:
        snr = torch.as_tensor(snr_db, dtype=torch.float32)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{name}={snr_db!r} must be a number or a float tensor (dB)") from exc
    if snr.ndim > 1 or (snr.ndim == 1 and snr.shape[0] not in (1, m)):
        raise ValueError(f"{name} has shape {tuple(snr.shape)}; expected a scalar or [{m}]")
    if not bool(torch.isfinite(snr).all()):
        raise ValueError(f"{name}={snr.tolist()} must be finite (dB)")
    return snr.expand(m).contiguous()


def assume_snr(
    out: ChannelOutput, snr_db: torch.Tensor | float, name: str = "assumed_snr_db"
) -> ChannelOutput:
    r"""The channel output as seen by a receiver that assumes the SNR ``snr_db``.

    Only ``noise_var`` changes: :math:`N_0 = 10^{-\mathrm{SNR_{dB}}/10}` of the assumed SNR
    replaces the channel's, so every use of it (equalization, effective SNR, the CDDM start
    step) follows the assumption; ``y``, ``h`` and ``h_hat`` are kept.

    Args:
        out: channel output, ``y`` complex ``[M, k]``.
        snr_db: the assumed SNR (dB), finite, scalar or ``[M]``.
        name: the parameter name used in error messages.
    Returns:
        :class:`~agentcomm.channels.base.ChannelOutput` with ``noise_var`` float ``[M, 1]``.
    """
    m = out.y.shape[0]
    snr = _snr_vector(snr_db, m, name).to(device=out.y.device, dtype=out.y.real.dtype)
    n0 = torch.pow(10.0, -snr / 10.0).view(m, 1)
    return ChannelOutput(y=out.y, h=out.h, h_hat=out.h_hat, noise_var=n0)


def ls_gain(y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    r"""Least-squares block gain :math:`\hat h = z^H y / \|z\|^2` of ``y`` against ``z``.

    Args:
        y: complex ``[M, k]`` received symbols.
        z: complex ``[M, k]`` candidate transmitted symbols.
    Returns:
        complex ``[M, 1]``; exactly :math:`h` when :math:`y = h z` (no noise).
    """
    num = (z.conj() * y).sum(dim=1, keepdim=True)
    den = (z.real.square() + z.imag.square()).sum(dim=1, keepdim=True).clamp_min(1e-12)
    return num / den


def mean_symbols(
    model: JSCC, reference_maps: torch.Tensor, encoder_snr_db: torch.Tensor
) -> torch.Tensor:
    r"""Mean transmitted symbols :math:`\bar z(s) = E_\ell[f_\phi(\ell, s)]` per message.

    Estimated on ``R`` reference maps (e.g. draws of the diffusion prior), once per distinct
    encoder SNR of the batch: one encoder call on ``[U * R, H, W]``.

    Args:
        model: the codec.
        reference_maps: float ``[R, H, W]`` log-odds (nats), typical maps of the source.
        encoder_snr_db: float ``[M]``, each message's encoder SNR (dB).
    Returns:
        complex ``[M, k]``.
    """
    check_maps("reference_maps", reference_maps, model.config.height, model.config.width)
    r = reference_maps.shape[0]
    snrs, inverse = torch.unique(encoder_snr_db.float(), return_inverse=True)
    u = snrs.shape[0]
    z = model.encoder(reference_maps.repeat(u, 1, 1), snrs.repeat_interleave(r))
    return z.view(u, r, -1).mean(dim=1)[inverse]


@torch.no_grad()
def estimate_gain(
    model: JSCC,
    out: ChannelOutput,
    encoder_snr_db: torch.Tensor | float,
    reference_maps: torch.Tensor | None = None,
    iters: int = 2,
) -> torch.Tensor:
    r"""Blind estimate of a block-fading gain, jointly with the decoded map (module docstring).

    Batched over messages, no loop over them:

    1. Start: without pilots (``out.h_hat`` None), the phase of :func:`ls_gain` of ``y``
       against the mean symbols :math:`\bar z` (:func:`mean_symbols` of
       ``reference_maps``; :math:`E[y] = h\,\bar z`, so the encoder's common symbol
       component acts as a superimposed pilot) and the moment amplitude
       :math:`|\hat h_0|^2 = \max(\overline{|y|^2} - N_0,\ 0.1\,\overline{|y|^2})`
       (unit-energy symbols: :math:`E|y|^2 = |h|^2 + N_0`). The mean symbols fix the
       phase, which the residual alone does not (a map whose code is close to
       :math:`-f_\phi(\ell)` often fits :math:`y` about as well). With pilots,
       :math:`\hat h_0` = ``out.h_hat``.
    2. ``iters`` alternations: decode at :math:`\hat h`, then :math:`\hat h \leftarrow`
       :func:`ls_gain` of ``y`` against the re-encoded map (coordinate descent on
       :math:`\|y - h f_\phi(\ell)\|^2`).

    Args:
        model: the codec (decoder and encoder).
        out: channel output, ``y`` complex ``[M, k]``; ``noise_var`` is the receiver's
            (assumed) :math:`N_0`; ``h_hat`` complex ``[M, 1]`` or ``None``.
        encoder_snr_db: SNR (dB) the transmitter conditioned its encoder on, scalar or ``[M]``.
        reference_maps: float ``[R, H, W]`` typical maps (nats); required when
            ``out.h_hat`` is None.
        iters: alternations ``>= 0``.
    Returns:
        complex ``[M, 1]``, the estimated gain.
    """
    check_range("iters", iters, 0, None)
    m = out.y.shape[0]
    enc = _snr_vector(encoder_snr_db, m, "encoder_snr_db").to(out.y.device)
    y = out.y
    if out.h_hat is None:
        if reference_maps is None:
            raise ValueError(
                "reference_maps is None with out.h_hat=None: the blind gain estimate needs "
                "typical maps for its mean symbols"
            )
        g = ls_gain(y, mean_symbols(model, reference_maps, enc))
        power = (y.real.square() + y.imag.square()).mean(dim=1, keepdim=True)
        n0 = out.noise_var.reshape(m, 1).to(power.dtype)
        amp = (power - n0).clamp_min(0.1 * power).sqrt()
        h = g * (amp / g.abs().clamp_min(1e-12))
    elif out.h_hat.shape[-1] != 1:
        raise ValueError(
            f"out.h_hat has shape {tuple(out.h_hat.shape)}; the gain estimate is for block "
            "fading (one coefficient per message, [M, 1])"
        )
    else:
        h = out.h_hat
    for _ in range(iters):
        rx = ChannelOutput(y=y, h=out.h, h_hat=h, noise_var=out.noise_var)
        h = ls_gain(y, model.encoder(model.decode(rx), enc))
    return h


@torch.no_grad()
def residual_snr_db(
    model: JSCC,
    out: ChannelOutput,
    encoder_snr_db: torch.Tensor | float,
    floor_db: float = -30.0,
) -> torch.Tensor:
    r"""SNR estimated from the decoding residual, for a receiver that does not know it.

    Decode at the output's (assumed) :math:`N_0` and :math:`\hat h`, re-encode, and take
    the per-symbol residual power as the noise level:

    .. math::
        \hat N_0 = \frac1k \big\|y - \hat h\, f_\phi(\hat\ell)\big\|^2,
        \qquad \widehat{\mathrm{SNR}} = -10 \log_{10} \hat N_0 ,

    the maximum-likelihood noise variance given the decoded map (biased upwards by the
    decoding error, so it errs on the side of a lower SNR). Unit-energy symbols make it
    the :math:`E_s/N_0` of the channel's convention.

    Args:
        model: the codec.
        out: channel output with ``h_hat`` (true, pilot or blind estimate); its
            ``noise_var`` is the assumed :math:`N_0` the first decoding uses.
        encoder_snr_db: SNR (dB) the encoder was conditioned on, scalar or ``[M]``.
        floor_db: lower bound (dB) of the result.
    Returns:
        float32 ``[M]`` (dB).
    """
    if out.h_hat is None:
        raise ValueError("out.h_hat is None: the residual needs a channel gain (estimate_gain)")
    enc = _snr_vector(encoder_snr_db, out.y.shape[0], "encoder_snr_db").to(out.y.device)
    r = out.y - out.h_hat * model.encoder(model.decode(out), enc)
    n0 = (r.real.square() + r.imag.square()).mean(dim=1)
    return (-10.0 * torch.log10(n0.clamp_min(1e-30))).clamp_min(floor_db).float()


def _batches(
    n_data: int, batch_size: int, steps: int, generator: torch.Generator
) -> list[torch.Tensor]:
    dev = generator.device
    return [
        torch.randint(0, n_data, (batch_size,), generator=generator, device=dev)
        for _ in range(steps)
    ]


def train_jscc(
    model: JSCC,
    maps: torch.Tensor,
    channel: Channel,
    generator: torch.Generator,
    *,
    steps: int = 2000,
    batch_size: int = 256,
    lr: float = 2e-3,
    snr_range_db: tuple[float, float] = (0.0, 20.0),
    progress: Callable[[int, float], None] | None = None,
    parallel: Callable[[nn.Module], nn.Module] | None = None,
) -> list[float]:
    """Train encoder and decoder end to end through a differentiable channel.

    Each sample gets its own SNR drawn uniformly from ``snr_range_db``; loss is
    :math:`\\mathrm{MSE}(\\hat u, u)` on clipped, normalized log-odds
    :math:`u = \\mathrm{clip}(\\ell, -L, L)/L` (see the module docstring for why).

    Args:
        model: the codec, trained in place.
        maps: float ``[D, H, W]`` training log-odds (nats).
        channel: the channel to train through (needs receiver CSI).
        generator: source of batches, SNRs and channel noise.
        steps: optimizer steps.
        batch_size: maps per step.
        lr: Adam learning rate (cosine-decayed to zero).
        snr_range_db: ``(low, high)`` SNR range in dB.
        progress: optional callback ``(step, loss)``.
        parallel: optional data-parallel wrapper (:func:`~agentcomm.decoders.optimize.fit`).
    Returns:
        The training loss of every step (``steps`` floats).
    """
    c = model.config
    check_maps("maps", maps, c.height, c.width)
    check_range("steps", steps, 1, None)
    check_range("batch_size", batch_size, 1, None)
    check_positive("lr", lr)
    lo, hi = snr_range_db
    check_range("snr_range_db[1]", hi, lo, None)
    target_all = to_unit(maps, c.clip).float()
    with torch.no_grad():
        flat = target_all.flatten(1)
        for mean, std in (
            (model.encoder.in_mean, model.encoder.in_std),
            (model.decoder.out_mean, model.decoder.out_std),
        ):
            mean.copy_(flat.mean(0))
            std.copy_(flat.std(0).clamp_min(1e-3))
    batches = _batches(maps.shape[0], batch_size, steps, generator)

    def loss_at(step: int) -> torch.Tensor:
        idx = batches[step]
        snr = lo + (hi - lo) * torch.rand(batch_size, generator=generator, device=generator.device)
        out = channel.apply(model.encode(maps[idx], snr), snr, generator)
        return nn.functional.mse_loss(model._decode_unit(out), target_all[idx].flatten(1))

    opt = torch.optim.Adam(model.parameters(), lr=lr)
    return fit(model, opt, steps, loss_at, progress=progress, parallel=parallel)


@torch.no_grad()
def evaluate_jscc(
    model: JSCC,
    maps: torch.Tensor,
    channel: Channel,
    snr_db: float,
    generator: torch.Generator,
) -> float:
    """Mean squared error on normalized log-odds :math:`u` (dimensionless; multiply by :math:`L^2` for nats²).

    Args:
        model: the codec.
        maps: float ``[D, H, W]`` log-odds (nats).
        channel: the channel.
        snr_db: SNR in dB.
        generator: source of the channel's randomness.
    Returns:
        :math:`\\frac{1}{DHW}\\sum (\\hat u - u)^2`.
    """
    est, _ = model.transmit(maps, channel, snr_db, generator)
    return float(
        (to_unit(est, model.config.clip) - to_unit(maps, model.config.clip)).square().mean()
    )


# --- checkpoints -------------------------------------------------------------------------

ModelT = TypeVar("ModelT", bound=nn.Module)


def save_checkpoint(
    model: nn.Module,
    directory: str | os.PathLike[str],
    dtype: Literal["float32", "float16"] = "float32",
) -> Path:
    """Save a decoder model (any module with a ``config`` that has ``to_dict``) to ``directory``.

    Writes ``model.safetensors`` (weights; its metadata holds the class name and
    the config, so weights and config can never be paired wrongly) and
    ``config.json`` (the same config, for people, and the weights file's SHA-256, which
    :func:`load_checkpoint` checks), each atomically (:func:`agentcomm.io.save_model_files`).

    Args:
        model: e.g. :class:`JSCC` or :class:`~agentcomm.decoders.prior.DiffusionPrior`.
        directory: created if missing.
        dtype: storage type of floating-point tensors. ``"float16"`` halves the file (the
            shipped models use it to stay small); :func:`load_checkpoint` casts back to the
            model's float32 parameters.
    Returns:
        The directory as a :class:`~pathlib.Path`.
    """
    config = getattr(model, "config", None)
    if not isinstance(config, Config):
        raise ValueError(f"model {type(model).__name__} has no Config `config` to save")
    check_choice("dtype", dtype, ("float32", "float16"))
    cfg_json = json.dumps(config.to_dict(), sort_keys=True)
    store = getattr(torch, dtype)
    tensors = {
        k: (v.detach().to(store) if v.is_floating_point() else v.detach()).contiguous().cpu()
        for k, v in model.state_dict().items()
    }
    return save_model_files(
        directory,
        tensors,
        {"class": type(model).__name__, "config": json.loads(cfg_json)},
        metadata={"class": type(model).__name__, "config": cfg_json},
    )


def load_checkpoint(
    cls: type[ModelT],
    config_cls: type[Config],
    directory: str | os.PathLike[str],
    config: Config | None = None,
) -> ModelT:
    """Load a model saved by :func:`save_checkpoint`.

    Args:
        cls: the model class, e.g. :class:`JSCC`; must match the saved class name.
        config_cls: its config class, e.g. :class:`JSCCConfig`.
        directory: the checkpoint folder.
        config: if given, the config the caller expects; any difference from the
            saved one raises :class:`~agentcomm.io.ConfigMismatchError` naming the
            differing keys.
    Returns:
        The model in eval mode with the saved weights.
    Raises:
        ValueError: a missing or damaged file (named in the message: a ``config.json``
            cut short, weights whose SHA-256 differs from the one it records), another
            class, or a config that differs from ``config``.
    """
    src = Path(directory)
    side_doc = read_model_config(src, "model")
    weights = src / WEIGHTS_FILE
    check_sha256(weights, src / CONFIG_FILE, side_doc)
    meta = tensors_metadata(weights)
    if meta.get("class") != cls.__name__:
        raise ValueError(
            f"checkpoint {str(src)!r} holds a {meta.get('class')!r}; expected {cls.__name__!r}"
        )
    if "config" not in meta:
        raise ValueError(f"weights file {weights} holds no config in its metadata")
    saved = json.loads(meta["config"])
    if side_doc.get("config") != saved:
        raise ValueError(f"{src / CONFIG_FILE} disagrees with the config stored in {weights}")
    loaded_cfg = config_cls.from_dict(saved)
    if config is not None:
        want = json.loads(json.dumps(config.to_dict()))
        check_config_match(src, saved, want)
    model = cls(loaded_cfg)
    try:
        model.load_state_dict(load_tensors(weights), strict=True)
    except RuntimeError as exc:
        raise ValueError(f"weights in {weights} do not fit {cls.__name__}: {exc}") from exc
    return model.eval()
