"""Typed configuration of the batched communication world.

Units: positions and distances inside the world are in *grid cells* (the area
is ``grid_size x grid_size`` cells of ``cell_size_m`` metres); path loss is
computed on metres. Powers in dBm, SNRs and thresholds in dB, budgets in
complex channel uses per link per step.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from agentcomm.channels.registry import CHANNELS
from agentcomm.codecs.registry import available_codecs
from agentcomm.config import Config, choices, rng

__all__ = ["ChannelConfig", "CommConfig", "SensingConfig", "WorldConfig"]

#: Codec names, read from the codec registry (the learned ones are registered there as lazy
#: entry points, so reading the names loads no model).
CODECS = available_codecs()
#: Codecs whose models are loaded from a decoder bundle (``codec_params["checkpoint"]`` or the
#: shipped one for the payload shape).
LEARNED_CODECS = ("jscc", "jscc+cddm", "jscc+diffcom", "jscc+flow")
#: Learned codecs whose receivers estimate a block-fading gain blindly, so that they decode
#: with ``channel.csi='none'`` (:func:`agentcomm.decoders.cddm.receiver_output`); plain
#: ``jscc`` equalizes with the channel estimate and needs CSI.
BLIND_CODECS = ("jscc+cddm", "jscc+diffcom", "jscc+flow")


@dataclass
class SensingConfig(Config):
    """A binary detector over grid cells inside a disk around the agent."""

    radius: float = field(default=2.0, metadata=rng(0.0, 64.0, low_inclusive=False))
    """Sensing radius, in cells, at most 64: the grid scenarios evaluate the sensor on its
    disk window, whose tables grow with radius**3 (about 13 MB at 64, 7 GB at 512)."""
    pd: float = field(
        default=0.9, metadata=rng(0.0, 1.0, low_inclusive=False, high_inclusive=False)
    )
    """Detection probability of an occupied cell in range, in (0, 1): a perfect detector
    (1) would make one miss infinitely informative (finite log-odds need pd < 1)."""
    pfa: float = field(
        default=0.05, metadata=rng(0.0, 1.0, low_inclusive=False, high_inclusive=False)
    )
    """False-alarm probability of an empty cell in range, in (0, pd) (0 would make one
    detection infinitely informative)."""

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        if self.pfa >= self.pd:
            raise ValueError(
                f"{prefix}pfa={self.pfa} must be smaller than {prefix}pd={self.pd} "
                "(a detector worse than chance carries no information)"
            )


@dataclass
class ChannelConfig(Config):
    """The wireless link: path loss to SNR, then a fading channel per message."""

    name: str = field(
        default="rayleigh_block",
        metadata=choices(*CHANNELS),
    )
    """Channel model applied to every message."""
    k_factor: float = field(default=4.0, metadata=rng(0.0, 1e6))
    """Rician K-factor (linear), used only by ``rician``; 1e6 (60 dB) is already AWGN."""
    csi: str = field(default="perfect", metadata=choices("perfect", "estimated", "none"))
    """Receiver channel knowledge."""
    pilot_snr_db: float = field(default=20.0, metadata=rng(-30.0, 100.0))
    tx_power_dbm: float = field(default=20.0, metadata=rng(-50.0, 60.0))
    """Transmit power of every agent and of the fusion centre, dBm, in [-50, 60]."""
    tx_power_dbm_range: tuple[float, float] | None = None
    """``(low, high)`` dBm, each in [-50, 60], ``low <= high``: every world draws its transmit
    power uniformly in the range at each reset (from the world's generator), so the mean
    SNR of all its links moves together for the episode; ``None``: ``tx_power_dbm`` in every
    world and episode (no draw)."""
    noise_floor_dbm: float = field(default=-90.0, metadata=rng(-200.0, 0.0))
    pathloss_exponent: float = field(default=3.0, metadata=rng(1.0, 8.0))
    ref_distance_m: float = field(default=1.0, metadata=rng(1e-3, 1e6))
    """Reference distance of the path-loss law, metres."""
    ref_loss_db: float = field(default=40.0, metadata=rng(0.0, 200.0))
    shadowing_std_db: float = field(default=0.0, metadata=rng(0.0, 30.0))
    cell_size_m: float = field(default=10.0, metadata=rng(1e-3, 1e6))
    """Metres per grid cell, for path loss."""
    link_threshold_db: float = field(default=0.0, metadata=rng(-50.0, 60.0))
    """Links whose mean SNR falls below this drop out of the topology."""
    erasure_prob: float = field(default=0.0, metadata=rng(0.0, 1.0))
    """I.i.d. packet loss probability on top of the fading channel."""

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        span = self.tx_power_dbm_range
        if span is not None and not (len(span) == 2 and -50.0 <= span[0] <= span[1] <= 60.0):
            raise ValueError(
                f"{prefix}tx_power_dbm_range={list(span)!r} is not allowed; expected "
                "[low, high] dBm with -50 <= low <= high <= 60, or null (the fixed "
                f"{prefix}tx_power_dbm)"
            )


@dataclass
class CommConfig(Config):
    """What is sent, how much, to whom, and how it is fused."""

    budget: int = field(default=64, metadata=rng(0, 100_000))
    """Complex channel uses per link per step; 0 turns communication off. With
    ``budget_levels`` it is the bound of the drawn caps and must be at least the largest
    level (the exchange's per-budget tables cover ``0..budget``)."""
    budget_levels: tuple[int, ...] | None = None
    """Per-episode operating points: every world draws its budget cap uniformly from these
    levels (each in ``[0, budget]``, distinct; 0: no communication in that episode) at each
    reset, from the world's generator, and uses it where ``budget`` is used otherwise;
    ``None``: ``budget`` in every world and episode (no draw)."""
    codec: str = field(default="quantized", metadata=choices(*CODECS))
    codec_params: dict[str, Any] = field(default_factory=dict)
    """Keyword arguments of the codec (see :mod:`agentcomm.codecs`)."""
    intent_bits: int = field(default=6, metadata=rng(1, 24))
    """Bits per intent coordinate in each message's header."""
    header_rate: float = field(default=2.0, metadata=rng(0.0, 20.0, low_inclusive=False))
    """Bits per channel use of the digitally sent header (intent)."""
    mode: str = field(
        default="distributed", metadata=choices("centralized", "distributed", "hybrid")
    )
    """Coordination: fusion centre star, peer-to-peer consensus, or both with a learned split."""
    consensus_rounds: int = field(default=1, metadata=rng(1, 32))
    """Peer exchange rounds per step in ``distributed`` and ``hybrid`` modes."""
    fusion: str = field(default="latest", metadata=choices("latest", "average", "sum", "max", "ci"))
    """Fusion of received beliefs. Grids: ``latest`` (peers send their own evidence and
    receivers keep the latest copy of each: exact, no double counting, one hop),
    ``average`` (consensus on fused maps, conservative, multi-hop over rounds), ``sum``
    (double counts) or ``max`` (:func:`agentcomm.beliefs.fusion.fuse_received_logodds`). Gaussian tracks:
    ``ci`` (covariance intersection), ``average`` (consensus) or ``sum`` (overconfident)."""
    fc_position: tuple[float, float] | None = None
    """Fusion centre position in cells; ``None`` puts it at the centre of the area."""
    logodds_clip: float = field(default=6.0, metadata=rng(0.0, 50.0, low_inclusive=False))
    """Beliefs are clipped to [-clip, clip] log-odds (keeps them revisable and codable)."""
    cost_per_channel_use: float = field(default=0.0, metadata=rng(0.0, 1e6))
    """Team reward penalty per complex channel use spent in the step."""

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        levels = self.budget_levels
        if levels is None:
            return
        key = f"{prefix}budget_levels"
        if not levels:
            raise ValueError(
                f"{key}=[] is not allowed; expected a non-empty list of channel-use caps in "
                f"[0, {prefix}budget], or null (the fixed {prefix}budget)"
            )
        if len(set(levels)) != len(levels):
            raise ValueError(f"{key}={list(levels)!r} is not allowed; each level must appear once")
        if min(levels) < 0 or max(levels) > self.budget:
            raise ValueError(
                f"{key}={list(levels)!r} is not allowed; every level must lie in "
                f"[0, {prefix}budget={self.budget}] ({prefix}budget bounds the drawn caps: "
                f"set it to at least {max(levels)})"
            )


@dataclass
class WorldConfig(Config):
    """Configuration shared by every scenario (scenarios extend it)."""

    num_agents: int = field(default=4, metadata=rng(1, 256))
    grid_size: int = field(default=16, metadata=rng(4, 256))
    """Side of the square area, in cells."""
    max_steps: int = field(default=60, metadata=rng(1, 100_000))
    """Episode length (truncation)."""
    max_speed: float = field(default=1.0, metadata=rng(1e-3, 1e3))
    """Cells per step at full velocity action (observations divide by it, so it is kept
    well away from 0)."""
    team_reward_weight: float = field(default=1.0, metadata=rng(0.0, 1.0))
    """Reward credit: agent ``i`` receives ``w r_team + (1 - w) N r_i`` with ``r_i`` its own
    share of the team reward (the scenario's attribution: what it rescued, sensed, covered,
    tracked, and its own channel uses; the shares sum to ``r_team``). 1: every agent gets
    the team reward (default); 0: each gets its own share, scaled by ``N``. For any ``w`` the
    agents' mean reward is the team reward."""
    obs_map_size: int = field(default=8, metadata=rng(1, 256))
    """Side of the max-pooled belief map in each observation."""
    observe_belief_as: str = field(
        default="probability", metadata=choices("probability", "logodds")
    )
    """How the pooled belief map enters the observation: ``"probability"`` (the cell's
    victim probability, scaled to [-1, 1]) or ``"logodds"`` (its log-odds over
    ``comm.logodds_clip``). Beliefs sit near a small prior (SearchRescue-v0: 3/256): as
    probabilities a searched cell (about 0.0025) and an unsearched one (0.0117) differ by
    0.018 on the column's [-1, 1] scale, as log-odds they read -1 and -0.74. Default
    ``"probability"``: the layout earlier policies were trained on."""
    intent_max_age: int = field(default=10, metadata=rng(1, 100_000))
    """Intent ages are reported as min(age, intent_max_age) / intent_max_age."""
    observe_operating_point: bool = False
    """Append the world's operating point to every observation
    (:func:`agentcomm.envs.observe.observation`): its budget cap, the coordination mode
    (one-hot) and the cost per channel use, so that one policy can serve every budget and
    link quality drawn per episode (``comm.budget_levels``, ``channel.tx_power_dbm_range``).
    Off by default: the observation then keeps the layout earlier policies were trained on."""
    observe_own_velocity: bool = True
    """Keep the agent's own last velocity in its observation. A policy cloned from an expert
    can learn to repeat its last velocity instead of reading the situation (the copycat
    problem of behaviour cloning with action history); ``False`` drops the two columns."""
    observe_agent_index: bool = False
    """Append each agent's index, one-hot over ``N`` (scaled to [-1, 1]), to its observation:
    a policy shared by all agents can then follow conventions that rank agents by index
    (the experts' territories and tie-breaks), which identical observations otherwise hide.
    Off by default, for the same reason as ``observe_operating_point``."""
    sensing: SensingConfig = field(default_factory=SensingConfig)
    channel: ChannelConfig = field(default_factory=ChannelConfig)
    comm: CommConfig = field(default_factory=CommConfig)

    def payload_shape(self) -> tuple[int, ...] | None:
        """Shape of one belief message, what ``comm.codec`` is built for; ``None`` when the
        scenario sends intents only (no codec). The default is the belief grid; a scenario
        with another payload overrides this together with its world's belief store
        (``_make_beliefs``)."""
        return (self.grid_size, self.grid_size)

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        if self.grid_size % self.obs_map_size != 0:
            raise ValueError(
                f"{prefix}obs_map_size={self.obs_map_size} must divide "
                f"{prefix}grid_size={self.grid_size}"
            )
        fc = self.comm.fc_position
        if fc is not None and (
            len(fc) != 2 or not all(0.0 <= float(c) <= self.grid_size for c in fc)
        ):
            raise ValueError(
                f"{prefix}comm.fc_position={fc!r} must be two coordinates in [0, {self.grid_size}]"
            )
        self._check_codec(prefix)

    def _check_codec(self, prefix: str) -> None:
        """Refuse codec parameters the codec would refuse, naming ``comm.codec_params``.

        The world builds its codec from ``comm`` and the payload shape; checking here means
        a bad parameter is reported against the config key instead of from inside the codec.
        Learned codecs are not built (that loads models): their parameter names are checked,
        and without a ``checkpoint`` a shipped model must exist for the payload shape.
        """
        shape = self.payload_shape()
        cm = self.comm
        if shape is None:
            return
        from agentcomm.codecs.registry import codec_class, make_codec

        key = f"{prefix}comm.codec_params"
        params = dict(cm.codec_params)
        if cm.codec in LEARNED_CODECS:
            if self.channel.csi == "none" and cm.codec not in BLIND_CODECS:
                raise ValueError(
                    f"{prefix}channel.csi='none' is not allowed with {prefix}comm.codec="
                    f"{cm.codec!r}: the JSCC decoder equalizes with the channel estimate; use "
                    f"csi 'perfect' or 'estimated', a learned codec that estimates the gain "
                    f"blindly ({', '.join(repr(c) for c in BLIND_CODECS)}), or a codec that "
                    "needs no CSI"
                )
            if self.channel.csi == "none" and self.channel.name == "rayleigh_fast":
                raise ValueError(
                    f"{prefix}channel.name='rayleigh_fast' is not allowed with "
                    f"{prefix}channel.csi='none' and {prefix}comm.codec={cm.codec!r}: the "
                    "blind gain estimate is one gain per message; use a block channel "
                    "('rayleigh_block', 'rician', 'awgn') or csi 'perfect' or 'estimated'"
                )
            allowed = list(inspect.signature(codec_class(cm.codec)).parameters)[1:]
            unknown = sorted(set(params) - set(allowed))
            if unknown:
                raise ValueError(
                    f"{key}={params!r} is not allowed: codec {cm.codec!r} takes no "
                    f"parameter(s) {unknown}; allowed: {allowed}"
                )
            if params.get("checkpoint") is None:
                from agentcomm.decoders.bundle import default_bundle_dir

                try:
                    default_bundle_dir(shape)
                except ValueError as err:
                    raise ValueError(
                        f"{prefix}comm.codec={cm.codec!r} needs a trained model for payloads "
                        f"of shape {shape}: {err}; or choose one of "
                        f"{[c for c in CODECS if c not in LEARNED_CODECS]}"
                    ) from None
            return
        try:
            make_codec(cm.codec, shape, **params)
        except (ValueError, TypeError) as err:
            raise ValueError(
                f"{key}={params!r} is not allowed for codec {cm.codec!r} on payloads of "
                f"shape {shape}: {err}"
            ) from None
