"""Save and load diffusion policies as ``model.safetensors`` + ``config.json`` (no pickle).

Layout of a checkpoint directory::

    model.safetensors   every weight; a DPPO export holds ``base.*`` (frozen) and
                        ``actor_ft.*`` (fine-tuned) together, plus ``eval_noise``
    config.json         {"format_version": 1, "kind": "diffusion" | "dppo",
                         "policy": DiffusionConfig fields, "metadata": caller's dict,
                         "weights_sha256": SHA-256 of model.safetensors}

Both files are written atomically and the weights are checked against ``weights_sha256``
before loading, so a crash never leaves a half-written checkpoint and a damaged or
swapped weights file is refused by name (:mod:`agentcomm.io`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

from agentcomm.io import (
    check_config_match,
    load_model_tensors,
    read_model_config,
    save_model_files,
)
from agentcomm.policies.diffusion import DiffusionConfig, DiffusionPolicy, DPPOPolicy

__all__ = [
    "FORMAT_VERSION",
    "load_policy",
    "policy_path",
    "read_config",
    "save_policy",
    "shipped_policy_dir",
]

FORMAT_VERSION = 1
PolicyKind = Literal["diffusion", "dppo"]
_KINDS: dict[PolicyKind, type] = {"diffusion": DiffusionPolicy, "dppo": DPPOPolicy}


def shipped_policy_dir(name: str) -> Path:
    """Directory of a policy shipped with the package, ``agentcomm/models/policies/NAME``
    (e.g. ``"searchrescue-bc"``); raises ``ValueError`` naming the shipped ones if absent."""
    import agentcomm

    root = Path(agentcomm.__file__).resolve().parent / "models" / "policies"
    path = root / name
    if not path.is_dir():
        found = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
        raise ValueError(f"name={name!r}: no shipped policy at {path}; shipped: {found}")
    return path


#: The file that marks a training run directory (``agentcomm train --out DIR``).
RUN_CONFIG = "train_config.yaml"


def policy_path(name: str | os.PathLike) -> Path:
    """``"shipped:NAME"`` as :func:`shipped_policy_dir` resolves it, a training run directory
    as the policy it exported (``DIR/policy``), anything else as a path: what
    ``dppo.pretrained`` and ``agentcomm eval --checkpoint`` accept."""
    text = str(name)
    if text.startswith("shipped:"):
        return shipped_policy_dir(text.split(":", 1)[1])
    path = Path(name)
    if (path / RUN_CONFIG).is_file() and (path / "policy").is_dir():
        return path / "policy"
    return path


def _kind_of(policy: DiffusionPolicy | DPPOPolicy) -> PolicyKind:
    for kind, cls in _KINDS.items():
        if type(policy) is cls:
            return kind
    raise ValueError(
        f"policy of type {type(policy).__name__} cannot be saved; expected DiffusionPolicy "
        "or DPPOPolicy"
    )


def save_policy(
    path_dir: str | os.PathLike,
    policy: DiffusionPolicy | DPPOPolicy,
    config: Mapping[str, object] | None = None,
) -> Path:
    """Write ``policy`` to ``path_dir`` (created if missing).

    Args:
        path_dir: Checkpoint directory.
        policy: A ``DiffusionPolicy`` or ``DPPOPolicy`` (saved with both copies).
        config: Extra JSON-serialisable metadata stored under ``"metadata"`` (e.g. the
            training config); not used when loading.

    Returns:
        The checkpoint directory.
    """
    kind = _kind_of(policy)
    tensors = {k: v.detach().cpu().contiguous() for k, v in policy.state_dict().items()}
    meta = {
        "format_version": FORMAT_VERSION,
        "kind": kind,
        "policy": policy.config.to_dict(),
        "metadata": dict(config or {}),
    }
    return save_model_files(path_dir, tensors, meta)


def read_config(path_dir: str | os.PathLike) -> dict[str, object]:
    """Read a checkpoint's ``config.json`` (``kind``, ``policy``, ``metadata``); a damaged
    file raises ``ValueError`` naming it."""
    meta = read_model_config(path_dir, "policy checkpoint")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"checkpoint format_version={meta.get('format_version')!r}; "
            f"this code reads {FORMAT_VERSION}"
        )
    if meta.get("kind") not in _KINDS:
        raise ValueError(f"checkpoint kind={meta.get('kind')!r}; allowed {sorted(_KINDS)}")
    return meta


def load_policy(
    path_dir: str | os.PathLike,
    expected_config: Mapping[str, object] | None = None,
) -> DiffusionPolicy | DPPOPolicy:
    """Load a policy written by ``save_policy``.

    Args:
        path_dir: Checkpoint directory.
        expected_config: Values the checkpoint must have, keyed by ``"kind"`` and/or
            ``DiffusionConfig`` field names (e.g. ``{"kind": "dppo", "obs_dim": 12}``).

    Returns:
        The policy on CPU, in eval mode.

    Raises:
        ValueError: If the checkpoint's values differ from ``expected_config``
            (:class:`~agentcomm.io.ConfigMismatchError`, naming every differing key), a
            key is unknown, the weights file is damaged (its
            SHA-256 is not the one ``config.json`` records; the message names the file),
            or the weights do not fit the config.
    """
    meta = read_config(path_dir)
    state = load_model_tensors(path_dir, meta)
    stored = {"kind": meta["kind"], **meta["policy"]}
    if expected_config:
        unknown = sorted(set(expected_config) - set(stored))
        if unknown:
            raise ValueError(f"expected_config has unknown key(s) {unknown}")
        check_config_match(path_dir, stored, expected_config)
    config = DiffusionConfig.from_dict(meta["policy"])
    policy = (
        DiffusionPolicy.from_config(config) if meta["kind"] == "diffusion" else DPPOPolicy(config)
    )
    try:
        policy.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"weights in {str(path_dir)!r} do not fit its config.json: {err}") from err
    return policy.eval()
