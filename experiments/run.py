"""``agentcomm run``: the main job.

Evaluates every scenario's expert (SearchRescue-v0, TargetTracking-v0, IntentCoverage-v0)
across bandwidth budgets from none to perfect communication, in the coordination modes
(centralized, distributed, hybrid) with the quantized digital codec, the same codec over a
5G LDPC + 16-QAM link, the learned codecs (JSCC, JSCC with a diffusion receiver) on one mode, a link-SNR sweep, and the shipped
learned policies on the SearchRescue axes (the policies conditioned on their channel also on
the TargetTracking axis), and the oracle reference (the expert deciding on
the true state) of SearchRescue-v0 and TargetTracking-v0: one experiment YAML each
(:data:`DEFAULT_EXPERIMENTS`, in ``agentcomm/experiments/configs``). Every point is
evaluated by the one evaluation function
(:func:`agentcomm.policies.evaluate.evaluate`) on the ``evaluation`` worlds.

Writes to ``--out``:

* ``summary.csv``: one row per point, the columns
  :data:`~agentcomm.experiments.execute.SUMMARY_COLUMNS` (perfect communication is codec
  ``raw``, no communication budget 0; success with its Wilson 95 % interval over the
  episodes pooled across seeds);
* ``points.csv``: every (point, policy, seed) run with all its metrics;
* ``results.json``: the experiment configs, the summary rows with every metric, the runs,
  the monotonicity check and each evaluation's wall time;
* one figure per scenario (``success_<scenario>.png``: success against channel uses and
  against delivered bits per agent per step, both on log2 axes, with the no-communication
  floor and the perfect-communication ceiling), and ``success_vs_bits.png``
  (SearchRescue against delivered bits with their Shannon bounds), ``success_vs_snr.png``,
  ``modes.png``.

It prints the summary table, a warning line per point where a scripted policy (the expert,
the oracle) scores worse with more communication beyond the intervals
(:func:`~agentcomm.experiments.execute.check_monotone`: a simulator fault), a note line per
such drop of a learned policy (a finding about the policy), and ends with one
``RESULT key=value ...`` line. No cluster, no GPU, no download.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from importlib import resources
from pathlib import Path

__all__ = ["DEFAULT_EXPERIMENTS", "add_arguments", "main"]

DEFAULT_EXPERIMENTS = (
    "bandwidth.yaml",
    "codecs_run.yaml",
    "ldpc.yaml",
    "policies_run.yaml",
    "policies_conditioned.yaml",
    "snr.yaml",
    "target_tracking.yaml",
    "policies_conditioned_tracking.yaml",
    "intent_coverage.yaml",
    "policies_conditioned_coverage.yaml",
    "oracle.yaml",
    "oracle_tracking.yaml",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default="results/run", help="results folder (default: %(default)s)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: each experiment's 'quick' changes (few points and episodes), in-process",
    )
    parser.add_argument("--device", default="cpu", help="torch device of the batched worlds")
    parser.add_argument("--episodes", type=int, default=None, help="episodes per point and seed")
    parser.add_argument("--seeds", type=int, default=None, help="number of seeds (0, 1, ...)")
    parser.add_argument(
        "--workers",
        type=int,
        default=2,
        help="parallel workers on a local Ray instance; 1 runs in-process (default: %(default)s)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _configs(args: argparse.Namespace):
    from .study import load_experiment

    root = resources.files("agentcomm.experiments") / "configs"
    cfgs = []
    for name in DEFAULT_EXPERIMENTS:
        with resources.as_file(root / name) as path:
            cfg = load_experiment(path)
        if args.quick:
            cfg = cfg.smoke()
        changes: dict = {"device": args.device}
        if args.episodes is not None:
            changes["episodes"] = args.episodes
        if args.seeds is not None:
            changes["seeds"] = tuple(range(args.seeds))
        cfgs.append(cfg.replace(**changes))
    return cfgs


def _print_table(summary: list[dict]) -> None:
    head = (
        f"{'experiment':16s} {'scenario':18s} {'policy':18s} {'mode':11s} {'codec':9s} "
        f"{'budget':>6s} {'SNR dB':>6s} {'n':>5s} {'success [95% CI]':>21s} "
        f"{'uses/ag/step':>12s} {'bits/ag/step':>12s}"
    )
    print(head)
    print("-" * len(head))
    seen = set()
    for r in summary:
        key = (r["env_id"], r["policy"], r["config_id"])
        if key in seen:
            continue
        seen.add(key)
        snr = r["fc_snr_db"] if r["mode"] == "centralized" else r["peer_snr_db"]
        ci = f"{r['success']:.3f} [{r['ci_low']:.3f}, {r['ci_high']:.3f}]"
        print(
            f"{r['experiment'][:16]:16s} {r['env_id']:18s} {r['policy'][-18:]:18s} "
            f"{r['mode']:11s} {r['codec']:9s} {int(r['budget']):6d} {snr:6.1f} "
            f"{r['episodes']:5d} {ci:>21s} {r['channel_uses']:12.1f} {r['bits']:12.1f}"
        )
    methods = ", ".join(sorted({str(r["interval"]) for r in summary}))
    print(
        f"n: episodes pooled over seeds; CI: {methods} interval on the pooled count; "
        "budget: channel uses per link per step (0: no communication; raw: perfect)"
    )


def main(args: argparse.Namespace) -> int:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    torch.set_num_threads(1)

    from .execute import (
        check_monotone,
        run_experiments,
        summarize,
        summary_table,
        write_csv,
        write_json,
    )
    from .plots import plot_bandwidth, plot_modes, plot_scenario, plot_snr

    start = time.perf_counter()
    cfgs = _configs(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workers = 1 if args.quick else args.workers
    timings: list[dict] = []
    rows = run_experiments(cfgs, workers=workers, progress=not args.no_progress, timings=timings)
    summary = summarize(rows)
    table = summary_table(summary)
    violations = check_monotone(summary)
    learned_drops = check_monotone(summary, learned=True)
    write_csv(out / "points.csv", rows)
    write_csv(out / "summary.csv", table)
    write_json(
        out / "results.json",
        {
            "experiments": [c.to_dict() for c in cfgs],
            "summary": summary,
            "points": rows,
            "monotonicity_violations": violations,
            "learned_policy_drops": learned_drops,
            "timings": timings,
        },
    )
    scenarios = list(dict.fromkeys(c.env_id for c in cfgs))
    figures = []
    for env_id in scenarios:
        name = f"success_{env_id}.png"
        plot_scenario(summary, env_id, out / name)
        figures.append(name)
    plot_bandwidth(summary, out / "success_vs_bits.png")
    plot_snr(summary, out / "success_vs_snr.png")
    plot_modes(summary, out / "modes.png")
    _print_table(summary)
    elapsed = time.perf_counter() - start
    if violations:
        print(
            f"\nWARNING: {len(violations)} point(s) where more communication scores worse "
            "beyond the 95% intervals:"
        )
        for line in violations:
            print(f"WARNING: {line}")
    else:
        print("\nmonotonicity: success never falls with the budget beyond the 95% intervals")
    for line in learned_drops:  # a finding about a learned policy, not a simulator fault
        print(f"note: a learned policy scores worse with more communication: {line}")
    print(
        f"\nwrote {out}/summary.csv, points.csv, results.json, {', '.join(figures)}, "
        f"success_vs_bits.png, success_vs_snr.png, modes.png in {elapsed:.1f} s"
    )
    half = max((r["ci_high"] - r["ci_low"]) / 2 for r in table)
    levels = []
    for env_id in scenarios:
        tag = env_id.split("-")[0].lower()
        for what, pick in (
            ("no_comm", lambda r: r["budget"] == 0),
            ("raw", lambda r: r["codec"] == "raw"),
        ):
            hits = [
                r["success"]
                for r in table
                if r["scenario"] == env_id
                and r["policy"] == "expert"
                and r["mode"] == "distributed"
                and pick(r)
            ]
            if hits:
                levels.append(f"{tag}_{what}={hits[0]:.3f}")
    print(
        f"RESULT scenarios={len(scenarios)} points={len(table)} runs={len(rows)} "
        f"seconds={elapsed:.1f} min_episodes={min(r['episodes'] for r in table)} "
        f"max_half_width={half:.4f} violations={len(violations)} learned_drops={len(learned_drops)} {' '.join(levels)}"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
