"""Success of the first episode of every world of a batched world, for the tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


def first_episode_successes(world: Any, act: Callable[[Any], torch.Tensor]) -> torch.Tensor:
    """Step ``world`` (already reset) with ``act(world)`` until every world's first episode ends.

    Worlds whose episode ended are reset in place and keep stepping with the others, but
    only the first episode of each counts.

    Returns:
        bool ``[B]``: whether each world's first episode succeeded.
    """
    b = world.num_envs
    solved = torch.zeros(b, dtype=torch.bool, device=world.device)
    over = torch.zeros(b, dtype=torch.bool, device=world.device)
    for _ in range(world.config.max_steps):
        _, _, term, trunc, info = world.step(act(world))
        solved |= info["success"] & ~over
        over |= term | trunc
        if bool(over.all()):
            break
        if bool((term | trunc).any()):
            world.reset_at(term | trunc)
    return solved
