"""Observation-conditioned diffusion policies with per-step Gaussian likelihoods.

Shape legend: ``B`` flat batch (env batch x agents), ``K`` DDPM denoising steps, ``S``
steps of the sampler in use (``K`` for DDPM, ``ddim_steps`` for DDIM), ``K'`` fine-tuned
(last) denoising steps, ``Da`` action dim, ``Ta`` action horizon (actions per chunk),
``Do`` observation dim.

The denoising chain is ``x^(S) ~ N(0, I) -> x^(S-1) -> ... -> x^(0)`` over flat action
chunks ``x [B, Ta*Da]`` (row-major ``[B, Ta, Da]``; ``Ta = 1`` is a single action); the
chunk is ``clip(x^(0), -1, 1)`` and the action executed now is its first row (receding
horizon: the policy replans every environment step, so the other ``Ta - 1`` actions only
shape the prediction, as in Chi et al., "Diffusion Policy", RSS 2023, with action
execution horizon 1). Each step is Gaussian, ``x^(k-1) ~ N(mu_theta(x^(k), k, o), s_k^2 I)``,
which is what DPPO (Ren et al., "Diffusion Policy Policy Optimization", ICLR 2025, Sec. 4)
treats as an inner MDP: the policy-gradient likelihood of an environment action is the
product of the Gaussian likelihoods of the last ``K'`` denoising steps.

Schedules (``betas``, ``alphas_cumprod``, DDIM timesteps) come from diffusers and the step
equations (DDPM: Ho et al. 2020, Eq. 6-7; DDIM: Song et al. 2021, Eq. 12 and 16, with
``eps`` re-derived from the clipped ``x0``) from :mod:`agentcomm.diffusion`; the step means
and standard deviations are evaluated here from tables precomputed per chain position,
because diffusers' ``step()`` returns neither the mean nor the std, and rejects per-sample
timesteps.
"""

from __future__ import annotations

import abc
import math
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from agentcomm._checks import check_choice, check_range, check_tensor
from agentcomm.config import Config, check_type, choices, rng
from agentcomm.diffusion import (
    BETA_SCHEDULES,
    BetaSchedule,
    ddim_coefficients,
    ddim_sigma,
    ddim_uniform_timesteps,
    ddpm_posterior,
    ddpm_scheduler,
)
from agentcomm.policies.networks import BoundDenoiser, ResidualMLPDenoiser, UNet1DFiLMDenoiser

__all__ = [
    "ARCHITECTURE_KEYS",
    "DPPOPolicy",
    "DiffusionConfig",
    "DiffusionPolicy",
    "LogprobReduction",
    "NetworkKind",
    "SampleOutput",
    "SamplerMode",
    "check_logprob_form",
    "gaussian_logprob",
]

SamplerMode = Literal["ddpm", "ddim"]
LogprobReduction = Literal["sum", "mean"]
NetworkKind = Literal["mlp", "unet1d"]

#: Config keys that define the network and the training schedule; a fine-tuned copy must
#: keep them (the sampling keys, e.g. the std floors, may change for fine-tuning).
ARCHITECTURE_KEYS = (
    "obs_dim",
    "action_dim",
    "denoising_steps",
    "beta_schedule",
    "hidden",
    "depth",
    "time_embed_dim",
    "network",
    "action_horizon",
)

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
# One chain position's noise predictor, from ``BoundDenoiser``: ``(prepare, predict, row
# [1, Dt])``, eps = predict(x, row, prepare(obs)); positions of one denoiser share ``prepare``.
_ChainStep = tuple[Callable[[Tensor], object], Callable[[Tensor, Tensor, object], Tensor], Tensor]

#: Sampling-time bindings per sampler object (see ``_DiffusionSampler._chain_denoisers``).
_BOUND: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_UNET_GROUPS = 8


def _parameter_key(modules: Iterable[nn.Module]) -> tuple:
    """``(data pointer, dtype, version)`` of every parameter of ``modules``, in a fixed order.

    Walks ``_modules``/``_parameters`` directly: ``Module.parameters()`` (recursive
    generators and a de-duplicating set) costs a noticeable part of a batch-1 sampling
    call. A parameter shared by two submodules appears twice, which a key does not mind.
    """
    key = []
    stack = list(modules)
    while stack:
        module = stack.pop()
        for p in module._parameters.values():
            if p is not None:
                key.append((p.data_ptr(), p.dtype, p._version))
        stack.extend(m for m in module._modules.values() if m is not None)
    return tuple(key)


@dataclass(frozen=True)
class DiffusionConfig(Config):
    """Configuration of a diffusion policy; round-trips through ``to_dict``/``from_dict``.

    Attributes:
        obs_dim: ``Do``.
        action_dim: ``Da``; actions live in ``[-1, 1]^Da``.
        denoising_steps: ``K``, DDPM training steps.
        ddim_steps: ``S`` for the few-step DDIM sampler, ``1 <= S <= K``.
        ft_denoising_steps: ``K'``, the last steps whose likelihood is recorded and
            fine-tuned; ``K' <= K`` (and ``K' <= S`` to sample with DDIM).
        beta_schedule: diffusers beta schedule name.
        hidden, depth, time_embed_dim: Network sizes. ``"mlp"``: ``ResidualMLPDenoiser``
            width and residual blocks. ``"unet1d"``: ``hidden`` is the U-Net's first-level
            channels ``C`` (a multiple of 8, the GroupNorm groups); ``depth`` is unused
            (one down/up level).
        min_sampling_std: Floor on each step's sampling std (exploration noise; DPPO
            Sec. 5 clips it from below so that the near-deterministic last steps still
            explore). ``0`` samples the plain DDPM/DDIM chain.
        min_logprob_std: Floor on the std used in the step likelihoods; keeps the
            likelihood ratios of near-deterministic steps well conditioned. Must be > 0.
        logprob_reduction: How a step's likelihood combines its ``D = Ta*Da`` dimensions
            (see :func:`gaussian_logprob`): ``"sum"`` (the Gaussian's log-density) or
            ``"mean"`` (their average, the DPPO reference implementation's form: a
            likelihood ratio ``exp(mean_d delta_d)`` is the ``D``-th root of the joint
            one, so a PPO clip allows ``D`` times larger per-dimension log-ratios).
        logprob_min, logprob_max: Optional clamp of each dimension's log-density before
            the reduction (``None``: none); the reference clamps to ``[-5, 2]`` with
            ``"mean"``. A clamped dimension passes no gradient. With a std floor of 0.1 a
            dimension's log-density is at most ``-log(0.1 sqrt(2 pi)) = 1.38``, so a
            ceiling of 2 never binds; the floor cuts off steps that land far in a tail.
        noise_clip: Each step's standard-normal noise is clipped to ``[-c, c]``.
        ddim_eta: DDIM ``eta`` (0: deterministic DDIM; 1: DDPM-like variance).
        eval_noise_seed: Seed of the fixed initial noise used by deterministic sampling.
        exploration: What stochastic sampling randomises. ``"chain"`` (DPPO's): a fresh
            initial noise and every step's noise. ``"around_eval"``: the deterministic
            policy's chain (fixed ``eval_noise``, no noise) up to the fine-tuned steps, which
            then add their sampling noise; the stochastic policy is a Gaussian perturbation
            of the deterministic one, so fine-tuning improves what deterministic evaluation
            runs (with ``"chain"`` it improves the whole sampled distribution, whose returns
            can differ a lot from the deterministic chain's).
        network: Noise predictor: ``"mlp"`` (``ResidualMLPDenoiser`` over the flat chunk)
            or ``"unet1d"`` (``UNet1DFiLMDenoiser`` over ``[Ta, Da]``).
        action_horizon: ``Ta``, actions per predicted chunk; the first is executed.
    """

    obs_dim: int = field(metadata=rng(1))
    action_dim: int = field(metadata=rng(1))
    denoising_steps: int = field(default=20, metadata=rng(1))
    ddim_steps: int = field(default=5, metadata=rng(1))
    ft_denoising_steps: int = field(default=5, metadata=rng(1))
    beta_schedule: BetaSchedule = field(
        default="squaredcos_cap_v2", metadata=choices(*BETA_SCHEDULES)
    )
    hidden: int = field(default=256, metadata=rng(1))
    depth: int = field(default=3, metadata=rng(0))
    time_embed_dim: int = field(default=32, metadata=rng(2))
    min_sampling_std: float = field(default=0.1, metadata=rng(0.0))
    min_logprob_std: float = field(default=0.1, metadata=rng(0.0, low_inclusive=False))
    noise_clip: float = field(default=3.0, metadata=rng(0.0, low_inclusive=False))
    ddim_eta: float = field(default=1.0, metadata=rng(0.0, 1.0))
    eval_noise_seed: int = field(default=0, metadata=rng(0))
    exploration: Literal["chain", "around_eval"] = field(
        default="chain", metadata=choices("chain", "around_eval")
    )
    network: NetworkKind = field(default="mlp", metadata=choices(*NetworkKind.__args__))
    action_horizon: int = field(default=1, metadata=rng(1))
    logprob_reduction: LogprobReduction = field(default="sum", metadata=choices("sum", "mean"))
    logprob_min: float | None = None
    logprob_max: float | None = None

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        if self.network == "unet1d" and self.hidden % _UNET_GROUPS:
            raise ValueError(
                f"{prefix}hidden={self.hidden!r} must be a multiple of {_UNET_GROUPS} for "
                f"{prefix}network='unet1d' (GroupNorm groups)"
            )
        check_range(f"{prefix}ddim_steps", self.ddim_steps, 1, self.denoising_steps)
        check_range(f"{prefix}ft_denoising_steps", self.ft_denoising_steps, 1, self.denoising_steps)
        check_logprob_form(self.logprob_reduction, self.logprob_min, self.logprob_max)
        if self.time_embed_dim % 2:
            raise ValueError(f"{prefix}time_embed_dim={self.time_embed_dim!r} must be even")

    @property
    def chunk_dim(self) -> int:
        """``Ta * Da``, the size of the flat latent the chain denoises."""
        return self.action_horizon * self.action_dim


def check_logprob_form(
    reduction: object, low: object = None, high: object = None
) -> tuple[str, float | None, float | None]:
    """Validate a step-likelihood form (``logprob_reduction``, ``logprob_min``,
    ``logprob_max``) as :class:`DiffusionConfig` does; returns it with the bounds as floats."""
    reduction = check_type("logprob_reduction", reduction, str, choices("sum", "mean"))
    bounds = []
    for name, value in (("logprob_min", low), ("logprob_max", high)):
        value = check_type(name, value, float | None)
        bounds.append(None if value is None else float(value))
    if bounds[0] is not None and bounds[1] is not None and bounds[0] >= bounds[1]:
        raise ValueError(
            f"logprob_min={low!r} must be below logprob_max={high!r} (an empty clamp range)"
        )
    return reduction, bounds[0], bounds[1]


def gaussian_logprob(
    x: torch.Tensor,
    mean: torch.Tensor,
    std: torch.Tensor,
    reduction: LogprobReduction = "sum",
    low: float | None = None,
    high: float | None = None,
) -> torch.Tensor:
    """Log-density of an isotropic Gaussian, reduced over the last dimension.

    Per dimension ``l_d = -(x_d - mu_d)^2 / (2 s^2) - log s - log sqrt(2 pi)``, optionally
    clamped to ``[low, high]``; then ``sum_d l_d`` (``reduction="sum"``, without a clamp
    exactly ``log N(x; mu, s^2 I)``) or ``mean_d l_d`` (``"mean"``).

    Args:
        x, mean: ``[..., D]`` float (e.g. ``[B, Da]``, or ``[B, K', Ta*Da]`` for ``K'`` steps).
        std: ``[]`` or broadcastable to ``x``, > 0 (e.g. ``[K', 1]``, one std per step).
        reduction: ``"sum"`` or ``"mean"`` over the last dimension.
        low, high: Per-dimension clamp bounds (``None``: unbounded on that side).

    Returns:
        ``[...]`` float, natural log.
    """
    check_choice("reduction", reduction, ("sum", "mean"))
    z = (x - mean) / std
    per_dim = -0.5 * z.square() - torch.log(std) - _LOG_SQRT_2PI
    if low is not None or high is not None:
        per_dim = per_dim.clamp(min=low, max=high)
    return per_dim.sum(dim=-1) if reduction == "sum" else per_dim.mean(dim=-1)


@dataclass
class SampleOutput:
    """Result of sampling the denoising chain.

    Attributes:
        action: ``[B, Da]`` float in ``[-1, 1]``, the action to execute now: the first of
            the clipped chunk (the clipped final latent itself when ``Ta = 1``).
        chain: ``[B, K'+1, Ta*Da]`` float, the unclipped flat latents ``x^(K'), ..., x^(0)``.
        logprob: ``[B, K']`` float; ``logprob[:, j]`` is the log-likelihood of the step
            ``chain[:, j] -> chain[:, j+1]`` under the ``min_logprob_std`` floor, in the
            config's form (``logprob_reduction`` over the ``Ta*Da`` dimensions, clamped per
            dimension to ``[logprob_min, logprob_max]``; by default the plain sum). ``None``
            when sampled with ``with_logprob=False``.
        action_chunk: ``[B, Ta, Da]`` float in ``[-1, 1]``, the whole clipped chunk.
    """

    action: torch.Tensor
    chain: torch.Tensor
    logprob: torch.Tensor | None
    action_chunk: torch.Tensor


@dataclass(frozen=True)
class _Step:
    """Scalars of the reverse step at one chain position, as 0-dim float32 CPU tensors.

    Both samplers' steps have the form of :mod:`agentcomm.diffusion`'s folded tables:
    ``x0 = clip(x0_from_xt * x + x0_from_eps * eps, -1, 1)``, then the mean
    ``coef_x0 * x0 + coef_xt * x`` (DDPM: Ho et al. 2020, Eq. 15 and 7; DDIM: Song et al.
    2021, Eq. 12 with ``eps`` re-derived from the clipped ``x0``), in five fused ops.

    Held per position rather than indexed from a table at each step (an indexing op per
    coefficient costs as much as the arithmetic at batch 1), and as 0-dim tensors rather
    than Python floats: torch wraps and converts a Python scalar on every op, which takes
    longer than a ``[1, Da]`` product. A CPU 0-dim tensor combines with tensors on any
    device and of any float dtype.

    Attributes:
        t: DDPM timestep denoised at this position.
        sampling_std: Step std floored by ``min_sampling_std``.
        x0_from_xt, x0_from_eps, coef_x0, coef_xt: The folded coefficients.
    """

    t: int
    sampling_std: Tensor
    x0_from_xt: Tensor
    x0_from_eps: Tensor
    coef_x0: Tensor
    coef_xt: Tensor

    def mean(self, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        """Mean of ``x^(k-1)`` given ``x = x^(k)`` and the predicted noise, both ``[B, Ta*Da]``."""
        x0 = torch.addcmul(self.x0_from_xt * x, self.x0_from_eps, eps).clamp(-1, 1)
        return torch.addcmul(self.coef_x0 * x0, self.coef_xt, x)


class _DiffusionSampler(nn.Module, abc.ABC):
    """Schedule tables, step distributions, chain sampling and chain likelihoods.

    Subclasses provide the noise predictor used at each chain step (``_denoiser_at``).
    """

    def __init__(self, config: DiffusionConfig) -> None:
        super().__init__()
        self.config = config
        k = config.denoising_steps
        ddpm = ddpm_scheduler(k, config.beta_schedule)
        acp = ddpm.alphas_cumprod.double()
        # Rows are chain positions i = 0..K-1, which denoise t = K-1-i.
        ddpm_t = torch.arange(k - 1, -1, -1)
        ddpm_tables = ddpm_posterior(ddpm.betas.double(), acp)
        post_std = ddpm_tables.pop("variance").sqrt()[ddpm_t]
        ddpm_tables = {name: table[ddpm_t] for name, table in ddpm_tables.items()}
        ddim_t, prev_t = ddim_uniform_timesteps(k, config.ddim_steps)
        a_t = acp[ddim_t]
        a_prev = torch.where(prev_t >= 0, acp[prev_t.clamp(min=0)], torch.ones_like(a_t))
        ddim_std = ddim_sigma(a_t, a_prev, config.ddim_eta)
        ddim_tables = ddim_coefficients(a_t, a_prev, ddim_std)
        self._steps = {
            "ddpm": self._chain_steps(ddpm_t, post_std, ddpm_tables),
            "ddim": self._chain_steps(ddim_t, ddim_std, ddim_tables),
        }
        # Per chain position, the step std floored by min_logprob_std, [S] float32.
        for mode, std in (("ddpm", post_std), ("ddim", ddim_std)):
            floored = std.float().clamp(min=config.min_logprob_std)
            self.register_buffer(f"{mode}_logprob_std", floored, persistent=False)
        self.register_buffer("acp", acp.float(), persistent=False)
        noise_gen = torch.Generator().manual_seed(config.eval_noise_seed)
        self.register_buffer("eval_noise", torch.randn(config.chunk_dim, generator=noise_gen))

    def _chain_steps(
        self,
        timesteps: torch.Tensor,
        std: torch.Tensor,
        tables: dict[str, torch.Tensor],
    ) -> tuple[_Step, ...]:
        # Rounded to float32 first, then floored in float32.
        sampling_std = std.float().clamp(min=self.config.min_sampling_std)
        columns = {name: table.float() for name, table in tables.items()}
        return tuple(
            _Step(
                t=int(t),
                sampling_std=sampling_std[i].clone(),
                **{name: column[i].clone() for name, column in columns.items()},
            )
            for i, t in enumerate(timesteps.tolist())
        )

    @property
    def ft_denoising_steps(self) -> int:
        """``K'``."""
        return self.config.ft_denoising_steps

    def num_steps(self, mode: SamplerMode) -> int:
        """Chain length ``S`` of a sampler: ``K`` for DDPM, ``ddim_steps`` for DDIM."""
        check_choice("mode", mode, ("ddpm", "ddim"))
        steps = self.config.denoising_steps if mode == "ddpm" else self.config.ddim_steps
        if self.config.ft_denoising_steps > steps:
            raise ValueError(
                f"ft_denoising_steps={self.config.ft_denoising_steps} exceeds the {steps} "
                f"steps of mode={mode!r}"
            )
        return steps

    @abc.abstractmethod
    def _denoiser_at(self, step: int, num_steps: int) -> nn.Module:
        """The noise predictor used at chain position ``step`` of ``num_steps``."""

    def _check_obs(self, obs: torch.Tensor) -> None:
        check_tensor("obs", obs, shape=(None, self.config.obs_dim), finite=True)

    def _chain_denoisers(
        self, mode: SamplerMode, start: int = 0, reuse: bool = False
    ) -> list[_ChainStep]:
        """``(prepare, predict, step-table row [1, Dt])`` for chain positions ``start..S-1``.

        Each denoiser is bound once here (``bind``), with its step table, rather than at
        every chain step; ``predict(x, row, prepare(obs))`` equals the denoiser's ``forward``
        bit for bit.

        With ``reuse`` (sampling, inside ``inference_mode``) the bindings are kept between
        calls, in a side table keyed weakly by this object, and rebuilt when any parameter
        of the denoisers was replaced or updated in place (its storage pointer, dtype or
        version counter changed; optimizers, ``load_state_dict`` and EMA updates all bump
        the counter, writes through ``param.data`` do not): at batch 1 binding costs a
        sizeable part of a short chain. The side table (not an attribute) keeps closures out of
        pickles and deep copies.
        """
        num_steps = self.num_steps(mode)
        positions = range(start, num_steps)
        if not reuse:
            return self._bind(mode, positions, num_steps)
        modules = {id(m): m for m in (self._denoiser_at(i, num_steps) for i in positions)}
        key = _parameter_key(modules.values())
        cached = _BOUND.get(self, {}).get((mode, start))
        if cached is None or cached[0] != key:
            cached = (key, self._bind(mode, positions, num_steps))
            _BOUND.setdefault(self, {})[(mode, start)] = cached
        return cached[1]

    def _bind(self, mode: SamplerMode, positions: range, num_steps: int) -> list[_ChainStep]:
        """``(prepare, predict, step-table row [1, Dt])`` per chain position."""
        bound: dict[int, BoundDenoiser] = {}
        out = []
        for i in positions:
            t = self._steps[mode][i].t
            denoiser = self._denoiser_at(i, num_steps)
            if id(denoiser) not in bound:
                bound[id(denoiser)] = denoiser.bind()
            b = bound[id(denoiser)]
            out.append((b.prepare, b.predict, b.step_table[t : t + 1]))
        return out

    @staticmethod
    def _run_steps(
        steps: Iterable[_ChainStep], obs: torch.Tensor
    ) -> Iterable[Callable[[Tensor], Tensor]]:
        """Per chain position, ``x -> eps``; ``prepare(obs)`` runs once per denoiser."""
        contexts: dict[int, object] = {}
        for prepare, predict, row in steps:
            if id(prepare) not in contexts:
                contexts[id(prepare)] = prepare(obs)
            ctx = contexts[id(prepare)]
            yield lambda x, predict=predict, row=row, ctx=ctx: predict(x, row, ctx)

    def _chain_logprob(
        self, chain: torch.Tensor, means: list[torch.Tensor], mode: SamplerMode
    ) -> torch.Tensor:
        """``log N(chain[:, j+1]; means[j], s_j^2 I)`` for the last ``K'`` steps, ``[B, K']``,
        in the config's form (``logprob_reduction``, ``logprob_min``, ``logprob_max``).

        One call over ``[B, K', Ta*Da]``: elementwise ops and a last-dim reduction give each
        step the same bits as a call per step, for fewer ops.
        """
        cfg = self.config
        kp = cfg.ft_denoising_steps
        std = getattr(self, f"{mode}_logprob_std")[-kp:].unsqueeze(-1)
        return gaussian_logprob(
            chain[:, 1:],
            torch.stack(means, dim=1),
            std,
            cfg.logprob_reduction,
            cfg.logprob_min,
            cfg.logprob_max,
        )

    def step_distribution(
        self, obs: torch.Tensor, x: torch.Tensor, step: int, mode: SamplerMode
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Gaussian of one reverse step ``x^(k) -> x^(k-1)``.

        Args:
            obs: ``[B, Do]`` float.
            x: Current latent ``x^(k)``, ``[B, Ta*Da]`` float.
            step: Chain position ``i in [0, S)``; ``i = 0`` starts from pure noise.
            mode: ``"ddpm"`` or ``"ddim"``.

        Returns:
            ``(mean [B, Ta*Da], sampling_std [], logprob_std [])``: the stds are the schedule's
            (DDPM posterior ``sqrt(beta_tilde_t)`` or DDIM ``sigma_t(eta)``) floored by
            ``min_sampling_std`` and ``min_logprob_std``.
        """
        num_steps = self.num_steps(mode)
        check_range("step", step, 0, num_steps - 1)
        spec = self._steps[mode][step]
        denoiser = self._denoiser_at(step, num_steps)
        eps = denoiser(x, torch.full((x.shape[0],), spec.t, device=x.device), obs)
        return (
            spec.mean(x, eps),
            spec.sampling_std.to(x.device, copy=True),
            getattr(self, f"{mode}_logprob_std")[step].clone(),
        )

    def sample(
        self,
        obs: torch.Tensor,
        generator: torch.Generator | None = None,
        deterministic: bool = False,
        mode: SamplerMode = "ddpm",
        with_logprob: bool = True,
    ) -> SampleOutput:
        """Run the reverse chain and record the last ``K'`` steps (no gradients).

        Stochastic steps draw ``x^(k-1) = mu + s * clip(z, -c, c)`` with ``z ~ N(0, I)``
        from ``generator``. Deterministic sampling starts every row from the fixed buffer
        ``eval_noise`` and adds no noise, so it gives identical actions across calls and
        after a save/load.

        Args:
            obs: ``[B, Do]`` float.
            generator: Source of all noise (``None``: torch's global generator).
            deterministic: Fixed initial noise and zero step noise.
            mode: ``"ddpm"`` (``K`` steps) or ``"ddim"`` (``ddim_steps`` steps).
            with_logprob: Compute the step log-likelihoods; ``False`` (acting only) leaves
                ``SampleOutput.logprob`` ``None``. The actions and chain are the same either
                way, and so are the draws taken from ``generator``.

        Returns:
            ``SampleOutput`` with ``action [B, Da]`` (first of the chunk), ``chain
            [B, K'+1, Ta*Da]``, ``logprob [B, K']`` (or ``None``) and ``action_chunk
            [B, Ta, Da]``.
        """
        self._check_obs(obs)
        # inference_mode rather than no_grad: it skips the autograd bookkeeping that at batch
        # 1 costs about as much as the arithmetic of each small op.
        with torch.inference_mode():
            chunk, chain, logprob = self._sample_chain(
                obs, generator, deterministic, mode, with_logprob
            )
        # Inference tensors cannot be updated in place or saved for backward outside
        # inference mode; clones are ordinary tensors (unless the caller is itself in
        # inference mode).
        chunk = chunk.clone()
        return SampleOutput(
            action=chunk[:, 0],
            chain=chain.clone(),
            logprob=None if logprob is None else logprob.clone(),
            action_chunk=chunk,
        )

    def _sample_chain(
        self,
        obs: torch.Tensor,
        generator: torch.Generator | None,
        deterministic: bool,
        mode: SamplerMode,
        with_logprob: bool,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """``sample``'s chain: ``(chunk [B, Ta, Da], chain [B, K'+1, Ta*Da], logprob [B, K'])``."""
        denoisers = self._chain_denoisers(mode, reuse=True)
        first_ft = len(denoisers) - self.config.ft_denoising_steps
        batch, dim = obs.shape[0], self.config.chunk_dim
        # Before this step index the chain is the deterministic one.
        exact_until = len(denoisers) if deterministic else 0
        if self.config.exploration == "around_eval":
            exact_until = max(exact_until, first_ft)
        if deterministic or self.config.exploration == "around_eval":
            x = self.eval_noise.expand(batch, dim).clone()
        else:
            x = torch.randn(batch, dim, generator=generator, device=obs.device, dtype=obs.dtype)
        chain: list[torch.Tensor] = []
        means: list[torch.Tensor] = []
        clip = self.config.noise_clip
        eps_fns = self._run_steps(denoisers, obs)
        for i, (spec, eps_fn) in enumerate(zip(self._steps[mode], eps_fns)):
            mean = spec.mean(x, eps_fn(x))
            if i < exact_until:
                x_next = mean
            else:
                z = torch.randn(batch, dim, generator=generator, device=obs.device, dtype=obs.dtype)
                # mean + s * clip(z), the clip in place on the fresh draw (no gradients here).
                x_next = torch.addcmul(mean, z.clamp_(-clip, clip), spec.sampling_std)
            if i >= first_ft:
                if i == first_ft:
                    chain.append(x)
                chain.append(x_next)
                means.append(mean)
            x = x_next
        chain_t = torch.stack(chain, dim=1)
        chunk = x.clamp(-1.0, 1.0).reshape(batch, self.config.action_horizon, -1)
        logprob = self._chain_logprob(chain_t, means, mode) if with_logprob else None
        return chunk, chain_t, logprob

    def chain_logprob(
        self, obs: torch.Tensor, chain: torch.Tensor, mode: SamplerMode = "ddpm"
    ) -> torch.Tensor:
        """Per-step log-likelihoods of a stored chain under the current weights.

        Loops over the ``K'`` steps with the same ``[B]`` batch as ``sample`` (rather than
        one ``[B * K']`` forward) so that, for the same weights and rows, the result equals
        the sampling-time ``logprob`` bit for bit: CPU matmul kernels round differently for
        different row counts.

        Args:
            obs: ``[B, Do]`` float.
            chain: ``[B, K'+1, Ta*Da]`` float, as returned by ``sample``.
            mode: The sampler that produced ``chain``.

        Returns:
            ``[B, K']`` float; differentiable w.r.t. the fine-tuned weights.
        """
        self._check_obs(obs)
        kp = self.config.ft_denoising_steps
        check_tensor(
            "chain", chain, shape=(obs.shape[0], kp + 1, self.config.chunk_dim), finite=True
        )
        denoisers = self._chain_denoisers(mode, start=self.num_steps(mode) - kp)
        eps_fns = self._run_steps(denoisers, obs)
        means = [
            spec.mean(chain[:, j], eps_fn(chain[:, j]))
            for j, (spec, eps_fn) in enumerate(zip(self._steps[mode][-kp:], eps_fns))
        ]
        return self._chain_logprob(chain, means, mode)


class DiffusionPolicy(_DiffusionSampler):
    """A diffusion policy: one noise predictor for every denoising step.

    Args:
        obs_dim, action_dim: ``Do`` and ``Da``.
        generator: Optional CPU generator for the weight initialisation.
        **config: Any other :class:`DiffusionConfig` field (``denoising_steps``,
            ``hidden``, ...); an unknown name raises ``ValueError`` naming it.
    """

    def __init__(
        self,
        obs_dim: int,
        action_dim: int,
        *,
        generator: torch.Generator | None = None,
        **config: Any,
    ) -> None:
        cfg = DiffusionConfig.from_dict({"obs_dim": obs_dim, "action_dim": action_dim, **config})
        super().__init__(cfg)
        self.denoiser = _build_denoiser(cfg, generator)

    @classmethod
    def from_config(
        cls, config: DiffusionConfig, generator: torch.Generator | None = None
    ) -> DiffusionPolicy:
        """Build from a ``DiffusionConfig``."""
        return cls(**config.to_dict(), generator=generator)

    def _denoiser_at(self, step: int, num_steps: int) -> nn.Module:
        return self.denoiser

    def loss_bc(
        self, obs: torch.Tensor, action: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Behaviour-cloning loss: epsilon-prediction MSE at uniformly drawn steps.

        ``L = E_{t ~ U{0..K-1}, eps ~ N(0, I)} ||eps - eps_theta(sqrt(a_t) a + sqrt(1 - a_t) eps,
        t, o)||^2 / (Ta Da)`` (Ho et al. 2020, Eq. 14, "simple" loss), ``a`` the flat chunk.

        Args:
            obs: ``[B, Do]`` float.
            action: Expert actions in ``[-1, 1]``: ``[B, Da]`` when ``Ta = 1``, else the
                expert chunks ``[B, Ta, Da]`` (float).
            generator: Source of the step indices and the noise.

        Returns:
            Scalar loss.
        """
        self._check_obs(obs)
        batch = obs.shape[0]
        cfg = self.config
        if cfg.action_horizon == 1:
            check_tensor("action", action, shape=(batch, cfg.action_dim), finite=True)
        else:
            check_tensor(
                "action", action, shape=(batch, cfg.action_horizon, cfg.action_dim), finite=True
            )
            action = action.reshape(batch, cfg.chunk_dim)
        t = torch.randint(
            0, self.config.denoising_steps, (batch,), generator=generator, device=obs.device
        )
        eps = torch.randn(action.shape, generator=generator, device=obs.device, dtype=obs.dtype)
        a_t = self.acp[t].unsqueeze(-1)
        x_t = a_t.sqrt() * action + (1.0 - a_t).sqrt() * eps
        return torch.nn.functional.mse_loss(self.denoiser(x_t, t, obs), eps)


class DPPOPolicy(_DiffusionSampler):
    """Frozen base + fine-tuned copy of a diffusion policy (DPPO, Ren et al. 2025, Sec. 4.2).

    The first ``S - K'`` steps of the chain use ``base`` (frozen), the last ``K'`` use
    ``actor_ft``, whose parameters alone receive policy gradients.

    Args:
        config: ``DiffusionConfig`` (``ft_denoising_steps`` sets ``K'``).
        generator: Optional CPU generator for the weight initialisation (both copies start
            from the same weights).
    """

    def __init__(self, config: DiffusionConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(config)
        self.actor_ft = _build_denoiser(config, generator)
        self.base = _build_denoiser(config, None)
        self.base.load_state_dict(self.actor_ft.state_dict())
        self.base.requires_grad_(False)

    @classmethod
    def from_pretrained(cls, policy: DiffusionPolicy, **overrides: object) -> DPPOPolicy:
        """Start fine-tuning from a pretrained ``DiffusionPolicy``.

        Args:
            policy: The pretrained policy; its weights and fixed eval noise are copied.
            **overrides: Sampling fields of ``DiffusionConfig`` to change for fine-tuning
                (e.g. ``ft_denoising_steps``, ``min_sampling_std``); architecture keys
                (``ARCHITECTURE_KEYS``) raise ``ValueError``.

        Returns:
            A ``DPPOPolicy`` whose ``base`` and ``actor_ft`` equal ``policy.denoiser``.
        """
        fixed = sorted(set(overrides) & set(ARCHITECTURE_KEYS))
        if fixed:
            raise ValueError(f"cannot override architecture key(s) {fixed} of a pretrained policy")
        config = DiffusionConfig.from_dict({**policy.config.to_dict(), **overrides})
        out = cls(config)
        out.actor_ft.load_state_dict(policy.denoiser.state_dict())
        out.base.load_state_dict(policy.denoiser.state_dict())
        return out.to(policy.eval_noise.device)

    def _denoiser_at(self, step: int, num_steps: int) -> nn.Module:
        return self.actor_ft if step >= num_steps - self.config.ft_denoising_steps else self.base


def _build_denoiser(config: DiffusionConfig, generator: torch.Generator | None) -> nn.Module:
    if config.network == "unet1d":
        return UNet1DFiLMDenoiser(
            config.obs_dim,
            config.action_dim,
            config.action_horizon,
            channels=config.hidden,
            time_embed_dim=config.time_embed_dim,
            denoising_steps=config.denoising_steps,
            groups=_UNET_GROUPS,
            generator=generator,
        )
    return ResidualMLPDenoiser(
        config.obs_dim,
        config.chunk_dim,
        hidden=config.hidden,
        depth=config.depth,
        time_embed_dim=config.time_embed_dim,
        denoising_steps=config.denoising_steps,
        generator=generator,
    )
