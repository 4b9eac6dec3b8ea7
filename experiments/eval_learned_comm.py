"""Success versus bandwidth of a budget-conditioned learned policy beside the scripted expert.

    python experiments/eval_learned_comm.py                      # 1,000 episodes per point
    python experiments/eval_learned_comm.py --quick              # ~64 episodes per point
    python experiments/eval_learned_comm.py --policy SearchRescue-v0=runs/dppo/policy

For each scenario, coordination mode (``--modes``, default ``distributed``) and budget
(``--budgets``, default 0, 4, 16, 64, 256 channel uses) at the default link SNR, the expert
and the learned policy are evaluated by the project's one evaluation
(:func:`agentcomm.policies.evaluate.evaluate`) on the same worlds of the ``evaluation``
split (``--split selection`` to choose between checkpoints), all ``--episodes`` worlds in
one round (the worlds ``agentcomm eval`` and the main job evaluate for the same seed). The
expert runs with ``comm.budget`` set to the point's budget; the policy runs on its own
training config (its checkpoint's ``env_config``) with the budget fixed at the point's
(:func:`point_config`: no drawn cap, the default transmit power), so the operating point in
its observation (``observe_operating_point``) is the point's and its worlds are the
expert's: a drawn cap or power would take draws from the world's generator and change the
worlds. Learned policies default to the shipped
conditioned ones (``agentcomm/models/policies/*`` trained on the scenario with
``observe_operating_point: true``); a scenario without one reports ``nan``.

Printed per point: the success rate with its 95 % Wilson interval
(:func:`agentcomm.experiments.stats.wilson_interval`) and n, and the information bits per
agent-step. A CSV holds every point. The last line is ``RESULT`` with, per scenario
(lower-case short name) and budget ``k``, ``<s>_dppo_success_b<k>``,
``<s>_expert_success_b<k>``, ``<s>_dppo_bits_b<k>``, ``<s>_expert_bits_b<k>``, and per
scenario ``<s>_pareto_bits_ratio``: the policy's bits per agent-step at the smallest budget
where its success reaches the expert's at the largest budget, divided by the expert's bits
per agent-step at that largest budget (``nan`` if no budget reaches it), and
``<s>_pareto_bits_ratio_tol``: the same with "reaches" read as within :data:`GOAL_TOLERANCE`
of it, the tolerance of the budget goal (policy success >= expert success - 0.02), so that a
policy at 0.997 against an expert's 1,000 of 1,000 is not called short of it. Modes after the
first carry a ``_<mode>`` suffix.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

__all__ = [
    "conditioned_policies",
    "main",
    "pareto_bits_ratio",
    "point_config",
    "result_line",
    "short_name",
]

SCENARIOS = ("SearchRescue-v0", "TargetTracking-v0", "IntentCoverage-v0")
BUDGETS = (0, 4, 16, 64, 256)
EPISODES, QUICK_EPISODES = 1000, 64
#: A policy "at the expert's level" succeeds at least this far below the expert's rate.
GOAL_TOLERANCE = 0.02
NAN = float("nan")


def short_name(env_id: str) -> str:
    """``"SearchRescue-v0"`` -> ``"searchrescue"``."""
    return env_id.split("-")[0].lower()


def conditioned_policies() -> dict[str, Path]:
    """Shipped policies trained with the operating point in their observation, by scenario
    (the first by name where several are)."""
    import agentcomm

    root = Path(agentcomm.__file__).parent / "models" / "policies"
    found: dict[str, Path] = {}
    for path in sorted(root.glob("*/config.json")):
        meta = json.loads(path.read_text()).get("metadata", {})
        env_config = meta.get("env_config") or {}
        if env_config.get("observe_operating_point") and meta.get("env_id"):
            found.setdefault(meta["env_id"], path.parent)
    return found


def point_config(trained_on: dict[str, Any], budget: int, mode: str) -> dict[str, Any]:
    """The scenario config of a conditioned policy at one operating point: its training
    config ``trained_on`` with the budget fixed at ``budget`` channel uses in ``mode``, no
    drawn budget cap (``comm.budget_levels``) and no drawn transmit power
    (``channel.tx_power_dbm_range``), so its worlds are those of the expert's point
    ``{"comm": {"budget": budget, "mode": mode}}``."""
    from agentcomm.config import merged

    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
        raise ValueError(f"budget={budget!r} is not allowed; expected an integer >= 0")
    fixed = {
        "comm": {"budget": budget, "budget_levels": None, "mode": mode},
        "channel": {"tx_power_dbm_range": None},
    }
    return merged(trained_on, fixed)


def pareto_bits_ratio(
    budgets: list[int],
    policy: list[tuple[float, float]],
    expert: list[tuple[float, float]],
    tolerance: float = 0.0,
) -> float:
    """Policy bits at the smallest budget whose success reaches the expert's at the largest
    budget (less ``tolerance``), over the expert's bits there; ``policy``/``expert``:
    ``(success, bits)`` per budget, in the order of ``budgets``. ``nan`` if no budget
    reaches it (or the expert sends nothing at its largest budget)."""
    top = max(range(len(budgets)), key=budgets.__getitem__)
    target, expert_bits = expert[top]
    target -= tolerance
    for i in sorted(range(len(budgets)), key=budgets.__getitem__):
        success, bits = policy[i]
        if success >= target:
            return bits / expert_bits if expert_bits > 0 else NAN
    return NAN


def _parse_policies(items: list[str]) -> dict[str, Path]:
    out = {}
    for item in items:
        env_id, sep, path = item.partition("=")
        if not sep or env_id not in SCENARIOS or not path:
            raise ValueError(
                f"--policy {item!r} is not allowed; expected SCENARIO=PATH with SCENARIO one "
                f"of {list(SCENARIOS)}"
            )
        out[env_id] = Path(path)
    return out


def _point(actor: Any, env_id: str, episodes: int, env_config: dict, seed: int, split: str) -> dict:
    from agentcomm.experiments.stats import wilson_interval
    from agentcomm.policies.evaluate import evaluate

    res = evaluate(
        actor,
        env_id,
        episodes,
        num_envs=episodes,
        seed=seed,
        env_config=env_config,
        split=split,
    )
    p, low, high = wilson_interval(res.successes, res.episodes)
    return {
        "success": p,
        "low": low,
        "high": high,
        "n": res.episodes,
        "bits": res.bits_per_agent_step,
    }


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Run the evaluation; print each point, write the CSV and the ``RESULT`` line."""
    import torch

    from agentcomm.policies.evaluate import checkpoint_env, load_actor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=SCENARIOS)
    parser.add_argument("--budgets", nargs="+", type=int, default=list(BUDGETS))
    parser.add_argument(
        "--modes",
        nargs="+",
        default=["distributed"],
        choices=("distributed", "centralized", "hybrid"),
    )
    parser.add_argument("--policy", action="append", default=[], metavar="SCENARIO=PATH")
    parser.add_argument(
        "--episodes",
        type=int,
        default=None,
        help=f"episodes per point (default {EPISODES}, --quick {QUICK_EPISODES})",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seed", type=int, default=0, help="seed index into --split")
    parser.add_argument(
        "--split",
        choices=("selection", "evaluation"),
        default="evaluation",
        help="world-seed split: selection (to choose a checkpoint) or evaluation (final "
        "figures; default)",
    )
    parser.add_argument("--csv", default="eval_learned_comm.csv", help="CSV of every point")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    episodes = args.episodes or (QUICK_EPISODES if args.quick else EPISODES)
    if episodes < 1 or any(k < 0 for k in args.budgets):
        raise ValueError(
            f"--episodes={episodes} and --budgets={args.budgets} are not allowed; expected "
            "episodes >= 1 and budgets >= 0"
        )
    budgets = sorted(set(args.budgets))
    policies = {**conditioned_policies(), **_parse_policies(args.policy)}
    expert, _ = load_actor("expert")
    rows: list[dict[str, Any]] = []
    result: dict[str, float] = {}
    for env_id in args.scenarios:
        s = short_name(env_id)
        actor, trained_on = None, {}
        if env_id in policies:
            actor, meta = load_actor(policies[env_id])
            trained_on = checkpoint_env(meta)[1]
        else:
            print(f"{env_id}: no conditioned policy found; its dppo keys are nan")
        for i, mode in enumerate(args.modes):
            suffix = "" if i == 0 else f"_{mode}"
            curves: dict[str, list[tuple[float, float]]] = {"expert": [], "dppo": []}
            for k in budgets:
                for who in ("expert", "dppo"):
                    if who == "expert":
                        cfg = {"comm": {"budget": k, "mode": mode}}
                        point = _point(expert, env_id, episodes, cfg, args.seed, args.split)
                    elif actor is None:
                        point = {"success": NAN, "low": NAN, "high": NAN, "n": 0, "bits": NAN}
                    else:
                        cfg = point_config(trained_on, k, mode)
                        point = _point(actor, env_id, episodes, cfg, args.seed, args.split)
                    curves[who].append((point["success"], point["bits"]))
                    rows.append(
                        {"scenario": env_id, "mode": mode, "budget": k, "policy": who, **point}
                    )
                    print(
                        f"{env_id} {mode} k={k:>4} {who:>6}: success {point['success']:.3f} "
                        f"[{point['low']:.3f}, {point['high']:.3f}] (n={point['n']})  "
                        f"bits/agent-step {point['bits']:.2f}",
                        flush=True,
                    )
                    result[f"{s}_{who}_success_b{k}{suffix}"] = point["success"]
                    result[f"{s}_{who}_bits_b{k}{suffix}"] = point["bits"]
            for key, tolerance in (("", 0.0), ("_tol", GOAL_TOLERANCE)):
                result[f"{s}_pareto_bits_ratio{key}{suffix}"] = pareto_bits_ratio(
                    budgets, curves["dppo"], curves["expert"], tolerance
                )
    from agentcomm.experiments.execute import write_csv

    out = Path(args.csv)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(out, rows)
    print(f"wrote {out}")
    print(result_line(result))
    return result


def result_line(result: dict[str, float]) -> str:
    """``RESULT key=value ...`` with 4 significant digits (``nan`` where undefined)."""
    return "RESULT " + " ".join(
        f"{k}={'nan' if math.isnan(v) else f'{v:.4g}'}" for k, v in result.items()
    )


if __name__ == "__main__":
    main()
