r"""The learned receivers behind the :class:`~agentcomm.codecs.base.Codec` contract.

Three analog codecs share trained :class:`~agentcomm.decoders.jscc.JSCC`
transmitters and differ only at the receiver:

* ``"jscc"``: the JSCC decoder (:class:`JSCCCodec`);
* ``"jscc+cddm"``: JSCC decoding, then diffusion denoising from the SNR-matched
  step (:class:`JSCCCDDMCodec`, :mod:`agentcomm.decoders.cddm`);
* ``"jscc+diffcom"``: posterior sampling guided by the received symbols
  (:class:`JSCCDiffComCodec`, :mod:`agentcomm.decoders.diffcom`).

Where the models come from, in order: objects passed in (``model=`` /
``receiver=``, one ``k``); a bundle folder written by ``agentcomm train-decoder``
(``checkpoint=DIR``, see :mod:`agentcomm.decoders.bundle`); otherwise the bundle
shipped for the grid shape (``make_codec("jscc", (16, 16))``), which fails with
a ``ValueError`` for grids no shipped model was trained on.

Accounting. A JSCC model has a fixed number of symbols ``k``. With a bundle of
several ``k`` each message uses the largest ``k`` that fits its budget
(:meth:`~agentcomm.decoders.bundle.DecoderBundle.select_channel_uses`) and
occupies exactly ``k`` channel uses; a message whose budget is below the
smallest ``k`` cannot be sent, occupies 0 channel uses and decodes to the
receiver's prior. Bits and side bits are 0 (the symbols are power-normalized
inside the encoder, no amplitude scale travels).

Encoder SNR. The encoder is conditioned on the SNR, but
:meth:`~agentcomm.codecs.base.Codec.encode` does not see the channel, so each
codec holds ``encoder_snr_db``: the SNR the transmitter assumes (set it to the
link's average SNR when it is known). The decoders use the actual effective
SNR from the receiver's CSI. The receiver's ``prior`` is used only for
messages that cannot be sent; ``intent`` is ignored (the whole map is coded).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch

from agentcomm._checks import check_range
from agentcomm.channels.base import ChannelOutput
from agentcomm.codecs.base import Codec, Message, Received
from agentcomm.decoders.bundle import (
    DecoderBundle,
    default_bundle_dir,
    largest_fitting,
    load_bundle,
)
from agentcomm.decoders.cddm import CDDMReceiver
from agentcomm.decoders.diffcom import DiffComReceiver
from agentcomm.decoders.jscc import JSCC

__all__ = ["JSCCCDDMCodec", "JSCCCodec", "JSCCDiffComCodec", "register_decoder_codecs"]

# ``(channel output of the messages using this k, encoder SNR dB [M_k]) -> log-odds [M_k, H, W]``
Reconstruct = Callable[[ChannelOutput, torch.Tensor], torch.Tensor]


def _rows(out: ChannelOutput, idx: torch.Tensor, k: int) -> ChannelOutput:
    """The messages ``idx`` of a channel output, cut to their first ``k`` symbols."""

    def cut(t: torch.Tensor) -> torch.Tensor:
        return t[idx, : min(k, t.shape[1])]

    return ChannelOutput(
        y=cut(out.y),
        h=cut(out.h),
        h_hat=None if out.h_hat is None else cut(out.h_hat),
        noise_var=out.noise_var[idx],
    )


class JSCCCodec(Codec):
    """Deep JSCC of a log-odds grid with the JSCC decoder as the receiver.

    Args:
        source_shape: ``(H, W)``, must match the models.
        checkpoint: a bundle folder (``agentcomm train-decoder``); ``None``: the shipped
            bundle for ``source_shape``. Ignored when ``model`` is given.
        model: a trained :class:`~agentcomm.decoders.jscc.JSCC` (a single ``k``).
        encoder_snr_db: the SNR (dB) the encoder is conditioned on.
    """

    name = "jscc"
    digital = False

    def __init__(
        self,
        source_shape: Sequence[int],
        checkpoint: str | os.PathLike[str] | None = None,
        model: JSCC | None = None,
        encoder_snr_db: float = 10.0,
    ) -> None:
        models = self._load(source_shape, checkpoint, "model", model, JSCC, lambda b: b.jscc)
        self._setup(source_shape, models, encoder_snr_db, lambda m, out, snr: m.decode(out))

    def _load(
        self,
        source_shape: Sequence[int],
        checkpoint: str | os.PathLike[str] | None,
        name: str,
        passed: Any,
        cls: type,
        from_bundle: Callable[[DecoderBundle], dict[int, Any]],
    ) -> dict[int, Any]:
        """The receivers per ``k``: ``{k: passed}`` when the argument ``name`` was given (it
        must be a ``cls``), else ``from_bundle`` of the bundle at ``checkpoint`` (``None``:
        the shipped one for ``source_shape``), which ``self.bundle`` keeps."""
        self.bundle: DecoderBundle | None = None
        if passed is not None:
            if not isinstance(passed, cls):
                raise ValueError(f"{name} must be a {cls.__name__}, got {type(passed).__name__}")
            jscc = passed if isinstance(passed, JSCC) else passed.jscc
            return {jscc.config.channel_uses: passed}
        path = default_bundle_dir(tuple(source_shape)) if checkpoint is None else checkpoint
        self.bundle = load_bundle(path)
        return from_bundle(self.bundle)

    def _setup(
        self,
        source_shape: Sequence[int],
        receivers: dict[int, Any],
        encoder_snr_db: float,
        reconstruct: Callable[[Any, ChannelOutput, torch.Tensor], torch.Tensor],
    ) -> None:
        """Check and hold one receiver per ``k``: a :class:`JSCC` or a diffusion receiver
        whose ``jscc`` transmits; ``reconstruct(receiver, out, snr_db)`` decodes with it."""
        super().__init__(source_shape)
        models = {k: r if isinstance(r, JSCC) else r.jscc for k, r in receivers.items()}
        for m in models.values():
            c = m.config
            if self.source_shape != (c.height, c.width):
                raise ValueError(
                    f"source_shape={self.source_shape} does not match the model's grid "
                    f"({c.height}, {c.width})"
                )
        self.models = dict(sorted(models.items()))
        self.model = self.models[max(self.models)]
        self.encoder_snr_db = float(check_range("encoder_snr_db", encoder_snr_db, -30.0, 60.0))
        self._params = {"k": tuple(self.models), "encoder_snr_db": self.encoder_snr_db}
        self.receivers: dict[int, Reconstruct] = {
            k: partial(reconstruct, r) for k, r in receivers.items()
        }

    def select_channel_uses(self, budget: torch.Tensor) -> torch.Tensor:
        """int64 ``[M]``: the largest model ``k <= budget`` of each message, 0 if none fits."""
        return largest_fitting(tuple(self.models), budget)

    def _encode(
        self,
        values: torch.Tensor,
        budget: torch.Tensor,
        intent: torch.Tensor | None,
        prior: torch.Tensor,
    ) -> Message:
        m = values.shape[0]
        uses = self.select_channel_uses(budget)
        width = int(uses.max()) if m > 0 else 0
        maps = values.reshape(m, *self.source_shape).float()
        symbols = torch.zeros(m, max(width, 1), dtype=torch.complex64, device=values.device)
        # One encoder call per model size (a handful), never per message.
        for k, model in self.models.items():
            idx = (uses == k).nonzero().squeeze(1)
            if idx.numel() > 0:
                with torch.no_grad():
                    symbols[idx, :k] = model.encode(maps[idx], self.encoder_snr_db)
        return Message(
            channel_uses=uses,
            bits=torch.zeros_like(uses),
            side_bits=torch.zeros_like(uses),
            prior=prior,
            symbols=symbols,
            context={
                "sent": uses > 0,
                "encoder_snr_db": torch.full((m,), self.encoder_snr_db, dtype=torch.float32),
            },
        )

    def _decode(self, received: Received, prior: torch.Tensor) -> torch.Tensor:
        if received.channel is None:
            raise ValueError(f"{self.name!r} decodes analog symbols; received.channel is None")
        msg = received.message
        est = prior.clone()
        for k, reconstruct in self.receivers.items():
            idx = (msg.channel_uses == k).nonzero().squeeze(1)
            if idx.numel() > 0:
                out = _rows(received.channel, idx, k)
                snr = msg.context["encoder_snr_db"][idx]
                # DiffCom turns gradients on inside its guided steps; nothing else needs them.
                with torch.no_grad():
                    rec = reconstruct(out, snr)
                est[idx] = rec.reshape(idx.numel(), self.n).to(prior.dtype)
        return est


class JSCCCDDMCodec(JSCCCodec):
    """Deep JSCC with the CDDM receiver (:class:`~agentcomm.decoders.cddm.CDDMReceiver`).

    Args:
        source_shape: ``(H, W)``.
        checkpoint: a bundle folder; ``None``: the shipped one. Ignored when ``receiver`` is given.
        receiver: a calibrated :class:`CDDMReceiver` (a single ``k``; its ``jscc`` transmits).
        encoder_snr_db: the SNR (dB) the encoder is conditioned on.
        steps: DDIM steps of the bundle's receivers; ``None``: the calibrated value.
    """

    name = "jscc+cddm"

    def __init__(
        self,
        source_shape: Sequence[int],
        checkpoint: str | os.PathLike[str] | None = None,
        receiver: CDDMReceiver | None = None,
        encoder_snr_db: float = 10.0,
        steps: int | None = None,
    ) -> None:
        rx = self._load(
            source_shape, checkpoint, "receiver", receiver, CDDMReceiver, lambda b: dict(b.cddm)
        )
        if steps is not None:
            rx = {
                k: CDDMReceiver(r.jscc, r.prior, r.snr_grid_db, r.error_var_table, steps)
                for k, r in rx.items()
            }
        self._setup(source_shape, rx, encoder_snr_db, lambda r, out, snr: r.decode(out))
        self.receiver = rx[max(rx)]
        self._params["steps"] = self.receiver.steps


class JSCCDiffComCodec(JSCCCodec):
    """Deep JSCC with the DiffCom receiver (:class:`~agentcomm.decoders.diffcom.DiffComReceiver`).

    The receiver must start from the SNR-matched JSCC estimate (``receiver.start``
    set): the codec's decode has no generator, so it must be deterministic.

    Args:
        source_shape: ``(H, W)``.
        checkpoint: a bundle folder; ``None``: the shipped one. Ignored when ``receiver`` is given.
        receiver: a :class:`DiffComReceiver` with ``start`` set (a single ``k``).
        encoder_snr_db: the SNR (dB) the encoder is conditioned on.
        steps: DDIM steps of the bundle's receivers; ``None``: the bundle's value.
        zeta: guidance step of the bundle's receivers; ``None``: the validated value per ``k``.
    """

    name = "jscc+diffcom"

    def __init__(
        self,
        source_shape: Sequence[int],
        checkpoint: str | os.PathLike[str] | None = None,
        receiver: DiffComReceiver | None = None,
        encoder_snr_db: float = 10.0,
        steps: int | None = None,
        zeta: float | None = None,
    ) -> None:
        rx = self._load(
            source_shape,
            checkpoint,
            "receiver",
            receiver,
            DiffComReceiver,
            lambda b: {k: b.diffcom(k, steps, zeta) for k in b.channel_uses},
        )
        if receiver is not None and receiver.start is None:
            raise ValueError(
                "receiver.start is None: the codec decodes without a generator, so the "
                "DiffCom receiver must start from the SNR-matched JSCC estimate"
            )
        self._setup(source_shape, rx, encoder_snr_db, lambda r, out, snr: r.decode(out, snr))
        self.receiver = rx[max(rx)]
        self._params.update(steps=self.receiver.steps, zeta=self.receiver.zeta)


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
