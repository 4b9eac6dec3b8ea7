"""Record the figures the shipped models must reproduce (``expected.json`` beside each).

    python experiments/recipes/record_shipped.py                 # every shipped model
    python experiments/recipes/record_shipped.py --only searchrescue-bc

Every figure is a success rate of the SearchRescue-v0 scenario measured by the main job's
evaluator (:func:`agentcomm.experiments.metrics.evaluate`) on ``EPISODES`` worlds of the
``evaluation`` split (seed index 0), and is written with its ``episodes`` (n) and a
``tolerance`` of three binomial standard errors at that n, :math:`3\\sqrt{p(1-p)/n}`: a
figure recorded on few episodes would lock in noise, and a re-measurement that differs by
more than three standard errors of its own n is a change, not noise.

* the decoder bundle (``agentcomm/models/decoders/searchrescue-16x16``): the expert with
  the quantized, JSCC and JSCC + CDDM codecs at a 38-channel-use budget (a 6-use intent
  header and a 32-use message);
* each shipped policy (``agentcomm/models/policies/NAME``), sampled as the main job samples
  it (deterministic 5-step DDIM), beside the expert on the same worlds, on the scenario it
  was trained on (the ``env_config`` in its ``config.json``).

``tests/test_shipped_models.py`` re-measures every figure (those marked ``slow`` only in
the slow suite). The last line printed is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import torch

import agentcomm
from agentcomm._integrity import read_json_file
from agentcomm.config import atomic_write_text
from agentcomm.decoders.bundle import default_bundle_dir
from agentcomm.experiments.metrics import evaluate, make_policy
from agentcomm.experiments.threads import use_one_thread
from agentcomm.policies.evaluate import checkpoint_env

__all__ = ["measure", "record", "shipped_figures"]

ENV_ID, EPISODES, SEED = "SearchRescue-v0", 1024, 0
COMMAND = "python experiments/recipes/record_shipped.py"
#: Figures too slow for the default test suite (a diffusion receiver on every message).
SLOW = ("jscc+cddm",)


def _policies_dir() -> Path:
    return Path(agentcomm.__file__).parent / "models" / "policies"


def shipped_figures() -> dict[str, tuple[Path, dict[str, dict[str, Any]]]]:
    """``{model: (folder, {figure: {"policy": ..., "overrides": ...}})}`` of every shipped
    model (what :func:`record` measures for it)."""
    budget = {"comm": {"budget": 38}}
    bundle = {
        codec: {"policy": "expert", "overrides": {"comm": {**budget["comm"], "codec": codec}}}
        for codec in ("quantized", "jscc", "jscc+cddm")
    }
    out = {"searchrescue-16x16": (default_bundle_dir((16, 16)), bundle)}
    for path in sorted(p for p in _policies_dir().iterdir() if (p / "config.json").is_file()):
        # A policy is measured on the scenario it was trained on (its config's
        # ``env_config``), the expert beside it on the same worlds.
        _, trained_on = checkpoint_env(read_json_file(path / "config.json").get("metadata", {}))
        figures = {
            "policy": {"policy": str(path.name), "overrides": trained_on},
            "expert": {"policy": "expert", "overrides": trained_on},
        }
        out[path.name] = (path, figures)
    return out


def measure(policy: str, overrides: dict[str, Any], episodes: int = EPISODES) -> float:
    """Success rate of ``policy`` (``"expert"`` or a shipped policy's name) over ``episodes``
    evaluation worlds of seed index :data:`SEED`."""
    name = policy if policy == "expert" else f"shipped:{policy}"
    torch.set_num_threads(1)
    return evaluate(ENV_ID, make_policy(name), episodes, SEED, overrides)["success"]


def tolerance(success: float, episodes: int) -> float:
    """Three binomial standard errors at ``episodes``: :math:`3\\sqrt{p(1-p)/n}` (at least
    one episode's worth, ``1/n``, so that a rate of 0 or 1 still has a tolerance)."""
    return max(3.0 * math.sqrt(success * (1.0 - success) / episodes), 1.0 / episodes)


def record(model: str) -> dict[str, Any]:
    """Measure every figure of ``model`` and write its ``expected.json``."""
    folder, figures = shipped_figures()[model]
    out: dict[str, Any] = {"command": COMMAND, "env_id": ENV_ID, "seed": SEED, "figures": {}}
    for key, spec in figures.items():
        p = measure(spec["policy"], spec["overrides"])
        out["figures"][key] = {
            **spec,
            "episodes": EPISODES,
            "success": p,
            "tolerance": tolerance(p, EPISODES),
            "slow": key in SLOW,
        }
        print(f"{model} {key}: {p:.4f} (n={EPISODES})", flush=True)
    atomic_write_text(folder / "expected.json", json.dumps(out, indent=2, sort_keys=True))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    models = sorted(shipped_figures())
    parser.add_argument("--only", choices=models, action="append", help="record this model only")
    args = parser.parse_args(argv)
    use_one_thread(override=False)
    results = {m: record(m) for m in (args.only or models)}
    pairs = [
        f"{m}_{k}_success={f['success']:.4f}"
        for m, rec in results.items()
        for k, f in rec["figures"].items()
    ]
    print("RESULT " + " ".join(pairs) + f" episodes={EPISODES}")


if __name__ == "__main__":
    main()
