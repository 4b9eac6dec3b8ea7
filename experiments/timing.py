"""Wall-clock timing of an RLlib algorithm's sampling and learner updates, per iteration.

RLlib reports its iteration timers (``result["timers"]["learner_update_timer"]``,
``"env_runner_sampling_timer"``) as an exponential moving average with coefficient 0.01
(``MetricsLogger.log_time``'s default ``reduce="ema"``): after ten iterations the figure is
still 90 % the first iteration's, warm-up included, so it cannot time one iteration. The
benchmarks time the calls themselves instead: :class:`IterationClock` wraps the
algorithm's ``learner_group.update`` and its local env runner's ``sample`` and records the
wall time and the agent-steps of every call.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from typing import Any

__all__ = ["IterationClock"]


def _agent_steps(episodes: Iterable[Any]) -> int:
    """Agent-steps held by RLlib episodes (single- or multi-agent)."""
    return sum(int(e.agent_steps()) for e in episodes)


class IterationClock:
    """Records ``(seconds, agent_steps)`` of each learner update and each local sample call.

    Args:
        algo: A built RLlib ``Algorithm`` with a local learner group update
            (``learner_group.update(episodes=...)``, what PPO and DPPO call) and, for the
            sampling times, a local env runner (``num_env_runners=0``).

    Attributes:
        updates: One ``(seconds, agent_steps)`` per ``learner_group.update`` call.
        samples: One ``(seconds, agent_steps)`` per local ``EnvRunner.sample`` call.
    """

    def __init__(self, algo: Any) -> None:
        self.updates: list[tuple[float, int]] = []
        self.samples: list[tuple[float, int]] = []
        group = algo.learner_group
        update = group.update

        def timed_update(*args: Any, **kwargs: Any) -> Any:
            # Counted before the call: PPO's learner connector extends every episode by
            # one artificial step (the GAE bootstrap) in place.
            steps = _agent_steps(kwargs.get("episodes") or ())
            t0 = time.perf_counter()
            out = update(*args, **kwargs)
            self.updates.append((time.perf_counter() - t0, steps))
            return out

        group.update = timed_update
        runner = getattr(algo, "env_runner", None)
        if runner is not None:
            sample = runner.sample

            def timed_sample(*args: Any, **kwargs: Any) -> Any:
                t0 = time.perf_counter()
                episodes = sample(*args, **kwargs)
                self.samples.append((time.perf_counter() - t0, _agent_steps(episodes)))
                return episodes

            runner.sample = timed_sample

    def train(self, algo: Any) -> tuple[Any, dict[str, float]]:
        """``algo.train()`` and the timing of the calls it made.

        Returns:
            ``(result, timing)`` with ``timing`` holding ``update_seconds``,
            ``update_agent_steps``, ``update_us_per_agent_step``, ``sample_seconds``,
            ``sample_agent_steps`` and ``sample_agent_steps_per_s`` (NaN where no call of
            that kind ran; the sampling keys need a local env runner).
        """
        n_update, n_sample = len(self.updates), len(self.samples)
        result = algo.train()
        timing = {}
        for kind, calls in (
            ("update", self.updates[n_update:]),
            ("sample", self.samples[n_sample:]),
        ):
            seconds = sum(t for t, _ in calls)
            steps = sum(s for _, s in calls)
            timing[f"{kind}_seconds"] = seconds if calls else math.nan
            timing[f"{kind}_agent_steps"] = steps
        timing["update_us_per_agent_step"] = (
            timing["update_seconds"] / timing["update_agent_steps"] * 1e6
            if timing["update_agent_steps"]
            else math.nan
        )
        timing["sample_agent_steps_per_s"] = (
            timing["sample_agent_steps"] / timing["sample_seconds"]
            if timing["sample_agent_steps"]
            else math.nan
        )
        return result, timing
