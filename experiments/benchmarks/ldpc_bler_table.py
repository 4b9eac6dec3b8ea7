"""Measure the block error rate table of the ``ldpc_qam`` codec with the Sionna chain.

MCS: 5G NR LDPC (TS 38.212, Sionna's ``LDPC5GEncoder``/``LDPC5GDecoder``, belief
propagation with ``num_iter`` iterations, exact APP demapping) at code rate 1/2 on
Gray-labelled 16-QAM: 2 information bits per complex channel use, the quantized codec's
default ``rate=2.0``. A block of ``k`` information bits has ``n = 2k`` coded bits on
``k / 2`` channel uses. Channel: AWGN (:class:`agentcomm.channels.AWGN`); the SNR is
:math:`E_s/N_0` per QAM symbol in dB, the SNR of one complex channel use.

For every information block length ``k`` of a log-spaced grid (12 to 1024 bits, the
payloads of budgets up to 256 channel uses at 2 bits per use) the script locates the
waterfall on a 0.25 dB grid: starting at 4.75 dB it steps down 0.5 dB until every block
fails (or -4 dB), then up 0.25 dB until ``stop_clean`` consecutive points decode every
block (or 20 dB). Each point runs ``blocks`` blocks in batches of ``batch``; a point where every
block of the first batch fails stops there (BLER ~ 1 needs no precision). Every random
draw (bits, noise) comes from one ``torch.Generator`` per ``k``, seeded ``seed + k``.

The table (raw error counts, blocks, and the BLER fitted non-increasing in SNR by
:func:`agentcomm.codecs.ldpc.monotone_bler`) is written as JSON into the package
(``agentcomm/codecs/data/ldpc_qam_bler.json``) with the MCS, ``num_iter``, seed, blocks
per point, Sionna version, the command and its wall time.

Usage::

    python -m agentcomm.experiments.benchmarks.ldpc_bler_table

The last line printed is ``RESULT key=value ...``: the SNR (dB) at BLER 0.1 per ``k``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from agentcomm.experiments.threads import use_one_thread

#: The information block lengths: log-spaced (factor ~1.5), even (``n = 2k`` coded bits
#: must fill whole 16-QAM symbols).
K_GRID = (12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)


@dataclass
class Args:
    blocks: int = 1000
    """blocks per SNR point."""
    batch: int = 250
    """blocks per chain call."""
    num_iter: int = 20
    """belief-propagation iterations."""
    step_db: float = 0.25
    """SNR step of the upward scan."""
    start_db: float = 4.75
    """where each scan starts (about the capacity threshold of 2 bits per use)."""
    floor_db: float = -4.0
    """lowest SNR of the downward scan."""
    ceiling_db: float = 20.0
    """highest SNR of the upward scan."""
    stop_clean: int = 2
    """consecutive error-free points that end a scan."""
    seed: int = 0
    k: tuple[int, ...] = K_GRID
    out: str = ""
    """output path; empty: the package's table."""


def _parse() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Args()
    for name, value in asdict(defaults).items():
        if name == "k":
            parser.add_argument("--k", type=int, nargs="+", default=list(value))
        else:
            parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    ns = parser.parse_args()
    args = Args(**{**vars(ns), "k": tuple(ns.k)})
    return args


def measure_point(chain, k: int, snr_db: float, args: Args, generator) -> tuple[int, int]:
    """``(block errors, blocks)`` of the chain at ``snr_db`` over AWGN."""
    import torch

    from agentcomm.channels import AWGN

    channel = AWGN()
    errors = blocks = 0
    while blocks < args.blocks:
        b = min(args.batch, args.blocks - blocks)
        bits = torch.randint(0, 2, (b, k), generator=generator).float()
        out = chain.transmit(bits, channel, snr_db, generator)
        errors += int((~out.block_delivered).sum())
        blocks += b
        if errors == blocks:
            break
    return errors, blocks


def measure_row(k: int, args: Args) -> dict:
    """The scan of one block length (module docstring)."""
    import torch

    from agentcomm.channels.sionna_chain import LDPCQAMChain

    chain = LDPCQAMChain(k, 2 * k, 4, num_iter=args.num_iter)
    generator = torch.Generator().manual_seed(args.seed + k)
    points: dict[float, tuple[int, int]] = {}
    snr = args.start_db
    while True:
        points[snr] = measure_point(chain, k, snr, args, generator)
        errors, blocks = points[snr]
        if errors == blocks or snr <= args.floor_db:
            break
        snr = round(snr - 2 * args.step_db, 6)
    snr, clean = args.start_db, 0
    while clean < args.stop_clean and snr < args.ceiling_db:
        snr = round(snr + args.step_db, 6)
        points[snr] = measure_point(chain, k, snr, args, generator)
        clean = clean + 1 if points[snr][0] == 0 else 0
    grid = sorted(points)
    return {
        "k_info": k,
        "snr_db": grid,
        "errors": [points[s][0] for s in grid],
        "blocks": [points[s][1] for s in grid],
    }


def main() -> None:
    use_one_thread()
    args = _parse()
    import numpy as np
    import sionna
    import torch

    from agentcomm.codecs.ldpc import BLER_TABLE_PATH, bler_at, monotone_bler
    from agentcomm.experiments.stats import wilson_interval

    out = Path(args.out) if args.out else BLER_TABLE_PATH
    start = time.perf_counter()
    rows = []
    for k in args.k:
        t0 = time.perf_counter()
        row = measure_row(k, args)
        errors, blocks = np.array(row["errors"]), np.array(row["blocks"])
        row["bler"] = monotone_bler(errors, blocks).tolist()
        rows.append(row)
        print(
            f"k={k:5d} points={len(row['snr_db'])} "
            f"snr@0.1={bler_at(row['snr_db'], row['bler'], 0.1):.3f} dB "
            f"({time.perf_counter() - t0:.1f} s)",
            flush=True,
        )
    wall = time.perf_counter() - start
    # The precision of the waterfall: the widest 95% Wilson interval among points with
    # 0.01 <= BLER <= 0.99 that ran every block.
    widest = 0.0
    for row in rows:
        for e, b in zip(row["errors"], row["blocks"], strict=True):
            if b == args.blocks and 0.01 <= e / b <= 0.99:
                _, low, high = wilson_interval(e, b)
                widest = max(widest, high - low)
    table = {
        "description": (
            "Block error rate of 5G NR LDPC (rate 1/2) + 16-QAM over AWGN versus Es/N0 (dB) "
            "per information block length, measured with agentcomm.channels.sionna_chain."
            "LDPCQAMChain; bler is the measured errors/blocks fitted non-increasing in SNR "
            "(pool-adjacent-violators weighted by blocks)."
        ),
        "mcs": {
            "modulation": "16-QAM (Gray)",
            "bits_per_symbol": 4,
            "code": "5G NR LDPC (TS 38.212)",
            "code_rate": 0.5,
            "rate_bits_per_use": 2.0,
            "coded_bits": "2 * k_info",
            "demapping": "app",
            "num_iter": args.num_iter,
            "channel": "AWGN",
        },
        "seed": args.seed,
        "blocks_per_point": args.blocks,
        "batch": args.batch,
        "step_db": args.step_db,
        "sionna_version": sionna.__version__,
        "torch_version": torch.__version__,
        "command": "python -m agentcomm.experiments.benchmarks.ldpc_bler_table "
        + " ".join(sys.argv[1:]),
        "wall_s": round(wall, 1),
        "threads": 1,
        "widest_wilson95_waterfall": round(widest, 4),
        "rows": rows,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {out} in {wall:.1f} s")
    fields = {"wall_s": f"{wall:.1f}", "widest_ci": f"{widest:.4f}"}
    for row in rows:
        snr = bler_at(row["snr_db"], row["bler"], 0.1)
        fields[f"snr01_k{row['k_info']}"] = f"{snr:.3f}"
    gap = 10 * math.log10(2**2 - 1)
    fields["capacity_db"] = f"{gap:.3f}"
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))


if __name__ == "__main__":
    main()
