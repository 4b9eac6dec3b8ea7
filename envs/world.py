r"""The batched multi-agent communication world that every scenario builds on.

All state is torch tensors ``[B, N, ...]`` on one device (``B`` parallel worlds,
``N`` agents), the way VMAS does it; PettingZoo, Gymnasium, RLlib and
stable-baselines3 classes are thin adapters over this core.

Shape legend: ``B`` worlds, ``N`` agents, ``A = 6`` action components,
``H = W = grid_size`` cells, ``Do`` observation size, ``Ds`` state size.

One step: act -> move -> sense (Bayes update) -> links from positions (path loss,
threshold) -> encode under the budget -> channel -> decode -> fuse -> observe -> reward.

Action: ``[B, N, 6]`` in ``[-1, 1]`` (:mod:`agentcomm.envs.actions` gives the layout).

Coordination (``comm.mode``: ``centralized``, ``distributed``, ``hybrid``): the message
plan of :mod:`agentcomm.topology.coordination`, delivered by :mod:`agentcomm.envs.exchange`;
beliefs are held, sent and fused by the world's store (:mod:`agentcomm.beliefs.store`).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from agentcomm._checks import check_seed, check_tensor
from agentcomm.beliefs.grid import _sense_window

# Grid primitives the scenarios use beside the world (explicit re-exports).
from agentcomm.beliefs.store import _blocked_softplus as _blocked_softplus
from agentcomm.beliefs.store import _put_where as _put_where
from agentcomm.beliefs.store import _with_scratch as _with_scratch
from agentcomm.topology.links import _adjacency, _link_snr_db

from . import observe
from .actions import ACTION_DIM, check_actions, step_input
from .comm import CommStack
from .config import WorldConfig
from .exchange import INFO_KEYS, allocate_intents, reset_intents, run_exchange, zero_info
from .operating_point import allocate_operating_point, draw_operating_point
from .scenario import ScenarioHooks

__all__ = ["ACTION_DIM", "INFO_KEYS", "CommWorld"]


class CommWorld(ScenarioHooks):
    """Batched world: agents move, sense, announce intents and exchange beliefs.

    Scenarios set ``env_id``, ``config_cls`` and override :class:`.scenario.ScenarioHooks`.

    Args:
        config: the scenario's config (a dataclass or a dict of overrides).
        num_envs: ``B``.
        device: torch device of every tensor.
        seed: seeds the world's generator (also settable through :meth:`reset`).
    """

    env_id: ClassVar[str] = ""
    config_cls: ClassVar[type[WorldConfig]] = WorldConfig
    #: ``"grid"``: log-odds grids are sensed, sent and fused; ``"vector"``: the scenario's
    #: own store (``_make_beliefs``); ``"none"``: intents only.
    belief_kind: ClassVar[str] = "grid"
    #: Whether success ends the episode (tracking runs to the time limit).
    terminates_on_success: ClassVar[bool] = True

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
        fc = config.comm.fc_position or (self.grid / 2, self.grid / 2)
        self.fc_pos = torch.tensor(fc, dtype=torch.float32, device=self.device)
        self.prior = self._prior_logodds()
        self.beliefs = self._make_beliefs()
        self.comm = CommStack(
            config, self.beliefs.payload_shape, self.device, self.beliefs.payload_range
        )
        self.obs_dim = observe.obs_dim(self)
        self.state_dim = observe.state_dim(self)
        self._own_scale = observe.own_scale(self)
        self._allocate()

    # ================================================================= state
    def _allocate(self) -> None:
        b, n, dev = self.num_envs, self.num_agents, self.device
        self.t = torch.zeros(b, dtype=torch.long, device=dev)
        self.pos = torch.zeros(b, n, 2, device=dev)
        self.vel = torch.zeros(b, n, 2, device=dev)
        self.intent = torch.zeros(b, n, 2, device=dev)
        self.done = torch.zeros(b, dtype=torch.bool, device=dev)
        self.peer_snr = torch.zeros(b, n, n, device=dev)
        self.fc_snr = torch.zeros(b, n, device=dev)
        self.adj = torch.zeros(b, n, n, dtype=torch.bool, device=dev)
        allocate_operating_point(self)
        self._eye = torch.eye(n, dtype=torch.bool, device=dev)
        self._off = ~self._eye
        #: long ``[N * (N - 1)]``: flat ``i * N + j`` of the pairs ``i != j``, row-major.
        self._off_index = self._off.reshape(-1).nonzero().squeeze(1)
        allocate_intents(self)

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
        draw_operating_point(self, mask)
        self.t = torch.where(mask, 0, self.t)
        self.done = self.done & ~mask
        self.vel = torch.where(m1.unsqueeze(-1), 0.0, self.vel)
        self.beliefs.reset(mask)
        self._reset_scenario(mask)  # sets pos (and intents default to own position)
        self.intent = torch.where(m1.unsqueeze(-1), self.pos, self.intent)
        reset_intents(self, mask)
        self._update_links(mask)

    # ================================================================= step
    def check_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Validate ``[B, N, 6]`` float actions; clip to ``[-1, 1]`` (:mod:`.actions`)."""
        return check_actions(self, actions)

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
            ``fc_messages_sent`` (the fusion centre's downlinks), ``success``, and the
            episode's operating point: ``budget_cap`` (long, channel uses) and
            ``tx_power_dbm`` (float32), drawn at reset or fixed by the config.
        """
        a = step_input(self, actions)
        cfg = self.config
        # --- act and move
        self.vel = a[..., 0:2] * cfg.max_speed
        self.pos = (self.pos + self.vel).clamp(0.0, float(self.grid) - 1e-4)
        self.intent = (a[..., 2:4] + 1.0) * (0.5 * self.grid)  # x * 0.5 is exact: same bits
        self.t = self.t + 1
        task_reward = self._scenario_step()
        # --- sense
        before = truth = self.belief if self.belief_kind == "grid" else None
        if self.belief_kind == "grid":
            # The truth cannot change before the step ends (the scenario moved already).
            truth = self._true_map()
            s = cfg.sensing
            self.beliefs.sense(
                _sense_window(truth, self.pos, s.radius, s.pd, s.pfa, self.generator)
            )
        # --- links, exchange (encode, channel, decode, fuse)
        self._update_links()
        info = run_exchange(self, a)
        self.beliefs.refresh()
        self._after_comm()
        # --- reward: the channel cost falls on the uses the agents chose to spend (peer
        # messages and uplinks); the fusion centre's downlinks are not theirs to choose.
        agent_uses = (info["peer_channel_uses"] + info["uplink_channel_uses"]).float()
        cost = cfg.comm.cost_per_channel_use * agent_uses.sum(1)
        belief_reward = self._belief_reward(before)
        reward = task_reward - cost + belief_reward
        info["belief_error"] = self._belief_error(truth)
        success = self._success()
        terminated = success.clone() if self.terminates_on_success else torch.zeros_like(success)
        truncated = (self.t >= cfg.max_steps) & ~terminated
        self.done = terminated | truncated
        info.update(success=success, budget_cap=self.budget_cap, tx_power_dbm=self.tx_power)
        n, w = self.num_agents, cfg.team_reward_weight
        if w == 1.0:
            rew = torch.stack([reward] * n, dim=1)
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
        ``belief_error``, ``success`` and the operating point of the current state.
        Adapters report it at reset (TorchRL builds its specs from the infos of ``reset()``)."""
        info = zero_info(self.num_envs, self.num_agents, self.device)
        info.update(belief_error=self._belief_error().float(), success=self._success())
        info.update(budget_cap=self.budget_cap, tx_power_dbm=self.tx_power)
        return info

    def _update_links(self, mask: torch.Tensor | None = None) -> None:
        """Recompute link SNRs from positions (only in worlds where ``mask [B]`` is True)."""
        ch = self.config.channel
        # One power per world when drawn per episode (every transmitter of the world).
        power = self.comm._p_tx if ch.tx_power_dbm_range is None else self.tx_power.view(-1, 1)
        peer, fc = _link_snr_db(
            self.pos,
            self.fc_pos,
            self.comm.pathloss._snr_db,
            power,
            self.comm._noise,
            self.generator,
            ch.shadowing_std_db > 0,
            ch.cell_size_m,
        )
        if mask is not None:
            peer = torch.where(mask.view(-1, 1, 1), peer, self.peer_snr)
            fc = torch.where(mask.view(-1, 1), fc, self.fc_snr)
        self.peer_snr, self.fc_snr = peer, fc
        thr = self.config.channel.link_threshold_db
        self.adj = _adjacency(self.peer_snr, thr)
        self.fc_ok = self.fc_snr >= thr

    def observation(self) -> torch.Tensor:
        """``[B, N, Do]`` float32 in ``[-1, 1]`` (:func:`~agentcomm.envs.observe.observation`)."""
        return observe.observation(self)

    def state(self) -> torch.Tensor:
        """``[B, Ds]`` global state for centralized critics (:func:`~agentcomm.envs.observe.state`)."""
        return observe.state(self)

    def true_map(self) -> torch.Tensor:
        """bool ``[B, H, W]``: the ground truth the sensors detect (grid scenarios): targets
        for training receivers and for metrics, never an agent's knowledge."""
        if self.belief_kind != "grid":
            raise ValueError(
                f"{self.env_id} has belief_kind={self.belief_kind!r}; a true map exists only "
                "for grid scenarios"
            )
        return self._true_map()

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

    agents = property(lambda self: [f"agent_{i}" for i in range(self.num_agents)])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(num_envs={self.num_envs}, num_agents={self.num_agents}, "
            f"device={self.device}, mode={self.config.comm.mode!r}, "
            f"codec={self.config.comm.codec!r}, budget={self.config.comm.budget})"
        )
