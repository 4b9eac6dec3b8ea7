r"""One step's exchange of the batched world: the message plan delivered, fused and accounted.

Shape legend: ``B`` worlds, ``N`` agents, ``M`` messages of one exchange.

The plan (:func:`agentcomm.topology.coordination.message_plan`) says who sends how many
channel uses to whom; :meth:`~agentcomm.envs.comm.CommStack.send` puts each batch of
messages on the air (header with the sender's intent, payload from the belief store); the
belief store (:mod:`agentcomm.beliefs.store`) fuses what arrived; every message is
accounted to the agent that spent its channel uses (the sender of peer messages and
uplinks, the receiver of the centre's downlinks).

Order: the centralized part first (uplinks, then the centre's downlinks), then the
``K`` peer rounds; one host sync per batch (``nonzero``), since the channel draws one fade
per message and so needs their number.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from agentcomm.beliefs.grid import _constant
from agentcomm.topology.coordination import MessagePlan, _message_plan, _metropolis_weights

from .comm import Exchange

if TYPE_CHECKING:
    from .world import CommWorld

__all__ = ["INFO_KEYS", "LINKS", "allocate_intents", "reset_intents", "run_exchange", "zero_info"]

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
    "budget_cap",
    "tx_power_dbm",
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
    "tx_power_dbm",
)
#: ``info`` keys with one value per world ``[B]`` (the rest are per agent ``[B, N]``).
_WORLD_INFO = ("fc_channel_uses", "fc_messages_sent", "success", "budget_cap", "tx_power_dbm")

LINKS = ("peer", "uplink", "downlink")
#: Rows of the per-agent accounting (:func:`_account`): integer counts, then float64 bits.
_COUNT_ROWS = ("channel_uses", *(f"{p}_channel_uses" for p in LINKS), "sent", "delivered")
_BITS_ROWS = ("bits", "bits_delivered", "capacity_bits", *(f"{p}_bits" for p in LINKS))


def zero_info(num_envs: int, num_agents: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Every key of :data:`INFO_KEYS` at zero, in the shape and dtype a step gives it."""
    info: dict[str, torch.Tensor] = {}
    for key in INFO_KEYS:
        shape = (num_envs,) if key in _WORLD_INFO else (num_envs, num_agents)
        dtype = torch.float32 if key in _FLOAT_INFO else torch.long
        info[key] = torch.zeros(shape, dtype=dtype, device=device)
    return info


def allocate_intents(world: CommWorld) -> None:
    """The intents each agent holds of its teammates and the centre holds of the agents:
    ``known_intent [B, N(holder), N, 2]`` cells, their age in steps and the bits per
    coordinate they were heard with (``intent_age``, ``intent_bits [B, N, N]``), and the
    centre's ``fc_intent [B, N, 2]``, ``fc_intent_age``, ``fc_intent_bits [B, N]``."""
    b, n, dev = world.num_envs, world.num_agents, world.device
    world.known_intent = torch.zeros(b, n, n, 2, device=dev)
    world.intent_age = torch.zeros(b, n, n, dtype=torch.long, device=dev)
    world.intent_bits = torch.zeros(b, n, n, dtype=torch.long, device=dev)
    world.fc_intent = torch.zeros(b, n, 2, device=dev)
    world.fc_intent_age = torch.full((b, n), 10**6, dtype=torch.long, device=dev)
    world.fc_intent_bits = torch.zeros(b, n, dtype=torch.long, device=dev)
    world._stale_age = torch.where(world._eye, 0, world.config.intent_max_age)
    world._own_bits = torch.where(world._eye, world.config.comm.intent_bits, 0)


def reset_intents(world: CommWorld, mask: torch.Tensor) -> None:
    """In the worlds where ``mask [B]``: nobody knows a teammate's intent before hearing
    it (the area's centre, fully stale); each agent knows its own exactly."""
    m1, eye = mask.view(-1, 1), world._eye
    world.intent_age = torch.where(m1.unsqueeze(-1), world._stale_age, world.intent_age)
    world.intent_bits = torch.where(m1.unsqueeze(-1), world._own_bits, world.intent_bits)
    world.fc_intent_bits = torch.where(m1, 0, world.fc_intent_bits)
    centre = torch.full_like(world.known_intent, world.grid / 2)
    unknown = torch.where(eye.view(1, *eye.shape, 1), world.intent.unsqueeze(2), centre)
    world.known_intent = torch.where(mask.view(-1, 1, 1, 1), unknown, world.known_intent)
    world.fc_intent = torch.where(m1.unsqueeze(-1), world.grid / 2, world.fc_intent)
    world.fc_intent_age = torch.where(m1, world.config.intent_max_age, world.fc_intent_age)


def run_exchange(world: CommWorld, a: torch.Tensor) -> dict[str, torch.Tensor]:
    """Age the intents every agent holds, deliver the step's message plan for actions
    ``a [B, N, 6]``, and return the accounting ``info`` keys of :meth:`CommWorld.step`."""
    cfg = world.config.comm
    b, n, dev = world.num_envs, world.num_agents, world.device
    # Per-agent accounting, one row per info key (contiguous rows; _account adds each
    # exchange's messages with one index_add, in message order, as key by key).
    counts = torch.zeros(len(_COUNT_ROWS), b * n, dtype=torch.long, device=dev)
    bits = torch.zeros(len(_BITS_ROWS), b * n, dtype=torch.float64, device=dev)
    acc = (counts, bits)
    fc_uses = torch.zeros(b, dtype=torch.long, device=dev)
    fc_msgs = torch.zeros(b, dtype=torch.long, device=dev)
    # Ages grow every step; a received header resets them.
    eye = world._eye
    world.intent_age = (world.intent_age + 1).clamp_max(10**6).masked_fill(eye, 0)
    world.fc_intent_age = (world.fc_intent_age + 1).clamp_max(10**6)
    world.known_intent = torch.where(
        eye.view(1, n, n, 1), world.intent.unsqueeze(2).expand(-1, -1, n, -1), world.known_intent
    )
    if cfg.budget > 0:
        # Drawn caps (comm.budget_levels) bound each world's messages: ``[B, 1]``.
        cap = cfg.budget if cfg.budget_levels is None else world.budget_cap.view(-1, 1)
        plan = _message_plan(
            cfg.mode,
            world.adj,
            world.fc_ok,
            cfg.consensus_rounds,
            cap,
            (a[..., 4] + 1.0) * 0.5,
            (a[..., 5] + 1.0) * 0.5,
        )
        if cfg.mode != "distributed":
            fc_uses, fc_msgs = _centralized(world, plan, acc)
        if cfg.mode != "centralized":
            # The link graph holds for the whole step: its weights are computed once.
            weights = _metropolis_weights(world.adj) if world.beliefs.needs_weights else None
            for _ in range(plan.rounds):
                _peer_round(world, plan, acc, weights)
    rows = dict(zip(_COUNT_ROWS, counts.view(-1, b, n).unbind(0)))
    rows.update(zip(_BITS_ROWS, bits.float().view(-1, b, n).unbind(0)))
    sent, delivered = rows["sent"], rows["delivered"]
    info = {
        k: rows[k] for k in ("channel_uses", *(f"{p}_channel_uses" for p in LINKS), *_BITS_ROWS)
    }
    info["messages_sent"] = sent
    info["messages_delivered"] = delivered
    info["messages_lost"] = sent - delivered
    info["fc_channel_uses"] = fc_uses
    info["fc_messages_sent"] = fc_msgs
    return info


def _account(
    ex: Exchange, row: torch.Tensor, link: str, acc: tuple[torch.Tensor, torch.Tensor]
) -> None:
    """Add an exchange's per-message accounting to the agents ``row [M]`` (flat
    ``env * N + agent``): the sender of peer messages and uplinks, the receiver of
    downlinks (``link`` names which). Each accumulator element adds its messages in
    message order, so the float64 sums are those of one index_add per key."""
    counts, bits = acc
    on_air = ex.channel_uses > 0
    zero = torch.zeros_like(ex.channel_uses)
    link_uses = [ex.channel_uses if p == link else zero for p in LINKS]
    if link != "downlink":
        # A message counts as delivered when any part of it (header or payload) arrived.
        delivered = (ex.header_ok | ex.payload_ok) & on_air
        tail = [on_air.long(), delivered.long()]
    else:
        tail = [zero, zero]
    counts.index_add_(1, row, torch.stack([ex.channel_uses, *link_uses, *tail]))
    zero64 = torch.zeros_like(ex.bits)
    link_bits = [ex.bits if p == link else zero64 for p in LINKS]
    bits.index_add_(1, row, torch.stack([ex.bits, ex.bits_delivered, ex.capacity_bits, *link_bits]))


def _heard(ex: Exchange, row: torch.Tensor, size: int) -> torch.Tensor:
    """long ``[size]``: bits per intent coordinate of the headers that arrived, by ``row``."""
    heard = torch.zeros(size, dtype=torch.long, device=row.device)
    zero = _constant(0, torch.long, row.device)
    return heard.index_put_((row,), torch.where(ex.header_ok, ex.intent_bits, zero))


def _learn_intents(
    world: CommWorld,
    intent: torch.Tensor,
    heard: torch.Tensor,
    record: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A receiver's record ``(known [..., 2], age, bits)`` of the senders' intents after
    their headers: where ``heard`` (long, bits per coordinate, 0 where no header arrived) is
    positive, ``known`` takes ``intent`` at that resolution, ``age`` restarts at 0 and
    ``bits`` becomes ``heard``; elsewhere the record is kept. Peer receivers and the fusion
    centre learn intents alike."""
    known, age, bits = record
    ok = heard > 0
    sent = world.comm._quantize_intent(intent, heard)
    known = torch.where(ok.unsqueeze(-1), sent, known)
    return known, age.masked_fill(ok, 0), torch.where(ok, heard, bits)


def _peer_round(
    world: CommWorld,
    plan: MessagePlan,
    acc: tuple[torch.Tensor, torch.Tensor],
    weights: torch.Tensor | None,
) -> None:
    b, n = world.num_envs, world.num_agents
    env, src, dst = plan.peer.nonzero(as_tuple=True)
    if env.numel() == 0:
        return
    # Flat gathers (take, index_select): the pair (src, dst) of world env is row * n + dst.
    row = env * n + src
    pair = row * n + dst
    beliefs = world.beliefs
    ex = world.comm.send(
        env,
        src,
        dst,
        plan.peer_budget.take(row),
        world.peer_snr.take(pair),
        beliefs.peer_payload(env, src),
        beliefs.prior,
        world.generator,
        goal=beliefs.codec_goal(world.known_intent.reshape(-1, 2).index_select(0, pair)),
    )
    _account(ex, row, "peer", acc)
    # Receivers learn the senders' intents at the header's resolution: dense [B, N, N]
    # updates (receiver, sender) instead of masked selections.
    heard = _heard(ex, (env * n + dst) * n + src, b * n * n).view(b, n, n)
    record = world.known_intent, world.intent_age, world.intent_bits
    world.known_intent, world.intent_age, world.intent_bits = _learn_intents(
        world, world.intent.unsqueeze(1), heard, record
    )
    beliefs.receive_peer(ex, weights)


def _centralized(
    world: CommWorld, plan: MessagePlan, acc: tuple[torch.Tensor, torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Uplinks then downlinks; returns the centre's channel uses and messages ``[B]``."""
    b, n, dev = world.num_envs, world.num_agents, world.device
    beliefs = world.beliefs
    fc_uses = torch.zeros(b, dtype=torch.long, device=dev)
    # --- uplink: own evidence and intent to the fusion centre
    env, src = plan.uplink.nonzero(as_tuple=True)
    if env.numel() > 0:
        row = env * n + src
        ex = world.comm.send(
            env,
            src,
            torch.full_like(src, -1),
            plan.uplink_budget.take(row),
            world.fc_snr.take(row),
            beliefs.uplink_payload(env, src),
            beliefs.prior,
            world.generator,
            # The sender's fresh evidence lies around it: its cells go first.
            goal=beliefs.codec_goal(world.pos.reshape(-1, 2).index_select(0, row)),
        )
        _account(ex, row, "uplink", acc)
        heard = _heard(ex, row, b * n).view(b, n)
        record = world.fc_intent, world.fc_intent_age, world.fc_intent_bits
        world.fc_intent, world.fc_intent_age, world.fc_intent_bits = _learn_intents(
            world, world.intent, heard, record
        )
        beliefs.receive_uplink(ex)
    # --- downlink: the fused belief and every intent to each agent in range
    env, dst = plan.downlink.nonzero(as_tuple=True)
    if env.numel() == 0:
        return fc_uses, torch.zeros_like(fc_uses)
    fc_payload = beliefs.centre_payload()
    row = env * n + dst
    down = plan.downlink_budget
    ex = world.comm.send(
        env,
        torch.full_like(dst, -1),
        dst,
        down.view(-1).take(env) if isinstance(down, torch.Tensor) else torch.full_like(dst, down),
        world.fc_snr.take(row),
        None if fc_payload is None else (fc_payload, env),
        beliefs.prior,
        world.generator,
        intents=n,
        # The receiver's goal as the centre heard it (it knows no more).
        goal=beliefs.codec_goal(world.fc_intent.reshape(-1, 2).index_select(0, row)),
    )
    _account(ex, row, "downlink", acc)
    fc_uses = fc_uses.index_add(0, env, ex.channel_uses)
    fc_msgs = torch.zeros_like(fc_uses).index_add(0, env, (ex.channel_uses > 0).long())
    heard = _heard(ex, row, b * n).view(b, n, 1)  # [B, receiver, 1]
    ok = heard > 0
    # The FC relays intents at the resolution it received them; re-quantizing at the
    # downlink's resolution can only coarsen them further.
    relayed = world.comm._quantize_intent(world.fc_intent.unsqueeze(1), heard)
    world.known_intent = torch.where(ok.unsqueeze(-1), relayed, world.known_intent)
    world.intent_age = torch.where(ok, world.fc_intent_age.unsqueeze(1), world.intent_age)
    world.intent_bits = torch.where(
        ok, torch.minimum(world.fc_intent_bits.unsqueeze(1), heard), world.intent_bits
    )
    beliefs.receive_downlink(ex)
    return fc_uses, fc_msgs
