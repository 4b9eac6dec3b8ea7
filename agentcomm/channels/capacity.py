r"""Shannon limits of the channels, and the outage rule for digital messages.

All SNRs are :math:`E_s/N_0` per complex channel use; capacities are in bits per
complex channel use.

* AWGN: :math:`C = \log_2(1 + \mathrm{SNR})` (Shannon, 1948).
* Ergodic Rayleigh (fast fading, CSI at the receiver):
  :math:`\bar C = \mathbb E\log_2(1+|h|^2\mathrm{SNR})
  = \log_2(e)\, e^{1/\mathrm{SNR}} E_1(1/\mathrm{SNR})`, with the exponential
  integral :math:`E_1` (Lee, *IEEE Trans. Veh. Technol.* 39(3), 1990; Tse &
  Viswanath 2005, eq. 5.92).
* Outage of Rayleigh block fading at rate :math:`R`:
  :math:`P_{out} = P(\log_2(1+|h|^2\mathrm{SNR}) < R) = 1 - e^{-(2^R-1)/\mathrm{SNR}}`
  (Tse & Viswanath 2005, eq. 5.57).

:func:`awgn_capacity`, :func:`rayleigh_ergodic_capacity` and
:func:`rayleigh_outage_probability` take a Python float, a NumPy array or a torch
tensor and return the same kind (tensors keep dtype and device).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import scipy.special
import torch

from agentcomm._checks import check_finite, check_tensor

__all__ = [
    "awgn_capacity",
    "capacity_of_uses",
    "digital_delivery",
    "rayleigh_ergodic_capacity",
    "rayleigh_outage_probability",
    "snr_inst",
]

Scalar = float | np.ndarray | torch.Tensor

#: Above this argument :math:`e^x E_1(x)` comes from its asymptotic series:
#: :math:`e^x` overflows float64 near :math:`x = 709` and :math:`E_1(x)` underflows,
#: while 10 terms of the series are accurate to ~4e-11 (relative) at :math:`x = 50`.
_ASYMPTOTIC_FROM = 50.0
_ASYMPTOTIC_TERMS = 10


def _as_float64(name: str, value: Scalar) -> tuple[np.ndarray, Callable[[np.ndarray], Scalar]]:
    """``value`` as float64 NumPy, and a function converting a result back to its kind."""
    if isinstance(value, torch.Tensor):
        if value.is_complex():
            raise ValueError(f"{name} has dtype {value.dtype}; must be real")
        out_dtype = value.dtype if value.is_floating_point() else torch.get_default_dtype()
        device = value.device
        array = value.detach().cpu().to(torch.float64).numpy()
        return array, lambda r: torch.as_tensor(r, dtype=out_dtype, device=device)
    if isinstance(value, np.ndarray):
        if np.iscomplexobj(value):
            raise ValueError(f"{name} has dtype {value.dtype}; must be real")
        out_np = value.dtype if np.issubdtype(value.dtype, np.floating) else np.float64
        return value.astype(np.float64), lambda r: np.asarray(r, dtype=out_np)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={value!r} must be a float, a NumPy array or a torch tensor")
    return np.asarray(float(value)), lambda r: float(r)


def _check_finite_np(name: str, array: np.ndarray) -> None:
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"{name} holds {bad} non-finite value(s) (NaN or inf); all must be finite")


def _exp_e1(x: np.ndarray) -> np.ndarray:
    r""":math:`e^x E_1(x)` for :math:`x > 0`, stable for large :math:`x`.

    SciPy has no exponentially scaled :math:`E_1`, so large arguments use the
    asymptotic series :math:`e^x E_1(x) \sim \frac1x\sum_{m\ge0} (-1)^m m!/x^m`.
    """
    small = x <= _ASYMPTOTIC_FROM
    xs = np.where(small, x, 1.0)
    direct = np.exp(xs) * scipy.special.exp1(xs)
    xl = np.where(small, _ASYMPTOTIC_FROM, x)
    series = sum((-1) ** m * math.factorial(m) / xl**m for m in range(_ASYMPTOTIC_TERMS))
    return np.where(small, direct, series / xl)


def awgn_capacity(snr_db: Scalar) -> Scalar:
    r"""AWGN capacity :math:`\log_2(1 + \mathrm{SNR})`, bits per complex channel use.

    Args:
        snr_db: :math:`E_s/N_0` in dB; float, NumPy array or torch tensor of any shape.
    Returns:
        capacity of the same kind and shape as ``snr_db``.
    """
    if isinstance(snr_db, torch.Tensor):
        check_finite("snr_db", snr_db)
        real = snr_db if snr_db.is_floating_point() else snr_db.to(torch.get_default_dtype())
        return torch.log1p(torch.pow(10.0, real / 10.0)) / math.log(2.0)
    array, back = _as_float64("snr_db", snr_db)
    _check_finite_np("snr_db", array)
    return back(np.log1p(10.0 ** (array / 10.0)) / math.log(2.0))


def rayleigh_ergodic_capacity(snr_db: Scalar) -> Scalar:
    r"""Ergodic capacity of Rayleigh fading with receiver CSI, bits per complex channel use.

    :math:`\bar C = \log_2(e)\, e^{1/\mathrm{SNR}} E_1(1/\mathrm{SNR})`, with
    :math:`E_1` from :func:`scipy.special.exp1`. Not differentiable (computed in NumPy).

    Args:
        snr_db: mean :math:`E_s/N_0` in dB; float, NumPy array or torch tensor of any shape.
    Returns:
        capacity of the same kind and shape as ``snr_db``.
    """
    array, back = _as_float64("snr_db", snr_db)
    _check_finite_np("snr_db", array)
    inv_snr = 10.0 ** (-array / 10.0)
    return back(_exp_e1(inv_snr) / math.log(2.0))


def rayleigh_outage_probability(rate: Scalar, snr_db: Scalar) -> Scalar:
    r"""Outage probability of Rayleigh block fading at a rate of ``rate`` bits per channel use.

    :math:`P_{out} = 1 - \exp(-(2^R - 1)/\mathrm{SNR})`.

    Args:
        rate: :math:`R \ge 0` in bits per complex channel use; same kind as ``snr_db``
            (or a float), broadcastable with it.
        snr_db: mean :math:`E_s/N_0` in dB.
    Returns:
        outage probability in [0, 1], of the kind of ``snr_db`` (a tensor or array if
        either input is one).
    """
    kind = snr_db if isinstance(snr_db, (torch.Tensor, np.ndarray)) else rate
    rate_np, _ = _as_float64("rate", rate)
    snr_np, _ = _as_float64("snr_db", snr_db)
    _, back = _as_float64("kind", kind)
    _check_finite_np("rate", rate_np)
    _check_finite_np("snr_db", snr_np)
    if (rate_np < 0).any():
        raise ValueError(f"rate holds {int((rate_np < 0).sum())} negative value(s); must be >= 0")
    threshold = np.expm1(rate_np * math.log(2.0)) * 10.0 ** (-snr_np / 10.0)
    return back(-np.expm1(-threshold))


def snr_inst(h: torch.Tensor, snr_db: float | torch.Tensor) -> torch.Tensor:
    r"""Instantaneous SNR :math:`|h|^2 \cdot 10^{\mathrm{SNR_{dB}}/10}` (linear).

    Args:
        h: complex channel coefficients ``[..., m]`` (``m = 1`` for block fading and
            AWGN, ``m = k`` for fast fading), e.g. :attr:`ChannelOutput.h`.
        snr_db: mean :math:`E_s/N_0` in dB, scalar or broadcastable to ``h.shape[:-1]``.
    Returns:
        real ``[..., m]``, linear.
    """
    check_tensor("h", h, min_ndim=1, dtypes=(torch.complex64, torch.complex128), finite=True)
    real_dtype = h.real.dtype
    snr = torch.as_tensor(snr_db, dtype=real_dtype, device=h.device)
    check_finite("snr_db", snr)
    if snr.ndim > 0:
        snr = snr.unsqueeze(-1)
    return (h.real.square() + h.imag.square()) * torch.pow(10.0, snr / 10.0)


def capacity_of_uses(
    h: torch.Tensor, snr_db: float | torch.Tensor, channel_uses: torch.Tensor
) -> torch.Tensor:
    r"""Bits the occupied channel uses of each message could carry on the channel it saw.

    .. math:: C_m = \sum_{i=1}^{c_m} \log_2\!\left(1 + |h_{m,i}|^2\,\mathrm{SNR}_m\right),

    which is :math:`c_m \log_2(1 + |h_m|^2 \mathrm{SNR}_m)` for block fading and AWGN (one
    coefficient per message). Its expectation over the fades is the ergodic capacity of the
    uses, so averages of delivered bits are bounded by averages of :math:`C_m`; and a
    message delivered by the capacity rule (:func:`digital_delivery`) carries at most
    :math:`C_m` bits, per message.

    Args:
        h: complex ``[M, 1]`` (block fading, AWGN) or ``[M, K]`` (fast fading, one
            coefficient per use; uses beyond ``K`` are not allowed).
        snr_db: mean :math:`E_s/N_0` in dB, scalar or ``[M]``.
        channel_uses: integer ``[M]``, uses each message occupied (``<= K`` for fast fading).
    Returns:
        float64 ``[M]``, bits.
    """
    snr = snr_inst(h.to(torch.complex128), torch.as_tensor(snr_db, dtype=torch.float64))
    per_use = torch.log2(1.0 + snr)
    uses = torch.as_tensor(channel_uses, device=h.device).to(torch.int64)
    if per_use.shape[-1] == 1:
        return uses.to(torch.float64) * per_use[..., 0]
    used = torch.arange(per_use.shape[-1], device=h.device) < uses.unsqueeze(-1)
    return (per_use * used).sum(-1)


def digital_delivery(
    bits: int | torch.Tensor,
    channel_uses: int | torch.Tensor,
    snr_inst_linear: torch.Tensor,
) -> torch.Tensor:
    r"""Whether an ideal capacity-achieving code delivers each digital message.

    A message of :math:`b` bits sent over :math:`k` channel uses is delivered iff
    :math:`b/k \le \frac1m\sum_{j=1}^m \log_2(1+\mathrm{SNR}_j)`, i.e. its rate does
    not exceed the mutual information of the :math:`m` fades it spans (for block
    fading :math:`m=1`: the outage rule of Ozarow, Shamai & Wyner, *IEEE Trans. Veh.
    Technol.* 43(2), 1994). The test is written as :math:`b \le k\,\bar C` so that
    the edge cases need no division: ``bits == 0`` is always delivered (nothing to
    send, even with ``channel_uses == 0``); ``channel_uses == 0`` with ``bits > 0``
    is never delivered.

    Args:
        bits: information bits per message, int or real/int tensor broadcastable to
            ``[...]``, >= 0.
        channel_uses: complex channel uses per message, int or tensor broadcastable to
            ``[...]``, >= 0.
        snr_inst_linear: real ``[..., m]``, linear instantaneous SNR of each fade the
            message spans (see :func:`snr_inst`), >= 0.
    Returns:
        bool ``[...]`` (the broadcast shape of the three inputs without ``m``).
    """
    check_tensor("snr_inst_linear", snr_inst_linear, min_ndim=1, finite=True)
    if not snr_inst_linear.is_floating_point():
        raise ValueError(f"snr_inst_linear has dtype {snr_inst_linear.dtype}; must be real float")
    if bool((snr_inst_linear < 0).any()):
        raise ValueError("snr_inst_linear holds negative value(s); must be >= 0 (linear SNR)")
    dtype, device = snr_inst_linear.dtype, snr_inst_linear.device
    b = torch.as_tensor(bits, device=device).to(dtype)
    k = torch.as_tensor(channel_uses, device=device).to(dtype)
    for name, t in (("bits", b), ("channel_uses", k)):
        check_finite(name, t)
        if bool((t < 0).any()):
            raise ValueError(f"{name} holds negative value(s); must be >= 0")
    mutual_info = torch.log1p(snr_inst_linear).mean(dim=-1) / math.log(2.0)
    return b <= k * mutual_info
