"""Behaviour cloning of a diffusion policy on expert demonstrations (pure torch).

Shape legend: ``D`` demonstrations, ``Do`` observation dim, ``Da`` action dim.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from agentcomm._checks import check_positive, check_range, check_tensor
from agentcomm.policies.checkpoint import save_policy
from agentcomm.policies.diffusion import DiffusionPolicy

__all__ = ["BCResult", "train_bc"]


@dataclass
class BCResult:
    """Outcome of ``train_bc``.

    Attributes:
        losses: Mean epsilon-prediction loss of each epoch (training weights), length
            ``epochs``.
        checkpoint: Directory the EMA policy was saved to, or ``None``.
    """

    losses: list[float] = field(default_factory=list)
    checkpoint: str | None = None


def train_bc(
    policy: DiffusionPolicy,
    obs: torch.Tensor,
    actions: torch.Tensor,
    epochs: int,
    batch_size: int,
    lr: float,
    ema_decay: float,
    generator: torch.Generator,
    progress: bool = True,
    weight_decay: float = 1e-6,
    save_dir: str | os.PathLike | None = None,
    save_metadata: Mapping[str, object] | None = None,
) -> BCResult:
    """Fit ``policy`` to demonstrations with the DDPM loss, keeping an EMA of its weights.

    Minibatches are drawn without replacement each epoch (the last partial batch is kept).
    After training, the EMA weights (``theta_ema <- d theta_ema + (1 - d) theta`` after every
    optimiser step; torch's ``AveragedModel``) are copied into ``policy``, which is what
    diffusion policies are evaluated and fine-tuned with.

    Args:
        policy: The policy to train in place.
        obs: ``[D, Do]`` float observations.
        actions: ``[D, Da]`` float expert actions in ``[-1, 1]`` (``[D, Ta, Da]`` chunks when
            the policy's ``action_horizon`` ``Ta > 1``).
        epochs: Passes over the data, >= 1.
        batch_size: Minibatch size, >= 1.
        lr: AdamW learning rate, > 0.
        ema_decay: EMA decay ``d`` in ``[0, 1)``.
        generator: Source of the shuffling, step indices and noise.
        progress: Show a tqdm bar over epochs.
        weight_decay: AdamW weight decay, >= 0.
        save_dir: If given, the EMA policy is saved there with ``save_policy``.
        save_metadata: Extra metadata for the checkpoint's ``config.json``.

    Returns:
        ``BCResult`` with per-epoch losses.
    """
    check_range("epochs", epochs, 1)
    check_range("batch_size", batch_size, 1)
    check_positive("lr", lr)
    check_range("ema_decay", ema_decay, 0.0, 1.0, high_inclusive=False)
    check_range("weight_decay", weight_decay, 0.0)
    check_tensor("obs", obs, shape=(None, policy.config.obs_dim), finite=True)
    horizon = policy.config.action_horizon
    want = (obs.shape[0], policy.config.action_dim)
    if horizon > 1:  # action chunks [D, Ta, Da] (DiffusionConfig.action_horizon)
        want = (obs.shape[0], horizon, policy.config.action_dim)
    check_tensor("actions", actions, shape=want, finite=True)
    if obs.shape[0] == 0:
        raise ValueError("obs has 0 rows; need at least one demonstration")
    if bool((actions.abs() > 1.0).any()):
        raise ValueError("actions must lie in [-1, 1]")

    optimizer = torch.optim.AdamW(policy.denoiser.parameters(), lr=lr, weight_decay=weight_decay)
    ema = AveragedModel(
        policy.denoiser, multi_avg_fn=get_ema_multi_avg_fn(ema_decay), use_buffers=True
    )
    result = BCResult()
    policy.train()
    num = obs.shape[0]
    for _ in tqdm(range(epochs), desc="BC", disable=not progress):
        order = torch.randperm(num, generator=generator).to(obs.device)
        total = 0.0
        for start in range(0, num, batch_size):
            idx = order[start : start + batch_size]
            loss = policy.loss_bc(obs[idx], actions[idx], generator=generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            ema.update_parameters(policy.denoiser)
            total += float(loss.detach()) * idx.numel()
        result.losses.append(total / num)
    policy.denoiser.load_state_dict(ema.module.state_dict())
    policy.eval()
    if save_dir is not None:
        meta = {
            "trainer": "bc",
            "epochs": epochs,
            "batch_size": batch_size,
            "lr": lr,
            "ema_decay": ema_decay,
            "weight_decay": weight_decay,
            "final_loss": result.losses[-1],
            **dict(save_metadata or {}),
        }
        result.checkpoint = str(save_policy(save_dir, policy, meta))
    return result
