r"""The learned receivers behind the :class:`~agentcomm.codecs.base.Codec` contract.

Three analog codecs share trained :class:`~agentcomm.decoders.jscc.JSCC`
transmitters and differ only at the receiver:

* ``"jscc"``: the JSCC decoder (:class:`JSCCCodec`);
* ``"jscc+cddm"``: JSCC decoding, then diffusion denoising from the SNR-matched
  step (:class:`JSCCCDDMCodec`, :mod:`agentcomm.decoders.cddm`);
* ``"jscc+diffcom"``: posterior sampling guided by the received symbols
  (:class:`JSCCDiffComCodec`, :mod:`agentcomm.decoders.diffcom`);
* ``"jscc+flow"``: JSCC decoding, then a few rectified-flow steps from the SNR-matched
  point (:class:`JSCCFlowCodec`, :mod:`agentcomm.decoders.flow`).

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
SNR from the receiver's CSI. Without CSI (``csi="none"``, block fading) the diffusion
codecs (``"jscc+cddm"``, ``"jscc+diffcom"``, ``"jscc+flow"``) estimate the gain blindly
(:func:`~agentcomm.decoders.cddm.receiver_output`, with the message's encoder SNR for the
re-encoding); ``"jscc"`` needs CSI. The receiver's ``prior`` is used only for
messages that cannot be sent; ``intent`` is ignored (the whole map is coded).

Posterior belief. The diffusion codecs take ``posterior_samples`` ``S``: with
``S = 1`` (the default) the decoded map is the receiver's one deterministic
reconstruction; with ``S > 1`` the receiver draws ``S`` posterior maps per message
in one batched pass (``[M * S, H, W]`` through every network call, no loop over
samples or messages) and decodes to their posterior-mean belief
(:mod:`agentcomm.decoders.posterior`): per cell :math:`\bar p = \frac1S\sum_s
\sigma(\ell_s)`, returned as :math:`\mathrm{logit}\,\bar p` clipped to the models'
clip bound. :meth:`JSCCCodec.decode_posterior` also returns :math:`\bar p` and its
per-cell sample variance. The sampling noise comes from the generator passed to
:meth:`~agentcomm.codecs.base.Codec.deliver` (the one of
:func:`~agentcomm.codecs.base.transmit` and of the environment): ``deliver`` draws one
seed from it into the message context, so the same generator state gives the same
belief; without a generator the codec's own, seeded by ``seed``, is used.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import partial
from typing import Any

import torch

from agentcomm._checks import check_range
from agentcomm.channels.base import Channel, ChannelOutput
from agentcomm.codecs.base import Codec, Message, Received
from agentcomm.decoders.bundle import (
    DecoderBundle,
    default_bundle_dir,
    largest_fitting,
    load_bundle,
)
from agentcomm.decoders.cddm import CDDMReceiver
from agentcomm.decoders.diffcom import DiffComReceiver
from agentcomm.decoders.flow import MAX_STEPS, FlowReceiver
from agentcomm.decoders.jscc import JSCC
from agentcomm.decoders.posterior import PosteriorBelief, posterior_belief

__all__ = [
    "JSCCCDDMCodec",
    "JSCCCodec",
    "JSCCDiffComCodec",
    "JSCCFlowCodec",
    "register_decoder_codecs",
]

# ``(channel output of the messages using this k, encoder SNR dB [M_k]) -> log-odds [M_k, H, W]``
Reconstruct = Callable[[ChannelOutput, torch.Tensor], torch.Tensor]
# ``(channel output, encoder SNR dB [M_k], S, generator) -> sampled log-odds [M_k, S, H, W]``
Sampler = Callable[[ChannelOutput, torch.Tensor, int, torch.Generator], torch.Tensor]

#: Context key of the seed of the posterior sampling noise (int64 ``[M]``, one value).
POSTERIOR_SEED = "posterior_seed"


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
        return self._posterior(received, prior).logodds

    def decode_posterior(self, received: Received) -> PosteriorBelief:
        """The decoded belief with its per-cell uncertainty (module docstring).

        Args:
            received: what :meth:`deliver` returned.
        Returns:
            :class:`~agentcomm.decoders.posterior.PosteriorBelief` over ``[M, *S]``:
            ``logodds`` equals :meth:`decode`; ``prob`` its probabilities; ``variance`` the
            sample variance of the posterior samples' probabilities (zeros with one sample,
            for the point decoder ``"jscc"`` and for messages decoded to the prior).
        """
        prior = received.message.prior
        m = prior.shape[0]
        flat_prior = prior.reshape(m, self.n)
        post = self._posterior(received, flat_prior)
        keep = received.delivered.unsqueeze(1)
        logodds = torch.where(keep, post.logodds, flat_prior)
        prob = torch.where(keep, post.prob, torch.sigmoid(flat_prior.float()))
        var = torch.where(keep, post.variance, 0.0)
        return PosteriorBelief(
            logodds=logodds.reshape(prior.shape),
            prob=prob.reshape(prior.shape),
            variance=var.reshape(prior.shape),
            samples=post.samples,
        )

    def _samples(self) -> int:
        """Posterior samples per message (1: the deterministic reconstruction)."""
        return 1

    def _sampler(self, k: int) -> Sampler | None:
        """The batched posterior sampler of the receiver for ``k``; ``None`` for a point decoder."""
        return None

    def _posterior(self, received: Received, prior: torch.Tensor) -> PosteriorBelief:
        """Posterior belief over flat ``[M, n]`` rows (the prior's rows where nothing was sent)."""
        if received.channel is None:
            raise ValueError(f"{self.name!r} decodes analog symbols; received.channel is None")
        msg = received.message
        s = self._samples()
        est = prior.clone()
        prob = torch.sigmoid(prior.float())
        var = torch.zeros_like(prob)
        generator = self._generator(received) if s > 1 else None
        for k, reconstruct in self.receivers.items():
            idx = (msg.channel_uses == k).nonzero().squeeze(1)
            if idx.numel() > 0:
                out = _rows(received.channel, idx, k)
                snr = msg.context["encoder_snr_db"][idx]
                sampler = self._sampler(k)
                # DiffCom turns gradients on inside its guided steps; nothing else needs them.
                with torch.no_grad():
                    if s == 1 or sampler is None:
                        rec = reconstruct(out, snr).reshape(idx.numel(), self.n)
                        p, v = torch.sigmoid(rec.float()), torch.zeros_like(rec, dtype=prob.dtype)
                    else:
                        samples = sampler(out, snr, s, generator)
                        post = posterior_belief(samples, self.models[k].config.clip)
                        rec = post.logodds.reshape(idx.numel(), self.n)
                        p = post.prob.reshape(idx.numel(), self.n)
                        v = post.variance.reshape(idx.numel(), self.n)
                est[idx] = rec.to(prior.dtype)
                prob[idx] = p.to(prob.dtype)
                var[idx] = v.to(var.dtype)
        return PosteriorBelief(logodds=est, prob=prob, variance=var, samples=s)

    def _generator(self, received: Received) -> torch.Generator:
        """The sampling generator: seeded from the message context (:meth:`deliver`) when
        there, else the codec's own."""
        seed = received.message.context.get(POSTERIOR_SEED)
        if seed is None or seed.numel() == 0:
            return self._own_generator
        device = received.channel.y.device
        return torch.Generator(device=device).manual_seed(int(seed[0]))


class _PosteriorCodec(JSCCCodec):
    """A JSCC codec whose receiver can sample the posterior (the diffusion receivers)."""

    def _setup_sampler(
        self,
        source_shape: Sequence[int],
        receivers: dict[int, Any],
        encoder_snr_db: float,
        posterior_samples: int,
        eta: float,
        seed: int,
    ) -> None:
        """Set up a codec on receivers with ``decode(out, encoder_snr_db=...)``
        (deterministic) and ``sample(out, S, generator, eta=..., encoder_snr_db=...)``
        (posterior draws): CDDM and the flow. The messages' encoder SNR reaches the blind
        gain estimate (without CSI); with CSI the receivers do not use it."""
        self._setup(
            source_shape,
            receivers,
            encoder_snr_db,
            lambda r, out, snr: r.decode(out, encoder_snr_db=snr),
        )
        self._setup_posterior(
            receivers,
            lambda r, out, snr, s, g, eta: r.sample(out, s, g, eta=eta, encoder_snr_db=snr),
            posterior_samples,
            eta,
            seed,
        )
        self.receiver = receivers[max(receivers)]
        self._params["steps"] = self.receiver.steps

    def _setup_posterior(
        self,
        receivers: dict[int, Any],
        sampler: Callable[[Any, ChannelOutput, torch.Tensor, int, torch.Generator], torch.Tensor],
        posterior_samples: int,
        eta: float,
        seed: int,
    ) -> None:
        """Hold ``S``, the step noise ``eta``, the fallback generator and one sampler per ``k``."""
        if isinstance(posterior_samples, bool) or not isinstance(posterior_samples, int):
            raise ValueError(f"posterior_samples={posterior_samples!r} must be an int in [1, 4096]")
        self.posterior_samples = int(check_range("posterior_samples", posterior_samples, 1, 4096))
        self.eta = float(check_range("eta", eta, 0.0, 1.0, low_inclusive=False))
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed={seed!r} must be an int")
        self._own_generator = torch.Generator().manual_seed(seed)
        self._samplers: dict[int, Sampler] = {
            k: partial(sampler, r, eta=self.eta) for k, r in receivers.items()
        }
        self._params.update(posterior_samples=self.posterior_samples, eta=self.eta)

    def _samples(self) -> int:
        return self.posterior_samples

    def _sampler(self, k: int) -> Sampler | None:
        return self._samplers[k]

    def deliver(
        self,
        message: Message,
        channel: Channel,
        snr_db: float | torch.Tensor,
        generator: torch.Generator | None,
        h: torch.Tensor | None = None,
    ) -> Received:
        """Send the symbols; with ``posterior_samples > 1`` also draw the seed of the
        receiver's sampling noise from ``generator`` (after the channel's draws) into
        ``message.context["posterior_seed"]``."""
        received = super().deliver(message, channel, snr_db, generator, h)
        if self.posterior_samples == 1:
            return received
        src = self._own_generator if generator is None else generator
        seed = torch.randint(0, 2**62, (1,), generator=src, device=src.device).cpu()
        msg = received.message
        m = msg.channel_uses.shape[0]
        context = {**msg.context, POSTERIOR_SEED: seed.expand(m).clone()}
        return replace(received, message=replace(msg, context=context))


class JSCCCDDMCodec(_PosteriorCodec):
    """Deep JSCC with the CDDM receiver (:class:`~agentcomm.decoders.cddm.CDDMReceiver`).

    Args:
        source_shape: ``(H, W)``.
        checkpoint: a bundle folder; ``None``: the shipped one. Ignored when ``receiver`` is given.
        receiver: a calibrated :class:`CDDMReceiver` (a single ``k``; its ``jscc`` transmits).
        encoder_snr_db: the SNR (dB) the encoder is conditioned on.
        steps: DDIM steps of the bundle's receivers; ``None``: the calibrated value.
        posterior_samples: ``S``, posterior samples per message (module docstring); 1 keeps
            the deterministic CDDM reconstruction, ``S > 1`` decodes to the posterior-mean
            belief of ``S`` ancestral samples (DDIM with noise ``eta``) from the
            SNR-matched start.
        eta: step noise of the posterior samples, in ``(0, 1]`` (1: DDPM's posterior noise).
        seed: seed of the codec's own generator, used when :meth:`deliver` gets none.
    """

    name = "jscc+cddm"

    def __init__(
        self,
        source_shape: Sequence[int],
        checkpoint: str | os.PathLike[str] | None = None,
        receiver: CDDMReceiver | None = None,
        encoder_snr_db: float = 10.0,
        steps: int | None = None,
        posterior_samples: int = 1,
        eta: float = 1.0,
        seed: int = 0,
    ) -> None:
        rx = self._load(
            source_shape, checkpoint, "receiver", receiver, CDDMReceiver, lambda b: dict(b.cddm)
        )
        if steps is not None:
            rx = {k: r.options(steps=steps) for k, r in rx.items()}
        self._setup_sampler(source_shape, rx, encoder_snr_db, posterior_samples, eta, seed)


class JSCCDiffComCodec(_PosteriorCodec):
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
        posterior_samples: ``S``, guided posterior samples per message (module docstring);
            1 keeps the deterministic DiffCom reconstruction.
        eta: step noise of the posterior samples, in ``(0, 1]``.
        seed: seed of the codec's own generator, used when :meth:`deliver` gets none.
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
        posterior_samples: int = 1,
        eta: float = 1.0,
        seed: int = 0,
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
        self._setup_posterior(
            rx,
            lambda r, out, snr, s, g, eta: r.sample(out, snr, s, g, eta=eta),
            posterior_samples,
            eta,
            seed,
        )
        self.receiver = rx[max(rx)]
        self._params.update(steps=self.receiver.steps, zeta=self.receiver.zeta)


class JSCCFlowCodec(_PosteriorCodec):
    """Deep JSCC with the few-step flow receiver (:class:`~agentcomm.decoders.flow.FlowReceiver`).

    Args:
        source_shape: ``(H, W)``.
        checkpoint: a bundle folder with a flow prior; ``None``: the shipped one. Ignored
            when ``receiver`` is given.
        receiver: a :class:`FlowReceiver` (a single ``k``; its ``jscc`` transmits).
        encoder_snr_db: the SNR (dB) the encoder is conditioned on.
        steps: Euler steps, in ``[1, 3]`` (with the JSCC decoder at most 4 network calls);
            ``None``: the bundle's value.
        posterior_samples: ``S`` (module docstring); 1 keeps the deterministic
            reconstruction, ``S > 1`` decodes to the posterior-mean belief of ``S`` noisy
            flow samples from the SNR-matched point. The default 4 (with the bundle's 2
            steps: 3 network calls) keeps a decode within 2 ms per message at batch 1 and
            0.2 ms at batch 64 on one CPU thread (``experiments/eval_decoders.py``).
        eta: step noise of the posterior samples, in ``(0, 1]``.
        seed: seed of the codec's own generator, used when :meth:`deliver` gets none.
    """

    name = "jscc+flow"

    def __init__(
        self,
        source_shape: Sequence[int],
        checkpoint: str | os.PathLike[str] | None = None,
        receiver: FlowReceiver | None = None,
        encoder_snr_db: float = 10.0,
        steps: int | None = None,
        posterior_samples: int = 4,
        eta: float = 1.0,
        seed: int = 0,
    ) -> None:
        if steps is not None and (
            isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS
        ):
            raise ValueError(f"steps={steps!r} is not allowed; expected an int in [1, {MAX_STEPS}]")
        rx = self._load(
            source_shape,
            checkpoint,
            "receiver",
            receiver,
            FlowReceiver,
            lambda b: {k: b.flow_receiver(k) for k in b.channel_uses},
        )
        if steps is not None:
            rx = {k: r.options(steps=steps) for k, r in rx.items()}
        self._setup_sampler(source_shape, rx, encoder_snr_db, posterior_samples, eta, seed)


def register_decoder_codecs(overwrite: bool = False) -> None:
    """Register ``"jscc"``, ``"jscc+cddm"``, ``"jscc+diffcom"`` and ``"jscc+flow"`` with the
    codec registry.

    Entries are lazy ``"module:Class"`` strings, so registering imports no model code.
    """
    from agentcomm.codecs.registry import available_codecs, register_codec

    have = set(available_codecs())
    for name, cls in (
        ("jscc", "JSCCCodec"),
        ("jscc+cddm", "JSCCCDDMCodec"),
        ("jscc+diffcom", "JSCCDiffComCodec"),
        ("jscc+flow", "JSCCFlowCodec"),
    ):
        if overwrite or name not in have:
            register_codec(name, f"agentcomm.decoders.codec:{cls}", overwrite=overwrite)
