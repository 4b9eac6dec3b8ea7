"""Analog transmission of the lowest-frequency 2-D DCT coefficients of a belief map."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft
import torch

from agentcomm.codecs.linear import LinearAnalogCodec

__all__ = ["DCTCodec", "dct_matrix", "diagonal_order"]


def dct_matrix(size: int) -> torch.Tensor:
    r"""The orthonormal DCT-II matrix :math:`D` (``D @ x == scipy.fft.dct(x, norm="ortho")``).

    :math:`D_{uj} = \alpha_u \cos\!\big(\pi (2j + 1) u / (2N)\big)`, :math:`\alpha_0 =
    \sqrt{1/N}`, :math:`\alpha_{u>0} = \sqrt{2/N}`; :math:`D D^\top = I`.
    Built once by scipy (the reference implementation of this normalization) and applied as
    a matrix product, because torch has no DCT and a product batches over ``M`` for free.

    Returns:
        float64 ``[size, size]``.
    """
    return torch.from_numpy(scipy.fft.dct(np.eye(size), norm="ortho", axis=0))


def diagonal_order(height: int, width: int) -> torch.Tensor:
    """Coefficient indices ``u * width + v`` sorted by frequency ``u + v``, then by ``u``.

    The anti-diagonal order of JPEG's zig-zag scan without its alternating direction: any
    prefix keeps the same low-frequency triangle, up to the order inside one anti-diagonal.

    Returns:
        int64 ``[height * width]``.
    """
    u = torch.arange(height).unsqueeze(1).expand(height, width).reshape(-1)
    v = torch.arange(width).unsqueeze(0).expand(height, width).reshape(-1)
    # u + v < height + width and u < height, so this key sorts by (u + v, u) exactly.
    return torch.argsort((u + v) * height + u, stable=True)


class DCTCodec(LinearAnalogCodec):
    r"""The lowest-frequency DCT coefficients of the residual, sent as analog symbols.

    Transform: :math:`C = D_H\,U\,D_W^\top` of the residual :math:`U = V - P` (belief minus
    the receiver's prior; :func:`dct_matrix`, orthonormal, so the error energy in ``C`` equals
    the error energy in ``U``). A ``(d,)`` source uses the 1-D DCT.

    Encoder, for a budget of ``k`` complex channel uses (as
    :class:`~agentcomm.codecs.linear.LinearAnalogCodec`, on coefficients):

    * side information as in :class:`~agentcomm.codecs.linear.LinearAnalogCodec`
      (:math:`u` uses of the budget, :math:`k' = k - u` left for symbols);
    * coefficients sent :math:`v_s = \min(n, 2k')`, in :func:`diagonal_order` (lowest
      frequencies first, where smooth belief maps keep most of their energy); an announced
      intent is accepted and ignored, since a DCT coefficient is not localized in space;
    * channel uses :math:`c = u + \lceil v_s / 2 \rceil \le k`;
    * power-normalized by the scale ``g`` (``scale_bits`` side bits).

    Receiver: MMSE equalization (LMMSE attenuation :math:`|\hat h|^2 / (|\hat h|^2 + N_0)`
    of each coefficient toward 0), unsent coefficients set to their prior mean 0, inverse
    transform :math:`\hat U = D_H^\top \hat C D_W`, estimate :math:`P + \hat U`.

    Args:
        source_shape: ``(H, W)`` or ``(d,)``.
        scale_bits: size of the amplitude side information, 8 to 32 bits.
        side_rate: bits per channel use of the side information, > 0.
    """

    name = "dct"
    digital = False

    def __init__(
        self, source_shape: Sequence[int], scale_bits: int = 8, side_rate: float = 2.0
    ) -> None:
        super().__init__(source_shape, scale_bits, side_rate)
        if len(self.source_shape) > 2:
            raise ValueError(
                f"source_shape={self.source_shape} is not allowed; the DCT codec takes (H, W) "
                "or (d,)"
            )
        height, width = (
            (1, *self.source_shape) if len(self.source_shape) == 1 else self.source_shape
        )
        self._d_rows = dct_matrix(height)
        self._d_cols = dct_matrix(width)
        self._diagonal = diagonal_order(height, width)
        self._grid = (height, width)

    def _analysis(self, residual: torch.Tensor) -> torch.Tensor:
        d_rows = self._d_rows.to(residual)
        d_cols = self._d_cols.to(residual)
        grid = residual.reshape(-1, *self._grid)
        return (d_rows @ grid @ d_cols.T).reshape(residual.shape)

    def _synthesis(self, coefficients: torch.Tensor) -> torch.Tensor:
        d_rows = self._d_rows.to(coefficients)
        d_cols = self._d_cols.to(coefficients)
        grid = coefficients.reshape(-1, *self._grid)
        return (d_rows.T @ grid @ d_cols).reshape(coefficients.shape)

    def _order(self, intent: torch.Tensor | None, m: int, device: torch.device) -> torch.Tensor:
        return self._diagonal.to(device).expand(m, self.n)
