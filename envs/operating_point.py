"""The operating point of each world's episode: its budget cap and transmit power.

With ``comm.budget_levels`` each world draws its budget cap (channel uses per link per step)
uniformly from the levels at every reset, and with ``channel.tx_power_dbm_range`` its
transmit power uniformly in the range (every link of the world moves with it); without
them both stay at ``comm.budget`` and ``channel.tx_power_dbm`` and nothing is drawn, so the
world's random stream is that of a fixed operating point. One policy can then be trained
across the whole success-versus-bandwidth curve (the observation shows the point when
``observe_operating_point`` is set).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .world import CommWorld

__all__ = ["allocate_operating_point", "draw_operating_point"]


def allocate_operating_point(world: CommWorld) -> None:
    """``world.budget_cap`` long ``[B]`` and ``world.tx_power`` float ``[B]`` (dBm) at the
    configured values, and the levels to draw from."""
    cfg, b, dev = world.config, world.num_envs, world.device
    levels = cfg.comm.budget_levels
    world._budget_levels = None if levels is None else torch.tensor(levels, device=dev)
    world.budget_cap = torch.full((b,), cfg.comm.budget, dtype=torch.long, device=dev)
    world.tx_power = torch.full((b,), cfg.channel.tx_power_dbm, device=dev)


def draw_operating_point(world: CommWorld, mask: torch.Tensor) -> None:
    """Draw the budget cap and transmit power of the worlds where ``mask [B]`` is True from
    the world's generator (module docstring); the other worlds keep theirs."""
    b, gen = world.num_envs, world.generator
    levels = world._budget_levels
    if levels is not None:
        pick = torch.randint(levels.numel(), (b,), generator=gen, device=world.device)
        world.budget_cap = torch.where(mask, levels.take(pick), world.budget_cap)
    span = world.config.channel.tx_power_dbm_range
    if span is not None:
        u = torch.rand(b, generator=gen, device=world.device)
        world.tx_power = torch.where(mask, span[0] + (span[1] - span[0]) * u, world.tx_power)
