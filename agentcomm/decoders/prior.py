r"""A diffusion prior over belief maps.

The prior is a DDPM (Ho et al., NeurIPS 2020) over normalized log-odds maps
:math:`x_0 = \mathrm{clip}(\ell, -L, L)/L \in [-1, 1]^{H \times W}`, with a network that
predicts :math:`v` (default), :math:`\epsilon` or :math:`x_0` (see :class:`PriorConfig`),
from which :math:`\epsilon_\theta(x_t, t)` follows. The schedule, the forward noising and
the DDIM reverse step (deterministic, per map, so that every message can start from its
own SNR-matched step) come from :mod:`agentcomm.diffusion`, where the equations are
written out; :func:`ddim_step` and :func:`ddim_timesteps` are re-exported here for the
receivers.

Denoisers: ``"mlp"`` (a residual MLP with a sinusoidal time embedding; fast at
batch 1, the default) or ``"unet"`` (a tiny diffusers :class:`~diffusers.UNet2DModel`,
several times slower per forward at batch 1 on a CPU).

Shape legend: ``M`` maps, ``H x W`` grid, ``S`` sampling steps.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from diffusers import UNet2DModel
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn

from agentcomm._checks import check_positive, check_range
from agentcomm.config import Config, choices, rng
from agentcomm.decoders.data import check_maps, from_unit, to_unit
from agentcomm.decoders.optimize import fit
from agentcomm.diffusion import (
    BETA_SCHEDULES,
    PREDICTIONS,
    BetaSchedule,
    Prediction,
    ddim_sigma,
    ddim_step,
    ddim_timesteps,
    ddpm_scheduler,
    eps_from_prediction,
)

__all__ = [
    "DiffusionPrior",
    "PriorConfig",
    "ddim_step",
    "ddim_step_eta",
    "ddim_timesteps",
    "train_prior",
]

Backbone = Literal["mlp", "unet"]


@dataclass(frozen=True)
class PriorConfig(Config):
    r"""Architecture and noise schedule of a :class:`DiffusionPrior`.

    Attributes:
        height: grid rows ``H``.
        width: grid columns ``W``.
        clip: log-odds bound ``L`` (nats).
        backbone: ``"mlp"`` or ``"unet"``.
        hidden: MLP width.
        depth: number of residual MLP blocks.
        unet_channels: ``block_out_channels`` of the UNet (``H`` and ``W`` must be
            divisible by ``2 ** (len - 1)``).
        num_train_timesteps: diffusion steps ``T``.
        beta_schedule: a diffusers beta schedule
            (:data:`agentcomm.diffusion.BETA_SCHEDULES`).
        prediction: what the network outputs: ``"epsilon"`` (Ho et al.), ``"sample"``
            (:math:`x_0` directly) or ``"v_prediction"``
            (:math:`v = \sqrt{\bar\alpha_t}\epsilon - \sqrt{1-\bar\alpha_t}x_0`, Salimans &
            Ho, ICLR 2022; the default), each trained by MSE on its own target. Either way
            :meth:`DiffusionPrior.eps` returns the implied noise
            :math:`\epsilon = (x_t - \sqrt{\bar\alpha_t}\hat x_0)/\sqrt{1-\bar\alpha_t}`.
    """

    height: int = field(default=16, metadata=rng(1))
    width: int = field(default=16, metadata=rng(1))
    clip: float = field(default=6.0, metadata=rng(0.0, low_inclusive=False))
    backbone: Backbone = field(default="mlp", metadata=choices("mlp", "unet"))
    hidden: int = field(default=512, metadata=rng(1))
    depth: int = field(default=3, metadata=rng(1))
    unet_channels: tuple[int, ...] = (32, 64)
    num_train_timesteps: int = field(default=1000, metadata=rng(2))
    beta_schedule: BetaSchedule = field(
        default="squaredcos_cap_v2", metadata=choices(*BETA_SCHEDULES)
    )
    prediction: Prediction = field(default="v_prediction", metadata=choices(*PREDICTIONS))

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        if not self.unet_channels or min(self.unet_channels) < 1:
            raise ValueError(
                f"{prefix}unet_channels={self.unet_channels!r} is not allowed; expected a "
                "non-empty list of integers >= 1"
            )
        if self.backbone == "unet":
            f = 2 ** (len(self.unet_channels) - 1)
            if self.height % f or self.width % f:
                raise ValueError(
                    f"{prefix}height={self.height}, {prefix}width={self.width} must be "
                    f"divisible by {f} for {prefix}unet_channels={self.unet_channels}"
                )


class _MLPDenoiser(nn.Module):
    """Residual MLP :math:`\\epsilon_\\theta(x_t, t)` on flattened maps."""

    def __init__(self, n: int, hidden: int, depth: int) -> None:
        super().__init__()
        self.t_dim = 128
        self.t_mlp = nn.Sequential(
            nn.Linear(self.t_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden)
        )
        self.inp = nn.Linear(n, hidden)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            for _ in range(depth)
        )
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.SiLU(), nn.Linear(hidden, n))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.t_mlp(get_timestep_embedding(t, self.t_dim))
        h = self.inp(x.flatten(1)) + emb
        for block in self.blocks:
            h = h + block(h)
        return self.out(h).view_as(x)


class _UNetDenoiser(nn.Module):
    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.unet = UNet2DModel(
            sample_size=(config.height, config.width),
            in_channels=1,
            out_channels=1,
            layers_per_block=1,
            block_out_channels=config.unet_channels,
            down_block_types=("DownBlock2D",) * len(config.unet_channels),
            up_block_types=("UpBlock2D",) * len(config.unet_channels),
            norm_num_groups=min(8, config.unet_channels[0]),
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.unet(x.unsqueeze(1), t).sample.squeeze(1)


class DiffusionPrior(nn.Module):
    """:math:`p_\\theta(x_0)` over normalized belief maps, with an :math:`\\epsilon`-predictor.

    Args:
        config: architecture and schedule.

    Example:
        >>> import torch
        >>> prior = DiffusionPrior(PriorConfig(height=8, width=8, hidden=32, depth=1))
        >>> prior.sample(3, steps=4, generator=torch.Generator().manual_seed(0)).shape
        torch.Size([3, 8, 8])
    """

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        if not isinstance(config, PriorConfig):
            raise ValueError(f"config must be a PriorConfig, got {type(config).__name__}")
        self.config = config
        self.scheduler = ddpm_scheduler(
            config.num_train_timesteps, config.beta_schedule, config.prediction
        )
        # Derived from the config, so not saved with the weights.
        self.register_buffer(
            "alphas_cumprod", self.scheduler.alphas_cumprod.float().clone(), persistent=False
        )
        if config.backbone == "mlp":
            self.net: nn.Module = _MLPDenoiser(
                config.height * config.width, config.hidden, config.depth
            )
        else:
            self.net = _UNetDenoiser(config)

    @property
    def num_train_timesteps(self) -> int:
        return self.config.num_train_timesteps

    def eps(self, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """:math:`\\epsilon_\\theta(x_t, t)`: float ``[M, H, W]`` and long ``[M]`` -> float ``[M, H, W]``."""
        out = self.net(x_t, t)
        if self.config.prediction == "epsilon":
            return out
        return eps_from_prediction(out, x_t, self.alphas_cumprod[t], self.config.prediction)

    def noise_to_signal(self) -> torch.Tensor:
        """:math:`(1 - \\bar\\alpha_t)/\\bar\\alpha_t` for ``t = 0..T-1``: float32 ``[T]``, increasing."""
        a = self.alphas_cumprod
        return (1.0 - a) / a

    def loss(self, x0: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Denoising loss :math:`\\mathbb E\\|\\epsilon - \\epsilon_\\theta(x_t, t)\\|^2` (Ho et al. eq. 14).

        Args:
            x0: float ``[M, H, W]`` normalized maps in ``[-1, 1]``.
            generator: source of ``t`` and :math:`\\epsilon`.
        Returns:
            scalar tensor.
        """
        dev = generator.device
        t = torch.randint(
            0, self.num_train_timesteps, (x0.shape[0],), generator=generator, device=dev
        )
        noise = torch.randn(x0.shape, generator=generator, device=dev)
        x_t = self.scheduler.add_noise(x0, noise, t)
        if self.config.prediction == "epsilon":
            target = noise
        elif self.config.prediction == "sample":
            target = x0
        else:
            target = self.scheduler.get_velocity(x0, noise, t)
        return nn.functional.mse_loss(self.net(x_t, t), target)

    def denoise(
        self,
        x_t: torch.Tensor,
        t_start: torch.Tensor,
        steps: int,
        guidance: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Run DDIM from per-map start steps down to a clean map.

        Args:
            x_t: float ``[M, H, W]``, the noisy maps at their start steps.
            t_start: long ``[M]``, start step of each map in ``[0, T-1]``.
            steps: DDIM steps ``S`` (network evaluations).
            guidance: optional ``(x_t [M, H, W], t [M], abar_prev [M]) -> x_prev [M, H, W]``
                that replaces the plain DDIM step (posterior sampling uses it); it may
                need gradients, so the loop does not disable autograd itself.
            eta: stochasticity of the plain step (:func:`ddim_step_eta`): 0 is deterministic
                DDIM, 1 the DDPM posterior's noise (ancestral sampling of
                :math:`p(x_0 \\mid x_t)`). Ignored with ``guidance``.
            generator: source of the step noise; required when ``eta > 0``.
        Returns:
            float ``[M, H, W]``: normalized maps :math:`\\hat x_0` in ``[-1, 1]``.
        """
        check_range("eta", eta, 0.0, 1.0)
        if eta > 0 and generator is None:
            raise ValueError(f"generator is None with eta={eta}: stochastic steps need one")
        grid = ddim_timesteps(t_start, steps)
        a = self.alphas_cumprod
        one = torch.ones_like(a[:1]).expand(x_t.shape[0])
        x = x_t
        for j in range(steps):
            t = grid[j]
            abar_prev = a[grid[j + 1]] if j + 1 < steps else one
            if guidance is not None:
                x = guidance(x, t, abar_prev)
            elif eta == 0:
                x, _ = ddim_step(x, self.eps(x, t), a[t], abar_prev)
            else:
                x, _ = ddim_step_eta(x, self.eps(x, t), a[t], abar_prev, eta, generator)
        return x.clamp(-1.0, 1.0)

    @torch.no_grad()
    def sample(self, n: int, steps: int, generator: torch.Generator) -> torch.Tensor:
        """Draw ``n`` belief maps with ``steps``-step DDIM from :math:`x_{T-1} \\sim \\mathcal N(0, I)`.

        Args:
            n: maps to draw.
            steps: DDIM steps (network evaluations).
            generator: source of the initial noise.
        Returns:
            float32 ``[n, H, W]`` log-odds in ``[-L, L]`` (nats).
        """
        check_range("n", n, 1, None)
        check_range("steps", steps, 1, self.num_train_timesteps)
        c = self.config
        x = torch.randn(n, c.height, c.width, generator=generator)
        t0 = torch.full((n,), self.num_train_timesteps - 1, dtype=torch.long)
        return from_unit(self.denoise(x, t0, steps), c.clip)


def ddim_step_eta(
    x_t: torch.Tensor,
    eps: torch.Tensor,
    abar_t: torch.Tensor,
    abar_prev: torch.Tensor,
    eta: float,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One DDIM step with noise (Song et al., ICLR 2021, eq. 12), per sample.

    :math:`x_{t'} = \sqrt{\bar\alpha_{t'}}\,\hat x_0 + \sqrt{1 - \bar\alpha_{t'} - \sigma_t^2}
    \,\hat\epsilon + \sigma_t z`, with :math:`\sigma_t` = :func:`~agentcomm.diffusion.ddim_sigma`,
    :math:`\hat x_0` clipped to ``[-1, 1]`` and :math:`\hat\epsilon` re-derived from it (as
    :func:`ddim_step`). ``eta = 0`` is exactly :func:`ddim_step` and draws nothing.

    Args:
        x_t, eps: float ``[M, ...]``.
        abar_t, abar_prev: float ``[M]``.
        eta: in ``[0, 1]``.
        generator: source of :math:`z`; required when ``eta > 0``.
    Returns:
        ``(x_prev [M, ...], x0_hat [M, ...])``.
    """
    if eta == 0:
        return ddim_step(x_t, eps, abar_t, abar_prev)
    if generator is None:
        raise ValueError(f"generator is None with eta={eta}: stochastic steps need one")
    shape = (-1, *([1] * (x_t.dim() - 1)))
    a_t = abar_t.view(shape)
    a_p = abar_prev.view(shape)
    x0 = ((x_t - (1.0 - a_t).sqrt() * eps) / a_t.sqrt()).clamp(-1.0, 1.0)
    eps = (x_t - a_t.sqrt() * x0) / (1.0 - a_t).sqrt()
    sigma = ddim_sigma(a_t, a_p, eta)
    z = torch.randn(x_t.shape, generator=generator, device=x_t.device, dtype=x_t.dtype)
    direction = (1.0 - a_p - sigma.square()).clamp_min(0.0).sqrt()
    return a_p.sqrt() * x0 + direction * eps + sigma * z, x0


def train_prior(
    prior: nn.Module,
    maps: torch.Tensor,
    generator: torch.Generator,
    *,
    steps: int = 3000,
    batch_size: int = 256,
    lr: float = 1e-3,
    progress: Callable[[int, float], None] | None = None,
    parallel: Callable[[nn.Module], nn.Module] | None = None,
) -> list[float]:
    """Fit a generative model of belief maps to ``maps`` by minimizing its own ``loss``.

    One loop serves every such model: the DDPM prior (denoising score matching) and the
    flow prior of :mod:`agentcomm.decoders.flow` (flow matching); each brings its
    ``config`` (``height``, ``width``, ``clip``) and ``loss(x0, generator)``.

    Args:
        prior: a :class:`DiffusionPrior` or a flow prior, trained in place.
        maps: float ``[D, H, W]`` log-odds (nats).
        generator: source of batches, timesteps and noise.
        steps: optimizer steps.
        batch_size: maps per step.
        lr: AdamW learning rate (cosine-decayed to zero).
        progress: optional callback ``(step, loss)``.
        parallel: optional data-parallel wrapper (:func:`~agentcomm.decoders.optimize.fit`).
    Returns:
        The loss of every step (``steps`` floats).
    """
    c = prior.config
    check_maps("maps", maps, c.height, c.width)
    check_range("steps", steps, 1, None)
    check_range("batch_size", batch_size, 1, None)
    check_positive("lr", lr)
    x0_all = to_unit(maps, c.clip).float()

    def loss_at(step: int) -> torch.Tensor:
        idx = torch.randint(
            0, maps.shape[0], (batch_size,), generator=generator, device=generator.device
        )
        return prior.loss(x0_all[idx], generator)

    opt = torch.optim.AdamW(prior.parameters(), lr=lr, weight_decay=0.0)
    return fit(prior, opt, steps, loss_at, progress=progress, parallel=parallel)
