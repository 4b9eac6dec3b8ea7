r"""The learned receivers behind the :class:`~agentcomm.codecs.base.Codec` contract.

Three analog codecs share one trained :class:`~agentcomm.decoders.jscc.JSCC`
transmitter and differ only at the receiver:

* ``"jscc"``: the JSCC decoder (:class:`JSCCCodec`);
* ``"jscc+cddm"``: JSCC decoding, then diffusion denoising from the SNR-matched
  step (:class:`JSCCCDDMCodec`, :mod:`agentcomm.decoders.cddm`);
* ``"jscc+diffcom"``: posterior sampling guided by the received symbols
  (:class:`JSCCDiffComCodec`, :mod:`agentcomm.decoders.diffcom`).

Build them with trained models, e.g.
``make_codec("jscc", (16, 16), model=load_checkpoint(JSCC, JSCCConfig, path))``.

Accounting. A JSCC model has a fixed number of symbols ``k``
(``model.config.channel_uses``): a message whose budget is at least ``k``
occupies exactly ``k`` channel uses; a message whose budget is smaller cannot
be sent, occupies 0 channel uses and decodes to the receiver's prior. Bits and
side bits are 0 (the symbols are power-normalized inside the encoder, no
amplitude scale travels).

Encoder SNR. The encoder is conditioned on the SNR, but
:meth:`~agentcomm.codecs.base.Codec.encode` does not see the channel, so each
codec holds ``encoder_snr_db``: the SNR the transmitter assumes (set it to the
link's average SNR when it is known). The decoders use the actual effective
SNR from the receiver's CSI. The receiver's ``prior`` is used only for
messages that cannot be sent; ``intent`` is ignored (the whole map is coded).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from agentcomm._checks import check_range
from agentcomm.codecs.base import Codec, Message, Received
from agentcomm.decoders.cddm import CDDMReceiver
from agentcomm.decoders.diffcom import DiffComReceiver
from agentcomm.decoders.jscc import JSCC

__all__ = ["JSCCCDDMCodec", "JSCCCodec", "JSCCDiffComCodec", "register_decoder_codecs"]


class JSCCCodec(Codec):
    """Deep JSCC of a log-odds grid with the JSCC decoder as the receiver.

    Args:
        source_shape: ``(H, W)``, must match the model.
        model: a trained :class:`~agentcomm.decoders.jscc.JSCC`.
        encoder_snr_db: the SNR (dB) the encoder is conditioned on.
    """

    name = "jscc"
    digital = False

    def __init__(
        self, source_shape: Sequence[int], model: JSCC, encoder_snr_db: float = 10.0
    ) -> None:
        super().__init__(source_shape)
        if not isinstance(model, JSCC):
            raise ValueError(f"model must be a JSCC, got {type(model).__name__}")
        c = model.config
        if self.source_shape != (c.height, c.width):
            raise ValueError(
                f"source_shape={self.source_shape} does not match the model's grid "
                f"({c.height}, {c.width})"
            )
        self.model = model
        self.encoder_snr_db = float(check_range("encoder_snr_db", encoder_snr_db, -30.0, 60.0))
        self._params = {"k": c.channel_uses, "encoder_snr_db": self.encoder_snr_db}

    def _encode(
        self,
        values: torch.Tensor,
        budget: torch.Tensor,
        intent: torch.Tensor | None,
        prior: torch.Tensor,
    ) -> Message:
        m = values.shape[0]
        k = self.model.config.channel_uses
        sent = budget >= k
        with torch.no_grad():
            symbols = self.model.encode(
                values.reshape(m, *self.source_shape).float(), self.encoder_snr_db
            )
        symbols = torch.where(sent.unsqueeze(1), symbols, torch.zeros_like(symbols))
        uses = torch.where(sent, k, 0).to(torch.int64)
        return Message(
            channel_uses=uses,
            bits=torch.zeros_like(uses),
            side_bits=torch.zeros_like(uses),
            prior=prior,
            symbols=symbols,
            context={
                "sent": sent,
                "encoder_snr_db": torch.full((m,), self.encoder_snr_db, dtype=torch.float32),
            },
        )

    def _reconstruct(self, received: Received) -> torch.Tensor:
        """float32 ``[M, H, W]`` log-odds from the channel output (every message)."""
        with torch.no_grad():
            return self.model.decode(received.channel)

    def _decode(self, received: Received, prior: torch.Tensor) -> torch.Tensor:
        if received.channel is None:
            raise ValueError(f"{self.name!r} decodes analog symbols; received.channel is None")
        m = prior.shape[0]
        est = self._reconstruct(received).reshape(m, self.n).to(prior.dtype)
        return torch.where(received.message.context["sent"].unsqueeze(1), est, prior)


class JSCCCDDMCodec(JSCCCodec):
    """Deep JSCC with the CDDM receiver (:class:`~agentcomm.decoders.cddm.CDDMReceiver`).

    Args:
        source_shape: ``(H, W)``.
        receiver: a calibrated :class:`CDDMReceiver`; its ``jscc`` is the transmitter.
        encoder_snr_db: the SNR (dB) the encoder is conditioned on.
    """

    name = "jscc+cddm"

    def __init__(
        self, source_shape: Sequence[int], receiver: CDDMReceiver, encoder_snr_db: float = 10.0
    ) -> None:
        if not isinstance(receiver, CDDMReceiver):
            raise ValueError(f"receiver must be a CDDMReceiver, got {type(receiver).__name__}")
        super().__init__(source_shape, receiver.jscc, encoder_snr_db)
        self.receiver = receiver
        self._params["steps"] = receiver.steps

    def _reconstruct(self, received: Received) -> torch.Tensor:
        return self.receiver.decode(received.channel)


class JSCCDiffComCodec(JSCCCodec):
    """Deep JSCC with the DiffCom receiver (:class:`~agentcomm.decoders.diffcom.DiffComReceiver`).

    The receiver must start from the SNR-matched JSCC estimate (``receiver.start``
    set): the codec's decode has no generator, so it must be deterministic.

    Args:
        source_shape: ``(H, W)``.
        receiver: a :class:`DiffComReceiver` with ``start`` set.
        encoder_snr_db: the SNR (dB) the encoder is conditioned on.
    """

    name = "jscc+diffcom"

    def __init__(
        self,
        source_shape: Sequence[int],
        receiver: DiffComReceiver,
        encoder_snr_db: float = 10.0,
    ) -> None:
        if not isinstance(receiver, DiffComReceiver):
            raise ValueError(f"receiver must be a DiffComReceiver, got {type(receiver).__name__}")
        if receiver.start is None:
            raise ValueError(
                "receiver.start is None: the codec decodes without a generator, so the "
                "DiffCom receiver must start from the SNR-matched JSCC estimate"
            )
        super().__init__(source_shape, receiver.jscc, encoder_snr_db)
        self.receiver = receiver
        self._params.update(steps=receiver.steps, zeta=receiver.zeta)

    def _reconstruct(self, received: Received) -> torch.Tensor:
        snr = received.message.context["encoder_snr_db"]
        return self.receiver.decode(received.channel, snr)


def register_decoder_codecs(overwrite: bool = False) -> None:
    """Register ``"jscc"``, ``"jscc+cddm"`` and ``"jscc+diffcom"`` with the codec registry.

    Entries are lazy ``"module:Class"`` strings, so registering imports no model code.
    """
    from agentcomm.codecs.registry import available_codecs, register_codec

    have = set(available_codecs())
    for name, cls in (
        ("jscc", "JSCCCodec"),
        ("jscc+cddm", "JSCCCDDMCodec"),
        ("jscc+diffcom", "JSCCDiffComCodec"),
    ):
        if overwrite or name not in have:
            register_codec(name, f"agentcomm.decoders.codec:{cls}", overwrite=overwrite)
