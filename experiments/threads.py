"""One CPU thread for the experiment scripts.

A script calls :func:`use_one_thread` at the start of its ``main()``, never at import
(importing a script does no work). ``torch.set_num_threads(1)`` bounds torch's own pools
whenever it is called, and the environment variables reach every process started
afterwards (Ray workers, subprocesses), whose libraries read them when they load. With
several threads on a small shared machine torch runs many times slower whenever another
process uses a core, and timings stop being comparable.
"""

from __future__ import annotations

import os

__all__ = ["THREAD_VARIABLES", "use_one_thread"]

#: The environment variables that set the thread pools torch's CPU kernels use.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def use_one_thread(*, override: bool = True) -> None:
    """Pin torch and its math libraries to one thread; quiet Ray's start-up.

    Sets :data:`THREAD_VARIABLES` to ``"1"``, then imports torch and calls
    ``torch.set_num_threads(1)``. Ray's token authentication and usage statistics are
    turned off unless the environment already says otherwise (a local, offline cluster).

    Args:
        override: replace thread counts already in the environment (benchmarks and runs
            whose figures assume one thread); ``False`` keeps a count the caller set.
    """
    for var in THREAD_VARIABLES:
        if override:
            os.environ[var] = "1"
        else:
            os.environ.setdefault(var, "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import torch

    torch.set_num_threads(1)
