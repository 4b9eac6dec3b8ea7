"""Throughput of agentcomm's batched world against MPE2 and VMAS, on one CPU thread.

Every figure is a median over interleaved repeats: all configurations are built first, then
each round times one block of every configuration in turn, so a phase in which the shared
machine is busy slows every configuration of that round alike instead of one of them, and
each ratio compares peers measured in the same run.

Configurations (uniform random actions drawn before timing, so action sampling is not
timed; finished episodes are reset inside the timed loop, as resetting is part of an
environment's cost):

* ``SearchRescue-v0``, ``N = 4``, default communication (distributed, quantized codec, 64
  channel uses per link), at ``B = 1`` and at ``B = --large-batch`` (4096); the same with
  communication off (``comm={"budget": 0}``); each coordination mode (``centralized``,
  ``hybrid``; ``distributed`` is the default); ``N = 16`` centralized against ``N = 4``
  centralized (the cost per agent-step); ``IntentCoverage-v0`` and ``TargetTracking-v0``
  with their default communication, and ``TargetTracking-v0`` with ``compile_fusion=True``
  (its fusion under ``torch.compile``, compiled before the warm-up; not with
  ``--no-compile`` or ``--quick``). Worlds are built with ``agentcomm.make_vec`` and
  finished ones reset with ``world.reset_at(terminated | truncated)``.
* MPE2 ``simple_spread_v3`` parallel env (one world, ``B = 1``), ``N = 4``, continuous
  actions, ``max_cycles`` equal to SearchRescue's ``max_steps``; reset when every agent is
  done.
* VMAS ``simple_spread`` at ``B = --large-batch``, ``N = 4``, continuous actions, the same
  ``max_steps``; finished worlds reset.

Each block runs enough steps for about ``--target-s`` seconds (at least 2, set on the
warm-up steps); env-steps/s counts ``B`` per batched step. A configuration that runs out of
memory (the address space is capped at ``--max-memory-gb`` above what the process holds
at start) or whose warm-up step takes longer than ``--max-step-s`` is reported as skipped.

Usage::

    .venv/bin/python experiments/benchmarks/bench_env.py --repeats 5
    .venv/bin/python experiments/benchmarks/bench_env.py --quick        # smoke run, B = 64, < 1 min

The last line printed is ``RESULT key=value ...``: ``ratio_b1_vs_mpe2`` and
``ratio_b<L>_vs_vmas`` (agentcomm env-steps/s over the peer's, > 1: agentcomm faster),
``n16_over_n4_per_agent_cost`` (at ``B = L``; 1 means linear in ``N``), the other
scenarios' and modes' env-steps/s over SearchRescue's default, and the absolute rates.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

import agentcomm
from agentcomm.envs import env_class
from agentcomm.experiments.threads import use_one_thread

#: Step functions advance every world by one step (resetting finished ones) and return
#: nothing; ``make_*`` returns one plus the number of worlds it advances.
StepFn = Callable[[], None]


class Skipped(Exception):
    """A configuration that could not be measured (the message says why)."""


@dataclass
class Measurement:
    """Median throughput of one configuration over the interleaved rounds.

    Attributes:
        env_steps_per_s: worlds advanced by one step per second (``B`` per batched step).
        agent_steps_per_s: ``env_steps_per_s * N``.
        ms_per_step: wall time of one batched step, in milliseconds.
        steps: batched steps per timed block.
        cpu_env_steps_per_s: the same rate on this process's CPU time (user + system) instead
            of wall time: with one thread it leaves out the time other processes held the
            core, so it is the steadier figure on a shared machine.
        spread: (max - min) / median of the blocks' wall-time rates.
    """

    env_steps_per_s: float
    agent_steps_per_s: float
    ms_per_step: float
    steps: int
    cpu_env_steps_per_s: float
    spread: float


@dataclass
class Case:
    """One configuration: its label, how to build it, and once built, its timed state."""

    label: str
    build: Callable[[], tuple[StepFn, int, int]]
    step: StepFn | None = None
    worlds: int = 0
    agents: int = 0
    steps: int = 0
    rates: list[float] = field(default_factory=list)
    cpu_rates: list[float] = field(default_factory=list)

    def result(self) -> Measurement | None:
        if not self.rates:
            return None
        rate, cpu = statistics.median(self.rates), statistics.median(self.cpu_rates)
        spread = (max(self.rates) - min(self.rates)) / rate
        b, n = self.worlds, self.agents
        return Measurement(rate * b, rate * b * n, 1e3 / rate, self.steps, cpu * b, spread)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--large-batch", type=int, default=4096,
                        help="B of the batched comparisons (VMAS, scaling)")  # fmt: skip
    parser.add_argument("--target-s", type=float, default=0.5, help="seconds per timed block")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=3,
                        help="untimed steps before timing, >= 2")  # fmt: skip
    parser.add_argument("--max-step-s", type=float, default=30.0,
                        help="skip a configuration whose warm-up step takes longer")  # fmt: skip
    parser.add_argument("--max-memory-gb", type=float, default=8.0,
                        help="address space the benchmark may add to what it holds at start")  # fmt: skip
    parser.add_argument("--no-baselines", action="store_true", help="skip MPE2 and VMAS")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip TargetTracking with compile_fusion=True (compiles ~40 s)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: B = 64, 2 short rounds")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        args.large_batch = min(args.large_batch, 64)
        args.repeats, args.warmup, args.target_s = 2, 2, 0.1
        args.max_step_s = min(args.max_step_s, 5.0)
        args.no_compile = True
    if args.repeats < 1 or args.warmup < 2 or args.large_batch < 1:
        parser.error("--repeats must be >= 1, --warmup >= 2 and --large-batch >= 1")
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
    extra: dict[str, Any] | None = None,
) -> tuple[StepFn, Any]:
    overrides: dict[str, Any] = {"num_agents": agents, **(extra or {})}
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


def suite(args: argparse.Namespace) -> dict[str, Case]:
    """Every configuration, keyed by a short name (``b<L>``: the large batch)."""
    big = args.large_batch
    sr = "SearchRescue-v0"
    max_steps = env_class(sr).config_cls().max_steps
    cases: dict[str, Case] = {}

    def world(
        key: str,
        env_id: str,
        b: int,
        n: int,
        comm: dict[str, Any] | None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        def build() -> tuple[StepFn, int, int]:
            step, w = make_agentcomm(env_id, b, n, comm, args.seed, extra=extra)
            if extra and extra.get("compile_fusion"):
                step()  # compiles (tens of seconds), before the warm-up steps are timed
                if not w.beliefs.fusion_compiled:
                    raise Skipped("torch.compile failed; the world fell back to eager")
            return step, b, w.num_agents

        what = "default comm" if comm is None else ", ".join(f"{k}={v}" for k, v in comm.items())
        if extra:
            what += ", " + ", ".join(f"{k}={v}" for k, v in extra.items())
        cases[key] = Case(f"{env_id} B={b} N={n} {what}", build)

    for b, tag in ((1, "b1"), (big, f"b{big}")):
        world(f"sr_{tag}", sr, b, 4, None)
        world(f"sr_nocomm_{tag}", sr, b, 4, {"budget": 0})
        for mode in ("centralized", "hybrid"):
            world(f"sr_{mode}_{tag}", sr, b, 4, {"mode": mode})
        world(f"sr_centralized_n16_{tag}", sr, b, 16, {"mode": "centralized"})
        world(f"ic_{tag}", "IntentCoverage-v0", b, 4, None)
        world(f"tt_{tag}", "TargetTracking-v0", b, 4, None)
        if not args.no_compile:
            world(f"tt_compiled_{tag}", "TargetTracking-v0", b, 4, None, {"compile_fusion": True})
    if not args.no_baselines:
        cases["mpe2"] = Case(
            "mpe2 simple_spread_v3 B=1 N=4", lambda: (make_mpe2(4, max_steps, args.seed), 1, 4)
        )
        cases[f"vmas_b{big}"] = Case(
            f"vmas simple_spread B={big} N=4",
            lambda: (make_vmas(big, 4, max_steps, args.seed), big, 4),
        )
    return cases


def _skip_reason(err: BaseException) -> str | None:
    """Why a configuration is skipped (out of memory), or ``None`` to re-raise ``err``."""
    if isinstance(err, Skipped):
        return str(err)
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, MemoryError) or "memory" in text.lower() or "allocate" in text.lower():
        return f"out of memory: {text[:80]}"
    return None


def prepare(case: Case, args: argparse.Namespace) -> None:
    """Build ``case``, warm it up and set its block length from the last warm-up step."""
    step, case.worlds, case.agents = case.build()
    t0 = time.perf_counter()
    step()
    first = time.perf_counter() - t0
    if first > args.max_step_s:
        raise Skipped(f"one step took {first:.1f} s > --max-step-s {args.max_step_s}")
    per_step = first
    for _ in range(args.warmup - 1):
        t0 = time.perf_counter()
        step()
        per_step = time.perf_counter() - t0
    case.steps = max(2, min(5000, math.ceil(args.target_s / max(per_step, 1e-6))))
    case.step = step


def run_block(case: Case) -> None:
    """Time one block of ``case.steps`` steps and record its rates."""
    step = case.step
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(case.steps):
        step()
    case.rates.append(case.steps / (time.perf_counter() - t0))
    case.cpu_rates.append(case.steps / max(time.process_time() - c0, 1e-9))


def fmt(value: float | None) -> str:
    if value is None:
        return "nan"
    return f"{value:.0f}" if abs(value) >= 100 else f"{value:.4g}"


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    use_one_thread()
    cap_memory(args.max_memory_gb)
    threads = torch.get_num_threads()
    print(
        f"torch {torch.__version__}, threads={threads}, OMP_NUM_THREADS="
        f"{os.environ['OMP_NUM_THREADS']}, rounds={args.repeats}, block ~{args.target_s} s, "
        f"large batch {args.large_batch}, memory cap +{args.max_memory_gb} GB",
        flush=True,
    )
    cases = suite(args)
    ready: list[Case] = []
    for case in cases.values():
        try:
            prepare(case, args)
            ready.append(case)
        except (Skipped, RuntimeError, MemoryError) as err:
            reason = _skip_reason(err)
            if reason is None:
                raise
            print(f"  {case.label:<58} skipped ({reason})", flush=True)
        gc.collect()
    for r in range(args.repeats if ready else 0):
        # Rotate the order each round, so no configuration always runs first or last.
        for case in ready[r % len(ready) :] + ready[: r % len(ready)]:
            run_block(case)
    print(f"\n{'configuration':<58} {'env-steps/s':>12} {'ms/step':>10} {'cpu env-steps/s':>15} "
          f"{'spread':>7} {'steps':>6}")  # fmt: skip
    res: dict[str, Measurement | None] = {}
    for key, case in cases.items():
        m = res[key] = case.result()
        if m is None:
            continue
        print(
            f"{case.label:<58} {m.env_steps_per_s:>12,.0f} {m.ms_per_step:>10.3f} "
            f"{m.cpu_env_steps_per_s:>15,.0f} {m.spread:>7.1%} {m.steps:>6}"
        )

    def rate(key: str) -> float | None:
        m = res.get(key)
        return None if m is None else m.env_steps_per_s

    def over(a: str, b: str) -> float | None:
        ra, rb = rate(a), rate(b)
        return None if ra is None or rb is None else ra / rb

    def cost_ratio(tag: str) -> float | None:
        # Cost per agent-step at N = 16 over N = 4 (both centralized): 1 is linear in N.
        r16, r4 = rate(f"sr_centralized_n16_{tag}"), rate(f"sr_centralized_{tag}")
        return None if r16 is None or r4 is None else (r4 * 4) / (r16 * 16)

    big = f"b{args.large_batch}"
    fields = {
        "ratio_b1_vs_mpe2": over("sr_b1", "mpe2"),
        f"ratio_{big}_vs_vmas": over(f"sr_{big}", f"vmas_{big}"),
        "n16_over_n4_per_agent_cost": cost_ratio(big),
        "n16_over_n4_per_agent_cost_b1": cost_ratio("b1"),
    }
    for tag in ("b1", big):
        fields[f"ic_over_sr_{tag}"] = over(f"ic_{tag}", f"sr_{tag}")
        fields[f"tt_over_sr_{tag}"] = over(f"tt_{tag}", f"sr_{tag}")
        fields[f"tt_compiled_over_sr_{tag}"] = over(f"tt_compiled_{tag}", f"sr_{tag}")
        fields[f"centralized_over_distributed_{tag}"] = over(f"sr_centralized_{tag}", f"sr_{tag}")
        fields[f"hybrid_over_distributed_{tag}"] = over(f"sr_hybrid_{tag}", f"sr_{tag}")
        fields[f"nocomm_over_comm_{tag}"] = over(f"sr_nocomm_{tag}", f"sr_{tag}")
    fields.update(
        {
            "sr_b1_steps_per_s": rate("sr_b1"),
            "mpe2_steps_per_s": rate("mpe2"),
            f"sr_{big}_steps_per_s": rate(f"sr_{big}"),
            f"vmas_{big}_steps_per_s": rate(f"vmas_{big}"),
        }
    )
    print("RESULT " + " ".join(f"{k}={fmt(v)}" for k, v in fields.items()) + f" threads={threads}")


if __name__ == "__main__":
    main()
