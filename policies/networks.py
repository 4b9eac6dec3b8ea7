"""Noise-prediction networks for observation-conditioned diffusion policies.

Shape legend (used in every docstring of this package):

- ``B``: flat batch (environment batch times agents, flattened).
- ``K``: number of DDPM denoising steps the network was trained with.
- ``Da``: action dimension.
- ``Do``: observation dimension.
- ``Ta``: action horizon (actions per chunk).
- ``C``: channels of the 1-D U-Net's first level.
- ``Dt``: width of a step-table row (the MLP's width, the U-Net's step embedding).

Two predictors share one interface, ``forward(x [B, Ta*Da], t [B], obs [B, Do]) -> eps
[B, Ta*Da]`` (a flat chunk, so that the sampler's tables, chains and likelihoods do not
depend on the network), and a bound form that a sampler uses, ``bind() -> BoundDenoiser``:
``eps = predict(x, step_table[t], prepare(obs))``. It splits off the work that does not
change along a denoising chain:

- ``step_table [K, Dt]``: what depends on the step alone (the step embedding ``MLP(e(t))``,
  and for the MLP its product with the input layer's step columns), computed once for all
  ``K`` steps rather than at every chain step. Computing it over the ``K`` rows, never over
  the batch, also makes a row independent of the batch size (CPU matmul kernels may round
  differently for different row counts; MKL takes another kernel below four rows).
- ``prepare(obs) -> ctx``: what depends on the observation alone, computed once per chain
  (for the MLP, the input layer's observation columns: ``Do`` of its ``Da + E + Do`` input
  features, so a 5-step chain multiplies them once instead of five times).
- ``predict(x, row, ctx)``: the rest, at every step.

``forward`` is exactly this composition, so a chain sampled through the bound form and the
module's ``forward`` agree bit for bit.

- ``ResidualMLPDenoiser``: a residual MLP over the flat chunk; the standard choice for
  single-step actions (``Ta = 1``).
- ``UNet1DFiLMDenoiser``: a small 1-D temporal U-Net over the chunk ``[B, Ta, Da]`` with
  FiLM conditioning on the observation and the step (Chi et al., "Diffusion Policy",
  RSS 2023, Sec. IV-A), for action chunks. It is written here because diffusers'
  ``UNet1DModel`` has no global conditioning input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from diffusers.models.embeddings import get_timestep_embedding
from torch import nn
from torch.nn import functional as F

from agentcomm._checks import check_range
from agentcomm.policies.activations import Mish, mish

__all__ = ["BoundDenoiser", "ResidualMLPDenoiser", "UNet1DFiLMDenoiser", "init_linear_layers"]


def init_linear_layers(module: nn.Module, generator: torch.Generator | None) -> None:
    """Re-initialise every ``nn.Linear``, ``nn.Conv1d`` and ``nn.ConvTranspose1d`` in ``module``.

    torch's default layer initialisation draws from the global RNG; this uses the same
    distributions (Kaiming-uniform weights with ``a = sqrt(5)`` and uniform biases, both
    ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` with ``fan_in = weight[0].numel()`` as torch
    computes it) but draws them from an explicit generator so that two constructions with
    the same seed give identical weights (every RLlib env runner and learner builds its own
    copy).

    Args:
        module: Module whose layers are re-initialised in place.
        generator: CPU generator; ``None`` keeps torch's default initialisation.
    """
    if generator is None:
        return
    for layer in module.modules():
        if isinstance(layer, nn.Linear | nn.Conv1d | nn.ConvTranspose1d):
            bound = 1.0 / layer.weight[0].numel() ** 0.5
            with torch.no_grad():
                layer.weight.copy_(
                    torch.empty(layer.weight.shape).uniform_(-bound, bound, generator=generator)
                )
                if layer.bias is not None:
                    layer.bias.copy_(
                        torch.empty(layer.bias.shape).uniform_(-bound, bound, generator=generator)
                    )


class BoundDenoiser(NamedTuple):
    """A noise predictor with its parameters bound, split along a denoising chain.

    ``eps = predict(x, step_table[t], prepare(obs))`` equals the module's ``forward(x, t,
    obs)`` bit for bit, and is as differentiable.

    Attributes:
        step_table: ``[K, Dt]`` float, one row per DDPM step ``t``; rows broadcast over the
            batch (a ``[1, Dt]`` row serves every row of ``x``).
        prepare: ``obs [B, Do] -> ctx``, once per chain.
        predict: ``(x [B, Ta*Da], row [B or 1, Dt], ctx) -> eps [B, Ta*Da]``.
    """

    step_table: torch.Tensor
    prepare: Callable[[torch.Tensor], Any]
    predict: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor]


class _ResidualBlock(nn.Module):
    """Pre-norm residual block ``h + W2 mish(W1 LayerNorm(h))``."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(hidden)
        self.fc1 = nn.Linear(hidden, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.act = Mish()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.fc2(self.act(self.fc1(self.norm(h))))


class ResidualMLPDenoiser(nn.Module):
    """Residual MLP that predicts the noise ``eps`` added to an action (DDPM, Ho et al. 2020).

    ``eps_theta(x_t, t, o) = W_out mish(LN(f_depth(... f_1(W_in [x_t, e(t), o]))))`` where
    ``e(t)`` is the sinusoidal step embedding of Vaswani et al. (2017) followed by a small MLP,
    and each ``f_i`` is a pre-norm residual block with LayerNorm and Mish.

    Args:
        obs_dim: ``Do``, observation features the prediction is conditioned on.
        action_dim: ``Da``, action dimension (``Ta*Da`` for a flat chunk).
        hidden: Width of the residual stream.
        depth: Number of residual blocks.
        time_embed_dim: Width of the step embedding (even).
        denoising_steps: ``K``; the step indices ``t`` lie in ``[0, K)``.
        generator: Optional CPU generator for the weight initialisation.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        hidden: int = 256,
        depth: int = 3,
        time_embed_dim: int = 32,
        denoising_steps: int = 20,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_range("obs_dim", obs_dim, 1)
        check_range("action_dim", action_dim, 1)
        check_range("hidden", hidden, 1)
        check_range("depth", depth, 0)
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.time_embed_dim = time_embed_dim
        _register_step_sinusoids(self, denoising_steps, time_embed_dim)
        self.time_mlp = _step_embedding_mlp(time_embed_dim)
        self.input = nn.Linear(action_dim + time_embed_dim + obs_dim, hidden)
        self.blocks = nn.ModuleList([_ResidualBlock(hidden) for _ in range(depth)])
        self.out_norm = nn.LayerNorm(hidden)
        self.output = nn.Linear(hidden, action_dim)
        self.act = Mish()
        init_linear_layers(self, generator)

    def step_embeddings(self) -> torch.Tensor:
        """``MLP(e(t))`` for every step ``t = 0..K-1``, ``[K, E]`` float (``E = time_embed_dim``)."""
        return _step_mlp(self.time_mlp, self.step_sinusoids)

    def forward(self, x: torch.Tensor, t: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Predict the noise.

        Args:
            x: Noisy actions ``x_t``, ``[B, Da]`` float.
            t: DDPM step indices in ``[0, K)``, ``[B]`` int64.
            obs: Observations, ``[B, Do]`` float.

        Returns:
            Predicted noise ``eps``, ``[B, Da]`` float.
        """
        bound = self.bind()
        return bound.predict(x, bound.step_table[t], bound.prepare(obs))

    def bind(self) -> BoundDenoiser:
        """The noise predictor with this module's current parameters bound.

        The input layer ``W_in [x, e, o] + b`` is split by its columns into ``W_x x`` (at
        every step), ``W_e e(t)`` (``step_table = step_embeddings() W_e^T``, ``[K, H]``) and
        ``W_o o + b`` (``prepare``, ``[B, H]``); ``predict`` adds the two cached terms and
        runs the residual blocks. This rounds differently from one ``nn.Linear`` over the
        concatenation (a float32 sum in another order), within ~1e-6 relative.

        ``predict`` calls ``torch.addmm``/``layer_norm``/``mish`` directly on parameters
        looked up once here, the operations ``nn.Linear``/``nn.LayerNorm``/``Mish`` run (at
        batch 1 a sampler otherwise spends as much time in ``nn.Module.__call__`` and
        attribute lookups as in the arithmetic); the biases are bound as ``[1, H]`` rows,
        which ``addmm`` takes ~1 us faster at batch 1 than a 1-D bias. The bound functions
        hold views of the parameters, and the step table is computed here: bind again after
        the weights change (the sampler re-binds when a parameter's version counter moves).
        """
        da, e = self.action_dim, self.time_embed_dim
        w_in, b_in = self.input.weight, self.input.bias
        w_x, w_e, w_o = w_in[:, :da].t(), w_in[:, da : da + e], w_in[:, da + e :].t()
        step_table = F.linear(self.step_embeddings(), w_e)
        blocks = tuple(
            (
                *_norm_args(b.norm),
                b.fc1.bias.unsqueeze(0),
                b.fc1.weight.t(),
                b.fc2.bias.unsqueeze(0),
                b.fc2.weight.t(),
            )
            for b in self.blocks
        )
        out_norm = _norm_args(self.out_norm)
        out = (self.output.bias.unsqueeze(0), self.output.weight.t())
        b_in = b_in.unsqueeze(0)
        # torch.layer_norm is what F.layer_norm calls, minus its Python-level checks.
        addmm, layer_norm = torch.addmm, torch.layer_norm

        def prepare(obs: torch.Tensor) -> torch.Tensor:
            return addmm(b_in, obs, w_o)

        def predict(x: torch.Tensor, row: torch.Tensor, ctx: torch.Tensor) -> torch.Tensor:
            h = addmm(ctx + row, x, w_x)
            for shape, norm_w, norm_b, norm_eps, b1, w1, b2, w2 in blocks:
                h = h + addmm(
                    b2, mish(addmm(b1, layer_norm(h, shape, norm_w, norm_b, norm_eps), w1)), w2
                )
            return addmm(out[0], mish(layer_norm(h, *out_norm)), out[1])

        return BoundDenoiser(step_table, prepare, predict)


def _identity(obs: torch.Tensor) -> torch.Tensor:
    return obs


def _norm_args(norm: nn.LayerNorm) -> tuple:
    return norm.normalized_shape, norm.weight, norm.bias, norm.eps


def _step_embedding_mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, 2 * dim), Mish(), nn.Linear(2 * dim, dim))


def _step_mlp(mlp: nn.Sequential, sinusoids: torch.Tensor) -> torch.Tensor:
    """``mlp(sinusoids)`` for a ``_step_embedding_mlp``, without three ``Module.__call__``s."""
    first, _, last = mlp
    return F.linear(mish(F.linear(sinusoids, first.weight, first.bias)), last.weight, last.bias)


def _register_step_sinusoids(module: nn.Module, denoising_steps: int, dim: int) -> None:
    """Register ``step_sinusoids [K, dim]``, the sinusoidal embeddings ``e(t)`` of ``t < K``.

    ``e(t)`` is Vaswani et al. (2017)'s embedding as diffusers computes it (cosines first).
    The buffer is not persistent: it is a function of ``K`` and ``dim``, so checkpoints
    keep only the weights.
    """
    check_range("denoising_steps", denoising_steps, 1)
    check_range("time_embed_dim", dim, 2)
    if dim % 2:
        raise ValueError(f"time_embed_dim={dim!r} must be even")
    table = get_timestep_embedding(torch.arange(denoising_steps), dim, flip_sin_to_cos=True)
    module.register_buffer("step_sinusoids", table, persistent=False)


class _ConvBlock1D(nn.Module):
    """``mish(GroupNorm(Conv1d(h)))`` over ``[B, C_in, T] -> [B, C_out, T]`` (same length)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_ch, out_ch, kernel, padding=kernel // 2)
        self.norm = nn.GroupNorm(groups, out_ch)
        self.act = Mish()

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(h)))


class _FiLMResBlock1D(nn.Module):
    """Residual block ``r(h) + B2(gamma(c) * B1(h) + beta(c))`` with FiLM (Perez et al. 2018).

    ``gamma, beta = Linear(mish(c))`` are per-channel, broadcast over time, as in Chi et al.
    (2023)'s ``ConditionalResidualBlock1D``; ``r`` is a 1x1 conv when the width changes.
    """

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int, kernel: int, groups: int) -> None:
        super().__init__()
        self.block1 = _ConvBlock1D(in_ch, out_ch, kernel, groups)
        self.block2 = _ConvBlock1D(out_ch, out_ch, kernel, groups)
        self.film = nn.Sequential(Mish(), nn.Linear(cond_dim, 2 * out_ch))
        self.residual = nn.Conv1d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, h: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.film(cond).unsqueeze(-1).chunk(2, dim=1)
        return self.residual(h) + self.block2(gamma * self.block1(h) + beta)


class UNet1DFiLMDenoiser(nn.Module):
    """1-D temporal U-Net that predicts the noise ``eps`` added to an action chunk.

    The chunk ``x_t [B, Ta, Da]`` is a ``Da``-channel signal over ``Ta`` time steps. One
    down level and one up level (Chi et al., "Diffusion Policy", RSS 2023, Fig. 3, with
    fewer levels)::

        h1 = R1(x_t)                      [B, C, Ta']       (Ta' = Ta rounded up to even)
        h2 = R2(Down(h1))                 [B, 2C, Ta'/2]    (Down: stride-2 conv)
        h2 = R3(h2)                       [B, 2C, Ta'/2]
        h  = R4([Up(h2), h1])             [B, C, Ta']       (Up: stride-2 transposed conv)
        eps = Conv1x1(B(h))[..., :Ta]     [B, Da, Ta]

    Every ``R_i`` is a FiLM residual block conditioned on
    ``c = [MLP(e(t)), o]``, with ``e(t)`` the sinusoidal step embedding (Vaswani et al.
    2017). An odd ``Ta`` is zero-padded by one step before the down level (the convs pad
    with zeros anyway) and the output cropped back, so any ``Ta >= 1`` works.

    Args:
        obs_dim: ``Do``, observation features the prediction is conditioned on.
        action_dim: ``Da``, dimension of one action of the chunk.
        horizon: ``Ta``, actions per chunk.
        channels: ``C``, width of the first level; the second has ``2C``. Must be a
            multiple of ``groups``.
        time_embed_dim: Width of the step embedding (even).
        denoising_steps: ``K``; the step indices ``t`` lie in ``[0, K)``.
        kernel: Odd kernel size of the convolutions.
        groups: GroupNorm groups.
        generator: Optional CPU generator for the weight initialisation.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        horizon: int,
        channels: int = 32,
        time_embed_dim: int = 32,
        denoising_steps: int = 20,
        kernel: int = 3,
        groups: int = 8,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        check_range("obs_dim", obs_dim, 1)
        check_range("action_dim", action_dim, 1)
        check_range("horizon", horizon, 1)
        check_range("groups", groups, 1)
        check_range("channels", channels, groups)
        check_range("kernel", kernel, 1)
        if channels % groups:
            raise ValueError(f"channels={channels!r} must be a multiple of groups={groups!r}")
        _register_step_sinusoids(self, denoising_steps, time_embed_dim)
        if kernel % 2 == 0:
            raise ValueError(f"kernel={kernel!r} must be odd (same-length convolutions)")
        self.obs_dim = obs_dim
        self.action_dim = action_dim
        self.horizon = horizon
        self.time_embed_dim = time_embed_dim
        cond = time_embed_dim + obs_dim
        c1, c2 = channels, 2 * channels
        self.time_mlp = _step_embedding_mlp(time_embed_dim)
        self.down_block = _FiLMResBlock1D(action_dim, c1, cond, kernel, groups)
        self.down = nn.Conv1d(c1, c1, 3, stride=2, padding=1)
        self.mid_blocks = nn.ModuleList(
            [
                _FiLMResBlock1D(c1, c2, cond, kernel, groups),
                _FiLMResBlock1D(c2, c2, cond, kernel, groups),
            ]
        )
        self.up = nn.ConvTranspose1d(c2, c2, 4, stride=2, padding=1)
        self.up_block = _FiLMResBlock1D(c2 + c1, c1, cond, kernel, groups)
        self.out_block = _ConvBlock1D(c1, c1, kernel, groups)
        self.output = nn.Conv1d(c1, action_dim, 1)
        init_linear_layers(self, generator)

    def step_embeddings(self) -> torch.Tensor:
        """``MLP(e(t))`` for every step ``t = 0..K-1``, ``[K, E]`` float (``E = time_embed_dim``)."""
        return _step_mlp(self.time_mlp, self.step_sinusoids)

    def forward(self, x: torch.Tensor, t: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """Predict the noise.

        Args:
            x: Noisy flat chunks ``x_t``, ``[B, Ta*Da]`` float (row-major ``[B, Ta, Da]``).
            t: DDPM step indices in ``[0, K)``, ``[B]`` int64.
            obs: Observations, ``[B, Do]`` float.

        Returns:
            Predicted noise ``eps``, ``[B, Ta*Da]`` float.
        """
        return self._denoise(x, self.step_embeddings()[t], obs)

    def bind(self) -> BoundDenoiser:
        """The noise predictor split along a chain (``BoundDenoiser``).

        The step table is ``step_embeddings()`` and ``prepare`` is the identity: the FiLM
        layers read ``mish([e(t), o])``, which does not split into a step part and an
        observation part.
        """
        return BoundDenoiser(self.step_embeddings(), _identity, self._denoise)

    def _denoise(self, x: torch.Tensor, temb: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        batch = x.shape[0]
        cond = torch.cat([temb.expand(batch, -1), obs], dim=-1)
        h = x.reshape(batch, self.horizon, self.action_dim).transpose(1, 2)
        h = nn.functional.pad(h, (0, self.horizon % 2))
        h1 = self.down_block(h, cond)
        h2 = self.down(h1)
        for block in self.mid_blocks:
            h2 = block(h2, cond)
        h = self.up_block(torch.cat([self.up(h2), h1], dim=1), cond)
        eps = self.output(self.out_block(h))[..., : self.horizon]
        return eps.transpose(1, 2).reshape(batch, self.horizon * self.action_dim)
