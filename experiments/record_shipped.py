"""Record the figures the shipped models must reproduce (``expected.json`` beside them).

    python experiments/record_shipped.py

For each shipped decoder bundle: the SearchRescue-v0 expert's success with the learned
codecs at a 38-channel-use budget (a 6-use intent header + a 32-use message), 64
episodes, seed 0. ``tests/test_shipped_models.py`` re-measures them.
"""

from __future__ import annotations

import json
import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import torch  # noqa: E402

from agentcomm.config import atomic_write_text  # noqa: E402
from agentcomm.decoders.bundle import default_bundle_dir  # noqa: E402
from agentcomm.experiments.evaluate import evaluate, make_policy  # noqa: E402

ENV_ID, BUDGET, EPISODES, SEED, TOLERANCE = "SearchRescue-v0", 38, 64, 0, 0.05
CODECS = ("quantized", "jscc", "jscc+cddm")


def measure() -> dict[str, float]:
    torch.set_num_threads(1)
    return {
        codec: evaluate(
            ENV_ID,
            make_policy("expert"),
            EPISODES,
            SEED,
            {"comm": {"budget": BUDGET, "codec": codec}},
        )["success"]
        for codec in CODECS
    }


def main() -> None:
    success = measure()
    record = {
        "command": "python experiments/record_shipped.py",
        "env_id": ENV_ID,
        "budget": BUDGET,
        "episodes": EPISODES,
        "seed": SEED,
        "tolerance": TOLERANCE,
        "success": success,
    }
    path = default_bundle_dir((16, 16)) / "expected.json"
    atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True))
    print(json.dumps(record, indent=2, sort_keys=True))
    print("RESULT " + " ".join(f"{k}_success={v:.4f}" for k, v in success.items()))


if __name__ == "__main__":
    main()
