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
* each shipped policy conditioned on its channel (``observe_operating_point`` in its
  ``env_config``), on its own scenario (``env_id`` in its ``config.json``): at every budget of
  :data:`CONDITIONED_BUDGETS`, distributed, the policy on
  :func:`agentcomm.experiments.eval_learned_comm.point_config` (its training config with the
  budget fixed) and the expert beside it on the same worlds, each on
  :data:`CONDITIONED_EPISODES` worlds in one round: the points of
  ``experiments/eval_learned_comm.py`` at its default n. A re-measurement runs exactly the
  recorded worlds (same split, seed index, n), so on one platform it repeats the figure
  exactly; the tolerance :data:`CONDITIONED_TOLERANCE` (0.03, 1.9 binomial standard errors
  or more at n = 1,000 for any rate) absorbs float differences between platforms. The
  policy's figures are also written into its ``config.json`` (``metadata.evaluation``).

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
from agentcomm.experiments.eval_learned_comm import point_config
from agentcomm.experiments.metrics import evaluate, make_policy
from agentcomm.experiments.threads import use_one_thread
from agentcomm.policies.evaluate import checkpoint_env

__all__ = ["measure", "record", "shipped_figures"]

ENV_ID, EPISODES, SEED = "SearchRescue-v0", 1024, 0
COMMAND = "python experiments/recipes/record_shipped.py"
#: Figures too slow for the default test suite (a diffusion receiver on every message).
SLOW = ("jscc+cddm",)
#: Budgets (channel uses per link per step, distributed) of a conditioned policy's figures.
CONDITIONED_BUDGETS = (0, 4, 16, 64, 256)
#: Worlds per conditioned figure (``experiments/eval_learned_comm.py``'s default n).
CONDITIONED_EPISODES = 1000
#: Largest allowed difference of a re-measured conditioned figure from the recorded one.
CONDITIONED_TOLERANCE = 0.03
#: The conditioned figure of each policy in the default test suite (the rest are slow).
CONDITIONED_FAST = "policy_b16"


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
        env_id, trained_on = checkpoint_env(
            read_json_file(path / "config.json").get("metadata", {})
        )
        if trained_on.get("observe_operating_point"):
            out[path.name] = (path, _conditioned_figures(path.name, env_id, trained_on))
            continue
        figures = {
            "policy": {"policy": str(path.name), "overrides": trained_on},
            "expert": {"policy": "expert", "overrides": trained_on},
        }
        out[path.name] = (path, figures)
    return out


def _conditioned_figures(
    name: str, env_id: str | None, trained_on: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """A conditioned policy's figures (module docstring): per budget ``k``, ``policy_b<k>``
    and ``expert_b<k>``."""
    if env_id is None:
        raise ValueError(f"shipped policy {name!r} records no env_id in its config.json")
    common = {"env_id": env_id, "episodes": CONDITIONED_EPISODES}
    figures = {}
    for k in CONDITIONED_BUDGETS:
        figures[f"policy_b{k}"] = {
            **common,
            "policy": name,
            "overrides": point_config(trained_on, k, "distributed"),
        }
        figures[f"expert_b{k}"] = {
            **common,
            "policy": "expert",
            "overrides": {"comm": {"budget": k, "mode": "distributed"}},
        }
    return figures


def measure(
    policy: str, overrides: dict[str, Any], episodes: int = EPISODES, env_id: str = ENV_ID
) -> float:
    """Success rate of ``policy`` (``"expert"`` or a shipped policy's name) on ``env_id`` over
    ``episodes`` evaluation worlds of seed index :data:`SEED`, in one round."""
    name = policy if policy == "expert" else f"shipped:{policy}"
    torch.set_num_threads(1)
    return evaluate(env_id, make_policy(name), episodes, SEED, overrides)["success"]


def tolerance(success: float, episodes: int) -> float:
    """Three binomial standard errors at ``episodes``: :math:`3\\sqrt{p(1-p)/n}` (at least
    one episode's worth, ``1/n``, so that a rate of 0 or 1 still has a tolerance)."""
    return max(3.0 * math.sqrt(success * (1.0 - success) / episodes), 1.0 / episodes)


def record(model: str) -> dict[str, Any]:
    """Measure every figure of ``model`` and write its ``expected.json``."""
    folder, figures = shipped_figures()[model]
    env_id = next((f["env_id"] for f in figures.values() if "env_id" in f), ENV_ID)
    out: dict[str, Any] = {"command": COMMAND, "env_id": env_id, "seed": SEED, "figures": {}}
    for key, spec in figures.items():
        n = spec.get("episodes", EPISODES)
        p = measure(spec["policy"], spec["overrides"], n, spec.get("env_id", ENV_ID))
        conditioned = "env_id" in spec
        out["figures"][key] = {
            **spec,
            "episodes": n,
            "success": p,
            "tolerance": CONDITIONED_TOLERANCE if conditioned else tolerance(p, n),
            "slow": key in SLOW or (conditioned and key != CONDITIONED_FAST),
        }
        print(f"{model} {key}: {p:.4f} (n={n})", flush=True)
    atomic_write_text(folder / "expected.json", json.dumps(out, indent=2, sort_keys=True))
    if any("env_id" in f for f in figures.values()):
        _write_evaluation(folder, out)
    return out


def _write_evaluation(folder: Path, rec: dict[str, Any]) -> None:
    """Copy a conditioned policy's recorded figures into its ``config.json``
    (``metadata.evaluation``: split, seed index, n and success per budget)."""
    doc = read_json_file(folder / "config.json", "policy config")
    figures = rec["figures"]
    doc.setdefault("metadata", {})["evaluation"] = {
        "command": COMMAND,
        "split": "evaluation",
        "seed": rec["seed"],
        "mode": "distributed",
        "episodes": CONDITIONED_EPISODES,
        "success": {str(k): figures[f"policy_b{k}"]["success"] for k in CONDITIONED_BUDGETS},
        "expert_success": {str(k): figures[f"expert_b{k}"]["success"] for k in CONDITIONED_BUDGETS},
    }
    atomic_write_text(folder / "config.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")


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
    ns = [
        f"{m}_episodes={max(f['episodes'] for f in rec['figures'].values())}"
        for m, rec in results.items()
    ]
    print("RESULT " + " ".join(pairs + ns))


if __name__ == "__main__":
    main()
