"""Command lines for the tests that call a subcommand's ``main(args)`` directly."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence


def parse_cli(module: str, argv: Sequence[str]) -> argparse.Namespace:
    """The namespace ``agentcomm <subcommand> argv`` hands to ``module.main``.

    ``module`` is a subcommand's module (``agentcomm.policies.train``, ...); it is imported
    here, on first use, like the ``agentcomm`` command does.
    """
    parser = argparse.ArgumentParser()
    importlib.import_module(module).add_arguments(parser)
    return parser.parse_args(list(argv))
