"""One DPPO iteration with the learner and the batched world on CUDA: a device smoke check.

Builds the DPPO config of :mod:`agentcomm.policies.train` for SearchRescue-v0 (a random
diffusion policy, residual MLP 3x256, DDIM 5 steps all fine-tuned), with the local
learner on the GPU (``num_gpus_per_learner=1``) and the batched EnvRunner's world and
module on ``cuda`` (``env_config["device"]``). Runs one warm-up iteration, then times
``--iterations`` more and prints sampling throughput (agent-steps/s), learner time per
agent-step and the peak GPU memory.

Before that, it times the batched world alone on ``cuda`` (``--world-batches``, random
actions, every scenario's default communication) and prints env-steps/s per batch size.

Without CUDA it prints that it needs CUDA and ends with ``RESULT cuda=0`` (exit 0).

Usage::

    .venv/bin/python experiments/benchmarks/gpu_check.py --worlds 1024 --batch 65536

The last line printed is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch


def world_throughput(batch: int, steps: int) -> float:
    """Env-steps/s of SearchRescue-v0 (4 agents, default comm) with ``batch`` worlds on cuda."""
    from agentcomm.experiments.benchmarks.bench_env import make_agentcomm

    step, _ = make_agentcomm("SearchRescue-v0", batch, 4, None, seed=0, device="cuda")
    for _ in range(5):
        step()
    torch.cuda.synchronize()
    rates = []
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        torch.cuda.synchronize()
        rates.append(batch * steps / (time.perf_counter() - t0))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worlds", type=int, default=1024, help="batched worlds B")
    parser.add_argument("--batch", type=int, default=65536, help="agent-steps per iteration")
    parser.add_argument("--minibatch", type=int, default=8192)
    parser.add_argument("--iterations", type=int, default=2, help="timed iterations")
    parser.add_argument(
        "--world-batches",
        default="1024,4096,16384",
        help="comma-separated B for the world-only timing; empty to skip",
    )
    parser.add_argument("--world-steps", type=int, default=60, help="timed steps per B")
    args = parser.parse_args()
    # A local, offline Ray instance: no token authentication, no usage statistics.
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not torch.cuda.is_available():
        print("gpu_check needs CUDA (torch.cuda.is_available() is False); nothing to run")
        print("RESULT cuda=0")
        return

    world_rates = {}
    for batch in [int(b) for b in args.world_batches.split(",") if b]:
        world_rates[batch] = world_throughput(batch, args.world_steps)
        print(f"world SearchRescue-v0 B={batch} on cuda: {world_rates[batch]:,.0f} env-steps/s")

    import ray

    from agentcomm.experiments.execute import init_local_ray
    from agentcomm.experiments.timing import IterationClock
    from agentcomm.policies.dppo import dppo_config
    from agentcomm.policies.env_runner import BatchedCommEnvRunner

    init_local_ray(num_gpus=1)
    config = dppo_config(
        "agentcomm/SearchRescue-v0",
        env_config={"device": "cuda"},
        policy={"denoising_steps": 20, "ddim_steps": 5, "ft_denoising_steps": 5},
        sampler="ddim",
        num_envs_per_env_runner=args.worlds,
        num_learners=0,
        num_gpus_per_learner=1,
        train_batch_size=args.batch,
        minibatch_size=args.minibatch,
        num_epochs=5,
    ).env_runners(env_runner_cls=BatchedCommEnvRunner)
    try:
        t0 = time.perf_counter()
        algo = config.build_algo()
        build_s = time.perf_counter() - t0
        learner = algo.learner_group._learner
        module = learner.module["default_policy"]
        runner = algo.env_runner
        print(f"device: {torch.cuda.get_device_name(0)}; build {build_s:.1f}s", flush=True)
        print(
            f"learner params on {next(module.parameters()).device}, world on "
            f"{runner.world.device}, runner module on {next(runner.module.parameters()).device}",
            flush=True,
        )
        # Wall time of each call (RLlib's own timers are moving averages dominated by the
        # first, warm-up iteration; experiments/timing.py).
        clock = IterationClock(algo)
        algo.train()
        torch.cuda.reset_peak_memory_stats()
        sample_rate, update_us = [], []
        for _ in range(args.iterations):
            result, timing = clock.train(algo)
            steps = timing["update_agent_steps"]
            sample_rate.append(timing["sample_agent_steps_per_s"])
            update_us.append(timing["update_us_per_agent_step"])
            stats = result["learners"]["default_policy"]
            print(
                f"iteration: {steps} agent-steps, sampling {sample_rate[-1]:,.0f} agent-steps/s, "
                f"update {update_us[-1]:.2f} us/agent-step, ratio range "
                f"[{stats['dppo_ratio_min']:.3f}, {stats['dppo_ratio_max']:.3f}]",
                flush=True,
            )
        peak_gib = torch.cuda.max_memory_allocated() / 2**30
        algo.stop()
    finally:
        ray.shutdown()
    print(
        f"RESULT cuda=1 worlds={args.worlds} batch={args.batch} "
        f"sample_agent_steps_per_s={statistics.median(sample_rate):.0f} "
        f"update_us_per_agent_step={statistics.median(update_us):.3f} "
        f"peak_gpu_mem_gib={peak_gib:.2f}"
        + "".join(f" world_b{b}_env_steps_per_s={r:.0f}" for b, r in world_rates.items())
    )


if __name__ == "__main__":
    main()
