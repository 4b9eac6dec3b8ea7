"""Where one batched world step spends its time, by stage, on one CPU thread.

The world's stage functions are wrapped (in this process only, nothing in ``envs/`` is
edited) with wall-clock timers; torch runs CPU ops synchronously, so wall time per stage
is the stage's cost. Stages nest (``exchange`` holds ``CommStack.send``, which holds the
codec's ``encode_cells`` on the fast path, or ``_send_general`` and the codec's
``encode``/``deliver``/``decode`` on the general path); each is reported with its *self* time (its own time less
its timed children) and its share of the whole step loop, including ``reset_at``.
``step (rest)`` is what :meth:`CommWorld.step` does itself: act, move, the sensor
increments, the cost and done bookkeeping.

Optionally (``--torch-profiler``) the aten ops with the largest self CPU time and the number
of top-level torch ops per step (what bounds ``B = 1``: each op costs microseconds of
dispatch), and (``--cprofile``) the Python functions with the largest own time.

Usage::

    .venv/bin/python experiments/benchmarks/profile_step.py --batch-sizes 1,1024,4096 --torch-profiler
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import io
import pstats
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

from agentcomm.beliefs import store as store_module
from agentcomm.codecs.base import Codec
from agentcomm.envs import exchange as exchange_module
from agentcomm.envs import world as world_module
from agentcomm.envs.comm import CommStack
from agentcomm.envs.world import CommWorld
from agentcomm.experiments.threads import use_one_thread


class StageTimer:
    """Inclusive and self wall time of nested, named stages."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.own: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[Any]] = []
        self.enabled = False

    def wrap(self, name: str, fn: Callable) -> Callable:
        @functools.wraps(fn)
        def timed(*args, **kwargs):
            if not self.enabled:
                return fn(*args, **kwargs)
            frame = [name, 0.0]  # name, time spent in timed children
            self._stack.append(frame)
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                self._stack.pop()
                self.total[name] += dt
                self.own[name] += dt - frame[1]
                self.calls[name] += 1
                if self._stack:
                    self._stack[-1][1] += dt

        return timed

    def reset(self) -> None:
        self.total.clear()
        self.own.clear()
        self.calls.clear()


#: (owner, attribute, stage name): what gets a timer. Module-level functions are patched in
#: the namespace where the step looks them up; ``BELIEFS`` stands for the world's belief
#: store class (grids or tracks).
BELIEFS = object()
STAGES: list[tuple[Any, str, str]] = [
    (CommWorld, "step", "step (rest)"),
    (CommWorld, "reset_at", "reset_at"),
    (CommWorld, "_reset_scenario", "reset: scenario (starts, objects)"),
    (world_module, "step_input", "step input checks"),
    (CommWorld, "_scenario_step", "scenario (rescue/move targets)"),
    (world_module, "_sense_window", "sense: sense window"),
    (store_module, "_add_window_increment", "sense: Bayes update (local, belief)"),
    (CommWorld, "_update_links", "links"),
    (world_module, "run_exchange", "exchange (rest: ages, intents, plan)"),
    (exchange_module, "_peer_round", "exchange: peer round (rest: nonzero, intents)"),
    (exchange_module, "_centralized", "exchange: centralized (rest)"),
    (CommStack, "send", "exchange: CommStack.send (header, capacity)"),
    (CommStack, "_send_general", "exchange: general path (rest)"),
    (Codec, "encode", "codec: encode (general path)"),
    (Codec, "deliver", "codec: deliver (general path)"),
    (Codec, "decode", "codec: decode (general path)"),
    (exchange_module, "_account", "exchange: accounting"),
    (exchange_module, "_metropolis_weights", "fuse: metropolis_weights"),
    (BELIEFS, "receive_peer", "fuse: peer messages"),
    (BELIEFS, "receive_uplink", "fuse: centre ingest"),
    (BELIEFS, "receive_downlink", "fuse: downlink"),
    (BELIEFS, "refresh", "fuse: refresh belief"),
    (CommWorld, "_belief_reward", "reward: entropy drop"),
    (CommWorld, "_belief_error", "reward: belief_error (KL)"),
    (CommWorld, "_success", "reward: success"),
    (CommWorld, "observation", "observation"),
]


def install(timer: StageTimer, world: CommWorld) -> None:
    """Wrap every stage; scenario overrides are wrapped on the world's own class, the store's
    methods on its class, and the codec's sparse encoder (the fast path's) on the codec's
    class."""
    cls = type(world)
    stages = list(STAGES)
    codec = world.comm.codec
    if codec is not None and codec.cell_codec:
        stages.append((type(codec), "encode_cells", "codec: encode_cells (fast path)"))
    for owner, attr, name in stages:
        if owner is BELIEFS:
            owner = type(world.beliefs)
            if not hasattr(owner, attr):
                continue
        if owner is CommWorld and attr in vars(cls):
            owner = cls
        setattr(owner, attr, timer.wrap(name, getattr(owner, attr)))


def build(env_id: str, batch: int, agents: int, comm: bool, seed: int):
    """The world and its timed step, exactly as the benchmark builds them."""
    from agentcomm.experiments.benchmarks.bench_env import make_agentcomm

    step, world = make_agentcomm(env_id, batch, agents, None if comm else {"budget": 0}, seed)
    return world, step


def report_stages(timer: StageTimer, steps: int, wall: float) -> None:
    print(f"  {'stage':<48} {'self ms/step':>12} {'share':>7} {'calls/step':>10}")
    for name, own in sorted(timer.own.items(), key=lambda kv: -kv[1]):
        print(
            f"  {name:<48} {1e3 * own / steps:>12.3f} {own / wall:>7.1%} "
            f"{timer.calls[name] / steps:>10.2f}"
        )
    print(f"  {'total (timed loop)':<48} {1e3 * wall / steps:>12.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--env", default="SearchRescue-v0")
    parser.add_argument("--batch-sizes", default="1,1024,4096")
    parser.add_argument("--agents", type=int, default=4)
    parser.add_argument("--steps", type=int, default=0, help="0: about 2 s of steps")
    parser.add_argument("--no-comm", action="store_true", help="comm={'budget': 0}")
    parser.add_argument("--torch-profiler", action="store_true")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    use_one_thread()
    timer = StageTimer()
    installed = False
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        world, step = build(args.env, batch, args.agents, not args.no_comm, args.seed)
        if not installed:
            install(timer, world)
            installed = True
        for _ in range(2):
            step()
        t0 = time.perf_counter()
        step()
        steps = args.steps or max(3, min(500, int(2.0 / (time.perf_counter() - t0))))
        print(
            f"\n=== {args.env} B={batch} N={world.num_agents} comm={'off' if args.no_comm else 'on'}"
            f" ({world!r}), {steps} steps, threads={torch.get_num_threads()}"
        )
        timer.reset()
        timer.enabled = True
        t0 = time.perf_counter()
        for _ in range(steps):
            step()
        wall = time.perf_counter() - t0
        timer.enabled = False
        report_stages(timer, steps, wall)
        print(f"  -> {batch * steps / wall:,.0f} env-steps/s with timers on")
        if args.torch_profiler:
            prof_steps = max(2, min(steps, 50))
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
                for _ in range(prof_steps):
                    step()
            events = prof.events()
            top = sum(1 for e in events if e.cpu_parent is None)
            print(f"  top-level torch ops per step: {top / prof_steps:.0f}")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
        if args.cprofile:
            profile = cProfile.Profile()
            profile.enable()
            for _ in range(min(steps, 50)):
                step()
            profile.disable()
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(20)
            print(out.getvalue())
        del world, step


if __name__ == "__main__":
    main()
