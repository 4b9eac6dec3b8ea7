"""How well SearchRescue-v0's beliefs are calibrated against the true victims, with and without
``clear_reach`` (an agent marks the cells within its rescue reach empty: a victim there would
have been rescued), and what the rule does to the expert's success.

    python experiments/belief_calibration.py            # 512 worlds x 30 steps, 2,048 episodes
    python experiments/belief_calibration.py --quick    # 64 worlds, 256 episodes

Part 1: under the expert (distributed, budgets 0 and 64), every agent's fused belief at every
step is binned by its victim probability (the bins of ``RELIABILITY_EDGES`` of
``eval_decoders.py`` above 0.02), each bin's observed victim frequency beside its mean
prediction (:func:`agentcomm.decoders.posterior.reliability`). Part 2: the expert's success
with and without the rule (evaluation worlds, Wilson 95%). The last line is ``RESULT`` with
``hit_rate_p50_<rule>_b<k>`` (the victim frequency of the cells at p >= 0.5) and
``success_<rule>_b<k>`` for ``rule`` in ``off``, ``on``.
"""

from __future__ import annotations

import argparse

import torch

EDGES = (0.0, 0.02, 0.2, 0.5, 1.0)
BUDGETS = (0, 64)


def reliability_rows(clear: bool, budget: int, worlds: int, steps: int, seed: int) -> list[dict]:
    import agentcomm
    from agentcomm.decoders.posterior import reliability
    from agentcomm.envs.experts import expert_actions

    world = agentcomm.make_vec(
        "SearchRescue-v0", num_envs=worlds, seed=seed, clear_reach=clear, comm={"budget": budget}
    )
    world.reset(seed=seed)
    probs, truths = [], []
    for _ in range(steps):
        _, _, terminated, truncated, _ = world.step(expert_actions(world))
        probs.append(torch.sigmoid(world.belief.float()).flatten())
        truths.append(world.true_map().unsqueeze(1).expand_as(world.belief).flatten())
        done = terminated | truncated
        if bool(done.any()):
            world.reset_at(done)
    r = reliability(torch.cat(probs), torch.cat(truths), edges=torch.tensor(EDGES))
    return [
        {
            "clear_reach": clear,
            "budget": budget,
            "bin": f"[{EDGES[i]}, {EDGES[i + 1]})",
            "cells": int(r["count"][i]),
            "predicted": float(r["predicted"][i]),
            "observed": float(r["observed"][i]),
        }
        for i in range(len(EDGES) - 1)
    ]


def main() -> None:
    from agentcomm.experiments.metrics import evaluate
    from agentcomm.experiments.stats import wilson_interval
    from agentcomm.experiments.threads import use_one_thread

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 worlds, 256 episodes")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    use_one_thread(override=False)
    worlds, episodes = (64, 256) if args.quick else (512, 2048)
    result = {}
    for budget in BUDGETS:
        for clear in (False, True):
            rule = "on" if clear else "off"
            for row in reliability_rows(clear, budget, worlds, 30, args.seed):
                print(
                    f"clear_reach={rule:3s} budget={budget:3d} p in {row['bin']:12s} "
                    f"cells={row['cells']:9d} predicted={row['predicted']:.3f} "
                    f"observed={row['observed']:.3f}",
                    flush=True,
                )
            result[f"hit_rate_p50_{rule}_b{budget}"] = f"{row['observed']:.3f}"
            m = evaluate(
                "SearchRescue-v0",
                "expert",
                episodes,
                0,
                {"comm": {"budget": budget, "mode": "distributed"}, "clear_reach": clear},
            )
            p, low, high = wilson_interval(int(m["successes"]), episodes)
            print(
                f"clear_reach={rule} budget={budget}: expert success {p:.3f} [{low:.3f}, {high:.3f}] (n={episodes})"
            )
            result[f"success_{rule}_b{budget}"] = f"{p:.3f}"
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    main()
