"""The action of every agent of the batched world, and the check at the step's door.

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
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from agentcomm._checks import check_tensor

if TYPE_CHECKING:
    from .world import CommWorld

__all__ = ["ACTION_DIM", "check_actions", "step_input"]

ACTION_DIM = 6


def check_actions(world: CommWorld, actions: torch.Tensor) -> torch.Tensor:
    """Validate ``[B, N, 6]`` float actions; clip to ``[-1, 1]`` (module docstring)."""
    check_tensor(
        "actions",
        actions,
        shape=(world.num_envs, world.num_agents, ACTION_DIM),
        dtypes=(torch.float32, torch.float64),
        finite=True,
    )
    return actions.to(device=world.device, dtype=torch.float32).clamp(-1.0, 1.0)


def step_input(world: CommWorld, actions: torch.Tensor) -> torch.Tensor:
    """:func:`check_actions` and the finished-worlds check of :meth:`CommWorld.step` with one host
    sync: one flag from the done mask and the sum of the actions (finite unless an
    entry is NaN or inf, or the float32 sum overflows); only a raised flag runs the
    exact checks, which raise or let a merely large sum through."""
    check_tensor(
        "actions",
        actions,
        shape=(world.num_envs, world.num_agents, ACTION_DIM),
        dtypes=(torch.float32, torch.float64),
    )
    a = actions
    if actions.dtype != torch.float32 or actions.device != world.device:
        a = actions.to(device=world.device, dtype=torch.float32)
    if bool(world.done.any() | ~torch.isfinite(a.sum())):
        if bool(world.done.any()):
            idx = world.done.nonzero().squeeze(1)[:8].tolist()
            raise ValueError(
                f"step() called on finished worlds {idx}; call reset() or reset_at(mask) first"
            )
        check_tensor("actions", actions, finite=True)
    return a.clamp(-1.0, 1.0)
