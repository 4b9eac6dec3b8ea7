"""How much of SearchRescue-v0's expert lives in its memory: the expert as it is, without any
memory (a policy of its current observation), and with only its territory memory.

    python experiments/expert_memory.py            # 2,048 evaluation worlds per point
    python experiments/expert_memory.py --quick    # 256

The expert keeps a memory across an episode (:mod:`agentcomm.envs.scenarios.search_rescue_expert`):
the territory it took from the starts its teammates announced in the first steps, its route,
the cells it has been near and its own unclipped evidence. A policy that acts on its current
observation alone (every policy trained here) cannot keep any of that. Three variants, on the
same evaluation worlds (distributed, budgets 0, 16 and 256):

* ``full``: the expert as it is;
* ``memoryless``: its memory is cleared before every decision, so it acts on the world's
  current state as an agent sees it (its fused belief, the intents it holds, its position);
* ``territory``: only the territory, route and start memory are kept.

The last line is ``RESULT`` with ``success_<variant>_b<k>``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch

BUDGETS = (0, 16, 256)
#: The memory of the territory choice (``_territories`` of the expert's module).
TERRITORY_KEYS = ("territory", "sweeper", "variant", "decided", "start", "starts_heard")


def expert_with_memory(keep: tuple[str, ...] | None) -> Callable[[object], torch.Tensor]:
    """The SearchRescue expert whose memory keeps only ``keep`` between decisions (``None``:
    all of it)."""
    from agentcomm.envs import expert_base
    from agentcomm.envs.scenarios.search_rescue_expert import search_rescue_expert

    def act(world) -> torch.Tensor:
        if keep is not None:
            mem = expert_base._memory(world)
            for key in [k for k in mem if k not in keep]:
                del mem[key]
        return search_rescue_expert(world)

    return act


def main(argv: list[str] | None = None) -> dict[str, float]:
    from agentcomm.experiments.metrics import evaluate
    from agentcomm.experiments.stats import wilson_interval
    from agentcomm.experiments.threads import use_one_thread

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 worlds per point")
    parser.add_argument("--episodes", type=int, default=None, help="worlds per point")
    parser.add_argument("--seed", type=int, default=0, help="seed index into the evaluation split")
    args = parser.parse_args(argv)
    use_one_thread(override=False)
    episodes = args.episodes or (256 if args.quick else 2048)
    variants = {"full": None, "memoryless": (), "territory": TERRITORY_KEYS}
    result: dict[str, float] = {}
    for budget in BUDGETS:
        for name, keep in variants.items():
            m = evaluate(
                "SearchRescue-v0",
                expert_with_memory(keep),
                episodes,
                args.seed,
                {"comm": {"budget": budget, "mode": "distributed"}},
            )
            p, low, high = wilson_interval(int(m["successes"]), episodes)
            print(
                f"budget={budget:3d} {name:10s} success {p:.3f} [{low:.3f}, {high:.3f}] (n={episodes})"
            )
            result[f"success_{name}_b{budget}"] = round(p, 4)
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))
    return result


if __name__ == "__main__":
    main()
