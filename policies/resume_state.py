"""What an RLlib checkpoint lacks for a bit-exact resume of the batched runner.

RLlib's ``Algorithm.save_to_path`` writes the learner (module weights, optimizer state),
the algorithm's metrics and the env runners' connector state. It does not write what the
next iteration's *sampling* depends on:

* the worlds of each :class:`~agentcomm.policies.env_runner.BatchedCommEnvRunner` (agent
  positions, beliefs, targets, step counters and the world's own ``torch.Generator``), the
  observation the next step acts on, the running episode returns and lengths, and the
  runner's windowed episode metrics (``episode_return_mean`` averages over the last
  episodes, across iterations);
* the random-number generators of each process: torch's global generator (exploration noise
  of the Gaussian and diffusion modules), numpy's global generator (RLlib shuffles each
  epoch's minibatches with ``np.random.permutation``) and Python's ``random``.

Without them a resumed run re-seeds its worlds and generators and samples other episodes
than the uninterrupted run. :func:`save_resume_state` writes them beside the RLlib
checkpoint (one pickle file, :data:`STATE_FILE`) and :func:`restore_resume_state` puts them
back after ``Algorithm.restore_from_path``, so a run killed after iteration ``k`` and resumed
writes the same ``progress.csv`` rows (all but the wall-clock ``seconds`` column) and the
same final weights, bit for bit, as the uninterrupted run on the same machine.

RLlib's restore also sends the restored weights to remote env runners without waiting for
them to arrive, so the first resumed iteration could sample with a remote runner's initial
weights; :func:`restore_resume_state` waits for them.

Scope (the ``rllib`` section of the run's TrainConfig). Exact for ``runner="batched"``, with
the env runner in the driver process (``num_env_runners=0``) or in remote processes (each
remote runner's worlds and process generators travel through ``foreach_env_runner``). Not
captured, so not bit-exact:

* ``runner="stock"``: RLlib's ``MultiAgentEnvRunner`` keeps its gymnasium vector env and
  episodes in objects RLlib does not expose for saving; a resume restarts those episodes
  from freshly seeded worlds (the process generators are still restored).
* ``num_learners > 0``: remote learner processes' generators (minibatch shuffling there)
  are re-seeded by RLlib, not restored.
* A resume on another device (``--device``): the saved worlds cannot follow, so the env
  runners start from fresh worlds (with a warning).

The file is a pickle, like RLlib's own ``state.pkl`` beside it: a run directory is trusted
input.
"""

from __future__ import annotations

import functools
import pickle
import random
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agentcomm.io import atomic_write

__all__ = ["STATE_FILE", "restore_resume_state", "save_resume_state"]

#: File in each ``rllib/iter_NNNNN/`` checkpoint directory.
STATE_FILE = "agentcomm_resume_state.pkl"
_FORMAT = 1
#: Seconds to wait for the restored weights to reach the remote env runners.
_SYNC_TIMEOUT_S = 120.0
#: The batched runner's sampling state: its worlds, the observation the next step acts on,
#: the ongoing episodes' ids, start steps, returns and lengths, and whether it must reset.
_RUNNER_ATTRS = (
    "world",
    "_obs",
    "_ep_ids",
    "_t_started",
    "_running_return",
    "_running_len",
    "_needs_reset",
    "_seeded",
)


def _process_rng_state() -> dict[str, Any]:
    """The generators of the calling process (torch CPU and CUDA, numpy, Python)."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),  # noqa: NPY002 - the legacy global RLlib draws from
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_process_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])  # noqa: NPY002
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _runner_state(runner: Any) -> dict[str, Any] | None:
    """One env runner's sampling state (``None`` for runners other than the batched one),
    with its process's generators when it runs in a process of its own."""
    from agentcomm.policies.env_runner import BatchedCommEnvRunner

    index = int(runner.worker_index or 0)
    state: dict[str, Any] = {"worker_index": index}
    if index > 0:
        state["rng"] = _process_rng_state()
    if isinstance(runner, BatchedCommEnvRunner):
        if runner._needs_reset and not runner._seeded:
            state["runner"] = None  # not sampled yet: a fresh runner is in the same state
        else:
            state["runner"] = {name: getattr(runner, name) for name in _RUNNER_ATTRS}
        state["metrics"] = runner.metrics.get_state()
    return state


def _set_runner_state(runner: Any, states: dict[int, dict[str, Any]]) -> None:
    state = states.get(int(runner.worker_index or 0))
    if state is None:
        return
    if "rng" in state:
        _set_process_rng_state(state["rng"])
    sampling = state.get("runner")
    if sampling is not None:
        world = sampling["world"]
        if world.device != runner._device:
            # A resume may move the run to another device; its worlds then start afresh.
            warnings.warn(
                f"the checkpoint's worlds live on {world.device}, this run's env runner "
                f"{runner.worker_index} on {runner._device}: it starts from fresh worlds, "
                "so the resumed run is not bit-identical to an uninterrupted one",
                stacklevel=2,
            )
        else:
            for name, value in sampling.items():
                setattr(runner, name, value)
    if "metrics" in state:
        runner.metrics.set_state(state["metrics"])


def save_resume_state(algo: Any, directory: Path) -> Path:
    """Write the sampling state of ``algo``'s env runners and the process generators.

    Call it right after ``algo.save_to_path(directory)`` and before the checkpoint is
    named complete: nothing in between may draw a random number.

    Args:
        algo: A built RLlib ``Algorithm``.
        directory: Its checkpoint directory.

    Returns:
        The written file, ``directory / STATE_FILE`` (written beside and renamed).
    """
    runners = algo.env_runner_group.foreach_env_runner(_runner_state, local_env_runner=True)
    state = {
        "format": _FORMAT,
        "runners": {s["worker_index"]: s for s in runners if s is not None},
        # Last: the runners' capture above draws nothing, so this is the state the next
        # iteration starts from.
        "rng": _process_rng_state(),
    }
    path = Path(directory) / STATE_FILE

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            pickle.dump(state, f, protocol=pickle.HIGHEST_PROTOCOL)

    atomic_write(path, write)
    return path


def restore_resume_state(algo: Any, directory: Path) -> bool:
    """Put back what :func:`save_resume_state` wrote into ``directory``.

    Call it after ``algo.restore_from_path(directory)``. It first waits until the restored
    weights have reached every remote env runner. A checkpoint without the file (written
    before it existed) then resumes from re-seeded worlds and generators.

    Args:
        algo: The algorithm being resumed, built from the run's config.
        directory: The checkpoint directory.

    Returns:
        Whether the state was found and restored.

    Raises:
        ValueError: The file is damaged or of another format; it is named.
    """
    group = algo.env_runner_group
    if group.num_remote_env_runners() > 0:
        # RLlib's restore sends the restored weights to remote runners without waiting
        # (timeout 0): the first sample() may still run on their initial weights.
        group.sync_weights(
            from_worker_or_learner_group=algo.learner_group,
            inference_only=True,
            timeout_seconds=_SYNC_TIMEOUT_S,
        )
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            state = pickle.load(f)
    except (pickle.UnpicklingError, EOFError, AttributeError, ValueError) as exc:
        raise ValueError(f"{path} is damaged ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict) or state.get("format") != _FORMAT:
        raise ValueError(f"{path} is not a resume state of format {_FORMAT}")
    algo.env_runner_group.foreach_env_runner(
        functools.partial(_set_runner_state, states=state["runners"]), local_env_runner=True
    )
    _set_process_rng_state(state["rng"])
    return True
