"""``agentcomm train-decoder``: train a JSCC + diffusion-receiver bundle with Ray Train.

Examples::

    agentcomm train-decoder --env SearchRescue-v0 --out runs/decoders
    agentcomm train-decoder --config decoders.yaml --out runs/decoders
    agentcomm train-decoder --config decoders.yaml --num-workers 8 --use-gpu   # a Ray cluster

``--config`` takes a YAML or JSON file of
:class:`~agentcomm.policies.receiver_training.DecoderTrainConfig` fields (the one
``agentcomm train-decoder`` writes beside its models, ``train_config.yaml``, is one).
Command-line flags override the config file.

The training needs the environments and Ray, which the communication stack does not
import: :func:`main` loads :mod:`agentcomm.policies.receiver_training` by name when the
command runs, as the top-level command line loads every subcommand.
"""

from __future__ import annotations

import argparse
import importlib

__all__ = ["TRAINER", "add_arguments", "main"]

#: Module holding ``DecoderTrainConfig`` and ``train_decoders``.
TRAINER = "agentcomm.policies.receiver_training"


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
    trainer = importlib.import_module(TRAINER)
    config_cls = trainer.DecoderTrainConfig
    cfg = config_cls.load(args.config) if args.config else config_cls()
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
    out = trainer.train_decoders(cfg, args.out)
    print(f"wrote {out}")
    return 0
