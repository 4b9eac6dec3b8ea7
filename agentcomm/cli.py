"""The ``agentcomm`` command line.

Each subcommand lives in the module that owns its work and is imported only
when called, so ``agentcomm --help`` stays fast and needs neither Ray nor
diffusers to be imported.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# name -> (module, help). Each module defines ``add_arguments(parser)`` and ``main(args)``.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "run": (
        "agentcomm.experiments.run",
        "the main job: task success versus bandwidth in every scenario, by coordination "
        "mode and codec (summary.csv, one figure per scenario)",
    ),
    "sweep": ("agentcomm.experiments.sweep", "run one experiment YAML over seeds, in parallel"),
    "train": (
        "agentcomm.policies.train",
        "train a policy (bc, dppo, ppo, sb3-ppo) on a scenario",
    ),
    "eval": (
        "agentcomm.policies.evaluate",
        "evaluate a policy checkpoint, the expert or random actions (the main job's evaluation)",
    ),
    "train-decoder": (
        "agentcomm.decoders.cli",
        "train JSCC + diffusion receivers (a decoder bundle) with Ray Train",
    ),
    "render": (
        "agentcomm.render_cli",
        "play one episode of an environment and write it as an animated GIF",
    ),
}


def build_parser() -> argparse.ArgumentParser:
    from agentcomm import __version__

    parser = argparse.ArgumentParser(
        prog="agentcomm",
        description=(
            "Multi-agent intent-driven semantic communications: batched worlds, "
            "wireless channels, belief codecs, diffusion policies and receivers."
        ),
    )
    parser.add_argument("--version", action="version", version=f"agentcomm {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    device = getattr(args, "device", None)
    if isinstance(device, str) and device != "auto":
        # Every subcommand with --device builds worlds or models there: refuse a device
        # this machine lacks now, with the reason, instead of from inside the first tensor.
        from agentcomm._checks import check_device

        try:
            check_device("--device", device)
        except ValueError as err:
            parser.error(str(err))
    return int(importlib.import_module(args._module).main(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
