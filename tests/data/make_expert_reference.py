"""Record the experts' reference figures that ``tests/test_statistical_equivalence.py`` holds
the world to: success and bits per agent-step of every scenario under every coordination
mode, at ``EPISODES`` episodes on the first worlds of the evaluation split.

Goldens (``make_goldens.py``) pin the world bit for bit; these pin what the science reads
from it, so a change that is meant to alter floating-point order (a faster kernel, another
reduction) and so regenerates the goldens must still leave these figures inside their
intervals.

Usage (from the repository root; overwrites the reference)::

    .venv/bin/python tests/data/make_expert_reference.py
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

#: Where the reference lives.
REFERENCE = Path(__file__).resolve().parent / "expert_reference.json"
MODES = ("centralized", "distributed", "hybrid")
EPISODES = 2000


def measure(env_id: str, mode: str, episodes: int = EPISODES) -> dict[str, Any]:
    """The expert's success count and bits per agent-step in ``mode`` on ``episodes``
    evaluation worlds of seed index 0."""
    from agentcomm.policies.evaluate import evaluate, load_actor

    actor, _ = load_actor("expert")
    result = evaluate(actor, env_id, episodes, num_envs=1000, env_config={"comm": {"mode": mode}})
    return {
        "episodes": result.episodes,
        "successes": result.successes,
        "bits_per_agent_step": result.bits_per_agent_step,
    }


def cases() -> list[tuple[str, str]]:
    import agentcomm

    return [(env_id, mode) for env_id in agentcomm.list_envs() for mode in MODES]


def main() -> None:
    import torch

    torch.set_num_threads(1)
    out = {f"{env_id}__{mode}": measure(env_id, mode) for env_id, mode in cases()}
    REFERENCE.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    for key, row in out.items():
        print(f"{key}: {row}")


if __name__ == "__main__":
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(_var, "1")
    main()
