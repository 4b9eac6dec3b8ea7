r"""Common pieces of every channel: power normalization, the noise convention,
equalization, and the :class:`Channel` base class (generate, then apply).

Noise convention (used everywhere in agentcomm)
-----------------------------------------------
Transmitted symbols have unit average energy :math:`E_s = 1`. A channel at
signal-to-noise ratio :math:`\mathrm{SNR} = E_s / N_0` adds circularly
symmetric complex Gaussian noise :math:`n \sim \mathcal{CN}(0, N_0)`, i.e.
variance :math:`N_0/2` per real dimension, with :math:`N_0 = 10^{-\mathrm{SNR_{dB}}/10}`.
The received signal is :math:`y = h x + n` with :math:`h = 1` for AWGN.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Literal, get_args

import torch

from agentcomm._checks import check_choice, check_finite, check_range, check_tensor

__all__ = [
    "CSI_MODES",
    "Channel",
    "ChannelOutput",
    "coefficient_shape",
    "complex_normal",
    "equalize",
    "noise_var_from_snr_db",
    "power_normalize",
]

CSIMode = Literal["perfect", "estimated", "none"]
CSI_MODES: tuple[str, ...] = get_args(CSIMode)
COMPLEX_DTYPES = (torch.complex64, torch.complex128)


@dataclass
class ChannelOutput:
    """What a receiver gets from one use of a channel.

    Attributes:
        y: received symbols, complex ``[..., k]`` (same shape and dtype as the input).
        h: the true channel coefficients, complex, broadcastable to ``y``
            (``[..., k]`` for fast fading, ``[..., 1]`` for block fading and AWGN).
        h_hat: the receiver's channel state information, same shape as ``h``;
            ``None`` when the receiver has no CSI (``csi="none"``).
        noise_var: :math:`N_0` per complex symbol, real ``[..., 1]``
            (variance :math:`N_0/2` per real dimension).
    """

    y: torch.Tensor
    h: torch.Tensor
    h_hat: torch.Tensor | None
    noise_var: torch.Tensor

    def equalized(self, method: Literal["zf", "mmse"] = "mmse") -> torch.Tensor:
        """Equalize ``y`` with the receiver's CSI (see :func:`equalize`).

        Without CSI the received symbols are returned as they are.
        """
        if self.h_hat is None:
            return self.y
        return equalize(self.y, self.h_hat, self.noise_var, method)


def power_normalize(x: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    r"""Scale complex symbols to unit average energy along ``dim``.

    :math:`\tilde x = x \sqrt{k / \sum_i |x_i|^2}`, so :math:`\frac1k\sum_i|\tilde x_i|^2 = 1`.
    Differentiable (used by learned JSCC encoders).

    Args:
        x: complex ``[..., k]``.
    Returns:
        complex ``[..., k]`` with mean :math:`|x|^2 = 1` along ``dim``.
    """
    check_tensor("x", x, dtypes=COMPLEX_DTYPES)
    k = x.shape[dim]
    energy = (x.real.square() + x.imag.square()).sum(dim=dim, keepdim=True)
    return x * torch.sqrt(k / energy.clamp_min(eps)).to(x.real.dtype)


def noise_var_from_snr_db(snr_db: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    r""":math:`N_0 = 10^{-\mathrm{SNR_{dB}}/10}` for unit-energy symbols.

    Args:
        snr_db: scalar or real tensor broadcastable to ``like.shape[:-1]`` (dB).
        like: the complex symbols ``[..., k]``; fixes device, real dtype and batch shape.
    Returns:
        real ``[..., 1]``: noise variance per complex symbol.
    """
    real_dtype = like.real.dtype
    snr = torch.as_tensor(snr_db, dtype=real_dtype, device=like.device)
    check_finite("snr_db", snr)
    n0 = torch.pow(torch.tensor(10.0, dtype=real_dtype, device=like.device), -snr / 10.0)
    return n0.expand(like.shape[:-1]).unsqueeze(-1)


def complex_normal(
    shape: tuple[int, ...] | torch.Size,
    generator: torch.Generator | None,
    *,
    dtype: torch.dtype = torch.complex64,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    r"""Samples of :math:`\mathcal{CN}(0, 1)`: variance 1/2 per real dimension."""
    return torch.randn(tuple(shape), generator=generator, dtype=dtype, device=device)


def coefficient_shape(
    shape: torch.Size | tuple[int, ...], block: bool, dtype: torch.dtype
) -> tuple[int, ...]:
    """Shape of the channel coefficients for symbols of ``shape`` ``[..., k]``.

    Validates ``shape`` (non-empty, sizes >= 0) and ``dtype`` (complex64/complex128) so
    that every :meth:`Channel.generate` rejects bad requests the same way.

    Args:
        shape: shape ``[..., k]`` of the transmitted symbols.
        block: one coefficient per message (``[..., 1]``) instead of one per symbol.
        dtype: requested complex dtype of the coefficients.
    Returns:
        ``[..., 1]`` if ``block`` else ``[..., k]``.
    """
    shape = tuple(shape)
    if len(shape) == 0 or any(
        isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in shape
    ):
        raise ValueError(f"shape={shape!r} must be a non-empty tuple of sizes >= 0 ([..., k])")
    if dtype not in COMPLEX_DTYPES:
        raise ValueError(
            f"dtype={dtype} is not allowed; allowed {[str(d) for d in COMPLEX_DTYPES]}"
        )
    return shape[:-1] + (1,) if block else shape


def equalize(
    y: torch.Tensor,
    h_hat: torch.Tensor,
    noise_var: torch.Tensor,
    method: Literal["zf", "mmse"] = "mmse",
) -> torch.Tensor:
    r"""One-tap equalization of :math:`y = h x + n`.

    * zero forcing: :math:`\hat x = y / \hat h`
    * MMSE (unit-energy prior on x): :math:`\hat x = \hat h^* y / (|\hat h|^2 + N_0)`

    Args:
        y: complex ``[..., k]``.
        h_hat: complex, broadcastable to ``y``.
        noise_var: real :math:`N_0`, broadcastable to ``y``.
        method: ``"zf"`` or ``"mmse"``.
    Returns:
        complex ``[..., k]``.
    """
    check_choice("method", method, ("zf", "mmse"))
    gain = h_hat.real.square() + h_hat.imag.square()
    # The per-coefficient factor is formed first: for block fading it is [..., 1], so the
    # full [..., k] tensor sees a single complex multiply (dividing a complex tensor by a
    # broadcast real one is several times slower on CPU).
    if method == "zf":
        return y * (h_hat.conj() / gain.clamp_min(1e-12))
    return y * (h_hat.conj() / (gain + noise_var))


class Channel(ABC):
    r"""A memoryless channel :math:`y = h x + n`, split into *generate* and *apply*.

    Subclasses set :attr:`block` and implement :meth:`_coefficients` (sample :math:`h`
    of a validated shape); :meth:`generate` checks the request the same way for every
    channel, and :meth:`apply` adds noise at the requested SNR and produces the
    receiver's CSI.

    Args:
        csi: what the receiver knows about :math:`h`:
            ``"perfect"`` (:math:`\hat h = h`), ``"estimated"`` (a least-squares
            pilot estimate :math:`\hat h = h + e`, :math:`e \sim \mathcal{CN}(0, 10^{-\mathrm{pilot\_snr\_db}/10})`,
            one pilot per coherence interval), or ``"none"``.
        pilot_snr_db: pilot SNR in dB for ``csi="estimated"``.
    """

    #: Whether one coefficient covers a whole message (block) or each symbol has its own.
    block: bool = True

    def __init__(self, csi: CSIMode = "perfect", pilot_snr_db: float = 20.0) -> None:
        self.csi = check_choice("csi", csi, CSI_MODES)
        self.pilot_snr_db = check_range("pilot_snr_db", float(pilot_snr_db), -30.0, 100.0)

    def generate(
        self,
        shape: torch.Size | tuple[int, ...],
        generator: torch.Generator | None,
        *,
        dtype: torch.dtype = torch.complex64,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Sample channel coefficients for symbols of ``shape`` ``[..., k]``.

        Validates the request once for every channel (:func:`coefficient_shape`), then
        draws the coefficients with :meth:`_coefficients`.

        Args:
            shape: shape ``[..., k]`` of the transmitted symbols.
            generator: the explicit source of randomness (unused by channels without fading).
            dtype: complex64 or complex128.
            device: device of the result.
        Returns:
            complex ``[..., k]`` (per-symbol fading) or ``[..., 1]`` (``block``: block
            fading, AWGN).
        """
        h_shape = coefficient_shape(shape, self.block, dtype)
        return self._coefficients(h_shape, generator, dtype=dtype, device=device)

    @abstractmethod
    def _coefficients(
        self, h_shape: tuple[int, ...], generator: torch.Generator | None, **factory: Any
    ) -> torch.Tensor:
        """Draw coefficients of the validated shape ``h_shape``; ``factory`` holds the
        ``dtype`` and ``device`` keywords for the tensor constructors."""

    def apply(
        self,
        x: torch.Tensor,
        snr_db: torch.Tensor | float,
        generator: torch.Generator | None = None,
        h: torch.Tensor | None = None,
    ) -> ChannelOutput:
        r"""Pass symbols through the channel: :math:`y = h x + n`, :math:`n \sim \mathcal{CN}(0, N_0)`.

        Args:
            x: complex64/complex128 ``[..., k]``, expected power-normalized.
            snr_db: :math:`E_s/N_0` in dB, scalar or broadcastable to ``x.shape[:-1]``.
            generator: the explicit source of randomness.
            h: channel coefficients to use instead of sampling new ones (from :meth:`generate`).
        Returns:
            :class:`ChannelOutput`.
        """
        check_tensor("x", x, min_ndim=1, dtypes=COMPLEX_DTYPES, finite=True)
        if h is None:
            h = self.generate(x.shape, generator, dtype=x.dtype, device=x.device)
        n0 = noise_var_from_snr_db(snr_db, x)
        noise = complex_normal(x.shape, generator, dtype=x.dtype, device=x.device)
        y = h * x + noise * n0.sqrt()
        return ChannelOutput(y=y, h=h, h_hat=self._csi(h, generator), noise_var=n0)

    @property
    def csi_error_var(self) -> float:
        r"""Variance :math:`\sigma_e^2` of the CSI error :math:`e = \hat h - h` per complex
        coefficient: :math:`10^{-\mathrm{pilot\_snr\_db}/10}` for ``csi="estimated"``, else 0."""
        return 10.0 ** (-self.pilot_snr_db / 10.0) if self.csi == "estimated" else 0.0

    def _csi(self, h: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor | None:
        if self.csi == "perfect":
            return h
        if self.csi == "none":
            return None
        err = complex_normal(h.shape, generator, dtype=h.dtype, device=h.device)
        return h + err * self.csi_error_var**0.5

    def __repr__(self) -> str:
        return f"{type(self).__name__}(csi={self.csi!r}, pilot_snr_db={self.pilot_snr_db})"
