"""``agentcomm sweep --config experiments/configs/NAME.yaml``: one experiment from its
YAML, parallel over a local Ray instance (``--workers``) or a running cluster
(``--address``); writes ``points.csv``, ``summary.csv`` and ``results.json``.
The same config gives the same CSV."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment YAML")
    parser.add_argument("--out", default=None, help="results folder (default: results/<name>)")
    parser.add_argument("--workers", type=int, default=2, help="local Ray workers (1: in-process)")
    parser.add_argument("--address", default=None, help="address of a running Ray cluster")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from .runner import run_experiments, summarize, write_csv, write_json
    from .study import load_experiment

    cfg = load_experiment(args.config)
    out = Path(args.out or f"results/{cfg.name}")
    out.mkdir(parents=True, exist_ok=True)
    rows = run_experiments(
        [cfg], workers=args.workers, address=args.address, progress=not args.no_progress
    )
    summary = summarize(rows)
    write_csv(out / "points.csv", rows)
    write_csv(out / "summary.csv", summary)
    write_json(
        out / "results.json", {"experiment": cfg.to_dict(), "summary": summary, "points": rows}
    )
    best = max(summary, key=lambda r: r["success"])
    print(f"wrote {out}/points.csv, summary.csv, results.json")
    print(
        f"RESULT experiment={cfg.name} points={len(summary)} runs={len(rows)} "
        f"best_success={best['success']:.3f}"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
