r"""Scripted experts, one per scenario: the floor every learned policy must beat,
and the source of demonstrations for behaviour cloning.

Each expert reads only what an agent could know: its own fused belief and its own
evidence, the intents it has received with their ages and resolutions, its own past
positions this episode, the known site positions and its own radio configuration; never
the ground truth. So its success depends on communication the way a learned policy's does.
Every rule is a decision on the agent's posterior (expected victims, detections or
tracking per step of travel), so more accurate information can only help it: an exact map
is worth at least a blurred one, a larger budget at least a smaller one, and a link that
loses most messages at least no link. Where a rule needs teammates to agree (the
SearchRescue-v0 territories), an agent departs from the convention it would follow without
messages only when what it heard makes it likely that its teammates departed too
(:func:`~agentcomm.envs.scenarios.search_rescue_expert._territories`), so partial
information never splits the team. All experts are batched over ``[B, N]`` and
deterministic.

Shared pieces:

* **Deconfliction by announced intents** (:func:`~agentcomm.envs.expert_base._yields`).
  Agent :math:`i` leaves a point :math:`x` (a probable victim, a target) to teammate
  :math:`j` when :math:`j`'s fresh announced goal :math:`\hat g_j` lies within the claim
  radius :math:`R` of :math:`x` and :math:`j` is the better claimant. Unless :math:`i`
  itself announced :math:`x` last step, the better claimant is the nearer one,
  :math:`\lVert\hat g_j - x\rVert + s_j < \lVert p_i - x\rVert` (:math:`s_j` the worst-case
  error of a coarsely received intent, half the diagonal of its quantization cell), so
  nobody walks to a victim a teammate is already standing over. Once :math:`i` has announced
  :math:`x` it yields only to lower indices: two agents that both announced :math:`x` settle
  in one step, and an agent does not abandon its goal because a teammate it repels still
  announces it (with the symmetric rule both left, then both came back, step after step).
* **Memory** (:func:`~agentcomm.envs.expert_base._memory`,
  :func:`~agentcomm.envs.expert_base._recall`): what an agent remembers of its own episode
  (where it has been, what its own sensor reported, where it has searched), kept per world,
  reset where ``world.t == 0`` and advanced once per step (a second call on the same state
  reuses it, so one state always gets one answer). It is exact when the expert is called
  every step.
* **Actions** (:func:`~agentcomm.envs.expert_base._act`): full speed toward the goal, the
  goal announced as the intent (SearchRescue-v0 announces the start position during the
  first steps instead), the whole budget used (component 4 = 1) and, in hybrid mode, half of
  it on the uplink (component 5 = 0).

Shape legend: ``B`` worlds, ``N`` agents, ``C = H * W`` cells, ``M`` sweep waypoints,
``K`` candidate cells, ``T`` targets.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch

from .scenarios.intent_coverage_expert import intent_coverage_expert
from .scenarios.search_rescue_expert import search_rescue_expert
from .scenarios.target_tracking_expert import target_tracking_expert
from .world import ACTION_DIM, CommWorld

__all__ = [
    "EXPERTS",
    "EXPERT_VARIANTS",
    "expert_actions",
    "expert_variants",
    "oracle_actions",
    "random_actions",
]

#: Expert policy of each scenario id.
EXPERTS: dict[str, Callable[[CommWorld], torch.Tensor]] = {
    "SearchRescue-v0": search_rescue_expert,
    "IntentCoverage-v0": intent_coverage_expert,
    "TargetTracking-v0": target_tracking_expert,
}


#: Named variants of a scenario's expert besides ``"default"`` (:data:`EXPERTS`): teachers
#: for behaviour cloning (``bc.expert``) that decide alike but act otherwise in some respect.
#: ``"on_demand"``: IntentCoverage-v0's assignment with event-triggered messages
#: (:func:`~agentcomm.envs.scenarios.intent_coverage_expert.intent_coverage_expert`).
EXPERT_VARIANTS: dict[str, dict[str, Callable[[CommWorld], torch.Tensor]]] = {
    "IntentCoverage-v0": {
        "on_demand": functools.partial(intent_coverage_expert, transmit="on_demand")
    },
}


def expert_variants(env_id: str) -> tuple[str, ...]:
    """The expert variants ``env_id`` offers: ``"default"`` first, then its named ones."""
    return ("default", *EXPERT_VARIANTS.get(env_id, {}))


def expert_actions(world: CommWorld, variant: str = "default") -> torch.Tensor:
    """``[B, N, 6]`` actions of the scenario's expert (or of its ``variant``,
    :func:`expert_variants`) for the current state."""
    if world.env_id not in EXPERTS:
        raise ValueError(
            f"no expert for env_id={world.env_id!r}; experts exist for {sorted(EXPERTS)}"
        )
    if variant == "default":
        return EXPERTS[world.env_id](world)
    variants = EXPERT_VARIANTS.get(world.env_id, {})
    if variant not in variants:
        raise ValueError(
            f"expert={variant!r} is not allowed for {world.env_id}; choose one of "
            f"{list(expert_variants(world.env_id))}"
        )
    return variants[variant](world)


@contextlib.contextmanager
def _revealed(world: CommWorld) -> Iterator[None]:
    r"""Within the block every agent's belief is the true state (restored on exit).

    SearchRescue-v0: each agent's fused belief and own evidence are the true victim map at
    the log-odds clip (:math:`\pm` ``logodds_clip``). TargetTracking-v0: each agent's track of
    every target is the target's true position and velocity with a covariance of
    ``1e-4`` cells^2. IntentCoverage-v0: each agent holds every teammate's true intent, fresh
    and at full resolution."""
    if world.env_id == "IntentCoverage-v0":
        names, owner = ("known_intent", "intent_age", "intent_bits"), world
        b, n = world.num_envs, world.num_agents
        truth = (
            world.intent.unsqueeze(1).expand(b, n, n, 2).clone(),
            torch.zeros_like(world.intent_age),
            torch.full_like(world.intent_bits, 24),
        )
    elif world.env_id == "TargetTracking-v0":
        names, owner = ("track_mean", "track_cov"), world.beliefs
        mean = world.target.unsqueeze(1).expand_as(owner.track_mean).clone()
        cov = torch.eye(4, device=world.device).mul(1e-4).expand_as(owner.track_cov).clone()
        truth = (mean, cov)
    elif world.env_id == "SearchRescue-v0":
        names, owner = ("belief", "local"), world.beliefs
        clip = world.config.comm.logodds_clip
        grid = torch.where(world._true_map(), clip, -clip).unsqueeze(1)
        truth = (grid.expand_as(owner.belief).clone(), grid.expand_as(owner.local).clone())
    else:
        raise ValueError(
            f"no oracle for env_id={world.env_id!r}; oracles exist for {sorted(EXPERTS)}"
        )
    saved = [getattr(owner, name) for name in names]
    for name, value in zip(names, truth):
        setattr(owner, name, value)
    try:
        yield
    finally:
        for name, value in zip(names, saved):
            setattr(owner, name, value)


def oracle_actions(world: CommWorld) -> torch.Tensor:
    """``[B, N, 6]``: the scenario's expert deciding on the true state (:func:`_revealed`),
    as if the team shared the state of the world itself rather than what it sensed: the
    reference no communication scheme can lift the expert above. It reads the ground truth,
    so it is a reference, never a policy to learn from; the world itself (what is sent,
    fused and scored) is untouched."""
    with _revealed(world):
        return expert_actions(world)


def random_actions(world: CommWorld, generator: torch.Generator | None = None) -> torch.Tensor:
    """``[B, N, 6]`` uniform random actions in ``[-1, 1]``."""
    shape = (world.num_envs, world.num_agents, ACTION_DIM)
    return torch.rand(shape, generator=generator, device=world.device) * 2 - 1
