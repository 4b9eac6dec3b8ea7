"""``agentcomm sweep --config experiments/configs/NAME.yaml``: one experiment from its
YAML, parallel over a local Ray instance (``--workers``) or a running cluster
(``--address``); writes ``points.csv``, ``summary.csv`` and ``results.json``.
The same config gives the same CSV."""

from __future__ import annotations

import argparse
import math
import os
import socket
import sys
from collections.abc import Callable
from pathlib import Path

__all__ = ["add_arguments", "check_ray_address", "int_at_least", "main", "positive_float"]

#: Seconds to wait for a TCP connection to ``--address`` before giving up.
CONNECT_TIMEOUT_S = 10.0


def int_at_least(low: int, note: str = "") -> Callable[[str], int]:
    """An argparse ``type``: an integer ``>= low`` (``note`` says what the lowest means)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < low:
            raise argparse.ArgumentTypeError(
                f"{value} is not allowed; expected an integer >= {low}"
                + (f" ({note})" if note else "")
            )
        return value

    return parse


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not allowed; expected a finite number > 0")
    return value


def check_ray_address(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse a ``--address`` with nothing listening, within ``timeout_s`` seconds.

    ``ray.init(address=...)`` retries an unreachable head node for minutes without a word;
    a plain TCP connection to the same ``host:port`` says at once whether anything is
    there. ``"auto"``/``"local"`` (Ray finds or starts the cluster itself) are not checked,
    and a listening port that is not a Ray head is left to Ray.

    Raises:
        ValueError: naming the address, the reason and what to do.
    """
    text = address.strip()
    if text in ("auto", "local"):
        return
    hostport = text.split("://", 1)[1] if "://" in text else text
    host, sep, port_text = hostport.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(
            f"--address={address!r} is not allowed; expected HOST:PORT (e.g. 10.0.0.5:6379), "
            "ray://HOST:PORT or 'auto'"
        )
    try:
        with socket.create_connection((host.strip("[]"), int(port_text)), timeout=timeout_s):
            pass
    except OSError as err:
        raise ValueError(
            f"--address={address!r}: cannot reach a Ray cluster there within {timeout_s:g} s "
            f"({err.strerror or err}); start one with `ray start --head` and pass the address "
            "it prints, or drop --address to run on a local Ray instance (--workers)"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", required=True, help="experiment YAML")
    parser.add_argument("--out", default=None, help="results folder (default: results/<name>)")
    parser.add_argument(
        "--workers",
        type=int_at_least(1, "1 runs in-process"),
        default=2,
        help="local Ray workers, >= 1 (1: in-process)",
    )
    parser.add_argument("--address", default=None, help="address of a running Ray cluster")
    parser.add_argument("--no-progress", action="store_true")


def main(args: argparse.Namespace) -> int:
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    from .execute import run_experiments, summarize, write_csv, write_json
    from .study import load_experiment

    cfg = load_experiment(args.config)
    if isinstance(args.workers, bool) or not isinstance(args.workers, int) or args.workers < 1:
        raise ValueError(f"workers={args.workers!r} is not allowed; expected an integer >= 1")
    if args.address is not None:
        check_ray_address(args.address)
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
