r"""The diffusion prior of the receiver trained online, beside the policy and the JSCC receiver.

Shape legend: ``M`` belief maps in a train batch (one per agent-step), ``H x W`` grid.

:class:`DiffusionPriorRLModule` is the diffusion half of the online receiver: a
:class:`~agentcomm.decoders.prior.DiffusionPrior` (DDPM over normalized log-odds maps) as
an RLlib ``RLModule`` of the same ``MultiRLModule`` as the PPO policy and the JSCC
receiver (:class:`~agentcomm.policies.online_receiver.ReceiverRLModule`). Like the JSCC
receiver it implements ``SelfSupervisedLossAPI``: the same ``Learner.update()`` call that
steps the policy steps it, with its own Adam optimizer, on the belief maps the env runners
collected (the learner connector
:class:`~agentcomm.policies.online_receiver.AddBeliefsToReceiverBatch` gives it the same
``"belief"`` batch as the JSCC receiver). No agent maps to it.

Loss: the prior's own denoising loss, :meth:`DiffusionPrior.loss
<agentcomm.decoders.prior.DiffusionPrior.loss>` on :math:`x_0 = \mathrm{clip}(\ell, -L,
L)/L` (the target of the configured parametrisation, ``v`` by default, at a timestep drawn
uniformly per map); nothing of the prior is re-implemented here.

Decoding: the trained module's ``prior`` and the JSCC receiver's ``jscc`` are the models
of the offline receivers; :func:`online_cddm_receiver` calibrates a
:class:`~agentcomm.decoders.cddm.CDDMReceiver` from them (CDDM-style decoding: JSCC
estimate, then DDIM from the SNR-matched step), and
:class:`~agentcomm.decoders.bundle.DecoderBundle` can save both as a bundle the
environment's ``jscc`` / ``jscc+cddm`` codecs load.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from ray.rllib.core.rl_module.apis import SelfSupervisedLossAPI
from ray.rllib.core.rl_module.torch import TorchRLModule

from agentcomm.channels.registry import make_channel
from agentcomm.decoders.cddm import CDDMReceiver
from agentcomm.decoders.data import check_maps, to_unit
from agentcomm.decoders.jscc import JSCC
from agentcomm.decoders.prior import DiffusionPrior, PriorConfig
from agentcomm.policies.online_receiver import BELIEF, MapReplay

__all__ = ["DiffusionPriorRLModule", "online_cddm_receiver"]


class DiffusionPriorRLModule(TorchRLModule, SelfSupervisedLossAPI):
    """A :class:`~agentcomm.decoders.prior.DiffusionPrior` over belief maps as an RLlib module.

    ``model_config["prior"]`` (one nested dict, as for the JSCC receiver) holds the fields
    of :class:`~agentcomm.decoders.prior.PriorConfig` plus ``"seed"`` (of the weights and of
    the module's generator for timesteps and noise, default 0) and ``"replay_maps"``
    (capacity of the :class:`~agentcomm.policies.online_receiver.MapReplay` store mixed
    into every minibatch, default 0: none).

    Batch column: ``"belief"`` float ``[M, H, W]`` log-odds (nats).
    """

    def setup(self) -> None:
        """Build the prior from ``model_config``."""
        cfg = dict((self.model_config or {}).get("prior", {}))
        fields = {f.name for f in dataclasses.fields(PriorConfig)}
        extra = {"seed", "replay_maps"}
        unknown = sorted(set(cfg) - fields - extra)
        if unknown:
            raise ValueError(
                f"unknown prior model_config key(s) {unknown}; allowed {sorted(fields | extra)}"
            )
        self.seed = int(cfg.get("seed", 0))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.prior = DiffusionPrior(
                PriorConfig.from_dict({k: v for k, v in cfg.items() if k in fields})
            )
        c = self.prior.config
        self.replay = MapReplay(int(cfg.get("replay_maps", 0)), c.height, c.width)
        self._generator: torch.Generator | None = None

    def _rng(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Nothing to run ahead of the loss: :meth:`compute_self_supervised_loss` noises the maps.

        Returns:
            ``{}``.
        """
        return {}

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Denoising loss of ``batch["belief"]`` without a gradient (evaluation).

        Returns:
            ``{"denoising_loss": float32 scalar}``.
        """
        with torch.no_grad():
            return {"denoising_loss": self._loss(batch[BELIEF].float())}

    def _loss(self, maps: torch.Tensor) -> torch.Tensor:
        c = self.prior.config
        check_maps(BELIEF, maps, c.height, c.width)
        return self.prior.loss(to_unit(maps, c.clip), self._rng(maps.device))

    def compute_self_supervised_loss(
        self,
        *,
        learner: Any,
        module_id: str,
        config: Any,
        batch: dict[str, Any],
        fwd_out: dict[str, Any],
    ) -> torch.Tensor:
        """The prior's denoising loss on the batch's maps and as many replayed ones
        (dimensionless).

        Logs it under ``module_id`` as ``denoising_loss``.

        Returns:
            The scalar loss.
        """
        maps = batch[BELIEF].float()
        loss = self._loss(self.replay.mix(maps, self._rng(maps.device)))
        learner.metrics.log_dict({"denoising_loss": loss.detach()}, key=module_id, window=1)
        return loss


@torch.no_grad()
def online_cddm_receiver(
    jscc: JSCC,
    prior: DiffusionPrior,
    maps: torch.Tensor,
    *,
    steps: int = 5,
    seed: int = 0,
) -> CDDMReceiver:
    """A CDDM receiver from the online JSCC and prior, calibrated on ``maps`` over AWGN.

    Args:
        jscc: the JSCC of a trained :class:`~agentcomm.policies.online_receiver.ReceiverRLModule`.
        prior: the prior of a trained :class:`DiffusionPriorRLModule`.
        maps: float ``[D, H, W]`` log-odds (nats) the receiver did not train on.
        steps: DDIM steps of the receiver.
        seed: seed of the calibration's channel noise.
    Returns:
        :meth:`CDDMReceiver.calibrate <agentcomm.decoders.cddm.CDDMReceiver.calibrate>` of
        copies of both models in eval mode on the CPU.
    """
    jscc = _frozen_copy(jscc)
    prior = _frozen_copy(prior)
    g = torch.Generator().manual_seed(seed)
    return CDDMReceiver.calibrate(
        jscc, prior, maps.float().cpu(), make_channel("awgn"), g, steps=steps
    )


def _frozen_copy(module: torch.nn.Module) -> Any:
    out = type(module)(module.config)
    out.load_state_dict({k: v.detach().cpu() for k, v in module.state_dict().items()})
    return out.eval().requires_grad_(False)
