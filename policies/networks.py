"""Noise-prediction networks for observation-conditioned diffusion policies.

Shape legend (used in every docstring of this package):

- ``B``: flat batch (environment batch times agents, flattened).
- ``K``: number of DDPM denoising steps the network was trained with.
- ``Da``: action dimension.
- ``Do``: observation dimension.
- ``Ta``: action horizon (actions per chunk). The networks here predict one action
  (``Ta = 1``); a chunk of ``Ta`` actions can be flattened into ``Da``.

Only a residual MLP is provided: the observation-conditioned tasks in agentcomm use
single-step actions, for which an MLP is the standard choice (Chi et al., "Diffusion
Policy", RSS 2023, use a 1-D temporal U-Net only for long action chunks; diffusers'
``UNet1DModel`` has no global conditioning input, see NOTES.md).
"""

from __future__ import annotations

import torch
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn

from agentcomm._checks import check_range

__all__ = ["ResidualMLPDenoiser", "init_linear_layers"]


def init_linear_layers(module: nn.Module, generator: torch.Generator | None) -> None:
    """Re-initialise every ``nn.Linear`` in ``module`` from ``generator``.

    torch's default layer initialisation draws from the global RNG; this uses the same
    distributions (Kaiming-uniform weights, uniform biases, bound ``1/sqrt(fan_in)``) but
    draws them from an explicit generator so that two constructions with the same seed give
    identical weights (every RLlib env runner and learner builds its own copy).

    Args:
        module: Module whose ``nn.Linear`` children are re-initialised in place.
        generator: CPU generator; ``None`` keeps torch's default initialisation.
    """
    if generator is None:
        return
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            bound = 1.0 / layer.in_features**0.5
            with torch.no_grad():
                layer.weight.copy_(
                    torch.empty(layer.weight.shape).uniform_(-bound, bound, generator=generator)
                )
                if layer.bias is not None:
                    layer.bias.copy_(
                        torch.empty(layer.bias.shape).uniform_(-bound, bound, generator=generator)
                    )


class _ResidualBlock(nn.Module):
    """Pre-norm residual block ``h + W2 mish(W1 LayerNorm(h))``."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.act = nn.Mish()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(self.act(self.fc1(self.norm(h))))


class ResidualMLPDenoiser(nn.Module):
    """Residual MLP that predicts the noise ``eps`` added to an action (DDPM, Ho et al. 2020).

    ``eps_theta(x_t, t, o) = W_out mish(LN(f_depth(... f_1(W_in [x_t, e(t), o]))))`` where
    ``e(t)`` is the sinusoidal step embedding of Vaswani et al. (2017) followed by a small MLP,
    and each ``f_i`` is a pre-norm residual block with LayerNorm and Mish.

    Args:
        obs_dim: ``Do``, observation features the prediction is conditioned on.
        action_dim: ``Da``, action dimension.
        hidden: Width of the residual stream.
        depth: Number of residual blocks.
        time_embed_dim: Width of the step embedding (even).
        generator: Optional CPU generator for the weight initialisation.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: int = 256,
        depth: int = 3,
        time_embed_dim: int = 32,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_range("obs_dim", obs_dim, 1)
        check_range("action_dim", action_dim, 1)
        check_range("hidden", hidden, 1)
        check_range("depth", depth, 0)
        check_range("time_embed_dim", time_embed_dim, 2)
        if time_embed_dim % 2:
            raise ValueError(f"time_embed_dim={time_embed_dim!r} must be even")
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.time_embed_dim = time_embed_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(time_embed_dim, 2 * time_embed_dim),
            nn.Mish(),
            nn.Linear(2 * time_embed_dim, time_embed_dim),
        )
        self.input = nn.Linear(action_dim + time_embed_dim + obs_dim, hidden)
        self.blocks = nn.ModuleList([_ResidualBlock(hidden) for _ in range(depth)])
        self.out_norm = nn.LayerNorm(hidden)
        self.output = nn.Linear(hidden, action_dim)
        self.act = nn.Mish()
        init_linear_layers(self, generator)

    def forward(self, x: torch.Tensor, t: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Predict the noise.

        Args:
            x: Noisy actions ``x_t``, ``[B, Da]`` float.
            t: DDPM step indices in ``[0, K)``, ``[B]`` int64.
            obs: Observations, ``[B, Do]`` float.

        Returns:
            Predicted noise ``eps``, ``[B, Da]`` float.
        """
        temb = self.time_mlp(
            get_timestep_embedding(t, self.time_embed_dim, flip_sin_to_cos=True).to(x.dtype)
        )
        h = self.input(torch.cat([x, temb, obs], dim=-1))
        for block in self.blocks:
            h = block(h)
        return self.output(self.act(self.out_norm(h)))
