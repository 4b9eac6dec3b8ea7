"""Test setup: one torch thread, a lazily started session-wide Ray instance."""

from __future__ import annotations

import os

# Before torch is imported anywhere: with 2 threads on a shared 2-core machine
# torch runs 20-40x slower, so tests pin everything to 1 thread.
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray instance shared by every test that asks for it."""
    import ray

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 1024**2,
        log_to_driver=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1", "PYTHONPATH": repo}},
    )
    yield ray
    ray.shutdown()


@pytest.fixture
def generator() -> torch.Generator:
    """A freshly seeded CPU generator; every random draw in a test flows from it."""
    return torch.Generator().manual_seed(1234)
