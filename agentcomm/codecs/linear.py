"""Uncoded analog transmission: the belief's values ride directly on complex symbols."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from agentcomm._checks import check_positive, check_range
from agentcomm.codecs.base import Codec, Message, Received, quantize_scale
from agentcomm.codecs.intent import selection_order

__all__ = ["LinearAnalogCodec"]


class LinearAnalogCodec(Codec):
    r"""Pairs of reals on one complex symbol, power-normalized, MMSE-equalized.

    The codec sends the *residual* :math:`u = v - p` (belief minus the receiver's prior),
    so that every value it cannot send, and every symbol the noise drowns, falls back to
    the prior.

    Encoder, for a budget of ``k`` complex channel uses:

    * side information: the amplitude scale ``g`` (``scale_bits`` bits, below) is sent
      digitally at ``side_rate`` bits per use on :math:`u = \lceil b_g / r_g \rceil` of the
      ``k`` uses; the symbols get the other :math:`k' = k - u` (nothing is sent when
      :math:`k \le u`);
    * values sent :math:`v_s = \min(n, 2k')`: the first :math:`v_s` cells in row-major
      order, or in :func:`~agentcomm.codecs.intent.intent_order` when the receiver announced
      an intent. Truncation in a known order was chosen over a seeded random projection
      with LMMSE decoding: it needs no model of the belief's covariance, and with an intent
      it spends the budget on the cells the receiver needs instead of spreading the error
      over the whole grid.
    * cells ``2i`` and ``2i+1`` of that order form symbol ``i`` (real and imaginary part;
      the last imaginary part is zero when :math:`v_s` is odd);
    * channel uses :math:`c = u + \lceil v_s / 2 \rceil \le k`;
    * power: :math:`x = s / g` with :math:`g \ge \sqrt{\tfrac1c \sum |s_i|^2}` quantized to
      ``scale_bits`` (:func:`~agentcomm.codecs.base.quantize_scale`), so
      :math:`\tfrac1c\sum_i |x_i|^2 \le 1`;
    * information (:mod:`agentcomm.codecs.base`): the capacity of the symbols' uses plus the
      ``scale_bits`` side bits.

    Receiver: one-tap MMSE equalization with its CSI,
    :math:`\hat x = \hat h^* y / (|\hat h|^2 + N_0)` (the LMMSE estimate of a unit-energy
    symbol, which shrinks the residual toward 0, i.e. the estimate toward the prior, as the
    SNR falls), then :math:`\hat v = p + g \hat x` on the sent cells and :math:`p` elsewhere.
    Without CSI (``csi="none"``) the raw ``y`` is used. A message whose side information
    is lost (capacity rule, on the message's own fade) cannot be rescaled and is not
    delivered.

    Args:
        source_shape: ``S``.
        scale_bits: size of the amplitude side information, 8 to 32 bits.
        side_rate: bits per channel use of the digitally sent side information, > 0.
    """

    name = "linear"
    digital = False

    def __init__(
        self, source_shape: Sequence[int], scale_bits: int = 8, side_rate: float = 2.0
    ) -> None:
        super().__init__(source_shape)
        if isinstance(scale_bits, bool) or not isinstance(scale_bits, int):
            raise ValueError(
                f"scale_bits={scale_bits!r} is not allowed; expected an int in [8, 32]"
            )
        self.scale_bits = int(check_range("scale_bits", scale_bits, 8, 32))
        self.side_rate = float(check_positive("side_rate", side_rate))
        self.side_uses = int(self._uses_for_bits(torch.tensor(self.scale_bits), self.side_rate))
        self._params = {"scale_bits": self.scale_bits, "side_rate": self.side_rate}

    # Hooks for transform codecs (DCT): coefficients, their order, and the inverse.
    def _analysis(self, residual: torch.Tensor) -> torch.Tensor:
        """``[M, n]`` residual -> ``[M, n]`` coefficients to send."""
        return residual

    def _synthesis(self, coefficients: torch.Tensor) -> torch.Tensor:
        """``[M, n]`` coefficients -> ``[M, n]`` residual."""
        return coefficients

    def _order(self, intent: torch.Tensor | None, m: int, device: torch.device) -> torch.Tensor:
        """int64 ``[M, n]``: the order in which coefficients are sent."""
        return selection_order(self.source_shape, intent, m, device)

    def _encode(
        self,
        values: torch.Tensor,
        budget: torch.Tensor,
        intent: torch.Tensor | None,
        prior: torch.Tensor,
    ) -> Message:
        m = values.shape[0]
        coefficients = self._analysis(values - prior.reshape(values.shape))
        count = torch.clamp(2 * (budget - self.side_uses), min=0, max=self.n)
        uses = (count + 1) // 2
        sent_any = uses > 0
        longest = max(int(uses.max()), 1)
        width = min(self.n, 2 * longest)
        order = self._order(intent, m, values.device)[:, :width]
        sent = torch.arange(width, device=values.device) < count.unsqueeze(1)
        reals = torch.where(sent, coefficients.gather(1, order), 0.0)
        reals = torch.nn.functional.pad(reals, (0, 2 * longest - width))
        rms = (reals.square().sum(1) / uses.clamp_min(1)).sqrt()
        scale = quantize_scale(rms, self.scale_bits)
        symbols = torch.view_as_complex((reals / scale.unsqueeze(1)).reshape(m, longest, 2))
        side_uses = torch.where(sent_any, self.side_uses, 0)
        return Message(
            channel_uses=uses + side_uses,
            bits=torch.zeros_like(uses),
            side_bits=torch.where(sent_any, self.scale_bits, 0),
            side_uses=side_uses,
            prior=prior,
            symbols=symbols,
            payload={"scale": scale},
            context={"order": order, "count": count},
        )

    def _decode(self, received: Received, prior: torch.Tensor) -> torch.Tensor:
        msg = received.message
        if received.channel is None:
            raise ValueError(f"{self.name!r} decodes analog symbols; received.channel is None")
        order, count = msg.context["order"], msg.context["count"]
        m, width = order.shape
        x_hat = received.channel.equalized("mmse")
        reals = torch.view_as_real(x_hat).reshape(m, -1)[:, :width].to(prior.dtype)
        reals = reals * msg.payload["scale"].to(prior.dtype).unsqueeze(1)
        sent = torch.arange(width, device=order.device) < count.unsqueeze(1)
        coefficients = torch.zeros_like(prior).scatter(1, order, torch.where(sent, reals, 0.0))
        return prior + self._synthesis(coefficients)
