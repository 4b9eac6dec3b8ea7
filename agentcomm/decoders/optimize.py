"""The optimisation loop every learned receiver is trained with."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["fit"]


def fit(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    steps: int,
    loss_at: Callable[[int], torch.Tensor],
    *,
    progress: Callable[[int, float], None] | None = None,
    parallel: Callable[[nn.Module], nn.Module] | None = None,
) -> list[float]:
    """Take ``steps`` optimizer steps on ``loss_at(step)``, the learning rate decayed to zero
    on a cosine (``CosineAnnealingLR``); ``model`` trains in train mode and ends in eval mode.

    Args:
        model: the module whose parameters ``optimizer`` updates.
        optimizer: its optimizer.
        steps: optimizer steps.
        loss_at: the scalar loss of step ``0..steps-1`` (draws its own batch).
        progress: optional callback ``(step, loss)``.
        parallel: optional wrapper for data-parallel training, e.g. Ray Train's
            ``prepare_model`` (``DistributedDataParallel``, which averages the gradients
            across workers during ``backward``). It wraps a module whose ``forward(step)``
            is ``loss_at(step)``, so that the loss passes through the wrapper's ``forward``
            whichever methods of ``model`` it calls.
    Returns:
        The loss of every step (``steps`` floats).
    """
    compute: Callable[[int], torch.Tensor] = loss_at
    if parallel is not None:
        compute = parallel(_StepLoss(model, loss_at))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    losses = []
    model.train()
    for step in range(steps):
        loss = compute(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sched.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step, losses[-1])
    model.eval()
    return losses


class _StepLoss(nn.Module):
    """``model`` as a submodule (its parameters are this module's) with ``forward(step) =
    loss_at(step)``."""

    def __init__(self, model: nn.Module, loss_at: Callable[[int], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.loss_at = loss_at

    def forward(self, step: int) -> torch.Tensor:
        return self.loss_at(step)
