"""Throughput of agentcomm's batched world against MPE2 and VMAS, on one CPU thread.

Workloads, every one with uniform random actions drawn before timing (so action sampling is
not timed) and finished episodes reset inside the timed loop (resetting is part of an
environment's cost):

* ``agentcomm``: ``agentcomm.make_vec(env_id, num_envs=B)`` for each ``B`` and ``N``, with
  the communication stack on (the scenario's default ``comm``: distributed, quantized codec,
  64 channel uses per link) and off (``comm={"budget": 0}``: no messages at all). Finished
  worlds are reset with ``world.reset_at(terminated | truncated)``.
* ``mpe2``: PettingZoo MPE2 ``simple_spread_v3`` parallel env (one world, ``B = 1``), the
  same ``N``, continuous actions, ``max_cycles`` equal to the agentcomm scenario's
  ``max_steps``; reset when every agent is done.
* ``vmas``: VMAS ``simple_spread`` for every ``B``, the same ``N``, continuous actions,
  ``max_steps`` equal to the scenario's; finished worlds reset (all at once when all are
  done, as they are with a common horizon; one by one with ``reset_at`` otherwise).

Each configuration runs ``--repeats`` timed blocks of ``--steps`` steps (default: enough for
about ``--target-s`` seconds per block, measured on the warm-up steps); the median block
gives env-steps/s (``B`` worlds advanced by one step count ``B``) and agent-steps/s
(``B * N``). A configuration that runs out of memory (the process's address space is capped
at ``--max-memory-gb`` above what it holds at start) or whose warm-up step takes longer than
``--max-step-s`` is reported as skipped, and the run goes on.

Usage::

    .venv/bin/python experiments/bench_env.py --repeats 3
    .venv/bin/python experiments/bench_env.py --quick        # smoke run, < 30 s

The last line printed is ``RESULT key=value ...`` with the headline figures.
"""

from __future__ import annotations

import os

# One thread, set before torch is imported: with 2 threads on a shared machine torch
# ran 20-40x slower (NOTES.md).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

import agentcomm  # noqa: E402
from agentcomm.envs import env_class  # noqa: E402

torch.set_num_threads(1)

#: Step functions advance every world by one step (resetting finished ones) and return
#: nothing; ``make_*`` returns one plus the number of worlds it advances.
StepFn = Callable[[], None]


class Skipped(Exception):
    """A configuration that could not be measured (the message says why)."""


@dataclass
class Measurement:
    """Median throughput of one configuration.

    Attributes:
        env_steps_per_s: worlds advanced by one step per second (``B`` per batched step).
        agent_steps_per_s: ``env_steps_per_s * N``.
        ms_per_step: wall time of one batched step, in milliseconds.
        steps: batched steps per timed block.
        cpu_env_steps_per_s: the same rate on this process's CPU time (user + system) instead
            of wall time: with one thread it leaves out the time other processes held the
            core, so it is the steadier figure on a shared machine.
    """

    env_steps_per_s: float
    agent_steps_per_s: float
    ms_per_step: float
    steps: int
    cpu_env_steps_per_s: float


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    def int_list(text: str) -> list[int]:
        values = [int(v) for v in text.split(",") if v.strip()]
        if not values or any(v < 1 for v in values):
            raise argparse.ArgumentTypeError(f"{text!r}: expected positive ints, comma-separated")
        return values

    def str_list(text: str) -> list[str]:
        return [v.strip() for v in text.split(",") if v.strip()]

    parser.add_argument("--envs", type=str_list, default=["SearchRescue-v0"],
                        help="agentcomm env ids, comma-separated")  # fmt: skip
    parser.add_argument("--batch-sizes", type=int_list, default=[1, 64, 1024, 4096])
    parser.add_argument("--agents", type=int_list, default=[4, 16])
    parser.add_argument("--steps", type=int, default=0,
                        help="steps per timed block; 0: about --target-s seconds")  # fmt: skip
    parser.add_argument("--target-s", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed steps before each configuration, >= 2")  # fmt: skip
    parser.add_argument("--max-step-s", type=float, default=20.0,
                        help="skip a configuration whose warm-up step takes longer")  # fmt: skip
    parser.add_argument("--max-memory-gb", type=float, default=8.0,
                        help="address space the benchmark may add to what it holds at start")  # fmt: skip
    parser.add_argument("--no-baselines", action="store_true", help="skip MPE2 and VMAS")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: B in {1, 64}, N = 4, one short block")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.batch_sizes = [b for b in args.batch_sizes if b <= 64] or [1]
        args.agents = [min(args.agents)]
        args.repeats, args.warmup, args.target_s = 1, 2, 0.2
        args.max_step_s = min(args.max_step_s, 2.0)
    if args.repeats < 1 or args.warmup < 2 or args.steps < 0:
        parser.error("--repeats must be >= 1, --warmup >= 2 and --steps >= 0")
    for env_id in args.envs:
        if env_id not in agentcomm.list_envs():
            parser.error(
                f"--envs: {env_id!r} is not registered; choose from {agentcomm.list_envs()}"
            )
    return args


def cap_memory(extra_gb: float) -> None:
    """Cap the address space so that an oversized configuration raises in this process
    (caught and reported) instead of waking the OOM killer on a shared machine."""
    with open("/proc/self/status") as status:
        vm_kb = next(int(line.split()[1]) for line in status if line.startswith("VmSize:"))
    limit = vm_kb * 1024 + int(extra_gb * 1024**3)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def time_steps(step: StepFn, worlds: int, agents: int, args: argparse.Namespace) -> Measurement:
    """Warm up, pick the block length, and return the median of ``args.repeats`` blocks."""
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    if first > args.max_step_s:
        raise Skipped(f"one step took {first:.1f} s > --max-step-s {args.max_step_s}")
    # The first step pays one-off costs (lazy imports, caches); the block length is set
    # from one more step.
    t0 = time.perf_counter()
    step()
    per_step = time.perf_counter() - t0
    for _ in range(args.warmup - 2):
        step()
    steps = args.steps or max(2, min(2000, math.ceil(args.target_s / max(per_step, 1e-6))))
    rates, cpu_rates = [], []
    for _ in range(args.repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        rates.append(steps / (time.perf_counter() - t0))
        cpu_rates.append(steps / max(time.process_time() - c0, 1e-9))
    rate, cpu_rate = statistics.median(rates), statistics.median(cpu_rates)
    return Measurement(rate * worlds, rate * worlds * agents, 1e3 / rate, steps, cpu_rate * worlds)


def action_pool(shape: tuple[int, ...], steps: int, seed: int) -> torch.Tensor:
    """``[P, *shape]`` uniform actions in ``[-1, 1]``; ``P`` caps the pool at ~64 MB."""
    per = math.prod(shape) * 4
    pool = max(1, min(steps, 64, (64 * 1024**2) // per))
    gen = torch.Generator().manual_seed(seed)
    return torch.rand((pool, *shape), generator=gen) * 2 - 1


def make_agentcomm(
    env_id: str,
    batch: int,
    agents: int,
    comm: dict[str, Any] | None,
    seed: int,
    device: str = "cpu",
) -> tuple[StepFn, Any]:
    overrides: dict[str, Any] = {"num_agents": agents}
    if comm is not None:
        overrides["comm"] = comm
    world = agentcomm.make_vec(env_id, num_envs=batch, device=device, seed=seed, **overrides)
    world.reset(seed=seed)
    actions = action_pool((batch, world.num_agents, 6), 64, seed + 1).to(device)
    counter = [0]

    def step() -> None:
        a = actions[counter[0] % actions.shape[0]]
        counter[0] += 1
        _, _, terminated, truncated, _ = world.step(a)
        finished = terminated | truncated
        if bool(finished.any()):
            world.reset_at(finished)

    return step, world


def make_mpe2(agents: int, max_steps: int, seed: int) -> StepFn:
    from mpe2 import simple_spread_v3

    env = simple_spread_v3.parallel_env(N=agents, continuous_actions=True, max_cycles=max_steps)
    env.reset(seed=seed)
    names = list(env.possible_agents)
    space = env.action_space(names[0])
    rng = np.random.default_rng(seed)
    pool = [
        {name: rng.uniform(space.low, space.high).astype(space.dtype) for name in names}
        for _ in range(64)
    ]
    counter = [0]

    def step() -> None:
        actions = pool[counter[0] % len(pool)]
        counter[0] += 1
        env.step({name: actions[name] for name in env.agents})
        if not env.agents:
            env.reset()

    return step


def make_vmas(batch: int, agents: int, max_steps: int, seed: int) -> StepFn:
    import vmas

    env = vmas.make_env(
        "simple_spread",
        num_envs=batch,
        device="cpu",
        continuous_actions=True,
        max_steps=max_steps,
        seed=seed,
        n_agents=agents,
    )
    env.reset()
    actions = action_pool((agents, batch, 2), 64, seed + 1)
    counter = [0]

    def step() -> None:
        a = actions[counter[0] % actions.shape[0]]
        counter[0] += 1
        _, _, dones, _ = env.step(list(a.unbind(0)))
        if bool(dones.all()):
            env.reset()
        elif bool(dones.any()):
            # VMAS resets single worlds only; with a common horizon this branch is not taken.
            for index in dones.nonzero().squeeze(1).tolist():
                env.reset_at(index)

    return step


def measure(label: str, build: Callable[[], tuple[StepFn, int, int]], args) -> Measurement | None:
    """Build, time and print one configuration; ``None`` when it was skipped."""
    try:
        step, worlds, agents = build()
        result = time_steps(step, worlds, agents, args)
    except Skipped as why:
        print(f"  {label:<44} skipped ({why})", flush=True)
        return None
    except (RuntimeError, MemoryError) as err:
        text = str(err).splitlines()[0] if str(err) else type(err).__name__
        if "memory" not in text.lower() and "allocate" not in text.lower():
            raise
        print(f"  {label:<44} skipped (out of memory: {text[:80]})", flush=True)
        return None
    finally:
        gc.collect()
    print(
        f"  {label:<44} {result.env_steps_per_s:>12,.0f} env-steps/s "
        f"{result.agent_steps_per_s:>13,.0f} agent-steps/s {result.ms_per_step:>10.3f} ms/step "
        f"[cpu-time: {result.cpu_env_steps_per_s:>12,.0f} env-steps/s] "
        f"({result.steps} steps x {args.repeats})",
        flush=True,
    )
    return result


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.3g}"


def ratio(a: Measurement | None, b: Measurement | None, cpu: bool = False) -> float | None:
    """``a / b`` in env-steps/s (wall time, or CPU time with ``cpu``); ``None`` if either is."""
    if a is None or b is None:
        return None
    if cpu:
        return a.cpu_env_steps_per_s / b.cpu_env_steps_per_s
    return a.env_steps_per_s / b.env_steps_per_s


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cap_memory(args.max_memory_gb)
    threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__}, threads={threads}, OMP_NUM_THREADS="
        f"{os.environ['OMP_NUM_THREADS']}, repeats={args.repeats}, "
        f"memory cap +{args.max_memory_gb} GB",
        flush=True,
    )
    comm_modes: dict[str, dict[str, Any] | None] = {"comm": None, "nocomm": {"budget": 0}}
    results: dict[tuple, Measurement | None] = {}
    max_steps = None
    for env_id in args.envs:
        for n in args.agents:
            for b in args.batch_sizes:
                for mode, comm in comm_modes.items():

                    def build(env_id=env_id, b=b, n=n, comm=comm):
                        step, world = make_agentcomm(env_id, b, n, comm, args.seed)
                        return step, b, world.num_agents

                    label = f"{env_id} B={b} N={n} {mode}"
                    results[(env_id, mode, b, n)] = measure(label, build, args)
        if max_steps is None:
            max_steps = env_class(env_id).config_cls().max_steps
    if not args.no_baselines:
        for n in args.agents:
            label = f"mpe2 simple_spread_v3 B=1 N={n}"
            results[("mpe2", 1, n)] = measure(
                label, lambda n=n: (make_mpe2(n, max_steps, args.seed), 1, n), args
            )
            for b in args.batch_sizes:
                label = f"vmas simple_spread B={b} N={n}"
                results[("vmas", b, n)] = measure(
                    label, lambda b=b, n=n: (make_vmas(b, n, max_steps, args.seed), b, n), args
                )

    print(
        "\nenv-steps/s, median of the blocks (wall time); ratios are agentcomm / baseline "
        "(> 1: agentcomm faster), the baseline being MPE2 at B = 1 and VMAS otherwise;\n"
        "'cpu' ratios use each process's CPU time instead of wall time"
    )
    print(
        f"{'env':<18} {'N':>3} {'B':>6} {'comm on':>10} {'comm off':>10} {'mpe2':>8} "
        f"{'vmas':>10} {'on/base':>8} {'off/base':>8} {'on/base cpu':>11} {'off/base cpu':>12}"
    )
    for env_id in args.envs:
        for n in args.agents:
            for b in args.batch_sizes:
                on = results.get((env_id, "comm", b, n))
                off = results.get((env_id, "nocomm", b, n))
                mpe = results.get(("mpe2", 1, n)) if b == 1 else None
                vm = results.get(("vmas", b, n))
                base = mpe if b == 1 else vm
                cells = [ratio(on, base), ratio(off, base)]
                cells += [ratio(on, base, cpu=True), ratio(off, base, cpu=True)]
                print(
                    f"{env_id:<18} {n:>3} {b:>6} {fmt(on and on.env_steps_per_s):>10} "
                    f"{fmt(off and off.env_steps_per_s):>10} {fmt(mpe and mpe.env_steps_per_s):>8} "
                    f"{fmt(vm and vm.env_steps_per_s):>10} {fmt(cells[0]):>8} {fmt(cells[1]):>8} "
                    f"{fmt(cells[2]):>11} {fmt(cells[3]):>12}"
                )
    print(f"threads={threads}")

    env_id, n = args.envs[0], min(args.agents)
    b_min, b_max = min(args.batch_sizes), max(args.batch_sizes)
    on_min, on_max = (
        results.get((env_id, "comm", b_min, n)),
        results.get((env_id, "comm", b_max, n)),
    )
    off_min = results.get((env_id, "nocomm", b_min, n))
    off_max = results.get((env_id, "nocomm", b_max, n))
    mpe, vm = results.get(("mpe2", 1, n)), results.get(("vmas", b_max, n))

    def rate(m: Measurement | None) -> float | None:
        return None if m is None else m.env_steps_per_s

    fields = {
        f"b{b_min}_n{n}_comm_steps_per_s": rate(on_min),
        f"b{b_min}_n{n}_nocomm_steps_per_s": rate(off_min),
        f"mpe2_n{n}_steps_per_s": rate(mpe),
        f"ratio_b{b_min}_vs_mpe2": ratio(on_min, mpe),
        f"ratio_b{b_min}_nocomm_vs_mpe2": ratio(off_min, mpe),
        f"ratio_b{b_min}_vs_mpe2_cpu": ratio(on_min, mpe, cpu=True),
        f"b{b_max}_n{n}_comm_steps_per_s": rate(on_max),
        f"b{b_max}_n{n}_nocomm_steps_per_s": rate(off_max),
        f"vmas_b{b_max}_n{n}_steps_per_s": rate(vm),
        f"ratio_b{b_max}_vs_vmas": ratio(on_max, vm),
        f"ratio_b{b_max}_nocomm_vs_vmas": ratio(off_max, vm),
        f"ratio_b{b_max}_vs_vmas_cpu": ratio(on_max, vm, cpu=True),
    }
    parts = [
        f"{k}={'nan' if v is None else (f'{v:.0f}' if v >= 100 else f'{v:.4g}')}"
        for k, v in fields.items()
    ]
    print("RESULT " + " ".join(parts) + f" threads={threads}")


if __name__ == "__main__":
    main()
