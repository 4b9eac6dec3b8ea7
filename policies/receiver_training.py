r"""Offline training of the learned receivers with Ray Train, on data from the environments.

One command trains everything a :class:`~agentcomm.decoders.bundle.DecoderBundle`
holds, from rollouts of a batched environment:

1. every worker collects its own belief maps (seed ``seed + rank``):
   ``data_source="payloads"`` gathers the maps that are actually put on the air
   (:func:`collect_payload_maps`: own evidence, fused beliefs and the fusion centre's map,
   as each coordination mode sends them, at every step of episodes under every actor of
   ``data_actors``, mode of ``data_modes`` and budget of ``data_budget_levels``);
   ``"beliefs"`` the fused beliefs of expert rollouts (:func:`collect_env_beliefs`);
2. the diffusion prior (:func:`~agentcomm.decoders.prior.train_prior`), the rectified-flow
   prior (:func:`~agentcomm.decoders.flow.train_flow`, unless ``flow_steps = 0``), then
   one JSCC per ``k`` in ``channel_uses`` (:func:`~agentcomm.decoders.jscc.train_jscc`),
   data-parallel: gradients are averaged across workers after every backward pass;
3. rank 0 collects a *validation* split (another seed), calibrates each CDDM receiver
   on it (so loading needs no recalibration) and picks the DiffCom guidance step
   :math:`\zeta` per ``k`` from ``zeta_grid``
   (:func:`~agentcomm.decoders.diffcom.select_zeta`) by the lowest validation MSE at
   ``zeta_snr_db`` (never on test data);
4. rank 0 saves the bundle and the loss history as a Ray Train checkpoint; the
   driver copies it to ``out_dir`` and draws the loss curves.

Scale by config alone: :class:`DecoderTrainConfig` ``num_workers`` and ``use_gpu``
go to Ray Train's :class:`~ray.train.ScalingConfig`; on this machine one CPU worker
on a local Ray instance (``ray.init(num_cpus=2, include_dashboard=False)``), on a
cluster the same command with GPU workers. Gradients are averaged across workers by
Ray Train's ``prepare_model`` (``DistributedDataParallel``); the training loops route
each step's loss through the wrapped module's ``forward``
(:func:`agentcomm.decoders.optimize.fit`), since they call the models' ``encode``,
``decode`` and ``loss`` methods.

``agentcomm train-decoder`` (:mod:`agentcomm.decoders.cli`) runs :func:`train_decoders`.

Outputs in ``out_dir``: the bundle (``bundle.json``, ``prior/``, ``k<k>/``),
``losses.csv`` (``phase,step,loss``), ``losses.png``, ``train_config.yaml``.
"""

from __future__ import annotations

import csv
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agentcomm._checks import check_range
from agentcomm.channels import AWGN, make_channel
from agentcomm.config import Config, choices, rng
from agentcomm.decoders.bundle import DecoderBundle
from agentcomm.decoders.cddm import CDDMReceiver
from agentcomm.decoders.data import BeliefMaps, to_unit
from agentcomm.decoders.diffcom import select_zeta
from agentcomm.decoders.flow import MAX_STEPS, FlowConfig, FlowPrior, train_flow
from agentcomm.decoders.jscc import JSCC, JSCCConfig, train_jscc
from agentcomm.decoders.prior import DiffusionPrior, PriorConfig, train_prior
from agentcomm.envs import env_class, make_vec
from agentcomm.envs.experts import expert_actions
from agentcomm.policies.evaluate import load_actor

__all__ = [
    "DecoderTrainConfig",
    "collect_env_beliefs",
    "collect_payload_maps",
    "collect_training_maps",
    "plot_losses",
    "train_decoders",
]


@dataclass
class DecoderTrainConfig(Config):
    """Everything ``agentcomm train-decoder`` needs; round-trips to YAML/JSON."""

    env_id: str = "SearchRescue-v0"
    """Batched environment whose expert rollouts give the training maps."""
    env_overrides: dict[str, Any] = field(default_factory=dict)
    """Scenario config overrides (as for ``agentcomm.make_vec``)."""
    num_envs: int = field(default=64, metadata=rng(1, 1_000_000))
    """Parallel worlds per worker during data collection."""
    rollout_steps: int = field(default=300, metadata=rng(1, 1_000_000))
    """Environment steps per worker (``"payloads"``: per actor and mode); maps = steps x
    num_envs x agents (``"payloads"``: x the messages of each mode)."""
    val_rollout_steps: int = field(default=40, metadata=rng(1, 1_000_000))
    """Steps of the validation rollout (rank 0, separate seed)."""
    data_source: str = field(default="beliefs", metadata=choices("beliefs", "payloads"))
    """``"beliefs"``: every agent's fused belief under the expert (:func:`collect_env_beliefs`);
    ``"payloads"``: the maps put on the air (:func:`collect_payload_maps`) under each actor,
    mode and budget below."""
    data_actors: tuple[str, ...] = ("expert",)
    """Actors of the ``"payloads"`` rollouts (:func:`agentcomm.policies.evaluate.load_actor`
    names: ``"expert"``, ``"shipped:NAME"``); a policy runs in the scenario config it was
    trained in (its checkpoint's ``env_config``) under ``env_overrides``."""
    data_modes: tuple[str, ...] = ("distributed",)
    """Coordination modes (``comm.mode``) of the ``"payloads"`` rollouts."""
    data_budget_levels: tuple[int, ...] = (64,)
    """Per-episode budget caps of the ``"payloads"`` rollouts (``comm.budget_levels``)."""
    flow_hidden: int = field(default=128, metadata=rng(1, 65536))
    flow_depth: int = field(default=3, metadata=rng(1, 64))
    flow_steps: int = field(default=3000, metadata=rng(0, 10_000_000))
    """Optimizer steps of the rectified-flow prior; 0: no flow in the bundle."""
    flow_batch: int = field(default=256, metadata=rng(1, 1_000_000))
    flow_lr: float = field(default=1e-3, metadata=rng(0.0, 1.0, low_inclusive=False))
    flow_sample_steps: int = field(default=2, metadata=rng(1, MAX_STEPS))
    """Euler steps of the ``jscc+flow`` receiver (with the JSCC decoder: steps + 1 calls)."""
    seed: int = field(default=0, metadata=rng(0, 2**31 - 1))
    channel_uses: tuple[int, ...] = (16, 32, 64)
    """One JSCC model per value (complex channel uses per message)."""
    train_channel: str = field(
        default="rayleigh_block", metadata=choices("awgn", "rayleigh_block", "rayleigh_fast")
    )
    """Channel the JSCC models are trained through (perfect CSI)."""
    snr_low_db: float = field(default=-5.0, metadata=rng(-30.0, 60.0))
    snr_high_db: float = field(default=25.0, metadata=rng(-30.0, 60.0))
    """Training SNRs are drawn uniformly from [snr_low_db, snr_high_db] (dB)."""
    jscc_hidden: int = field(default=256, metadata=rng(1, 65536))
    jscc_depth: int = field(default=2, metadata=rng(1, 64))
    jscc_steps: int = field(default=2500, metadata=rng(1, 10_000_000))
    jscc_batch: int = field(default=256, metadata=rng(1, 1_000_000))
    jscc_lr: float = field(default=2e-3, metadata=rng(0.0, 1.0, low_inclusive=False))
    prior_hidden: int = field(default=384, metadata=rng(1, 65536))
    prior_depth: int = field(default=4, metadata=rng(1, 64))
    prior_steps: int = field(default=5000, metadata=rng(1, 10_000_000))
    prior_batch: int = field(default=256, metadata=rng(1, 1_000_000))
    prior_lr: float = field(default=1e-3, metadata=rng(0.0, 1.0, low_inclusive=False))
    cddm_steps: int = field(default=5, metadata=rng(1, 1000))
    diffcom_steps: int = field(default=10, metadata=rng(1, 1000))
    zeta_grid: tuple[float, ...] = (0.0, 0.02, 0.05, 0.1, 0.2, 0.5)
    """Candidate DiffCom guidance steps; the one with the lowest validation MSE is kept."""
    zeta_snr_db: tuple[float, ...] = (0.0, 5.0)
    """AWGN SNRs (dB) at which zeta is validated (the low-SNR regime it is meant for)."""
    zeta_maps: int = field(default=256, metadata=rng(1, 1_000_000))
    """Validation maps used to pick zeta."""
    storage_dtype: str = field(default="float32", metadata=choices("float32", "float16"))
    """Weights on disk; the shipped models use float16 to stay small."""
    num_workers: int = field(default=1, metadata=rng(1, 4096))
    """Ray Train workers (data parallel)."""
    use_gpu: bool = False
    """One GPU per worker."""
    torch_threads: int = field(default=1, metadata=rng(1, 1024))
    """torch threads per worker (1 on shared machines)."""
    log_every: int = field(default=250, metadata=rng(1, 10_000_000))
    """Print progress every this many optimizer steps."""

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        if not self.channel_uses or any(
            isinstance(k, bool) or not isinstance(k, int) or k < 1 for k in self.channel_uses
        ):
            raise ValueError(
                f"{prefix}channel_uses={self.channel_uses!r} must be a non-empty tuple of ints >= 1"
            )
        if len(set(self.channel_uses)) != len(self.channel_uses):
            raise ValueError(f"{prefix}channel_uses={self.channel_uses!r} has duplicates")
        if self.snr_high_db < self.snr_low_db:
            raise ValueError(
                f"{prefix}snr_high_db={self.snr_high_db} must be >= "
                f"{prefix}snr_low_db={self.snr_low_db}"
            )
        if not self.zeta_grid or any(z < 0 or not math.isfinite(z) for z in self.zeta_grid):
            raise ValueError(
                f"{prefix}zeta_grid={self.zeta_grid!r} must be non-empty, finite, >= 0"
            )
        if not self.zeta_snr_db:
            raise ValueError(f"{prefix}zeta_snr_db must hold at least one SNR (dB)")
        for key in ("data_actors", "data_modes", "data_budget_levels"):
            if not getattr(self, key):
                raise ValueError(f"{prefix}{key}=() is not allowed; expected at least one value")
        bad = [m for m in self.data_modes if m not in ("distributed", "centralized", "hybrid")]
        if bad:
            raise ValueError(
                f"{prefix}data_modes={self.data_modes!r} is not allowed; each must be one of "
                "'distributed', 'centralized', 'hybrid'"
            )
        if any(
            isinstance(b, bool) or not isinstance(b, int) or b < 0 for b in self.data_budget_levels
        ):
            raise ValueError(
                f"{prefix}data_budget_levels={self.data_budget_levels!r} must hold ints >= 0"
            )


def _data_parallel(module: nn.Module) -> nn.Module:
    """Ray Train's ``prepare_model`` (``DistributedDataParallel`` with more than one worker;
    the module as it is with one). The model is already on the worker's device. Each worker
    keeps the input statistics of its own data in its buffers, so DDP does not overwrite
    them with rank 0's."""
    from ray.train.torch import prepare_model

    return prepare_model(
        module, move_to_device=False, parallel_strategy_kwargs={"broadcast_buffers": False}
    )


def collect_env_beliefs(
    env_id: str, num_envs: int, steps: int, seed: int, **overrides: Any
) -> BeliefMaps:
    """Belief maps of every agent at every step of expert rollouts in a batched grid world.

    The world is driven by :func:`agentcomm.envs.experts.expert_actions`; finished worlds
    are reset in place, so the data covers whole episodes from fresh to well explored.
    After each step the fused beliefs ``world.belief [B, N, H, W]`` (log-odds, clipped to
    ``comm.logodds_clip``) are kept with what the sensors detect, ``world.true_map()``
    ``[B, H, W]``, repeated per agent.

    Args:
        env_id: a grid-belief scenario, e.g. ``"SearchRescue-v0"``.
        num_envs: parallel worlds ``B``.
        steps: environment steps ``T``.
        seed: seeds the world's generator (the only randomness).
        **overrides: scenario config overrides, as for :func:`agentcomm.make_vec`.
    Returns:
        :class:`BeliefMaps` with ``D = T * B * N`` maps: ``logodds`` float32 ``[D, H, W]``
        (nats), ``truth`` bool ``[D, H, W]``, ordered by step, then world, then agent.
    """
    check_range("num_envs", num_envs, 1, None)
    check_range("steps", steps, 1, None)
    world = make_vec(env_id, num_envs=num_envs, seed=int(seed), **overrides)
    if world.belief_kind != "grid":
        raise ValueError(
            f"env_id={env_id!r} has belief_kind={world.belief_kind!r}; "
            "collect_env_beliefs needs a grid-belief scenario"
        )
    world.reset(seed=int(seed))
    logodds, truth = [], []
    n = world.num_agents
    for _ in range(steps):
        _, _, terminated, truncated, _ = world.step(expert_actions(world))
        logodds.append(world.belief.float().flatten(0, 1).clone())
        truth.append(world.true_map().unsqueeze(1).expand(-1, n, -1, -1).flatten(0, 1).clone())
        done = terminated | truncated
        if bool(done.any()):
            world.reset_at(done)
    return BeliefMaps(logodds=torch.cat(logodds), truth=torch.cat(truth).bool())


def _payloads(world: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Every map the world's belief store would put on the air now: float32 ``[D, H, W]``
    and the world of each, long ``[D]``.

    Peer messages (``distributed``, ``hybrid``): each agent's peer payload (own evidence under
    ``latest`` fusion, else its fused belief); uplinks (``centralized``, ``hybrid``): each
    agent's own evidence, unless the peer payload already is that; downlinks
    (``centralized``, ``hybrid``): the fusion centre's map. Ordered world by world within
    each kind.
    """
    store = world.beliefs
    mode = world.config.comm.mode
    b, n = world.num_envs, world.num_agents
    env = torch.arange(b, device=world.device).repeat_interleave(n)
    src = torch.arange(n, device=world.device).repeat(b)
    maps, worlds = [], []
    if mode != "centralized":
        grid, rows = store.peer_payload(env, src)
        maps.append(grid[rows])
        worlds.append(env)
    if mode != "distributed":
        if not (mode == "hybrid" and store.keeps_copies):
            grid, rows = store.uplink_payload(env, src)
            maps.append(grid[rows])
            worlds.append(env)
        maps.append(store.centre_payload())
        worlds.append(torch.arange(b, device=world.device))
    return torch.cat(maps).float(), torch.cat(worlds)


def collect_payload_maps(
    env_id: str,
    num_envs: int,
    steps: int,
    seed: int,
    actor: str = "expert",
    **overrides: Any,
) -> BeliefMaps:
    """The maps put on the air at every step of rollouts under one actor, with their truth.

    After each step the payloads of every message kind of the world's coordination mode
    (:func:`_payloads`) are kept with the true map of their world (``world.true_map()``);
    finished worlds are reset in place, so the data covers whole episodes, every step.

    Args:
        env_id: a grid-belief scenario, e.g. ``"SearchRescue-v0"``.
        num_envs: parallel worlds ``B``.
        steps: environment steps ``T``.
        seed: seeds the world's generator and the actor's.
        actor: a :func:`~agentcomm.policies.evaluate.load_actor` name (``"expert"``,
            ``"shipped:NAME"``, a policy folder); a learned policy runs in the scenario
            config recorded with it, updated by ``overrides``.
        **overrides: scenario config overrides, as for :func:`agentcomm.make_vec`.
    Returns:
        :class:`BeliefMaps`, ordered by step, then message kind, then world and agent.
    """
    check_range("num_envs", num_envs, 1, None)
    check_range("steps", steps, 1, None)
    gen = torch.Generator().manual_seed(int(seed))
    act, meta = load_actor(actor, generator=gen)
    config = _merge(dict(meta.get("env_config") or {}), overrides)
    world = make_vec(env_id, num_envs=num_envs, seed=int(seed), **config)
    if world.belief_kind != "grid":
        raise ValueError(
            f"env_id={env_id!r} has belief_kind={world.belief_kind!r}; "
            "collect_payload_maps needs a grid-belief scenario"
        )
    obs = world.reset(seed=int(seed))
    logodds, truth = [], []
    with torch.no_grad():
        for _ in range(steps):
            obs, _, terminated, truncated, _ = world.step(act(world, obs))
            maps, worlds = _payloads(world)
            logodds.append(maps.clone())
            truth.append(world.true_map()[worlds])
            done = terminated | truncated
            if bool(done.any()):
                world.reset_at(done)
                obs = world.observation()
    return BeliefMaps(logodds=torch.cat(logodds), truth=torch.cat(truth).bool())


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``over``, nested dicts merged key by key."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def collect_training_maps(cfg: DecoderTrainConfig, steps: int, seed: int) -> BeliefMaps:
    """The training (or validation) maps of a config: :func:`collect_env_beliefs` for
    ``data_source="beliefs"``; for ``"payloads"`` :func:`collect_payload_maps` under every
    actor and coordination mode of the config (budgets drawn per episode from
    ``data_budget_levels``), ``steps`` steps each, each pair on its own seed."""
    if cfg.data_source == "beliefs":
        return collect_env_beliefs(cfg.env_id, cfg.num_envs, steps, seed, **cfg.env_overrides)
    levels = tuple(sorted(cfg.data_budget_levels))
    parts = []
    for i, actor in enumerate(cfg.data_actors):
        for j, mode in enumerate(cfg.data_modes):
            comm = {"mode": mode, "budget": max(levels)}
            if len(levels) > 1:
                comm["budget_levels"] = levels
            over = _merge(cfg.env_overrides, {"comm": comm})
            parts.append(
                collect_payload_maps(
                    cfg.env_id, cfg.num_envs, steps, seed + 7 * i + 101 * j, actor, **over
                )
            )
    return BeliefMaps(
        logodds=torch.cat([p.logodds for p in parts]), truth=torch.cat([p.truth for p in parts])
    )


def _unit_stats(maps: torch.Tensor, clip: float) -> tuple[float, float]:
    """Mean and standard deviation of the normalized cells of ``maps [D, H, W]`` over every
    worker's data (the flow's preconditioning constants, the same on every worker)."""
    import torch.distributed as dist

    u = to_unit(maps, clip).double()
    sums = torch.stack([u.sum(), u.square().sum(), torch.tensor(float(u.numel()), device=u.device)])
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(sums)
    mean = float(sums[0] / sums[2])
    var = max(float(sums[1] / sums[2]) - mean**2, 1e-8)
    return round(mean, 6), round(var**0.5, 6)


def _logodds_clip(cfg: DecoderTrainConfig) -> float:
    """The environment's log-odds bound ``L`` (``comm.logodds_clip``) under the overrides."""
    return float(env_class(cfg.env_id).config_cls.from_dict(cfg.env_overrides).comm.logodds_clip)


def _train_loop(raw: dict[str, Any]) -> None:
    """Ray Train worker: collect data, train prior and JSCCs, rank 0 calibrates and saves."""
    import ray.train
    import ray.train.torch

    cfg = DecoderTrainConfig.from_dict(raw)
    torch.set_num_threads(cfg.torch_threads)
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    device = ray.train.torch.get_device() if cfg.use_gpu else torch.device("cpu")
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        if rank == 0:
            print(f"[train-decoder {time.perf_counter() - t0:7.1f}s] {msg}", flush=True)

    data = collect_training_maps(cfg, cfg.rollout_steps, cfg.seed + rank)
    maps = data.logodds.to(device)
    d, h, w = maps.shape
    clip = _logodds_clip(cfg)
    log(f"collected {d} maps of {h}x{w} from {cfg.env_id} (rank 0)")
    generator = torch.Generator(device=device).manual_seed(cfg.seed + 7919 * rank)
    rows: list[tuple[str, int, float]] = []

    def progress(phase: str, total: int) -> Callable[[int, float], None]:
        def report(step: int, loss: float) -> None:
            rows.append((phase, step, loss))
            if (step + 1) % cfg.log_every == 0 or step + 1 == total:
                log(f"{phase}: step {step + 1}/{total} loss {loss:.5f}")

        return report

    # Identical initial weights on every worker: gradients are averaged, not the weights.
    torch.manual_seed(cfg.seed)
    prior = DiffusionPrior(
        PriorConfig(height=h, width=w, clip=clip, hidden=cfg.prior_hidden, depth=cfg.prior_depth)
    ).to(device)
    train_prior(
        prior,
        maps,
        generator,
        steps=cfg.prior_steps,
        batch_size=cfg.prior_batch,
        lr=cfg.prior_lr,
        progress=progress("prior", cfg.prior_steps),
        parallel=_data_parallel,
    )
    flow = None
    if cfg.flow_steps > 0:
        mean, std = _unit_stats(maps, clip)
        torch.manual_seed(cfg.seed + 1)
        flow = FlowPrior(
            FlowConfig(
                height=h,
                width=w,
                clip=clip,
                hidden=cfg.flow_hidden,
                depth=cfg.flow_depth,
                data_mean=mean,
                data_std=std,
            )
        ).to(device)
        train_flow(
            flow,
            maps,
            generator,
            steps=cfg.flow_steps,
            batch_size=cfg.flow_batch,
            lr=cfg.flow_lr,
            progress=progress("flow", cfg.flow_steps),
            parallel=_data_parallel,
        )
    channel = make_channel(cfg.train_channel, csi="perfect")
    models = {}
    for k in sorted(cfg.channel_uses):
        torch.manual_seed(cfg.seed + k)
        jcfg = JSCCConfig(
            height=h,
            width=w,
            channel_uses=k,
            clip=clip,
            hidden=cfg.jscc_hidden,
            depth=cfg.jscc_depth,
        )
        models[k] = JSCC(jcfg).to(device)
        train_jscc(
            models[k],
            maps,
            channel,
            generator,
            steps=cfg.jscc_steps,
            batch_size=cfg.jscc_batch,
            lr=cfg.jscc_lr,
            snr_range_db=(cfg.snr_low_db, cfg.snr_high_db),
            progress=progress(f"jscc_k{k}", cfg.jscc_steps),
            parallel=_data_parallel,
        )

    metrics: dict[str, float] = {"maps_per_worker": float(d)}
    if rank != 0:
        ray.train.report(metrics)
        return
    # --- rank 0: validation split, CDDM calibration, zeta selection, save
    prior, models = prior.cpu(), {k: m.cpu() for k, m in models.items()}
    flow = None if flow is None else flow.cpu()
    val = collect_training_maps(cfg, cfg.val_rollout_steps, cfg.seed + 1_000_003).logodds
    vgen = torch.Generator().manual_seed(cfg.seed + 17)
    perm = torch.randperm(val.shape[0], generator=vgen)
    val_zeta = val[perm[: cfg.zeta_maps]]
    cddm, zeta, info_val = {}, {}, {}
    for k, model in models.items():
        cddm[k] = CDDMReceiver.calibrate(model, prior, val, AWGN(), vgen, steps=cfg.cddm_steps)
        zeta[k], scores = select_zeta(
            model,
            prior,
            cddm[k],
            val_zeta,
            cfg.zeta_grid,
            cfg.zeta_snr_db,
            cfg.diffcom_steps,
            vgen,
        )
        info_val[str(k)] = {"zeta_val_mse": {str(z): s for z, s in scores.items()}}
        metrics[f"zeta_k{k}"] = zeta[k]
        log(f"k={k}: zeta={zeta[k]} (validation MSE by zeta: {scores})")
    bundle = DecoderBundle(
        prior=prior,
        jscc=models,
        cddm=cddm,
        zeta=zeta,
        diffcom_steps=cfg.diffcom_steps,
        flow=flow,
        flow_steps=cfg.flow_sample_steps,
        info={
            "env_id": cfg.env_id,
            "train_maps_per_worker": d,
            "val_maps": int(val.shape[0]),
            "validation": info_val,
            "train_config": cfg.to_dict(),
        },
    )
    with tempfile.TemporaryDirectory() as tmp:
        bundle.save(tmp, dtype=cfg.storage_dtype)
        with open(Path(tmp) / "losses.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["phase", "step", "loss"])
            writer.writerows(rows)
        cfg.save(Path(tmp) / "train_config.yaml")
        log("saved the bundle")
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def plot_losses(csv_path: str | os.PathLike[str], png_path: str | os.PathLike[str]) -> None:
    """Draw ``losses.csv`` (``phase,step,loss``) as one log-scale curve per phase."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves: dict[str, tuple[list[int], list[float]]] = {}
    with open(csv_path) as f:
        for row in csv.DictReader(f):
            steps, losses = curves.setdefault(row["phase"], ([], []))
            steps.append(int(row["step"]))
            losses.append(float(row["loss"]))
    fig, ax = plt.subplots(figsize=(6, 4))
    for phase, (steps, losses) in curves.items():
        ax.plot(steps, losses, label=phase, lw=0.8)
    ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (MSE)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=120)
    plt.close(fig)


def train_decoders(config: DecoderTrainConfig, out_dir: str | os.PathLike[str]) -> Path:
    """Train a decoder bundle with Ray Train's ``TorchTrainer`` and write it to ``out_dir``.

    Uses the running Ray instance, or starts a local one
    (``num_cpus = num_workers + 1``, no dashboard) and shuts it down afterwards.

    Args:
        config: the training config.
        out_dir: created if missing; receives the bundle, ``losses.csv``, ``losses.png``
            and ``train_config.yaml``.
    Returns:
        ``out_dir`` as a :class:`~pathlib.Path`.
    """
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    if not isinstance(config, DecoderTrainConfig):
        raise ValueError(f"config must be a DecoderTrainConfig, got {type(config).__name__}")
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=config.num_workers + 1, include_dashboard=False)
    # Ray's own run records go to a scratch folder: ``out_dir`` holds only the bundle.
    with tempfile.TemporaryDirectory(prefix="train-decoder-") as storage:
        try:
            trainer = TorchTrainer(
                _train_loop,
                train_loop_config=config.to_dict(),
                scaling_config=ScalingConfig(
                    num_workers=config.num_workers, use_gpu=config.use_gpu
                ),
                run_config=RunConfig(name="train-decoder", storage_path=storage),
            )
            result = trainer.fit()
        finally:
            if started:
                ray.shutdown()
        if result.checkpoint is None:
            raise RuntimeError(f"Ray Train finished without a checkpoint: {result.error!r}")
        result.checkpoint.to_directory(str(out))
    plot_losses(out / "losses.csv", out / "losses.png")
    return out
