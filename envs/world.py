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

from typing import Any, ClassVar

import torch

from agentcomm._checks import check_tensor
from agentcomm.beliefs import bayes_update_window, kl_to_truth, sense_window
from agentcomm.topology.coordination import metropolis_weights

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
            self.belief = torch.full((b, n, g, g), self.prior, device=dev)
            self.local = self.belief.clone()
            self.fc_store = self.belief.clone()
            self.fc_view = self.belief.clone()
            if self._keeps_copies():
                self.peer_store = torch.full((b, n, n, g, g), self.prior, device=dev)
        self.fc_intent = torch.zeros(b, n, 2, device=dev)
        self.fc_intent_age = torch.full((b, n), 10**6, dtype=torch.long, device=dev)
        self.fc_intent_bits = torch.zeros(b, n, dtype=torch.long, device=dev)

    def seed(self, seed: int) -> None:
        self.generator.manual_seed(int(seed))

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
            for name in self._grid_state_names():
                grid = getattr(self, name)
                setattr(
                    self, name, torch.where(mask.view(-1, *[1] * (grid.ndim - 1)), self.prior, grid)
                )
        self._reset_scenario(mask)  # sets pos (and intents default to own position)
        self.intent = torch.where(m1.unsqueeze(-1), self.pos, self.intent)
        # Nobody knows a teammate's intent before hearing it: the area's centre, fully stale.
        eye = torch.eye(self.num_agents, dtype=torch.bool, device=self.device)
        stale = self.config.intent_max_age
        self.intent_age = torch.where(m1.unsqueeze(-1), torch.where(eye, 0, stale), self.intent_age)
        own_bits = torch.where(eye, self.config.comm.intent_bits, 0)
        self.intent_bits = torch.where(m1.unsqueeze(-1), own_bits, self.intent_bits)
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
        if bool(self.done.any()):
            idx = self.done.nonzero().squeeze(1)[:8].tolist()
            raise ValueError(
                f"step() called on finished worlds {idx}; call reset() or reset_at(mask) first"
            )
        a = self.check_actions(actions)
        cfg = self.config
        # --- act and move
        self.vel = a[..., 0:2] * cfg.max_speed
        self.pos = (self.pos + self.vel).clamp(0.0, float(self.grid) - 1e-4)
        self.intent = (a[..., 2:4] + 1.0) * 0.5 * self.grid
        self.t = self.t + 1
        task_reward = self._scenario_step()
        # --- sense
        before = self.belief if self.belief_kind == "grid" else None
        if self.belief_kind == "grid":
            obs = sense_window(
                self._true_map(),
                self.pos,
                cfg.sensing.radius,
                cfg.sensing.pd,
                cfg.sensing.pfa,
                self.generator,
            )
            clip = cfg.comm.logodds_clip
            self.local = bayes_update_window(
                self.local, obs, cfg.sensing.pd, cfg.sensing.pfa, clamp=clip
            )
            if not self._belief_is_derived():
                self.belief = bayes_update_window(
                    self.belief, obs, cfg.sensing.pd, cfg.sensing.pfa, clamp=clip
                )
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
        info["belief_error"] = self._belief_error()
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

    def _belief_error(self) -> torch.Tensor:
        """``[B, N]`` error of each agent's belief: for grids the KL divergence of the fused
        belief from the true map (bits per cell); without beliefs, the mean distance (cells)
        between the intents an agent holds for its teammates and their true intents."""
        if self.belief_kind == "grid":
            return kl_to_truth(self.belief, self._true_map().unsqueeze(1), reduction="mean")
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
    def _exchange(self, a: torch.Tensor) -> dict[str, torch.Tensor]:
        cfg = self.config.comm
        b, n, dev = self.num_envs, self.num_agents, self.device
        acc = {
            k: torch.zeros(b, n, dtype=torch.long, device=dev)
            for k in ("channel_uses", "sent", "delivered", *(f"{p}_channel_uses" for p in _LINKS))
        }
        for k in ("bits", "bits_delivered", "capacity_bits", *(f"{p}_bits" for p in _LINKS)):
            acc[k] = torch.zeros(b, n, dtype=torch.float64, device=dev)
        fc_uses = torch.zeros(b, dtype=torch.long, device=dev)
        fc_msgs = torch.zeros(b, dtype=torch.long, device=dev)
        # Ages grow every step; a received header resets them.
        self.intent_age = (self.intent_age + 1).clamp_max(10**6)
        self.fc_intent_age = (self.fc_intent_age + 1).clamp_max(10**6)
        eye = torch.eye(n, dtype=torch.bool, device=dev)
        self.intent_age = self.intent_age.masked_fill(eye, 0)
        self.known_intent = torch.where(
            eye.view(1, n, n, 1),
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
                for _ in range(cfg.consensus_rounds):
                    self._peer_round(k_peer, acc)
        self.last_delivered_frac = acc["delivered"].float() / acc["sent"].clamp_min(1).float()
        info = {k: acc[k].float() if acc[k].is_floating_point() else acc[k] for k in acc}
        info["messages_sent"] = info.pop("sent")
        info["messages_delivered"] = info.pop("delivered")
        info["messages_lost"] = info["messages_sent"] - info["messages_delivered"]
        info["fc_channel_uses"] = fc_uses
        info["fc_messages_sent"] = fc_msgs
        return info

    def _account(
        self, ex: Exchange, agent: torch.Tensor, link: str, acc: dict[str, torch.Tensor]
    ) -> None:
        """Add an exchange's per-message accounting to ``agent [M]``: the sender of peer
        messages and uplinks, the receiver of downlinks (``link`` names which)."""
        flat = ex.env * self.num_agents + agent
        on_air = ex.channel_uses > 0
        pairs = [
            ("channel_uses", ex.channel_uses),
            (f"{link}_channel_uses", ex.channel_uses),
            ("bits", ex.bits),
            (f"{link}_bits", ex.bits),
            ("bits_delivered", ex.bits_delivered),
            ("capacity_bits", ex.capacity_bits),
        ]
        if link != "downlink":
            # A message counts as delivered when any part of it (header or payload) arrived.
            delivered = (ex.header_ok | ex.payload_ok) & on_air
            pairs += [("sent", on_air.long()), ("delivered", delivered.long())]
        for key, val in pairs:
            acc[key] = acc[key].view(-1).index_add(0, flat, val).view(acc[key].shape)

    def _peer_round(self, k_peer: torch.Tensor, acc: dict[str, torch.Tensor]) -> None:
        links = self.adj & (k_peer > 0).unsqueeze(2)
        env, src, dst = links.nonzero(as_tuple=True)
        if env.numel() == 0:
            return
        ex = self.comm.send(
            env,
            src,
            dst,
            k_peer[env, src],
            self.peer_snr[env, src, dst],
            self._peer_payload(env, src),
            self._payload_prior(),
            self.generator,
            intent=self._codec_goal(self.known_intent[env, src, dst]),
        )
        self._account(ex, src, "peer", acc)
        ok = ex.header_ok
        e, s, d = env[ok], src[ok], dst[ok]
        self.known_intent[e, d, s] = self.comm.quantize_intent(
            self.intent[e, s], ex.intent_bits[ok]
        )
        self.intent_age[e, d, s] = 0
        self.intent_bits[e, d, s] = ex.intent_bits[ok]
        if self.belief_kind != "none":
            # Copies need no weights; consensus and track fusion do.
            weights = None if self._keeps_copies() else metropolis_weights(self.adj)
            self._fuse_peer(ex, weights)

    def _centralized(
        self, k_up: torch.Tensor, acc: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Uplinks then downlinks; returns the centre's channel uses and messages ``[B]``."""
        cfg = self.config.comm
        b, n, dev = self.num_envs, self.num_agents, self.device
        fc_uses = torch.zeros(b, dtype=torch.long, device=dev)
        # --- uplink: own evidence and intent to the fusion centre
        env, src = (self.fc_ok & (k_up > 0)).nonzero(as_tuple=True)
        if env.numel() > 0:
            ex = self.comm.send(
                env,
                src,
                torch.full_like(src, -1),
                k_up[env, src],
                self.fc_snr[env, src],
                self._uplink_payload(env, src),
                self._payload_prior(),
                self.generator,
            )
            self._account(ex, src, "uplink", acc)
            ok = ex.header_ok
            e, s = env[ok], src[ok]
            self.fc_intent[e, s] = self.comm.quantize_intent(self.intent[e, s], ex.intent_bits[ok])
            self.fc_intent_age[e, s] = 0
            self.fc_intent_bits[e, s] = ex.intent_bits[ok]
            if self.belief_kind != "none":
                self._fc_ingest(ex)
        # --- downlink: the fused belief and every intent to each agent in range
        env, dst = self.fc_ok.nonzero(as_tuple=True)
        if env.numel() == 0:
            return fc_uses, torch.zeros_like(fc_uses)
        fc_payload = self._fc_payload()
        ex = self.comm.send(
            env,
            torch.full_like(dst, -1),
            dst,
            torch.full_like(dst, cfg.budget),
            self.fc_snr[env, dst],
            None if fc_payload is None else fc_payload[env],
            self._payload_prior(),
            self.generator,
            intents=n,
            intent=self._codec_goal(self.intent[env, dst]),
        )
        self._account(ex, dst, "downlink", acc)
        fc_uses = fc_uses.index_add(0, env, ex.channel_uses)
        fc_msgs = torch.zeros_like(fc_uses).index_add(0, env, (ex.channel_uses > 0).long())
        ok = ex.header_ok
        e, d = env[ok], dst[ok]
        # The FC relays intents at the resolution it received them; re-quantizing at the
        # downlink's resolution can only coarsen them further.
        self.known_intent[e, d] = self.comm.quantize_intent(self.fc_intent[e], ex.intent_bits[ok])
        self.intent_age[e, d] = self.fc_intent_age[e]
        self.intent_bits[e, d] = torch.minimum(
            self.fc_intent_bits[e], ex.intent_bits[ok].view(-1, 1)
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
        names = ("belief", "local", "fc_store", "fc_view")
        return names + ("peer_store",) if self._keeps_copies() else names

    def clear_cells(self, env: torch.Tensor, cell: torch.Tensor) -> None:
        """Mark flat cells ``cell [M]`` of worlds ``env [M]`` certainly empty in every agent's
        belief and every stored copy (used when the scenario makes a fact public)."""
        low = -self.config.comm.logodds_clip
        hw = self.grid * self.grid
        for name in self._grid_state_names():
            grid = getattr(self, name)
            grid.view(self.num_envs, -1, hw)[env, :, cell] = low

    def _peer_payload(self, env: torch.Tensor, src: torch.Tensor) -> torch.Tensor | None:
        """``[M, *S]`` what ``src`` sends its neighbours: its own evidence under ``latest``
        (receivers keep copies, so nothing is counted twice), else its fused belief."""
        if self.belief_kind != "grid":
            return None
        return self.local[env, src] if self._keeps_copies() else self.belief[env, src]

    def _fuse_peer(self, ex: Exchange, weights: torch.Tensor | None) -> None:
        cfg = self.config.comm
        if self._keeps_copies():
            store = self.peer_store[ex.env, ex.dst, ex.src]
            self.peer_store[ex.env, ex.dst, ex.src] = torch.where(
                ex.informative, ex.estimate, store
            )
            return
        self.belief = fuse_grid(self.belief, ex, weights, cfg.fusion, self.prior).clamp(
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
        fc_part = self.fc_view + (self.local - self.fc_store)
        if cfg.mode == "centralized":
            self.belief = fc_part.clamp(-clip, clip)
            return
        if not self._keeps_copies():
            return
        peer_part = self.local + (self.peer_store - self.prior).sum(2)
        if cfg.mode == "hybrid":
            take_fc = (fc_part - self.prior).abs() > (peer_part - self.prior).abs()
            peer_part = torch.where(take_fc, fc_part, peer_part)
        self.belief = peer_part.clamp(-clip, clip)

    def _uplink_payload(self, env: torch.Tensor, src: torch.Tensor) -> torch.Tensor | None:
        """``[M, *S]`` what ``src`` uplinks: its own evidence only (no double counting)."""
        return self.local[env, src] if self.belief_kind == "grid" else None

    def _fc_ingest(self, ex: Exchange) -> None:
        store = self.fc_store[ex.env, ex.src]
        self.fc_store[ex.env, ex.src] = torch.where(ex.informative, ex.estimate, store)

    def _fc_payload(self) -> torch.Tensor | None:
        """``[B, *S]``: the centre's fused belief, the log-odds product of its copies."""
        if self.belief_kind != "grid":
            return None
        clip = self.config.comm.logodds_clip
        return (self.prior + (self.fc_store - self.prior).sum(1)).clamp(-clip, clip)

    def _apply_downlink(self, ex: Exchange) -> None:
        env, dst = ex.env, ex.dst
        self.fc_view[env, dst] = torch.where(ex.informative, ex.estimate, self.fc_view[env, dst])
        if self.config.comm.mode == "hybrid" and not self._keeps_copies():
            # A fused-in-place belief adopts the centre's view where it is informative.
            clip = self.config.comm.logodds_clip
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
        parts = [
            self.pos / g * 2 - 1,
            self.vel / cfg.max_speed,
            self.intent / g * 2 - 1,
        ]
        if self.belief_kind == "grid":
            k = self.grid // cfg.obs_map_size
            prob = torch.sigmoid(self.belief).reshape(b * n, 1, self.grid, self.grid)
            pooled = torch.nn.functional.max_pool2d(prob, k).reshape(b, n, -1)
            parts.append(pooled * 2 - 1)
        off = ~torch.eye(n, dtype=torch.bool, device=self.device)
        rel = (self.known_intent - self.pos.unsqueeze(2)) / g
        age = self.intent_age.clamp_max(cfg.intent_max_age).float() / cfg.intent_max_age
        snr = self._scale_snr(self.peer_snr)
        team = torch.cat([rel, (age * 2 - 1).unsqueeze(-1), snr.unsqueeze(-1)], dim=-1)
        parts.append(team[:, off].reshape(b, n, n - 1, 4).reshape(b, n, -1))
        frac_links = self.adj.sum(-1).float() / max(n - 1, 1)
        elapsed = (self.t.float() / cfg.max_steps).view(b, 1).expand(b, n)
        parts += [
            self._scale_snr(self.fc_snr).unsqueeze(-1),
            (frac_links * 2 - 1).unsqueeze(-1),
            (elapsed * 2 - 1).unsqueeze(-1),
            self._scenario_obs(),
        ]
        return torch.cat(parts, dim=-1).clamp(-1.0, 1.0)

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

    @property
    def agents(self) -> list[str]:
        return [f"agent_{i}" for i in range(self.num_agents)]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_envs={self.num_envs}, num_agents={self.num_agents}, "
            f"device={self.device}, mode={self.config.comm.mode!r}, "
            f"codec={self.config.comm.codec!r}, budget={self.config.comm.budget})"
        )
