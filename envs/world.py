r"""The batched multi-agent communication world that every scenario builds on.

All state is torch tensors ``[B, N, ...]`` on one device (``B`` parallel worlds,
``N`` agents), the way VMAS does it; PettingZoo, Gymnasium, RLlib and
stable-baselines3 classes are thin adapters over this core.

Shape legend: ``B`` worlds, ``N`` agents, ``A = 6`` action components,
``H = W = grid_size`` cells, ``Do`` observation size, ``Ds`` state size.

One step (DESIGN.md): act -> move -> sense (Bayes update) -> links from positions
(path loss, threshold) -> encode under the budget -> channel -> decode -> fuse ->
observe -> reward.

Action (``[B, N, 6]``, each component in ``[-1, 1]``; values outside are clipped
to ``[-1, 1]``, the Gymnasium ``Box`` convention, because RLlib and SB3 Gaussian
policies emit unclipped samples; NaN/inf raise):

====  ==================  =====================================================
idx   name                meaning
====  ==================  =====================================================
0-1   velocity            ``(d_row, d_col) * max_speed`` cells per step
2-3   intent              the goal point the agent announces,
                          ``(a + 1) / 2 * grid_size`` cells (row, col)
4     transmit            fraction ``(a + 1) / 2`` of the budget to use this step;
                          ``floor`` to whole channel uses, 0 means silent
5     uplink share        ``hybrid`` only: fraction ``(a + 1) / 2`` of the used
                          budget that goes to the fusion-centre uplink, the rest
                          to peer links; ignored by the other modes
====  ==================  =====================================================

Coordination (``comm.mode``):

* ``centralized``: every agent uplinks its *own-sensing* map to the fusion
  centre (FC); the FC keeps the latest copy from each agent and fuses them by
  the independent log-odds product :math:`\ell_0 + \sum_i(\ell_i - \ell_0)`
  (exact, since each agent's own sensing is independent evidence), then
  downlinks the fused map and all intents to every agent (``budget`` channel
  uses per downlink). An agent adopts the FC map plus the part of its own map
  the FC does not hold yet (acknowledgements tell it what the FC holds).
  Messages per step: :math:`2N` (uplinks + downlinks) for agents in FC range.
* ``distributed``: ``consensus_rounds`` rounds; in each, every agent sends a
  map to every neighbour (directed edge of the SNR-threshold graph): with
  ``comm.fusion="latest"`` (default) its own evidence, of which receivers keep
  the latest copy; otherwise its fused map, fused on arrival with
  ``comm.fusion`` and Metropolis weights (consensus).
  Messages per step: :math:`K \cdot |E|`, :math:`|E|` directed edges.
* ``hybrid``: both, with each agent's budget split by action 5: the centralized
  exchange on the uplink share, then the peer rounds on the rest.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from agentcomm._checks import check_seed, check_tensor
from agentcomm.beliefs import entropy, kl_to_truth
from agentcomm.beliefs.grid import (
    _LN2,
    _add_window_increment,
    _sense_window,
    sensor_increments,
)
from agentcomm.topology.coordination import _metropolis_weights

from .comm import CommStack, Exchange, fuse_grid
from .config import WorldConfig

__all__ = ["ACTION_DIM", "INFO_KEYS", "CommWorld"]

ACTION_DIM = 6
#: Keys of the per-step ``info`` dict (all tensors; :meth:`CommWorld.step` documents them).
INFO_KEYS = (
    "channel_uses",
    "bits",
    "bits_delivered",
    "capacity_bits",
    "peer_channel_uses",
    "uplink_channel_uses",
    "downlink_channel_uses",
    "peer_bits",
    "uplink_bits",
    "downlink_bits",
    "messages_sent",
    "messages_delivered",
    "messages_lost",
    "fc_channel_uses",
    "fc_messages_sent",
    "belief_error",
    "success",
)


#: ``info`` keys holding float32 values (the rest are integer counts, ``success`` bool).
_FLOAT_INFO = (
    "bits",
    "bits_delivered",
    "capacity_bits",
    "peer_bits",
    "uplink_bits",
    "downlink_bits",
    "belief_error",
)
_LINKS = ("peer", "uplink", "downlink")


def _cell_entropy(value: float, device: torch.device) -> float:
    """Entropy (bits) of one cell at log-odds ``value`` (float32) on ``device``, evaluated
    inside whole vector blocks of torch's elementwise loop, as every cell of a belief grid
    is (see :func:`_blocked_softplus`)."""
    cells = torch.full((8, 64), value, device=device)
    return float(entropy(cells, reduction="none")[0, 0])


def _put(grid: torch.Tensor, index: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``grid.put_(index, values)`` (flat indices into a contiguous ``grid``, in place):
    ``index_put_`` under ``torch.use_deterministic_algorithms(True)``, which refuses
    ``put_`` (the same values where indices are distinct; only a scratch element is
    written twice), ``put_`` otherwise, as it is about twice as fast on CPU."""
    if torch.are_deterministic_algorithms_enabled():
        grid.view(-1).index_put_((index,), values)
        return grid
    return grid.put_(index, values)


def _with_scratch(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """An uninitialized float32 tensor of ``shape`` with one scratch element after it in
    the same buffer (held as its ``_scratch`` attribute), for :func:`_put_where`."""
    numel = math.prod(shape)
    buffer = torch.empty(numel + 1, device=device)
    grid = buffer[:numel].view(shape)
    grid._scratch = buffer
    return grid


def _put_where(
    grid: torch.Tensor, index: torch.Tensor, where: torch.Tensor, values: torch.Tensor | float
) -> torch.Tensor:
    """In place: ``grid``'s flat entries ``index`` (distinct) take ``values`` where
    ``where`` holds and keep their value elsewhere. On a :func:`_with_scratch` grid the
    other writes go to the scratch element (one cached address), so nothing is read back;
    otherwise the kept values are read and written again."""
    buffer = getattr(grid, "_scratch", None)
    if buffer is not None and buffer.data_ptr() == grid.data_ptr():
        target = torch.where(where, index, grid.numel())
        if torch.is_tensor(values):
            _put(buffer, target, values)
        else:
            buffer.index_fill_(0, target.view(-1), values)
        return grid
    return _put(grid, index, torch.where(where, values, grid.take(index)))


def _blocked_softplus(x: torch.Tensor) -> torch.Tensor:
    """``softplus(x)`` evaluated as the cells of a belief grid are. Torch's CPU elementwise
    kernels compute the entries past the last whole vector block of a tensor (up to 31
    float32 entries with AVX-512) by a scalar routine that can differ from the vector one
    in the last bit; a ``[B, N, H, W]`` grid has no such tail, so ``x`` is padded to whole
    blocks of 64 first and every entry gets the grid's value bit for bit."""
    flat = x.reshape(-1)
    pad = -flat.numel() % 64
    if pad:
        flat = torch.cat([flat, flat.new_zeros(pad)])
    return torch.nn.functional.softplus(flat)[: x.numel()].view(x.shape)


class CommWorld:
    """Batched world: agents move, sense, announce intents and exchange beliefs.

    Subclasses (scenarios) set ``env_id``, ``config_cls`` and implement the
    scenario hooks (:meth:`_reset_scenario`, :meth:`_scenario_step`,
    :meth:`_scenario_obs`, :meth:`_task_reward`, :meth:`_success`, and
    optionally :meth:`_true_map`).

    Args:
        config: the scenario's config (a dataclass or a dict of overrides).
        num_envs: ``B``.
        device: torch device of every tensor.
        seed: seeds the world's generator (also settable through :meth:`reset`).
    """

    env_id: ClassVar[str] = ""
    config_cls: ClassVar[type[WorldConfig]] = WorldConfig
    #: ``"grid"``: log-odds occupancy beliefs are sensed, sent and fused; ``"vector"``: the
    #: scenario owns its belief payload (the five payload hooks); ``"none"``: intents only.
    belief_kind: ClassVar[str] = "grid"

    def __init__(
        self,
        config: WorldConfig | dict[str, Any] | None = None,
        num_envs: int = 1,
        device: str | torch.device = "cpu",
        seed: int | None = None,
    ) -> None:
        if config is None or isinstance(config, dict):
            config = self.config_cls.from_dict(config or {})
        if not isinstance(config, self.config_cls):
            raise ValueError(
                f"config is a {type(config).__name__}; {type(self).__name__} needs "
                f"{self.config_cls.__name__} or a dict of its fields"
            )
        if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs={num_envs!r} is not allowed; expected an int >= 1")
        self.config = config
        self.num_envs = num_envs
        self.device = torch.device(device)
        self.num_agents = config.num_agents
        self.grid = config.grid_size
        self.generator = torch.Generator(device=self.device)
        # No seed: fresh OS entropy (as Gymnasium does), so unseeded copies (e.g. RLlib env
        # runners without a config seed) do not all replay one trajectory.
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))
        self.comm = CommStack(config, self._payload_shape(), self.device)
        fc = config.comm.fc_position
        self.fc_pos = torch.tensor(
            fc if fc is not None else (self.grid / 2, self.grid / 2),
            dtype=torch.float32,
            device=self.device,
        )
        self.prior = self._prior_logodds()
        self.obs_dim = self._base_obs_dim() + self._scenario_obs_dim()
        self.state_dim = self._state_dim()
        self._allocate()

    # ================================================================= scenario hooks
    def _payload_shape(self) -> tuple[int, ...] | None:
        """Shape ``S`` of one belief message; ``None`` when only intents are sent."""
        return (self.grid, self.grid) if self.belief_kind == "grid" else None

    def _prior_logodds(self) -> float:
        return 0.0

    def _reset_scenario(self, mask: torch.Tensor) -> None:
        """Place the scenario's objects and the agents in worlds where ``mask [B]`` is True."""
        raise NotImplementedError

    def _true_map(self) -> torch.Tensor:
        """bool ``[B, H, W]``: what the sensors detect (grid scenarios)."""
        raise NotImplementedError

    def _scenario_step(self) -> torch.Tensor:
        """Advance the scenario after the agents moved; return the task reward ``[B]``."""
        raise NotImplementedError

    def _reward_shares(self, before: torch.Tensor | None, team: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` each agent's share of the step's task and belief reward ``team [B]``
        (``_scenario_step() + _belief_reward(before)``, channel costs excluded); the shares
        sum to ``team``. Called only when ``team_reward_weight < 1``. The default splits
        ``team`` equally; scenarios attribute what they can."""
        return (team / self.num_agents).unsqueeze(1).expand(-1, self.num_agents)

    def _scenario_obs(self) -> torch.Tensor:
        """``[B, N, D_scenario]`` observation extras."""
        raise NotImplementedError

    def _scenario_obs_dim(self) -> int:
        raise NotImplementedError

    def _scenario_state(self) -> torch.Tensor:
        """``[B, D]`` global scenario state for centralized critics."""
        raise NotImplementedError

    def _success(self) -> torch.Tensor:
        """bool ``[B]``: the task is accomplished (terminates the episode when True)."""
        raise NotImplementedError

    def _after_comm(self) -> None:
        """Hook after the exchange and fusion (e.g. tracking scores its fused tracks here)."""

    def _terminates_on_success(self) -> bool:
        """Whether success ends the episode (tracking runs to the time limit)."""
        return True

    # ================================================================= state
    def _allocate(self) -> None:
        b, n, g, dev = self.num_envs, self.num_agents, self.grid, self.device
        self.t = torch.zeros(b, dtype=torch.long, device=dev)
        self.pos = torch.zeros(b, n, 2, device=dev)
        self.vel = torch.zeros(b, n, 2, device=dev)
        self.intent = torch.zeros(b, n, 2, device=dev)
        self.known_intent = torch.zeros(b, n, n, 2, device=dev)
        self.intent_age = torch.zeros(b, n, n, dtype=torch.long, device=dev)
        self.intent_bits = torch.zeros(b, n, n, dtype=torch.long, device=dev)
        self.done = torch.zeros(b, dtype=torch.bool, device=dev)
        self.peer_snr = torch.zeros(b, n, n, device=dev)
        self.fc_snr = torch.zeros(b, n, device=dev)
        self.adj = torch.zeros(b, n, n, dtype=torch.bool, device=dev)
        self.last_delivered_frac = torch.zeros(b, n, device=dev)
        if self.belief_kind == "grid":
            # Grids that messages and public facts update cell by cell carry one scratch
            # element after their cells (_put_where); they are changed in place only.
            self.belief = _with_scratch((b, n, g, g), dev).fill_(self.prior)
            self.local = _with_scratch((b, n, g, g), dev).fill_(self.prior)
            self.fc_store = _with_scratch((b, n, g, g), dev).fill_(self.prior)
            self.fc_view = _with_scratch((b, n, g, g), dev).fill_(self.prior)
            if self._keeps_copies():
                #: The latest copy of each neighbour's evidence, ``[B, N(receiver),
                #: N(sender), H, W]``, kept as its difference from the prior (what
                #: :meth:`_refresh_belief` sums; computed once, when a copy arrives).
                self.peer_evidence = _with_scratch((b, n, n, g, g), dev).fill_(0.0)
            cfg = self.config
            hit, miss = sensor_increments(cfg.sensing.pd, cfg.sensing.pfa)
            self._hit = torch.tensor(hit, device=dev)
            self._miss = torch.tensor(miss, device=dev)
            low = torch.tensor(-cfg.comm.logodds_clip)
            # A cleared cell of the evidence copies: its log-odds (-clip) less the prior.
            self._cleared_evidence = float(low - self.prior)
            # Entropy (bits) of one cell at -clip and at the prior, evaluated in a full vector
            # block as a [B, N, H, W] belief's cells are (see _belief_summary).
            self._cleared_entropy = _cell_entropy(-cfg.comm.logodds_clip, dev)
            self._prior_entropy = _cell_entropy(self.prior, dev)
        self._summaries: list[tuple[torch.Tensor, int, dict[str, torch.Tensor]]] = []
        self.fc_intent = torch.zeros(b, n, 2, device=dev)
        self.fc_intent_age = torch.full((b, n), 10**6, dtype=torch.long, device=dev)
        self.fc_intent_bits = torch.zeros(b, n, dtype=torch.long, device=dev)
        # Per-step constants.
        self._eye = torch.eye(n, dtype=torch.bool, device=dev)
        self._off = ~self._eye
        self._stale_age = torch.where(self._eye, 0, self.config.intent_max_age)
        self._own_bits = torch.where(self._eye, self.config.comm.intent_bits, 0)

    def seed(self, seed: int) -> None:
        """Reseed the world's generator; ``seed``: an integer in ``[0, 2**63)`` (a float such
        as 1.5 is refused, not truncated)."""
        self.generator.manual_seed(check_seed("seed", seed))

    def reset(self, seed: int | None = None) -> torch.Tensor:
        """Reset every world. Returns observations ``[B, N, Do]``."""
        if seed is not None:
            self.seed(seed)
        self.reset_at(torch.ones(self.num_envs, dtype=torch.bool, device=self.device))
        return self.observation()

    def reset_at(self, mask: torch.Tensor) -> None:
        """Reset the worlds where ``mask [B]`` is True; the others are untouched."""
        check_tensor("mask", mask, shape=(self.num_envs,), dtypes=(torch.bool,))
        m1 = mask.view(-1, 1)
        self.t = torch.where(mask, 0, self.t)
        self.done = self.done & ~mask
        self.vel = torch.where(m1.unsqueeze(-1), 0.0, self.vel)
        if self.belief_kind == "grid":
            # The grids are refilled in place, world by world: a reset is called for the few
            # worlds that finished (one host sync lists them; the caller has just synced to
            # know there are any), where a masked pass would rewrite every world's grids.
            rows = mask.nonzero().squeeze(1)
            old, version = self.belief, self.belief._version
            for name in self._grid_state_names():
                getattr(self, name).index_fill_(0, rows, self.prior)
            self._patch_summary(
                old, version, old, lambda cells: cells.index_fill_(0, rows, self._prior_entropy)
            )
            if self._keeps_copies():
                self.peer_evidence.index_fill_(0, rows, 0.0)
        self._reset_scenario(mask)  # sets pos (and intents default to own position)
        self.intent = torch.where(m1.unsqueeze(-1), self.pos, self.intent)
        # Nobody knows a teammate's intent before hearing it: the area's centre, fully stale.
        eye = self._eye
        self.intent_age = torch.where(m1.unsqueeze(-1), self._stale_age, self.intent_age)
        self.intent_bits = torch.where(m1.unsqueeze(-1), self._own_bits, self.intent_bits)
        self.fc_intent_bits = torch.where(m1, 0, self.fc_intent_bits)
        centre = torch.full_like(self.known_intent, self.grid / 2)
        unknown = torch.where(eye.view(1, *eye.shape, 1), self.intent.unsqueeze(2), centre)
        self.known_intent = torch.where(mask.view(-1, 1, 1, 1), unknown, self.known_intent)
        self.fc_intent = torch.where(m1.unsqueeze(-1), self.grid / 2, self.fc_intent)
        self.fc_intent_age = torch.where(m1, self.config.intent_max_age, self.fc_intent_age)
        self._update_links(mask)

    # ================================================================= step
    def check_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Validate ``[B, N, 6]`` float actions; clip to ``[-1, 1]`` (module docstring)."""
        check_tensor(
            "actions",
            actions,
            shape=(self.num_envs, self.num_agents, ACTION_DIM),
            dtypes=(torch.float32, torch.float64),
            finite=True,
        )
        return actions.to(device=self.device, dtype=torch.float32).clamp(-1.0, 1.0)

    def _step_input(self, actions: torch.Tensor) -> torch.Tensor:
        """:meth:`check_actions` and the finished-worlds check of :meth:`step` with one host
        sync: one flag from the done mask and the sum of the actions (finite unless an
        entry is NaN or inf, or the float32 sum overflows); only a raised flag runs the
        exact checks, which raise or let a merely large sum through."""
        check_tensor(
            "actions",
            actions,
            shape=(self.num_envs, self.num_agents, ACTION_DIM),
            dtypes=(torch.float32, torch.float64),
        )
        a = actions.to(device=self.device, dtype=torch.float32)
        if bool(self.done.any() | ~torch.isfinite(a.sum())):
            if bool(self.done.any()):
                idx = self.done.nonzero().squeeze(1)[:8].tolist()
                raise ValueError(
                    f"step() called on finished worlds {idx}; call reset() or reset_at(mask) first"
                )
            check_tensor("actions", actions, finite=True)
        return a.clamp(-1.0, 1.0)

    def step(
        self, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Advance every world one step.

        Finished worlds (``terminated | truncated`` at the previous step) must be
        reset with :meth:`reset_at` first; stepping them raises.

        Args:
            actions: float ``[B, N, 6]`` in ``[-1, 1]``.
        Returns:
            ``obs [B, N, Do]``, ``reward [B, N]`` (the team reward, shared, unless
            ``team_reward_weight < 1`` mixes in each agent's own share),
            ``terminated [B]``, ``truncated [B]`` (bool), and ``info``: a dict of
            tensors. Per agent ``[B, N]``, every channel use of the step, of the agent's
            peer messages and uplinks and of the fusion centre's downlink *to* the agent:
            ``channel_uses`` (long), ``bits`` (information put on the channel),
            ``bits_delivered``, ``capacity_bits`` (what the uses spent could carry on
            their fades; float32 bits, :class:`~agentcomm.envs.comm.Exchange`: an analog
            payload's information is the capacity of its uses); the same split by link:
            ``peer_channel_uses``, ``uplink_channel_uses``, ``downlink_channel_uses``,
            ``peer_bits``, ``uplink_bits``, ``downlink_bits`` (each pair sums to the total);
            the messages the agent sent (peer and uplink): ``messages_sent``,
            ``messages_delivered``, ``messages_lost``; ``belief_error``
            (:meth:`_belief_error`). Per world ``[B]``: ``fc_channel_uses`` and
            ``fc_messages_sent`` (the fusion centre's downlinks), ``success``.
        """
        a = self._step_input(actions)
        cfg = self.config
        # --- act and move
        self.vel = a[..., 0:2] * cfg.max_speed
        self.pos = (self.pos + self.vel).clamp(0.0, float(self.grid) - 1e-4)
        self.intent = (a[..., 2:4] + 1.0) * 0.5 * self.grid
        self.t = self.t + 1
        task_reward = self._scenario_step()
        # --- sense
        before = self.belief if self.belief_kind == "grid" else None
        truth = None
        if self.belief_kind == "grid":
            # The truth cannot change before the step ends (the scenario moved already).
            truth = self._true_map()
            obs = _sense_window(
                truth,
                self.pos,
                cfg.sensing.radius,
                cfg.sensing.pd,
                cfg.sensing.pfa,
                self.generator,
            )
            clip = cfg.comm.logodds_clip
            # bayes_update_window's increments, computed once for both beliefs.
            inc = torch.where(obs.in_range, torch.where(obs.detections, self._hit, self._miss), 0.0)
            # The own evidence is updated in place: nothing holds its previous values.
            self.local = _add_window_increment(self.local, obs, inc, clip, inplace=True)
            if not self._belief_is_derived():
                self.belief = _add_window_increment(self.belief, obs, inc, clip)
        # --- links and exchange
        self._update_links()
        info = self._exchange(a)
        if self.belief_kind == "grid":
            self._refresh_belief()
        self._after_comm()
        # --- reward: the channel cost falls on the uses the agents chose to spend (peer
        # messages and uplinks); the fusion centre's downlinks are not theirs to choose.
        agent_uses = (info["peer_channel_uses"] + info["uplink_channel_uses"]).float()
        cost = cfg.comm.cost_per_channel_use * agent_uses.sum(1)
        belief_reward = self._belief_reward(before)
        reward = task_reward - cost + belief_reward
        info["belief_error"] = self._belief_error(truth)
        success = self._success()
        terminated = success.clone() if self._terminates_on_success() else torch.zeros_like(success)
        truncated = (self.t >= cfg.max_steps) & ~terminated
        self.done = terminated | truncated
        info["success"] = success
        n, w = self.num_agents, cfg.team_reward_weight
        if w == 1.0:
            rew = reward.unsqueeze(1).expand(-1, n).contiguous()
        else:
            # Own shares (difference-reward style credit) against the same team total: the
            # shares sum to the team reward, so N * share has the team reward's scale.
            own = self._reward_shares(before, task_reward + belief_reward)
            own = own - cfg.comm.cost_per_channel_use * agent_uses
            rew = w * reward.unsqueeze(1) + (1.0 - w) * n * own
        return self.observation(), rew, terminated, truncated, info

    def reset_info(self) -> dict[str, torch.Tensor]:
        """The info of freshly reset worlds, with every key of :data:`INFO_KEYS` and the
        shapes and dtypes :meth:`step` gives them: accounting zero (nothing sent yet),
        ``belief_error`` and ``success`` of the current state. Adapters report it at reset
        (TorchRL builds its specs from the infos of ``reset()``)."""
        b, n, dev = self.num_envs, self.num_agents, self.device
        info: dict[str, torch.Tensor] = {}
        for key in INFO_KEYS:
            shape = (b,) if key.startswith("fc_") or key == "success" else (b, n)
            dtype = torch.float32 if key in _FLOAT_INFO else torch.long
            info[key] = torch.zeros(shape, dtype=dtype, device=dev)
        info["belief_error"] = self._belief_error().float()
        info["success"] = self._success()
        return info

    def _belief_reward(self, before: torch.Tensor | None) -> torch.Tensor:
        """``[B]`` reward for the step's belief change (``before``: grid beliefs before
        sensing); scenarios define it, default 0."""
        return torch.zeros(self.num_envs, device=self.device)

    def _belief_error(self, truth: torch.Tensor | None = None) -> torch.Tensor:
        """``[B, N]`` error of each agent's belief: for grids the KL divergence of the fused
        belief from the true map (bits per cell; ``truth``: the true map when the caller
        has it); without beliefs, the mean distance (cells) between the intents an agent
        holds for its teammates and their true intents."""
        if self.belief_kind == "grid":
            truth = self._true_map() if truth is None else truth
            return kl_to_truth(self.belief, truth.unsqueeze(1), reduction="mean")
        err = (self.known_intent - self.intent.unsqueeze(1)).norm(dim=-1)  # [B, N, N]
        return err.sum(-1) / max(self.num_agents - 1, 1)

    # ================================================================= links
    def _update_links(self, mask: torch.Tensor | None = None) -> None:
        """Recompute link SNRs from positions (only in worlds where ``mask [B]`` is True)."""
        peer, fc = self.comm.link_snr(self.pos, self.fc_pos, self.generator)
        if mask is not None:
            peer = torch.where(mask.view(-1, 1, 1), peer, self.peer_snr)
            fc = torch.where(mask.view(-1, 1), fc, self.fc_snr)
        self.peer_snr, self.fc_snr = peer, fc
        thr = self.config.channel.link_threshold_db
        self.adj = self.peer_snr >= thr
        self.fc_ok = self.fc_snr >= thr

    # ================================================================= exchange
    #: Rows of the per-agent accounting (:meth:`_account`): integer counts, then float64 bits.
    _COUNT_ROWS = ("channel_uses", *(f"{p}_channel_uses" for p in _LINKS), "sent", "delivered")
    _BITS_ROWS = ("bits", "bits_delivered", "capacity_bits", *(f"{p}_bits" for p in _LINKS))

    def _exchange(self, a: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config.comm
        b, n, dev = self.num_envs, self.num_agents, self.device
        # Per-agent accounting, one row per info key (contiguous rows; _account adds each
        # exchange's messages with one index_add, in message order, as key by key).
        counts = torch.zeros(len(self._COUNT_ROWS), b * n, dtype=torch.long, device=dev)
        bits = torch.zeros(len(self._BITS_ROWS), b * n, dtype=torch.float64, device=dev)
        acc = (counts, bits)
        fc_uses = torch.zeros(b, dtype=torch.long, device=dev)
        fc_msgs = torch.zeros(b, dtype=torch.long, device=dev)
        # Ages grow every step; a received header resets them.
        self.intent_age = (self.intent_age + 1).clamp_max(10**6).masked_fill(self._eye, 0)
        self.fc_intent_age = (self.fc_intent_age + 1).clamp_max(10**6)
        self.known_intent = torch.where(
            self._eye.view(1, n, n, 1),
            self.intent.unsqueeze(2).expand(-1, -1, n, -1),
            self.known_intent,
        )
        if cfg.budget > 0:
            tx_frac = (a[..., 4] + 1.0) * 0.5
            k_total = torch.floor(tx_frac * cfg.budget + 1e-6).long()
            if cfg.mode == "centralized":
                k_up, k_peer = k_total, torch.zeros_like(k_total)
            elif cfg.mode == "distributed":
                k_up, k_peer = torch.zeros_like(k_total), k_total
            else:
                share = (a[..., 5] + 1.0) * 0.5
                k_up = torch.floor(share * k_total + 1e-6).long()
                k_peer = k_total - k_up
            if cfg.mode in ("centralized", "hybrid"):
                fc_uses, fc_msgs = self._centralized(k_up, acc)
            if cfg.mode in ("distributed", "hybrid"):
                # The link graph holds for the whole step: its weights are computed once.
                weights = (
                    None
                    if self.belief_kind == "none" or self._keeps_copies()
                    else _metropolis_weights(self.adj)
                )
                for _ in range(cfg.consensus_rounds):
                    self._peer_round(k_peer, acc, weights)
        rows = dict(zip(self._COUNT_ROWS, counts.view(-1, b, n).unbind(0)))
        rows.update(zip(self._BITS_ROWS, bits.float().view(-1, b, n).unbind(0)))
        sent, delivered = rows["sent"], rows["delivered"]
        self.last_delivered_frac = delivered.float() / sent.clamp_min(1).float()
        info = {
            k: rows[k]
            for k in ("channel_uses", *(f"{p}_channel_uses" for p in _LINKS), *self._BITS_ROWS)
        }
        info["messages_sent"] = sent
        info["messages_delivered"] = delivered
        info["messages_lost"] = sent - delivered
        info["fc_channel_uses"] = fc_uses
        info["fc_messages_sent"] = fc_msgs
        return info

    def _account(
        self,
        ex: Exchange,
        row: torch.Tensor,
        link: str,
        acc: tuple[torch.Tensor, torch.Tensor],
    ) -> None:
        """Add an exchange's per-message accounting to the agents ``row [M]`` (flat
        ``env * N + agent``): the sender of peer messages and uplinks, the receiver of
        downlinks (``link`` names which). Each accumulator element adds its messages in
        message order, so the float64 sums are those of one index_add per key."""
        counts, bits = acc
        on_air = ex.channel_uses > 0
        zero = torch.zeros_like(ex.channel_uses)
        link_uses = [ex.channel_uses if p == link else zero for p in _LINKS]
        if link != "downlink":
            # A message counts as delivered when any part of it (header or payload) arrived.
            delivered = (ex.header_ok | ex.payload_ok) & on_air
            tail = [on_air.long(), delivered.long()]
        else:
            tail = [zero, zero]
        counts.index_add_(1, row, torch.stack([ex.channel_uses, *link_uses, *tail]))
        zero64 = torch.zeros_like(ex.bits)
        link_bits = [ex.bits if p == link else zero64 for p in _LINKS]
        bits.index_add_(
            1, row, torch.stack([ex.bits, ex.bits_delivered, ex.capacity_bits, *link_bits])
        )

    def _peer_round(
        self,
        k_peer: torch.Tensor,
        acc: tuple[torch.Tensor, torch.Tensor],
        weights: torch.Tensor | None,
    ) -> None:
        b, n = self.num_envs, self.num_agents
        links = self.adj & (k_peer > 0).unsqueeze(2)
        # One host sync: the exchange draws one fade per message, so it needs their number.
        env, src, dst = links.nonzero(as_tuple=True)
        if env.numel() == 0:
            return
        row = env * n + src
        ex = self.comm.exchange(
            env,
            src,
            dst,
            k_peer.reshape(-1)[row],
            self.peer_snr[env, src, dst],
            self._peer_payload(env, src),
            self._payload_prior(),
            self.generator,
            goal=self._codec_goal(self.known_intent[env, src, dst]),
        )
        self._account(ex, row, "peer", acc)
        # Receivers learn the senders' intents at the header's resolution: dense [B, N, N]
        # updates (receiver, sender) instead of masked selections.
        heard = torch.zeros(b, n, n, dtype=torch.long, device=self.device)
        heard = heard.index_put_((env, dst, src), torch.where(ex.header_ok, ex.intent_bits, 0))
        ok = heard > 0
        sent_intent = self.comm._quantize_intent(self.intent.unsqueeze(1), heard)
        self.known_intent = torch.where(ok.unsqueeze(-1), sent_intent, self.known_intent)
        self.intent_age = self.intent_age.masked_fill(ok, 0)
        self.intent_bits = torch.where(ok, heard, self.intent_bits)
        if self.belief_kind != "none":
            self._fuse_peer(ex, weights)

    def _centralized(
        self, k_up: torch.Tensor, acc: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Uplinks then downlinks; returns the centre's channel uses and messages ``[B]``."""
        cfg = self.config.comm
        b, n, dev = self.num_envs, self.num_agents, self.device
        fc_uses = torch.zeros(b, dtype=torch.long, device=dev)
        # --- uplink: own evidence and intent to the fusion centre
        env, src = (self.fc_ok & (k_up > 0)).nonzero(as_tuple=True)
        if env.numel() > 0:
            row = env * n + src
            ex = self.comm.exchange(
                env,
                src,
                torch.full_like(src, -1),
                k_up.reshape(-1)[row],
                self.fc_snr.reshape(-1)[row],
                self._uplink_payload(env, src),
                self._payload_prior(),
                self.generator,
            )
            self._account(ex, row, "uplink", acc)
            heard = torch.zeros(b * n, dtype=torch.long, device=dev)
            heard = heard.index_put_((row,), torch.where(ex.header_ok, ex.intent_bits, 0))
            heard = heard.view(b, n)
            ok = heard > 0
            sent_intent = self.comm._quantize_intent(self.intent, heard)
            self.fc_intent = torch.where(ok.unsqueeze(-1), sent_intent, self.fc_intent)
            self.fc_intent_age = self.fc_intent_age.masked_fill(ok, 0)
            self.fc_intent_bits = torch.where(ok, heard, self.fc_intent_bits)
            if self.belief_kind != "none":
                self._fc_ingest(ex)
        # --- downlink: the fused belief and every intent to each agent in range
        env, dst = self.fc_ok.nonzero(as_tuple=True)
        if env.numel() == 0:
            return fc_uses, torch.zeros_like(fc_uses)
        fc_payload = self._fc_payload()
        row = env * n + dst
        ex = self.comm.exchange(
            env,
            torch.full_like(dst, -1),
            dst,
            torch.full_like(dst, cfg.budget),
            self.fc_snr.reshape(-1)[row],
            None if fc_payload is None else (fc_payload, env),
            self._payload_prior(),
            self.generator,
            intents=n,
            goal=self._codec_goal(self.intent.reshape(-1, 2)[row]),
        )
        self._account(ex, row, "downlink", acc)
        fc_uses = fc_uses.index_add(0, env, ex.channel_uses)
        fc_msgs = torch.zeros_like(fc_uses).index_add(0, env, (ex.channel_uses > 0).long())
        heard = torch.zeros(b * n, dtype=torch.long, device=dev)
        heard = heard.index_put_((row,), torch.where(ex.header_ok, ex.intent_bits, 0))
        heard = heard.view(b, n, 1)  # [B, receiver, 1]
        ok = heard > 0
        # The FC relays intents at the resolution it received them; re-quantizing at the
        # downlink's resolution can only coarsen them further.
        relayed = self.comm._quantize_intent(self.fc_intent.unsqueeze(1), heard)
        self.known_intent = torch.where(ok.unsqueeze(-1), relayed, self.known_intent)
        self.intent_age = torch.where(ok, self.fc_intent_age.unsqueeze(1), self.intent_age)
        self.intent_bits = torch.where(
            ok, torch.minimum(self.fc_intent_bits.unsqueeze(1), heard), self.intent_bits
        )
        if self.belief_kind != "none":
            self._apply_downlink(ex)
        return fc_uses, fc_msgs

    def _codec_goal(self, goal: torch.Tensor) -> torch.Tensor | None:
        """Receivers' goals ``[M, 2]`` as intent-aware codecs take them: the goal's cell
        in the codecs' integer cell coordinates (:mod:`agentcomm.codecs.intent`)."""
        if self.belief_kind != "grid":
            return None
        return goal.floor().clamp(0, self.grid - 1)

    @property
    def intent_resolution(self) -> torch.Tensor:
        """``[B, N, N]`` side (cells) of the quantization cell of the intent agent ``i`` holds
        for agent ``j``: ``grid_size / 2**bits``, the whole area when nothing was heard."""
        return self.grid / torch.exp2(self.intent_bits.float())

    # ================================================================= belief payloads
    # Grid beliefs by default; vector beliefs (tracking) override these five hooks.
    def _payload_prior(self) -> float:
        return self.prior

    def _keeps_copies(self) -> bool:
        return self.config.comm.fusion == "latest" and self.config.comm.mode != "centralized"

    def _grid_state_names(self) -> tuple[str, ...]:
        """The log-odds grids of the world's state (the evidence copies, kept relative to the
        prior, are handled beside them); the fusion centre's two are left out in
        ``distributed`` mode, where nothing reads them."""
        if self.config.comm.mode == "distributed":
            return ("belief", "local")
        return ("belief", "local", "fc_store", "fc_view")

    def clear_cells(self, env: torch.Tensor, cell: torch.Tensor) -> None:
        """Mark flat cells ``cell [M]`` of worlds ``env [M]`` certainly empty in every agent's
        belief and every stored copy (used when the scenario makes a fact public)."""
        low = -self.config.comm.logodds_clip
        hw = self.grid * self.grid
        for name in self._grid_state_names():
            grid = getattr(self, name)
            grid.view(self.num_envs, -1, hw)[env, :, cell] = low
        if self._keeps_copies():
            self.peer_evidence.view(self.num_envs, -1, hw)[env, :, cell] = self._cleared_evidence

    def _clear_where(self, cells: torch.Tensor, mask: torch.Tensor) -> None:
        """:meth:`clear_cells` for the flat cells ``cells [B, K]`` (distinct per world)
        where ``mask [B, K]`` is True, in place: fixed shapes, no host sync, the same
        values."""
        b, hw = self.num_envs, self.grid * self.grid
        low = -self.config.comm.logodds_clip
        grids = [(getattr(self, name), low) for name in self._grid_state_names()]
        if self._keeps_copies():
            grids.append((self.peer_evidence, self._cleared_evidence))
        old, version = self.belief, self.belief._version
        where = mask.unsqueeze(1)
        positions: dict[int, torch.Tensor] = {}

        def clear(grid: torch.Tensor, value: float) -> torch.Tensor:
            rows = grid.numel() // (b * hw)
            if rows not in positions:  # flat index of (world, row, cell): [B, rows, K]
                positions[rows] = self._row_starts(rows) + cells.unsqueeze(1)
            pos = positions[rows]
            return _put_where(grid, pos, where.expand(pos.shape), value)

        for grid, value in grids:
            clear(grid, value)
        self._patch_summary(old, version, old, lambda c: clear(c, self._cleared_entropy))

    def _peer_payload(
        self, env: torch.Tensor, src: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None:
        """What ``src`` sends its neighbours, ``[M, *S]`` or ``(source, rows)`` (message ``m``
        carries ``source[rows[m]]``, :meth:`CommStack.exchange`): its own evidence under
        ``latest`` (receivers keep copies, so nothing is counted twice), else its fused
        belief."""
        if self.belief_kind != "grid":
            return None
        grid = self.local if self._keeps_copies() else self.belief
        return grid.view(-1, self.grid, self.grid), env * self.num_agents + src

    def _row_starts(self, rows: int) -> torch.Tensor:
        """long ``[B, rows, 1]``: the flat index of the first cell of each row of a
        ``[B, rows, H, W]`` grid (cached per ``rows``)."""
        starts = self.__dict__.setdefault("_row_start_cache", {})
        if rows not in starts:
            b, hw = self.num_envs, self.grid * self.grid
            starts[rows] = torch.arange(b * rows, device=self.device).view(b, rows, 1) * hw
        return starts[rows]

    def _put_cells(
        self, grid: torch.Tensor, row: torch.Tensor, ex: Exchange, value: torch.Tensor
    ) -> None:
        """Row ``row[m]`` of ``grid [..., H, W]`` (contiguous) takes ``value [M, W]`` on the
        informative cells of sparse message ``m``, in place; every other cell is kept."""
        pos = (row * (self.grid * self.grid)).unsqueeze(1) + ex.cells
        _put_where(grid, pos, ex.informative_cells, value)

    def _fuse_peer(self, ex: Exchange, weights: torch.Tensor | None) -> None:
        cfg = self.config.comm
        if self._keeps_copies():
            n = self.num_agents
            if ex.cells is not None:
                row = (ex.env * n + ex.dst) * n + ex.src
                self._put_cells(self.peer_evidence, row, ex, ex.values - self.prior)
                return
            store = self.peer_evidence[ex.env, ex.dst, ex.src]
            self.peer_evidence[ex.env, ex.dst, ex.src] = torch.where(
                ex.informative, ex.estimate - self.prior, store
            )
            return
        self.belief = fuse_grid(self.belief, ex, weights, cfg.fusion, self.prior).clamp_(
            -cfg.logodds_clip, cfg.logodds_clip
        )

    def _belief_is_derived(self) -> bool:
        """Whether :meth:`_refresh_belief` rebuilds the belief from the evidence every step
        (centralized, or ``latest`` copies), so updating it in place would be wasted work."""
        return self.config.comm.mode == "centralized" or self._keeps_copies()

    def _refresh_belief(self) -> None:
        r"""Rebuild the fused belief from the evidence each agent holds (grid scenarios).

        * centralized: the centre's map plus the own evidence the centre lacks;
        * ``latest`` (distributed): own evidence plus the latest copy of each neighbour's
          evidence, :math:`\ell_0 + \sum_i (\ell_i - \ell_0)`: exact, never double counted;
        * hybrid with ``latest``: per cell the more confident of those two views (both hold
          the same agents' evidence, so adding them would double count);
        * other rules keep the belief as a state fused in place (:func:`fuse_grid`).
        """
        cfg = self.config.comm
        clip = cfg.logodds_clip
        # Sums are formed in place in a fresh scratch-backed tensor (a + b == b + a exactly).
        fresh = _with_scratch(tuple(self.local.shape), self.device)
        if cfg.mode == "centralized":
            part = torch.sub(self.local, self.fc_store, out=fresh).add_(self.fc_view)
            self.belief = part.clamp_(-clip, clip)
            return
        if not self._keeps_copies():
            return
        peer_part = torch.sum(self.peer_evidence, 2, out=fresh).add_(self.local)
        if cfg.mode == "hybrid":
            fc_part = self.fc_view + (self.local - self.fc_store)
            take_fc = (fc_part - self.prior).abs() > (peer_part - self.prior).abs()
            peer_part = torch.where(take_fc, fc_part, peer_part)
        self.belief = peer_part.clamp_(-clip, clip)

    def _uplink_payload(
        self, env: torch.Tensor, src: torch.Tensor
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None:
        """What ``src`` uplinks (as :meth:`_peer_payload`): its own evidence only (no double
        counting)."""
        if self.belief_kind != "grid":
            return None
        return self.local.view(-1, self.grid, self.grid), env * self.num_agents + src

    def _fc_ingest(self, ex: Exchange) -> None:
        if ex.cells is not None:
            self._put_cells(self.fc_store, ex.env * self.num_agents + ex.src, ex, ex.values)
            return
        store = self.fc_store[ex.env, ex.src]
        self.fc_store[ex.env, ex.src] = torch.where(ex.informative, ex.estimate, store)

    def _fc_payload(self) -> torch.Tensor | None:
        """``[B, *S]``: the centre's fused belief, the log-odds product of its copies."""
        if self.belief_kind != "grid":
            return None
        clip = self.config.comm.logodds_clip
        return (self.prior + (self.fc_store - self.prior).sum(1)).clamp_(-clip, clip)

    def _apply_downlink(self, ex: Exchange) -> None:
        env, dst = ex.env, ex.dst
        hybrid_fused = self.config.comm.mode == "hybrid" and not self._keeps_copies()
        clip = self.config.comm.logodds_clip
        if ex.cells is not None:
            row = env * self.num_agents + dst
            self._put_cells(self.fc_view, row, ex, ex.values)
            if hybrid_fused:
                # A fused-in-place belief adopts the centre's view where it is informative.
                pos = (row * (self.grid * self.grid)).unsqueeze(1) + ex.cells
                fused = (ex.values + self.local.take(pos) - self.fc_store.take(pos)).clamp_(
                    -clip, clip
                )
                self._put_cells(self.belief, row, ex, fused)
            return
        self.fc_view[env, dst] = torch.where(ex.informative, ex.estimate, self.fc_view[env, dst])
        if hybrid_fused:
            fused = (ex.estimate + self.local[env, dst] - self.fc_store[env, dst]).clamp(
                -clip, clip
            )
            self.belief[env, dst] = torch.where(ex.informative, fused, self.belief[env, dst])

    # ================================================================= observation
    def _base_obs_dim(self) -> int:
        n, m = self.num_agents, self.config.obs_map_size
        grid = m * m if self.belief_kind == "grid" else 0
        return 2 + 2 + 2 + grid + 4 * (n - 1) + 3

    def observation(self) -> torch.Tensor:
        """``[B, N, Do]`` float32, every entry in ``[-1, 1]``.

        Layout: own position (2, scaled to [-1, 1]), own velocity (2, /max_speed), own
        intent (2, scaled), the fused belief as probabilities max-pooled to
        ``obs_map_size`` squared (grid scenarios, scaled to [-1, 1]), then for each other
        agent in index order: its last received intent relative to own position
        (2, /grid_size), that intent's age (1, min(age, intent_max_age)/intent_max_age,
        scaled), the mean link SNR to it (1, clipped to [-20, 40] dB, scaled); then
        the fusion-centre link SNR (1), the fraction of agents in link range (1), and the
        elapsed fraction of the episode (1); then the scenario's extras.
        """
        cfg = self.config
        b, n, g = self.num_envs, self.num_agents, float(self.grid)
        # Position, velocity, intent in one pass: x / d * s - o per column, the same
        # arithmetic as x / g * 2 - 1 and x / max_speed (* 1 - 0 leaves it, -0.0 too).
        own = torch.cat([self.pos, self.vel, self.intent], dim=-1)
        d, s, o = self._own_scale
        parts = [own / d * s - o]
        if self.belief_kind == "grid":
            parts.append(self._pooled_probability() * 2 - 1)
        rel = (self.known_intent - self.pos.unsqueeze(2)) / g
        age = self.intent_age.clamp_max(cfg.intent_max_age).float() / cfg.intent_max_age
        # Peer and fusion-centre SNRs scaled in one pass.
        snr = self._scale_snr(torch.cat([self.peer_snr, self.fc_snr.unsqueeze(-1)], dim=-1))
        team = torch.cat([rel, (age * 2 - 1).unsqueeze(-1), snr[..., :n, None]], dim=-1)
        parts.append(team[:, self._off].reshape(b, n, n - 1, 4).reshape(b, n, -1))
        frac_links = self.adj.sum(-1).float() / max(n - 1, 1)
        elapsed = (self.t.float() / cfg.max_steps).view(b, 1).expand(b, n)
        parts += [
            snr[..., n:],
            (frac_links * 2 - 1).unsqueeze(-1),
            (elapsed * 2 - 1).unsqueeze(-1),
            self._scenario_obs(),
        ]
        return torch.cat(parts, dim=-1).clamp(-1.0, 1.0)

    def _pooled_probability(self) -> torch.Tensor:
        """``[B, N, obs_map_size**2]``: the belief's probabilities max-pooled over
        ``k x k`` blocks, as ``max_pool2d`` gives them (a max is exact) but by
        elementwise maxima of strided views, several times faster on CPU."""
        b, n, g = self.num_envs, self.num_agents, self.grid
        m = self.config.obs_map_size
        k = g // m
        prob = self._belief_summary(self.belief)["prob"]
        rows = prob.view(b * n, m, k, g)
        pooled = rows[:, :, 0]
        for i in range(1, k):
            pooled = torch.maximum(pooled, rows[:, :, i])
        cols = pooled.view(b * n, m, m, k)
        pooled = cols[..., 0]
        for j in range(1, k):
            pooled = torch.maximum(pooled, cols[..., j])
        return pooled.reshape(b, n, m * m)

    # ================================================================= belief summaries
    def _belief_summary(self, belief: torch.Tensor, key: str = "prob") -> dict[str, torch.Tensor]:
        """Per-cell terms of a belief state ``[B, N, H, W]``, each computed once per state:
        ``"prob"`` (its sigmoid), ``"softplus"`` and ``"entropy"`` (bits per cell, by
        :func:`~agentcomm.beliefs.entropy`'s arithmetic), and ``"entropy_sum"`` ``[B, N]``.

        Two states are kept (the step's belief before sensing and after fusion), keyed by
        the tensor and its version counter, so any in-place change that does not patch the
        terms (:meth:`_patch_summary`) drops them; a state whose terms lack ``key`` (a
        patched one keeps only its entropy) gets them all anew. Transcendentals give the same bits
        wherever torch's vectorized loop evaluates them, which a ``[B, N, H, W]`` tensor
        always fills (its size is a multiple of the vector width), so a term computed for a
        state equals the one a fresh computation would give.
        """
        for entry in self._summaries:
            if entry[0] is belief and entry[1] == belief._version and key in entry[2]:
                return entry[2]
        prob = torch.sigmoid(belief)
        softplus = torch.nn.functional.softplus(belief)
        # entropy(): softplus(l) - sigmoid(l) * l nats, in bits (in place on one new,
        # scratch-backed tensor: resets and public facts patch it).
        cells = torch.mul(prob, belief, out=_with_scratch(tuple(belief.shape), belief.device))
        cells = torch.sub(softplus, cells, out=cells).div_(_LN2)
        terms = {"prob": prob, "softplus": softplus, "entropy": cells}
        kept = [entry for entry in self._summaries if entry[0] is not belief][-1:]
        self._summaries = [*kept, (belief, belief._version, terms)]
        return terms

    def _belief_entropy(self, belief: torch.Tensor) -> torch.Tensor:
        """``[B, N]`` total entropy (bits) of a belief state, as ``entropy(belief, "sum")``."""
        terms = self._belief_summary(belief, "entropy")
        if "entropy_sum" not in terms:
            terms["entropy_sum"] = terms["entropy"].sum(dim=(-2, -1))
        return terms["entropy_sum"]

    def _patch_summary(
        self,
        old: torch.Tensor,
        version: int,
        new: torch.Tensor,
        patch: Callable[[torch.Tensor], torch.Tensor],
    ) -> None:
        """After the world changed belief state ``old`` (at ``version``) into ``new`` (maybe
        the same tensor, changed in place), carry its per-cell entropy over: ``patch``
        maps the old entropy cells to the new ones; the other terms are dropped."""
        for i, entry in enumerate(self._summaries):
            if entry[0] is old and entry[1] == version:
                cells = patch(entry[2]["entropy"])
                self._summaries[i] = (new, new._version, {"entropy": cells})
                return

    @functools.cached_property
    def _own_scale(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Divisor, scale and offset of the position, velocity and intent columns."""
        g, v = float(self.grid), self.config.max_speed
        dev = self.device
        return (
            torch.tensor([g, g, v, v, g, g], device=dev),
            torch.tensor([2.0, 2.0, 1.0, 1.0, 2.0, 2.0], device=dev),
            torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0, 1.0], device=dev),
        )

    @staticmethod
    def _scale_snr(snr_db: torch.Tensor) -> torch.Tensor:
        return ((snr_db.clamp(-20.0, 40.0) + 20.0) / 30.0 - 1.0).nan_to_num(-1.0)

    def _state_dim(self) -> int:
        n = self.num_agents
        return 4 * n + 1 + self._scenario_state_dim()

    def _scenario_state_dim(self) -> int:
        raise NotImplementedError

    def true_map(self) -> torch.Tensor:
        """bool ``[B, H, W]``: the ground truth the sensors detect (grid scenarios): targets
        for training receivers and for metrics, never an agent's knowledge."""
        if self.belief_kind != "grid":
            raise ValueError(
                f"{self.env_id} has belief_kind={self.belief_kind!r}; a true map exists only "
                "for grid scenarios"
            )
        return self._true_map()

    def state(self) -> torch.Tensor:
        """``[B, Ds]`` global state for centralized critics: every agent's position and
        velocity (scaled), the elapsed fraction, and the scenario's ground truth."""
        b, g = self.num_envs, float(self.grid)
        parts = [
            (self.pos / g * 2 - 1).reshape(b, -1),
            (self.vel / self.config.max_speed).reshape(b, -1),
            (self.t.float() / self.config.max_steps * 2 - 1).view(b, 1),
            self._scenario_state(),
        ]
        return torch.cat(parts, dim=-1)

    # ================================================================= misc
    def __getstate__(self) -> dict[str, Any]:
        # torch.Generator does not pickle; its state (a byte tensor) does.
        state = self.__dict__.copy()
        state["generator"] = self.generator.get_state()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        gen_state = state.pop("generator")
        self.__dict__.update(state)
        self.generator = torch.Generator(device=self.device)
        self.generator.set_state(gen_state)
        # A pickle keeps a grid's values but not the scratch element after it: restore it.
        for name in ("belief", "local", "fc_store", "fc_view", "peer_evidence"):
            grid = self.__dict__.get(name)
            scratch = getattr(grid, "_scratch", None)
            if grid is not None and (scratch is None or scratch.data_ptr() != grid.data_ptr()):
                setattr(self, name, _with_scratch(tuple(grid.shape), grid.device).copy_(grid))

    @property
    def agents(self) -> list[str]:
        return [f"agent_{i}" for i in range(self.num_agents)]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_envs={self.num_envs}, num_agents={self.num_agents}, "
            f"device={self.device}, mode={self.config.comm.mode!r}, "
            f"codec={self.config.comm.codec!r}, budget={self.config.comm.budget})"
        )
