"""``agentcomm train-decoder``: train a JSCC + diffusion-receiver bundle with Ray Train.

Examples::

    agentcomm train-decoder --env SearchRescue-v0 --out runs/decoders
    agentcomm train-decoder --config experiments/configs/decoders.yaml --out runs/decoders
    agentcomm train-decoder --config cfg.yaml --num-workers 8 --use-gpu   # a Ray cluster

Command-line flags override the config file; the config used is written beside
the models (``train_config.yaml``).
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "main"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train-decoder`` options to ``parser``."""
    parser.add_argument("--env", dest="env_id", help="environment id (default: from the config)")
    parser.add_argument("--config", help="YAML or JSON DecoderTrainConfig file")
    parser.add_argument("--out", required=True, help="output folder of the bundle")
    parser.add_argument("--num-workers", type=int, help="Ray Train workers")
    parser.add_argument("--use-gpu", action="store_true", default=None, help="a GPU per worker")
    parser.add_argument("--seed", type=int, help="seed of data collection and training")


def main(args: argparse.Namespace) -> int:
    """Run the training; returns the exit status."""
    from agentcomm.decoders.ray_train import DecoderTrainConfig, train_decoders

    cfg = DecoderTrainConfig.load(args.config) if args.config else DecoderTrainConfig()
    changes = {
        key: value
        for key, value in (
            ("env_id", args.env_id),
            ("num_workers", args.num_workers),
            ("use_gpu", args.use_gpu),
            ("seed", args.seed),
        )
        if value is not None
    }
    cfg = cfg.replace(**changes)
    out = train_decoders(cfg, args.out)
    print(f"wrote {out}")
    return 0
