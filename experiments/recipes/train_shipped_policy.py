"""Train, ship and record the behaviour-cloned diffusion policy for SearchRescue-v0.

    OMP_NUM_THREADS=1 .venv/bin/python experiments/recipes/train_shipped_policy.py

Steps (default config of SearchRescue-v0, one torch thread; 11.4 minutes of wall time on
the shared, busy 2-core development machine, 11.2 of them BC training):

1. the scripted expert runs ``--demo-steps`` world steps in ``--demo-envs`` parallel
   worlds (``collect_demos``; every agent-step is one ``(observation, action)`` pair);
2. a small MLP diffusion policy (``hidden=128``, ``depth=3``, ``K=20`` DDPM steps,
   5-step DDIM at evaluation) is behaviour-cloned on them (``train_bc``, EMA weights);
3. the EMA policy is saved with ``save_policy`` into
   ``agentcomm/models/policies/searchrescue-bc/`` (``model.safetensors`` + ``config.json``,
   about 0.5 MB);
4. when ``--out`` is the shipped folder, its recorded figures are re-measured by
   ``experiments/recipes/record_shipped.py`` (``expected.json``), which
   ``tests/test_shipped_models.py`` checks (the evaluation is deterministic: fixed
   initial noise, no step noise, so it reproduces bit for bit on the same CPU build).

The demonstrations come from world seed ``--demo-seed`` (1 by default), distinct from the
evaluation seed, so the recorded success is measured on worlds the policy never saw.
The last line printed is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from agentcomm.experiments.metrics import evaluate, make_policy
from agentcomm.experiments.threads import use_one_thread
from agentcomm.policies.bc import train_bc
from agentcomm.policies.demos import collect_demos
from agentcomm.policies.diffusion import DiffusionPolicy

ENV_ID = "SearchRescue-v0"
NAME = "searchrescue-bc"
COMMAND = "OMP_NUM_THREADS=1 python experiments/recipes/train_shipped_policy.py"
DEFAULT_OUT = Path(__file__).resolve().parents[1] / "agentcomm" / "models" / "policies" / NAME

#: Network and sampler of the shipped policy (``DiffusionConfig`` fields).
POLICY = {
    "hidden": 128,
    "depth": 3,
    "denoising_steps": 20,
    "ddim_steps": 5,
    "ft_denoising_steps": 5,
}


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="checkpoint directory")
    p.add_argument("--demo-steps", type=int, default=256, help="world steps per demo world")
    p.add_argument("--demo-envs", type=int, default=64, help="parallel demo worlds")
    p.add_argument("--demo-seed", type=int, default=1, help="world seed of the demos")
    p.add_argument("--epochs", type=int, default=150, help="BC passes over the demos")
    p.add_argument("--batch-size", type=int, default=1024, help="BC minibatch size")
    p.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    p.add_argument("--ema-decay", type=float, default=0.995, help="EMA decay of the weights")
    p.add_argument("--train-seed", type=int, default=0, help="seed of init, shuffling, noise")
    p.add_argument("--episodes", type=int, default=1024, help="evaluation episodes")
    p.add_argument("--seed", type=int, default=0, help="seed index into the evaluation worlds")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = _parse(argv)
    use_one_thread(override=False)
    start = time.perf_counter()

    # --- 1. expert demonstrations -------------------------------------------------------
    demos = collect_demos(ENV_ID, args.demo_steps, num_envs=args.demo_envs, seed=args.demo_seed)
    print(
        f"demos: {demos.obs.shape[0]} agent-steps, expert success {demos.success_rate:.3f} "
        f"over {demos.episodes} episodes ({time.perf_counter() - start:.0f}s)"
    )

    # --- 2. behaviour cloning -----------------------------------------------------------
    gen = torch.Generator().manual_seed(args.train_seed)
    policy = DiffusionPolicy(demos.obs.shape[1], demos.actions.shape[1], generator=gen, **POLICY)
    t_train = time.perf_counter()
    result = train_bc(
        policy,
        demos.obs,
        demos.actions,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        ema_decay=args.ema_decay,
        generator=gen,
        progress=False,
        save_dir=args.out,
        save_metadata={
            "env_id": ENV_ID,
            "command": COMMAND,
            "demo_steps": args.demo_steps,
            "demo_envs": args.demo_envs,
            "demo_seed": args.demo_seed,
            "demo_rows": int(demos.obs.shape[0]),
            "train_seed": args.train_seed,
        },
    )
    train_s = time.perf_counter() - t_train
    print(
        f"bc: loss {result.losses[0]:.4f} -> {result.losses[-1]:.4f} in {args.epochs} epochs "
        f"({train_s:.0f}s); saved {result.checkpoint}"
    )

    # --- 3. measure it on evaluation worlds; record the shipped folder's figures ----------
    t_eval = time.perf_counter()
    success = evaluate(ENV_ID, make_policy(str(args.out)), args.episodes, args.seed)["success"]
    eval_s = time.perf_counter() - t_eval
    expert = evaluate(ENV_ID, make_policy("expert"), args.episodes, args.seed)["success"]
    out = {"policy_success": success, "expert_success": expert, "episodes": args.episodes}
    if args.out.resolve() == DEFAULT_OUT.resolve():
        from agentcomm.experiments.recipes.record_shipped import record

        out["recorded"] = record(args.out.name)
    size_kb = sum(f.stat().st_size for f in args.out.iterdir()) / 1024
    print(
        f"RESULT policy_success={success:.4f} expert_success={expert:.4f} "
        f"episodes={args.episodes} train_s={train_s:.0f} eval_s={eval_s:.1f} "
        f"size_kb={size_kb:.0f} minutes={(time.perf_counter() - start) / 60:.1f}"
    )
    return out


if __name__ == "__main__":
    main()
