"""Learned receivers: deep JSCC of belief maps and diffusion generative decoders.

* :mod:`~agentcomm.decoders.data`: synthetic belief maps (Bayes log-odds over random walks).
* :mod:`~agentcomm.decoders.jscc`: SNR-adaptive deep JSCC encoder/decoder, training, checkpoints.
* :mod:`~agentcomm.decoders.prior`: a DDPM prior over belief maps, sampled with the per-map
  DDIM step of :mod:`agentcomm.diffusion`.
* :mod:`~agentcomm.decoders.flow`: a few-step rectified-flow prior over belief maps (its steps
  in :mod:`agentcomm.diffusion`) and the receiver that samples it from the SNR-matched point.
* :mod:`~agentcomm.decoders.optimize`: the optimisation loop both models train with
  (data-parallel through a wrapper such as Ray Train's ``prepare_model``).
* :mod:`~agentcomm.decoders.cddm`: receiver A, denoising from the SNR-matched step (CDDM).
* :mod:`~agentcomm.decoders.diffcom`: receiver B, posterior sampling guided by ``y`` (DiffCom/DPS).
* :mod:`~agentcomm.decoders.posterior`: the posterior-mean belief of ``S`` samples, and its
  scores against the true occupancy (cross-entropy, reliability diagram).
* :mod:`~agentcomm.decoders.bundle`: a trained set (prior + JSCC per budget + calibration) on
  disk, and the bundles shipped in ``agentcomm/models/decoders/``.
* :mod:`~agentcomm.decoders.codec`: the ``"jscc"``, ``"jscc+cddm"``, ``"jscc+diffcom"`` and
  ``"jscc+flow"`` codecs,
  registered with :func:`agentcomm.codecs.register_codec` when this package is imported.
* :mod:`~agentcomm.decoders.cli`: ``agentcomm train-decoder``, offline training with Ray Train
  on environment rollouts; the training itself lives above the communication stack, in
  :mod:`agentcomm.policies.receiver_training`, since it needs the environments and Ray.
"""

from __future__ import annotations

from agentcomm.decoders.bundle import DecoderBundle, default_bundle_dir, load_bundle
from agentcomm.decoders.cddm import CDDMReceiver
from agentcomm.decoders.codec import (
    JSCCCDDMCodec,
    JSCCCodec,
    JSCCDiffComCodec,
    JSCCFlowCodec,
    register_decoder_codecs,
)
from agentcomm.decoders.data import (
    BeliefMapConfig,
    BeliefMaps,
    check_maps,
    from_unit,
    prior_logodds,
    simulate_belief_maps,
    to_unit,
)
from agentcomm.decoders.diffcom import DiffComReceiver, select_zeta
from agentcomm.decoders.flow import FlowConfig, FlowPrior, FlowReceiver, train_flow
from agentcomm.decoders.jscc import (
    JSCC,
    JSCCConfig,
    effective_snr_db,
    evaluate_jscc,
    load_checkpoint,
    save_checkpoint,
    train_jscc,
)
from agentcomm.decoders.posterior import PosteriorBelief, cross_entropy_bits, posterior_belief
from agentcomm.decoders.prior import (
    DiffusionPrior,
    PriorConfig,
    ddim_step,
    ddim_timesteps,
    train_prior,
)

__all__ = [
    "JSCC",
    "BeliefMapConfig",
    "BeliefMaps",
    "CDDMReceiver",
    "DecoderBundle",
    "DiffComReceiver",
    "DiffusionPrior",
    "JSCCCDDMCodec",
    "JSCCCodec",
    "JSCCConfig",
    "JSCCDiffComCodec",
    "JSCCFlowCodec",
    "FlowConfig",
    "FlowPrior",
    "FlowReceiver",
    "PosteriorBelief",
    "PriorConfig",
    "ddim_step",
    "check_maps",
    "cross_entropy_bits",
    "ddim_timesteps",
    "default_bundle_dir",
    "effective_snr_db",
    "evaluate_jscc",
    "from_unit",
    "load_bundle",
    "load_checkpoint",
    "posterior_belief",
    "prior_logodds",
    "register_decoder_codecs",
    "save_checkpoint",
    "select_zeta",
    "simulate_belief_maps",
    "to_unit",
    "train_flow",
    "train_jscc",
    "train_prior",
]

register_decoder_codecs()
