"""The hooks a scenario overrides, and the views of the world's beliefs it may use.

A scenario (one file under ``envs/scenarios``) subclasses :class:`~agentcomm.envs.world.CommWorld`
and overrides what it needs of :class:`ScenarioHooks`: its objects (:meth:`_allocate`,
:meth:`_reset_scenario`), their motion and the task reward (:meth:`_scenario_step`),
success, observation extras and critic state, and, when its agents share something other
than log-odds grids or nothing, its belief store (:meth:`_make_beliefs`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from agentcomm.beliefs.store import BeliefStore, LogOddsGridStore, NoBeliefs

if TYPE_CHECKING:
    from .config import WorldConfig

__all__ = ["ScenarioHooks"]


class ScenarioHooks:
    """The scenario hooks of the batched world, with their defaults (the world's own
    attributes, ``config``, ``num_envs``, ``pos`` and the rest, are set by
    :class:`~agentcomm.envs.world.CommWorld`)."""

    config: WorldConfig
    beliefs: BeliefStore
    belief_kind: str
    num_envs: int
    num_agents: int
    grid: int
    device: torch.device
    prior: float
    known_intent: torch.Tensor
    intent: torch.Tensor
    intent_bits: torch.Tensor

    def _make_beliefs(self) -> BeliefStore:
        """The world's belief store (:mod:`agentcomm.beliefs.store`): log-odds grids for
        ``belief_kind="grid"``, none for ``"none"``; scenarios with beliefs of their own
        return theirs."""
        if self.belief_kind == "none":
            return NoBeliefs()
        cfg = self.config
        return LogOddsGridStore(
            self.num_envs,
            self.num_agents,
            self.grid,
            self.device,
            self.prior,
            cfg.comm.logodds_clip,
            cfg.sensing.pd,
            cfg.sensing.pfa,
            cfg.comm.mode,
            cfg.comm.fusion,
        )

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

    def _scenario_state_dim(self) -> int:
        raise NotImplementedError

    def _scenario_state(self) -> torch.Tensor:
        """``[B, D]`` global scenario state for centralized critics."""
        raise NotImplementedError

    def _success(self) -> torch.Tensor:
        """bool ``[B]``: the task is accomplished (terminates the episode when True)."""
        raise NotImplementedError

    def _after_comm(self) -> None:
        """Hook after the exchange and fusion (e.g. tracking scores its fused tracks here)."""

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
            return self.beliefs.error(self._true_map() if truth is None else truth)
        # [B, N, N] distances from the held intents to the true ones
        err = torch.linalg.vector_norm(self.known_intent - self.intent.unsqueeze(1), dim=-1)
        return err.sum(-1) / max(self.num_agents - 1, 1)

    # ------------------------------------------------------------------ grid beliefs
    belief = property(
        lambda self: self.beliefs.belief,
        lambda self, value: setattr(self.beliefs, "belief", value),
        doc="float ``[B, N, H, W]``: each agent's fused log-odds belief (grid scenarios).",
    )
    local = property(
        lambda self: self.beliefs.local,
        doc="float ``[B, N, H, W]``: each agent's own evidence, log-odds (grid scenarios).",
    )

    @property
    def intent_resolution(self) -> torch.Tensor:
        """``[B, N, N]`` side (cells) of the quantization cell of the intent agent ``i`` holds
        for agent ``j``: ``grid_size / 2**bits``, the whole area when nothing was heard."""
        return self.grid / torch.exp2(self.intent_bits.float())
