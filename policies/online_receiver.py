r"""A JSCC receiver trained online, beside the policy, on the beliefs the agents hold.

Shape legend: ``M`` belief maps in a train batch (one per agent-step), ``H x W`` grid,
``k`` complex channel uses.

Offline training (:func:`~agentcomm.decoders.jscc.train_jscc`) fits a JSCC codec to belief
maps simulated once. Here the codec is an RLlib ``RLModule`` of the same ``MultiRLModule`` as
the policy, updated by the same ``Learner`` in the same ``update()`` call, on the beliefs the
env runners collected with the *current* policy: as the policy learns to explore
differently, the distribution of belief maps shifts and the receiver follows it. This is how
RLlib 2.60 trains an intrinsic-curiosity model beside a policy
(``ray/rllib/examples/learners/classes/intrinsic_curiosity_learners.py``):

* :class:`ReceiverRLModule` implements RLlib's ``SelfSupervisedLossAPI``; RLlib's
  ``Learner.compute_losses`` calls its :meth:`~ReceiverRLModule.compute_self_supervised_loss`
  instead of the PPO loss, and gives it its own optimizer (its learning rate through
  ``algorithm_config_overrides_per_module``). No agent maps to it, so env runners never run it.
* :class:`BeliefInfoMultiAgentEnv` adds each agent's belief map and the true map to its
  ``infos``; :class:`AddBeliefsToReceiverBatch`, a learner connector piece appended by
  :class:`ReceiverPPOTorchLearner`, stacks them from the episodes into the receiver's batch.

Loss. The sender encodes its own belief :math:`\ell` (log-odds, nats), the symbols pass a
differentiable channel at an SNR drawn uniformly per map from ``snr_range_db``, the
receiver decodes; the loss is :math:`\mathrm{MSE}(\hat u, u)`, :math:`u = \mathrm{clip}(\ell,
-L, L)/L`, the loss of :func:`~agentcomm.decoders.jscc.train_jscc` (see
:mod:`agentcomm.decoders.jscc` for why MSE on clipped log-odds).

Batches. One train batch holds the maps of a few episodes, passed over ``num_epochs``
times; trained on it alone the receiver fits those episodes (its batch loss falls far below
its loss on other episodes) and on held-out maps it stays near the best constant map for
many iterations. Each receiver module therefore keeps the last ``replay_maps`` maps
(:class:`MapReplay`) and trains every minibatch together with as many maps drawn from them
(``docs/online_receiver.md`` has the measurements).

Diffusion prior. With ``online_receiver_config(prior=PriorConfig(...))`` a third module,
:class:`~agentcomm.policies.online_diffusion_receiver.DiffusionPriorRLModule`, trains the
receiver's diffusion prior on the same maps by its own denoising loss, with its own
optimizer; the JSCC and the prior then decode CDDM-style
(:func:`~agentcomm.policies.online_diffusion_receiver.online_cddm_receiver`).

Layering: it imports RLlib and :mod:`agentcomm.envs`, so it lives with the trainers in
:mod:`agentcomm.policies`, not in the core :mod:`agentcomm.decoders`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.core.rl_module.apis import SelfSupervisedLossAPI
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModule, RLModuleSpec
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from agentcomm._checks import check_positive, check_range
from agentcomm.channels.registry import CHANNELS, make_channel
from agentcomm.decoders.data import check_maps, to_unit
from agentcomm.decoders.jscc import JSCC, JSCCConfig
from agentcomm.decoders.prior import PriorConfig
from agentcomm.envs.adapters.rllib import CommMultiAgentEnv
from agentcomm.policies.gaussian_ppo import gaussian_ppo_config

__all__ = [
    "BELIEF",
    "POLICY_MODULE_ID",
    "PRIOR_MODULE_ID",
    "RECEIVER_MODULE_ID",
    "TRUE_MAP",
    "AddBeliefsToReceiverBatch",
    "BeliefInfoMultiAgentEnv",
    "MapReplay",
    "ReceiverPPOTorchLearner",
    "ReceiverRLModule",
    "online_receiver_config",
]

#: Module id of the receiver in the ``MultiRLModule``; no agent maps to it.
RECEIVER_MODULE_ID = "receiver"
#: Module id of the receiver's diffusion prior
#: (:class:`~agentcomm.policies.online_diffusion_receiver.DiffusionPriorRLModule`), present
#: when :func:`online_receiver_config` gets ``prior=``; no agent maps to it.
PRIOR_MODULE_ID = "receiver_prior"
#: Module id of the policy shared by every agent.
POLICY_MODULE_ID = "shared"
#: Info key / receiver batch column: the agent's own belief, float32 ``[H, W]`` log-odds (nats).
BELIEF = "belief"
#: Info key / receiver batch column: the true map, float32 ``[H, W]`` in {0, 1}.
TRUE_MAP = "true_map"

# Floor of the per-cell standard deviation (normalized units, i.e. 0.3 nats at L = 6) used to
# standardize the encoder input. Offline training floors at 1e-3, but online a cell that was
# constant in early batches (never sensed) may vary later: a tiny running std would blow its
# standardized input up by orders of magnitude.
_STD_FLOOR = 0.05


class MapReplay(nn.Module):
    """A first-in-first-out store of the last ``capacity`` belief maps, for the receiver modules.

    A train batch holds the maps of a few episodes, strongly correlated within an episode,
    and PPO passes over it ``num_epochs`` times: trained on it alone, a receiver module
    fits those episodes and forgets earlier ones. :class:`AddBeliefsToReceiverBatch` calls
    :meth:`add` once per update with the new maps; :meth:`mix` appends to every minibatch as
    many maps drawn uniformly from the store, so that each gradient step also sees maps of
    earlier iterations. ``capacity = 0`` turns it off. The store is not part of the module's
    state (checkpoints carry weights only).

    Args:
        capacity: maps kept.
        height, width: the grid.
    """

    def __init__(self, capacity: int, height: int, width: int) -> None:
        super().__init__()
        self.capacity = int(check_range("replay_maps", capacity, 0, None))
        self.register_buffer("maps", torch.zeros(self.capacity, height, width), persistent=False)
        self.size = 0
        self._next = 0

    @torch.no_grad()
    def add(self, maps: torch.Tensor) -> None:
        """Store float ``[M, H, W]`` maps, overwriting the oldest when full."""
        if self.capacity == 0 or maps.shape[0] == 0:
            return
        maps = maps[-self.capacity :].to(self.maps)
        idx = (self._next + torch.arange(maps.shape[0], device=maps.device)) % self.capacity
        self.maps[idx] = maps
        self._next = (self._next + maps.shape[0]) % self.capacity
        self.size = min(self.size + maps.shape[0], self.capacity)

    def mix(self, maps: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """``maps`` float ``[M, H, W]`` followed by ``M`` stored maps drawn with replacement
        (``[2M, H, W]``), or ``maps`` itself while the store is empty."""
        if self.size == 0:
            return maps
        idx = torch.randint(
            0, self.size, (maps.shape[0],), generator=generator, device=generator.device
        )
        return torch.cat([maps, self.maps[idx.to(self.maps.device)].to(maps)])


class BeliefInfoMultiAgentEnv(CommMultiAgentEnv):
    """:class:`~agentcomm.envs.adapters.rllib.CommMultiAgentEnv` whose infos carry the beliefs.

    Per agent, at reset and at every step, ``infos[agent]`` gains

    * ``"belief"``: float32 ``[H, W]``, that agent's belief (log-odds, nats) after the step,
      the map it would send;
    * ``"true_map"``: float32 ``[H, W]``, 1.0 where the sensors would detect a target.

    Everything else (spaces, config keys, rewards) is that of the parent class; grid-belief
    scenarios only.
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        if getattr(self.world, "belief_kind", "grid") != "grid":
            raise ValueError(
                f"env_id={self.env_id!r} keeps Gaussian beliefs; BeliefInfoMultiAgentEnv "
                "needs a grid-belief scenario"
            )

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
        """As :meth:`CommMultiAgentEnv.reset`, with ``"belief"`` and ``"true_map"`` in the infos."""
        obs, infos = super().reset(seed=seed, options=options)
        return obs, self._add_maps(infos)

    def step(self, action_dict: dict[str, Any]) -> tuple[dict, dict, dict, dict, dict]:
        """As :meth:`CommMultiAgentEnv.step`, with ``"belief"`` and ``"true_map"`` in the infos."""
        obs, rew, term, trunc, infos = super().step(action_dict)
        return obs, rew, term, trunc, self._add_maps(infos)

    def _add_maps(self, infos: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        belief = self.world.belief[0].detach().float().cpu().numpy()
        truth = self.world.true_map()[0].float().cpu().numpy()
        for i, agent in enumerate(self.possible_agents):
            if agent in infos:
                infos[agent] = {**infos[agent], BELIEF: belief[i], TRUE_MAP: truth}
        return infos


class ReceiverRLModule(TorchRLModule, SelfSupervisedLossAPI):
    """A JSCC link (sender's encoder + receiver's decoder) as an RLlib module.

    ``model_config["receiver"]`` (one nested dict, because RLlib merges the algorithm's
    default model config, e.g. ``fcnet_hiddens``, into every module's ``model_config``)
    holds the fields of :class:`~agentcomm.decoders.jscc.JSCCConfig`
    (``height``, ``width``, ``channel_uses``, ``clip``, ``hidden``, ``depth``), plus
    ``"channel"`` (a name of :data:`~agentcomm.channels.registry.CHANNELS`, default
    ``"awgn"``), ``"snr_range_db"`` (``[low, high]`` dB, default ``[0, 20]``), ``"seed"``
    (of the module's generator for SNRs and channel noise, default 0), ``"stat_momentum"``
    (weight of a new batch in the running per-cell mean / std, default 0.05) and
    ``"prior_logodds"`` (the scenario's prior, nats; if given, the loss of predicting it
    is logged as ``prior_mse``) and ``"replay_maps"`` (capacity of the :class:`MapReplay`
    store whose maps are mixed into every minibatch, default 0: none).

    The per-cell statistics the JSCC standardizes its input by and adds back at its output
    (fitted once to the data set offline) are running averages here, updated from every
    train batch under ``no_grad`` the way batch norm keeps its running statistics: a
    cumulative mean for the first ``1 / stat_momentum`` batches, an exponential moving
    average after.

    Batch columns: ``"belief"`` float ``[M, H, W]`` log-odds (nats); optional ``"true_map"``
    float ``[M, H, W]`` in {0, 1} (only for metrics) and, for :meth:`_forward`, ``"snr_db"``
    float ``[M]`` (dB).
    """

    def setup(self) -> None:
        """Build the JSCC codec and the channel from ``model_config``."""
        cfg = dict((self.model_config or {}).get("receiver", {}))
        fields = {f.name for f in dataclasses.fields(JSCCConfig)}
        extra = {"channel", "snr_range_db", "seed", "stat_momentum", "prior_logodds", "replay_maps"}
        unknown = sorted(set(cfg) - fields - extra)
        if unknown:
            raise ValueError(
                f"unknown receiver model_config key(s) {unknown}; allowed {sorted(fields | extra)}"
            )
        self.seed = int(cfg.get("seed", 0))
        # Weights from the receiver's own seed, not from whatever state torch's global
        # generator is in when RLlib builds the module (that differs between the driver's
        # learner and each runner, and between runs), so copies start identical.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            self.jscc = JSCC(JSCCConfig.from_dict({k: v for k, v in cfg.items() if k in fields}))
        self.channel = make_channel(str(cfg.get("channel", "awgn")))
        lo, hi = (float(s) for s in cfg.get("snr_range_db", (0.0, 20.0)))
        check_range("snr_range_db[1]", hi, lo, None)
        self.snr_range_db = (lo, hi)
        self.stat_momentum = float(cfg.get("stat_momentum", 0.05))
        check_range("stat_momentum", self.stat_momentum, 0.0, 1.0, low_inclusive=False)
        prior = cfg.get("prior_logodds")
        self.prior_logodds = None if prior is None else float(prior)
        self.register_buffer("num_stat_updates", torch.zeros((), dtype=torch.int64))
        c = self.jscc.config
        self.replay = MapReplay(int(cfg.get("replay_maps", 0)), c.height, c.width)
        self._generator: torch.Generator | None = None

    def _rng(self, device: torch.device) -> torch.Generator:
        if self._generator is None or self._generator.device != device:
            self._generator = torch.Generator(device=device).manual_seed(self.seed)
        return self._generator

    @torch.no_grad()
    def _update_statistics(self, maps: torch.Tensor) -> None:
        flat = to_unit(maps, self.jscc.config.clip).flatten(1).float()
        mean, std = flat.mean(0), flat.std(0, unbiased=False).clamp_min(_STD_FLOOR)
        w = max(self.stat_momentum, 1.0 / float(self.num_stat_updates + 1))
        for m, s in (
            (self.jscc.encoder.in_mean, self.jscc.encoder.in_std),
            (self.jscc.decoder.out_mean, self.jscc.decoder.out_std),
        ):
            m.lerp_(mean, w)
            s.lerp_(std, w)
        self.num_stat_updates += 1

    def _transmit(self, maps: torch.Tensor, snr_db: torch.Tensor | None) -> dict[str, Any]:
        c = self.jscc.config
        check_maps(BELIEF, maps, c.height, c.width)
        gen = self._rng(maps.device)
        if snr_db is None:
            lo, hi = self.snr_range_db
            u = torch.rand(maps.shape[0], generator=gen, device=maps.device)
            snr_db = lo + (hi - lo) * u
        out = self.channel.apply(self.jscc.encode(maps, snr_db), snr_db, gen)
        return {"u_hat": self.jscc._decode_unit(out), "snr_db": snr_db}

    def _forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Update the running statistics, then send every map of ``batch["belief"]`` once,
        followed by as many maps replayed from earlier batches (:class:`MapReplay`).

        Returns:
            ``{"u_hat": float32 [M', H*W] unclipped normalized estimate, "snr_db": float32
            [M'], "sent": float32 [M', H, W] the maps sent}`` with ``M' = M`` (no replay) or
            ``2M``.
        """
        maps = batch[BELIEF].float()
        self._update_statistics(maps)
        sent = self.replay.mix(maps, self._rng(maps.device))
        return {**self._transmit(sent, None), "sent": sent}

    def _forward(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Send ``batch["belief"]`` at ``batch["snr_db"]`` (dB, ``[M]``; uniform if absent).

        Returns:
            ``{"belief_hat": float32 [M, H, W] log-odds (nats), "snr_db": float32 [M]}``.
        """
        maps = batch[BELIEF].float()
        sent = self._transmit(maps, batch.get("snr_db"))
        c = self.jscc.config
        u_hat = sent["u_hat"].clamp(-1.0, 1.0).view(-1, c.height, c.width)
        return {"belief_hat": u_hat * c.clip, "snr_db": sent["snr_db"]}

    def compute_self_supervised_loss(
        self,
        *,
        learner: Any,
        module_id: str,
        config: Any,
        batch: dict[str, Any],
        fwd_out: dict[str, Any],
    ) -> torch.Tensor:
        """Reconstruction MSE of the sender's belief on normalized log-odds (dimensionless).

        The loss is taken over the maps sent by :meth:`_forward_train`: the batch's and, with
        a replay store, as many earlier maps. Logs under ``module_id``, all on the batch's
        own maps: ``reconstruction_mse``, ``mean_map_mse`` (the loss of the batch's per-cell
        mean map, the best constant prediction, fitted to the batch itself; beating it means
        the message carries information), ``running_mean_mse`` (the loss of the running mean
        map of earlier batches, the constant the decoder starts from), ``prior_mse`` if
        ``prior_logodds`` was configured, and with a ``"true_map"`` column ``truth_brier`` /
        ``belief_brier``: the Brier score :math:`\\overline{(\\sigma(\\hat\\ell) - x)^2}`
        against the true map of the received and of the sender's own belief.

        Returns:
            The scalar loss.
        """
        c = self.jscc.config
        maps = batch[BELIEF].float()
        m = maps.shape[0]
        loss = nn.functional.mse_loss(
            fwd_out["u_hat"], to_unit(fwd_out.get("sent", maps), c.clip).flatten(1)
        )
        target = to_unit(maps, c.clip).flatten(1)
        u_hat = fwd_out["u_hat"][:m]
        with torch.no_grad():
            metrics = {
                "reconstruction_mse": nn.functional.mse_loss(u_hat, target),
                "mean_map_mse": (target - target.mean(0)).square().mean(),
                "running_mean_mse": (target - self.jscc.decoder.out_mean).square().mean(),
            }
            if self.prior_logodds is not None:
                prior_u = min(max(self.prior_logodds / c.clip, -1.0), 1.0)
                metrics["prior_mse"] = (target - prior_u).square().mean()
            if TRUE_MAP in batch:
                truth = batch[TRUE_MAP].float().flatten(1)
                p_hat = torch.sigmoid(u_hat.clamp(-1.0, 1.0) * c.clip)
                metrics["truth_brier"] = (p_hat - truth).square().mean()
                metrics["belief_brier"] = (torch.sigmoid(maps.flatten(1)) - truth).square().mean()
        learner.metrics.log_dict(metrics, key=module_id, window=1)
        return loss


class AddBeliefsToReceiverBatch(ConnectorV2):
    """Learner connector piece: the receiver's batch from the beliefs in the episodes' infos.

    Collects ``infos[t]["belief"]`` (and ``"true_map"``) of every agent of every episode,
    for every timestep of the episode, and sets ``batch["receiver"] = {"belief": float32
    [M, H, W], "true_map": float32 [M, H, W]}`` on the receiver's device (the same under
    ``"receiver_prior"`` when the diffusion prior's module is there). The order of the
    maps does not matter (the loss is self-supervised and per map), so the piece reads the
    episodes directly instead of following the policy's batch layout. Place it after
    ``NumpyToTensor``: it writes tensors.
    """

    def __call__(
        self,
        *,
        rl_module: RLModule,
        batch: dict[str, Any],
        episodes: list[Any],
        explore: bool | None = None,
        shared_data: dict | None = None,
        **kwargs: Any,
    ) -> Any:
        beliefs, truths = [], []
        for episode in self.single_agent_episode_iterator(episodes, agents_that_stepped_only=False):
            for info in episode.get_infos(slice(0, len(episode))):
                if BELIEF not in info:
                    raise ValueError(
                        "an episode's infos lack 'belief': sample with BeliefInfoMultiAgentEnv "
                        "(or an env that puts each agent's belief map in its infos)"
                    )
                beliefs.append(info[BELIEF])
                truths.append(info[TRUE_MAP])
        if not beliefs:
            return batch
        beliefs, truths = np.stack(beliefs), np.stack(truths)
        for module_id in (RECEIVER_MODULE_ID, PRIOR_MODULE_ID):
            if module_id in rl_module:
                module = rl_module[module_id]
                device = next(module.parameters()).device
                batch[module_id] = {
                    BELIEF: torch.as_tensor(beliefs, dtype=torch.float32, device=device),
                    TRUE_MAP: torch.as_tensor(truths, dtype=torch.float32, device=device),
                }
                # Once per update (not per minibatch, so each map is stored once).
                replay = getattr(module, "replay", None)
                if isinstance(replay, MapReplay):
                    replay.add(batch[module_id][BELIEF])
        return batch


class ReceiverPPOTorchLearner(PPOTorchLearner):
    """PPO's torch learner that also trains the ``"receiver"`` module.

    The PPO loss is computed for the policy modules only: RLlib's ``Learner.compute_losses``
    calls ``compute_self_supervised_loss`` for modules implementing
    ``SelfSupervisedLossAPI`` (the receiver) and ``compute_loss_for_module`` (PPO) for the
    rest; GAE skips the receiver because it has no value function. The receiver's
    gradient step shares the ``update()`` call (and the minibatch loop) with the policy's,
    with its own Adam optimizer.
    """

    def build(self) -> None:
        """Build as PPO does, then append :class:`AddBeliefsToReceiverBatch` to the pipeline."""
        super().build()
        if RECEIVER_MODULE_ID not in self.module:
            raise ValueError(
                f"ReceiverPPOTorchLearner needs a module {RECEIVER_MODULE_ID!r} in the "
                f"MultiRLModule; it has {sorted(self.module.keys())}"
            )
        if not self.config.add_default_connectors_to_learner_pipeline:
            raise ValueError(
                "ReceiverPPOTorchLearner appends its connector to RLlib's default learner "
                "pipeline; config.add_default_connectors_to_learner_pipeline must be True"
            )
        self._learner_connector.append(AddBeliefsToReceiverBatch())


def _policy_mapping(agent_id: Any, episode: Any, **kwargs: Any) -> str:
    # Never returns the receiver: it is trained on the policy's episodes, not acting.
    return POLICY_MODULE_ID


def online_receiver_config(
    env_id: str = "SearchRescue-v0",
    *,
    env_config: Mapping[str, Any] | None = None,
    receiver: JSCCConfig | None = None,
    channel: str = "awgn",
    snr_range_db: tuple[float, float] = (0.0, 20.0),
    receiver_lr: float = 1e-3,
    stat_momentum: float = 0.05,
    replay_maps: int = 4096,
    prior: PriorConfig | None = None,
    prior_lr: float = 1e-3,
    seed: int = 0,
    **ppo_kwargs: Any,
) -> PPOConfig:
    """RLlib PPO (shared Gaussian policy) with a JSCC receiver trained on the same learners.

    Args:
        env_id: a grid-belief scenario (``"SearchRescue-v0"``, ...), run through
            :class:`BeliefInfoMultiAgentEnv`.
        env_config: scenario overrides and adapter keys (not ``env_id``).
        receiver: the codec architecture; ``height``/``width`` must match the scenario's
            grid. Default: ``JSCCConfig(hidden=128)`` on the scenario's grid.
        channel: a name of :data:`~agentcomm.channels.registry.CHANNELS` (receiver CSI perfect).
        snr_range_db: ``(low, high)`` dB; each map gets an SNR uniform in it.
        receiver_lr: Adam learning rate of the receiver (the policy uses ``lr``).
        stat_momentum: see :class:`ReceiverRLModule`.
        replay_maps: maps of earlier updates each receiver module keeps (:class:`MapReplay`);
            every minibatch is trained on together with as many of them. 0: the current
            batch only.
        prior: if given, the receiver gets a diffusion prior too: a third module
            ``"receiver_prior"``
            (:class:`~agentcomm.policies.online_diffusion_receiver.DiffusionPriorRLModule`)
            with this architecture (``height``/``width``/``clip`` those of ``receiver``),
            trained on the same maps by its denoising loss, with its own optimizer.
        prior_lr: Adam learning rate of the prior.
        seed: RLlib seed and the receiver's (and prior's) generator seed.
        **ppo_kwargs: forwarded to :func:`~agentcomm.policies.gaussian_ppo.gaussian_ppo_config`
            (``num_env_runners``, ``train_batch_size``, ``minibatch_size``, ``lr``, ...).
    Returns:
        A ``PPOConfig`` with modules ``"shared"`` (every agent), ``"receiver"`` and, with
        ``prior``, ``"receiver_prior"`` (no agent), and :class:`ReceiverPPOTorchLearner`;
        ``config.build_algo()`` builds it.
    """
    if channel not in CHANNELS:
        raise ValueError(f"channel={channel!r} is not one of {list(CHANNELS)}")
    check_positive("receiver_lr", receiver_lr)
    check_positive("prior_lr", prior_lr)
    if isinstance(replay_maps, bool) or not isinstance(replay_maps, int) or replay_maps < 0:
        raise ValueError(f"replay_maps={replay_maps!r} must be an int >= 0")
    if prior is not None and not isinstance(prior, PriorConfig):
        raise ValueError(f"prior must be a PriorConfig or None, got {type(prior).__name__}")
    env_config = dict(env_config or {})
    if "env_id" in env_config:
        raise ValueError("env_config must not contain 'env_id'; pass env_id=")
    probe = BeliefInfoMultiAgentEnv({**env_config, "env_id": env_id})
    grid = int(probe.world.belief.shape[-1])
    prior_logodds = float(probe.world.prior)
    receiver = receiver or JSCCConfig(height=grid, width=grid, hidden=128)
    if (receiver.height, receiver.width) != (grid, grid):
        raise ValueError(
            f"receiver grid {receiver.height}x{receiver.width} does not match the "
            f"scenario's {grid}x{grid}"
        )
    clip = receiver.clip
    if prior is not None:
        for key in ("height", "width", "clip"):
            if getattr(prior, key) != getattr(receiver, key):
                raise ValueError(
                    f"prior.{key}={getattr(prior, key)!r} differs from receiver.{key}="
                    f"{getattr(receiver, key)!r}; the prior must describe the receiver's maps"
                )
    receiver_spec = RLModuleSpec(
        module_class=ReceiverRLModule,
        observation_space=gym.spaces.Box(-clip, clip, (grid, grid), np.float32),
        action_space=probe.action_spaces[probe.possible_agents[0]],
        model_config={
            "receiver": {
                **receiver.to_dict(),
                "channel": channel,
                "snr_range_db": [float(s) for s in snr_range_db],
                "seed": seed,
                "stat_momentum": stat_momentum,
                "prior_logodds": prior_logodds,
                "replay_maps": replay_maps,
            }
        },
    )
    specs = {POLICY_MODULE_ID: RLModuleSpec(), RECEIVER_MODULE_ID: receiver_spec}
    overrides = {RECEIVER_MODULE_ID: PPOConfig.overrides(lr=receiver_lr)}
    if prior is not None:
        from agentcomm.policies.online_diffusion_receiver import DiffusionPriorRLModule

        specs[PRIOR_MODULE_ID] = RLModuleSpec(
            module_class=DiffusionPriorRLModule,
            observation_space=receiver_spec.observation_space,
            action_space=receiver_spec.action_space,
            model_config={"prior": {**prior.to_dict(), "seed": seed, "replay_maps": replay_maps}},
        )
        overrides[PRIOR_MODULE_ID] = PPOConfig.overrides(lr=prior_lr)
    config = gaussian_ppo_config(
        BeliefInfoMultiAgentEnv,
        env_config={**env_config, "env_id": env_id},
        multi_agent="shared",
        seed=seed,
        **ppo_kwargs,
    )
    return (
        config.multi_agent(
            # A list, not a set: the modules are built in this order whatever the
            # string hash (PYTHONHASHSEED) orders a set by.
            policies=list(specs),
            policy_mapping_fn=_policy_mapping,
            algorithm_config_overrides_per_module=overrides,
        )
        .rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs=specs))
        .learners(learner_class=ReceiverPPOTorchLearner)
    )
