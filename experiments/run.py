"""``agentcomm run``: the main job.

Evaluates the scenario expert (and the shipped trained policies, when present)
on the default scenario across bandwidth budgets from none to raw beliefs,
coordination modes (centralized, distributed, hybrid) and link SNRs, over
several seeds; prints a table and writes ``points.csv`` (every seed),
``summary.csv`` / ``results.json`` (success over the episodes pooled across seeds,
with n and its Wilson 95% interval) and three PNG figures. No cluster, no GPU, no download.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from importlib import resources
from pathlib import Path

__all__ = ["add_arguments", "main"]

DEFAULT_EXPERIMENTS = ("bandwidth.yaml", "snr.yaml", "codecs_run.yaml", "policies_run.yaml")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out", default="results/run", help="results folder (default: %(default)s)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: fewer points, seeds, episodes"
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
        changes: dict = {"device": args.device}
        if args.quick:
            changes |= {"episodes": 16, "seeds": (0,)}
            args.workers = 1
            if cfg.name == "bandwidth":
                changes["axes"] = {
                    "comm.mode": ["centralized", "distributed"],
                    "comm.budget": [0, 32],
                }
                changes["points"] = [{"comm.mode": "distributed", "comm.codec": "raw"}]
            elif cfg.name == "policies":
                changes["axes"] = {"comm.budget": [64]}
            elif cfg.name == "snr":
                changes["axes"] = {"comm.mode": ["distributed"], "channel.tx_power_dbm": [-20, 20]}
            else:
                changes["axes"] = {"comm.codec": ["quantized", "jscc"]}
        if args.episodes is not None:
            changes["episodes"] = args.episodes
        if args.seeds is not None:
            changes["seeds"] = tuple(range(args.seeds))
        cfgs.append(cfg.replace(**changes))
    return cfgs


def _print_table(summary: list[dict]) -> None:
    head = (
        f"{'experiment':10s} {'policy':22s} {'mode':12s} {'budget':>6s} {'codec':9s} "
        f"{'tx dBm':>6s} {'SNR dB':>6s} {'n':>5s} {'success [95% CI]':>20s} "
        f"{'bits/ag/step':>12s} {'uses/ag/step':>12s}"
    )
    print(head)
    print("-" * len(head))
    for r in summary:
        ci = f"{r['success']:.3f} [{r['ci_low']:.2f}, {r['ci_high']:.2f}]"

        def val(key: str, default: object, r: dict = r) -> str:
            return str(default if r[key] == "" else r[key])

        print(
            f"{r['experiment']:10s} {r['policy'][-22:]:22s} {val('comm.mode', 'distributed'):12s} "
            f"{val('comm.budget', 64):>6s} {val('comm.codec', 'quantized'):9s} "
            f"{val('channel.tx_power_dbm', 20):>6s} {r['peer_snr_db']:6.1f} {r['episodes']:5d} "
            f"{ci:>20s} {r['bits_delivered']:12.1f} {r['channel_uses']:12.1f}"
        )
    methods = ", ".join(sorted({str(r["interval"]) for r in summary}))
    print(f"n: episodes pooled over seeds; CI: {methods} interval on the pooled count")


def main(args: argparse.Namespace) -> int:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    import torch

    torch.set_num_threads(1)
    import agentcomm

    from .plots import plot_bandwidth, plot_modes, plot_snr
    from .runner import run_experiments, summarize, write_csv, write_json

    start = time.perf_counter()
    cfgs = _configs(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = run_experiments(cfgs, workers=args.workers, progress=not args.no_progress)
    summary = summarize(rows)
    write_csv(out / "points.csv", rows)
    write_csv(out / "summary.csv", summary)
    world = agentcomm.make_vec(cfgs[0].env_id)
    cfg = world.config
    write_json(
        out / "results.json",
        {
            "experiments": [c.to_dict() for c in cfgs],
            "env_config": cfg.to_dict(),
            "summary": summary,
            "points": rows,
        },
    )
    plot_bandwidth(summary, out / "success_vs_bits.png")
    plot_snr(summary, out / "success_vs_snr.png")
    plot_modes(summary, out / "modes.png")
    _print_table(summary)
    elapsed = time.perf_counter() - start
    print(
        f"\nwrote {out}/points.csv, summary.csv, results.json, success_vs_bits.png, "
        f"success_vs_snr.png, modes.png in {elapsed:.1f} s"
    )
    best = max(summary, key=lambda r: r["success"])
    none = [r for r in summary if r["experiment"] == "bandwidth" and r["comm.budget"] == 0]
    print(
        f"RESULT points={len(summary)} runs={len(rows)} seconds={elapsed:.1f} "
        f"best_success={best['success']:.3f} "
        f"no_comm_success={none[0]['success'] if none else float('nan'):.3f}"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
