"""Train the JSCC receiver and its diffusion prior online in RLlib, beside the PPO policy.

One command (about 7 minutes of training and evaluation on a shared 2-core machine, one
thread; the YAML's task part, 1,000 episodes per receiver, adds about 9)::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/recipes/train_online_receiver.py \\
        --out runs/online_receiver [--config experiments/recipes/configs/online_receiver.yaml]

The policy (shared Gaussian PPO), the JSCC receiver and the diffusion prior are three modules
of one ``MultiRLModule``, updated by one Learner on the belief maps the env runner collects
(:func:`agentcomm.policies.online_receiver.online_receiver_config` with ``prior=``). Every
``eval_every`` iterations the script rolls the *current* policy out on held-out seeds (maps
no module trained on) and writes a row per evaluation SNR to ``curve.csv``:

* ``jscc_mse``: reconstruction MSE (normalized log-odds) of the online JSCC receiver over
  the training channel (perfect CSI) at that SNR;
* ``cddm_mse``: the same messages decoded CDDM-style with the online prior
  (:func:`agentcomm.policies.online_diffusion_receiver.online_cddm_receiver`, calibrated on
  other held-out episodes);
* ``constant_map_mse``: the best constant map, the held-out maps' own per-cell mean (fitted
  to the very maps it is scored on, so no constant does better); ``prior_mse``: the
  scenario's prior everywhere;
* ``prior_loss``: the prior's denoising loss on the held-out maps (fixed timesteps/noise).

At the end it saves the online JSCC, prior and CDDM calibration as a decoder bundle
(``OUT/bundle``, loadable by the environment's ``jscc`` / ``jscc+cddm`` codecs) and, with
``task_episodes > 0``, evaluates the expert on SearchRescue-v0 with the co-trained and the
shipped bundle through ``experiments/eval_decoders.py``'s task evaluation (its transmit power
and budget: a mean peer-link SNR of 0-5 dB). The RLlib checkpoint in ``OUT/checkpoint`` makes
the run resumable: run the same command again to continue from the last evaluation.
Last line: ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from agentcomm.config import Config, choices, rng

#: Log-odds bound (nats) of the maps, the environment's ``logodds_clip``.
CLIP = 6.0


@dataclass(frozen=True)
class OnlineReceiverRecipe(Config):
    """Settings of :func:`run` (YAML/JSON loadable with ``--config``)."""

    env_id: str = "SearchRescue-v0"
    iterations: int = field(default=40, metadata=rng(1))
    eval_every: int = field(default=5, metadata=rng(1))
    seed: int = 0
    # PPO sampling and updates (shared by the policy and the receiver modules).
    train_batch_size: int = field(default=512, metadata=rng(1))
    minibatch_size: int = field(default=128, metadata=rng(1))
    num_epochs: int = field(default=8, metadata=rng(1))
    policy_hidden: tuple[int, ...] = (64, 64)
    # The JSCC receiver.
    channel: str = field(default="rayleigh_block", metadata=choices("awgn", "rayleigh_block"))
    channel_uses: int = field(default=32, metadata=rng(1))
    jscc_hidden: int = field(default=256, metadata=rng(1))
    snr_low_db: float = -5.0
    snr_high_db: float = 25.0
    receiver_lr: float = field(default=2e-3, metadata=rng(0.0, low_inclusive=False))
    stat_momentum: float = field(default=0.05, metadata=rng(0.0, 1.0, low_inclusive=False))
    replay_maps: int = field(default=4096, metadata=rng(0))
    # The diffusion prior.
    prior_hidden: int = field(default=384, metadata=rng(1))
    prior_depth: int = field(default=4, metadata=rng(1))
    prior_lr: float = field(default=1e-3, metadata=rng(0.0, low_inclusive=False))
    cddm_steps: int = field(default=5, metadata=rng(1))
    # Evaluation.
    eval_snr_db: tuple[float, ...] = (0.0, 5.0, 10.0)
    heldout_episodes: int = field(default=8, metadata=rng(1))
    calibration_episodes: int = field(default=4, metadata=rng(1))
    task_episodes: int = field(default=0, metadata=rng(0))


def rollout_beliefs(policy, env_id: str, episodes: int, seed: int) -> torch.Tensor:
    """Beliefs float32 ``[M, H, W]`` (nats) of every agent at every step of ``episodes``
    episodes on seeds ``seed, seed + 1, ...``, the agents acting by ``policy`` (RLlib's
    module, actions drawn from its Gaussian as in training, noise seeded by ``seed``)."""
    from agentcomm.policies.gaussian_ppo import GaussianActor
    from agentcomm.policies.online_receiver import BELIEF, BeliefInfoMultiAgentEnv

    actor = GaussianActor("rllib", policy)
    env = BeliefInfoMultiAgentEnv({"env_id": env_id})
    gen = torch.Generator().manual_seed(seed)
    maps = []
    for j in range(episodes):
        obs, infos = env.reset(seed=seed + j)
        maps.extend(info[BELIEF] for info in infos.values())
        while env.agents:
            ids = list(obs)
            x = torch.as_tensor(np.stack([obs[a] for a in ids]), dtype=torch.float32)
            act = actor.sample(x, gen).numpy()
            obs, _, _, _, infos = env.step(dict(zip(ids, act)))
            maps.extend(info[BELIEF] for info in infos.values())
    return torch.as_tensor(np.stack(maps), dtype=torch.float32)


@torch.no_grad()
def evaluate_receivers(jscc, prior, maps, calib_maps, cfg, prior_logodds: float) -> list[dict]:
    """One row per SNR of ``cfg.eval_snr_db``: MSEs of the online JSCC, of CDDM decoding with
    the online prior and of the constant maps on ``maps`` (module docstring)."""
    from agentcomm.channels.registry import make_channel
    from agentcomm.decoders.data import to_unit
    from agentcomm.policies.online_diffusion_receiver import online_cddm_receiver

    rx = online_cddm_receiver(jscc, prior, calib_maps, steps=cfg.cddm_steps, seed=cfg.seed)
    channel = make_channel(cfg.channel)
    u = to_unit(maps, CLIP)
    constant = float((u - u.mean(0)).square().mean())
    prior_mse = float((u - max(min(prior_logodds / CLIP, 1.0), -1.0)).square().mean())
    g = torch.Generator().manual_seed(cfg.seed + 1)
    loss = float(rx.prior.loss(u, g))
    rows = []
    for snr in cfg.eval_snr_db:
        g = torch.Generator().manual_seed(cfg.seed + 2)
        est, out = rx.jscc.transmit(maps, channel, snr, g)
        rows.append(
            {
                "snr_db": snr,
                "jscc_mse": float((to_unit(est, CLIP) - u).square().mean()),
                "cddm_mse": float((to_unit(rx.decode(out), CLIP) - u).square().mean()),
                "constant_map_mse": constant,
                "prior_mse": prior_mse,
                "prior_loss": loss,
                "maps": int(maps.shape[0]),
            }
        )
    return rows, rx


def build(cfg: OnlineReceiverRecipe):
    """The ``PPOConfig`` of the run."""
    from agentcomm.decoders.jscc import JSCCConfig
    from agentcomm.decoders.prior import PriorConfig
    from agentcomm.policies.online_receiver import online_receiver_config

    return online_receiver_config(
        cfg.env_id,
        receiver=JSCCConfig(
            height=16, width=16, channel_uses=cfg.channel_uses, clip=CLIP, hidden=cfg.jscc_hidden
        ),
        channel=cfg.channel,
        snr_range_db=(cfg.snr_low_db, cfg.snr_high_db),
        receiver_lr=cfg.receiver_lr,
        stat_momentum=cfg.stat_momentum,
        replay_maps=cfg.replay_maps,
        prior=PriorConfig(
            height=16, width=16, clip=CLIP, hidden=cfg.prior_hidden, depth=cfg.prior_depth
        ),
        prior_lr=cfg.prior_lr,
        seed=cfg.seed,
        train_batch_size=cfg.train_batch_size,
        minibatch_size=cfg.minibatch_size,
        num_epochs=cfg.num_epochs,
        hidden=cfg.policy_hidden,
    )


def save_bundle(rx, out: Path, cfg: OnlineReceiverRecipe) -> Path:
    """Write the online JSCC + prior + CDDM calibration as a decoder bundle under ``out``."""
    from agentcomm.decoders.bundle import DecoderBundle

    k = rx.jscc.config.channel_uses
    bundle = DecoderBundle(
        prior=rx.prior,
        jscc={k: rx.jscc},
        cddm={k: rx},
        zeta={k: 0.0},
        info={"env_id": cfg.env_id, "online_recipe": cfg.to_dict()},
    )
    return bundle.save(out)


def run(cfg: OnlineReceiverRecipe, out: Path) -> dict[str, str]:
    """Train, evaluate, save the bundle and (optionally) run the task comparison."""
    import ray

    from agentcomm.policies.online_receiver import (
        POLICY_MODULE_ID,
        PRIOR_MODULE_ID,
        RECEIVER_MODULE_ID,
    )

    out.mkdir(parents=True, exist_ok=True)
    cfg.save(out / "config.yaml")
    curve_path, ckpt = out / "curve.csv", out / "checkpoint"
    rows: list[dict] = []
    if ckpt.is_dir() and curve_path.is_file():
        with curve_path.open() as f:
            rows = list(csv.DictReader(f))
    done = int(rows[-1]["iteration"]) if rows else 0
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 1024**2)
    algo = build(cfg).build_algo()
    t0 = time.perf_counter()
    try:
        if done:
            algo.restore_from_path(str(ckpt.resolve()))
            print(f"resumed at iteration {done} from {ckpt}", flush=True)
        from agentcomm.policies.online_receiver import BeliefInfoMultiAgentEnv

        prior_logodds = float(BeliefInfoMultiAgentEnv({"env_id": cfg.env_id}).world.prior)
        rx = None
        for it in range(done + 1, cfg.iterations + 1):
            result = algo.train()
            if it % cfg.eval_every and it != cfg.iterations:
                continue
            policy = algo.get_module(POLICY_MODULE_ID)
            heldout = rollout_beliefs(policy, cfg.env_id, cfg.heldout_episodes, 10_000 * it)
            calib = rollout_beliefs(
                policy, cfg.env_id, cfg.calibration_episodes, 10_000 * it + 5_000
            )
            jscc = algo.get_module(RECEIVER_MODULE_ID).jscc
            prior = algo.get_module(PRIOR_MODULE_ID).prior
            new, rx = evaluate_receivers(jscc, prior, heldout, calib, cfg, prior_logodds)
            learned = result["learners"]
            ret = result["env_runners"].get("episode_return_mean", float("nan"))
            for r in new:
                r.update(
                    iteration=it,
                    wall_s=round(time.perf_counter() - t0, 1),
                    learner_jscc_mse=float(learned[RECEIVER_MODULE_ID]["reconstruction_mse"]),
                    learner_prior_loss=float(learned[PRIOR_MODULE_ID]["denoising_loss"]),
                    episode_return=float(ret),
                )
                print(
                    f"it {it:3d} snr {r['snr_db']:5.1f} dB: jscc {r['jscc_mse']:.5f} "
                    f"cddm {r['cddm_mse']:.5f} constant {r['constant_map_mse']:.5f} "
                    f"prior-map {r['prior_mse']:.5f} prior-loss {r['prior_loss']:.4f} "
                    f"(n={r['maps']}, {r['wall_s']:.0f}s)",
                    flush=True,
                )
            rows.extend(new)
            _write_csv(curve_path, rows)
            algo.save_to_path(str(ckpt.resolve()))
        if rx is None:  # resumed after the last iteration: evaluate once more
            policy = algo.get_module(POLICY_MODULE_ID)
            seed = 10_000 * cfg.iterations
            heldout = rollout_beliefs(policy, cfg.env_id, cfg.heldout_episodes, seed)
            calib = rollout_beliefs(policy, cfg.env_id, cfg.calibration_episodes, seed + 5_000)
            _, rx = evaluate_receivers(
                algo.get_module(RECEIVER_MODULE_ID).jscc,
                algo.get_module(PRIOR_MODULE_ID).prior,
                heldout,
                calib,
                cfg,
                prior_logodds,
            )
    finally:
        algo.stop()
        ray.shutdown()
    wall = time.perf_counter() - t0
    bundle_dir = save_bundle(rx, out / "bundle", cfg)
    last = [r for r in rows if int(r["iteration"]) == int(rows[-1]["iteration"])]
    result = {"iterations": str(rows[-1]["iteration"]), "maps": str(last[0]["maps"])}
    for r in last:
        s = f"{float(r['snr_db']):g}"
        result[f"online_mse_{s}db"] = f"{float(r['jscc_mse']):.5f}"
        result[f"cddm_mse_{s}db"] = f"{float(r['cddm_mse']):.5f}"
    result["constant_map_mse"] = f"{float(last[0]['constant_map_mse']):.5f}"
    result["prior_map_mse"] = f"{float(last[0]['prior_mse']):.5f}"
    result["train_wall_s"] = f"{wall:.0f}"
    if cfg.task_episodes > 0:
        result.update(task_effect(bundle_dir, out, cfg))
    return result


def task_effect(bundle_dir: Path, out: Path, cfg: OnlineReceiverRecipe) -> dict[str, str]:
    """Expert success with the co-trained and with the shipped bundle, via the task part of
    ``experiments/eval_decoders.py`` (same power, budget, evaluation worlds and seed)."""
    from agentcomm.decoders.bundle import default_bundle_dir
    from agentcomm.experiments.eval_decoders import task

    rows = []
    for label, path in (("shipped", default_bundle_dir((16, 16))), ("online", bundle_dir)):
        for r in task(path, cfg.task_episodes, cfg.seed):
            rows.append({"bundle": label, **r})
    _write_csv(out / "task.csv", rows)
    return {
        f"task_{r['bundle']}_{r['codec']}": (
            f"{r['success_rate']:.3f}[{r['ci_low']:.3f},{r['ci_high']:.3f}]"
        )
        for r in rows
    } | {"task_episodes": str(cfg.task_episodes)}


def _write_csv(path: Path, rows: list[dict]) -> None:
    keys = list(rows[0])
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/online_receiver")
    parser.add_argument("--config", help="YAML/JSON of OnlineReceiverRecipe fields")
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--task-episodes", type=int)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = OnlineReceiverRecipe.load(args.config) if args.config else OnlineReceiverRecipe()
    if args.iterations is not None:
        cfg = cfg.replace(iterations=args.iterations)
    if args.task_episodes is not None:
        cfg = cfg.replace(task_episodes=args.task_episodes)
    result = run(cfg, Path(args.out))
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
