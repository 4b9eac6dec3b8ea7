"""Reading model files so that a damaged one names itself.

A model on disk is a weights file (safetensors) beside a JSON config. The config records
the SHA-256 of the weights file (:data:`WEIGHTS_HASH_KEY`), written by every saver and
checked by every loader before a tensor is read: a truncated, empty, replaced or
bit-flipped weights file is refused with an error naming the file, instead of loading
silently wrong weights or failing inside safetensors with a message that names nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "WEIGHTS_HASH_KEY",
    "check_sha256",
    "load_tensors",
    "read_json_file",
    "sha256_file",
    "tensors_metadata",
]

#: Key of the weights file's SHA-256 (hex) in a model's JSON config.
WEIGHTS_HASH_KEY = "weights_sha256"


def sha256_file(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_json_file(path: str | os.PathLike, what: str = "config") -> dict[str, Any]:
    """A JSON object from ``path``; raise ``ValueError`` naming the file if it is missing,
    empty, cut short, not UTF-8 or not an object."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} file {path} does not exist")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"{what} file {path} is damaged (empty, cut short or not JSON): {err}"
        ) from None
    if not isinstance(doc, dict):
        raise ValueError(f"{what} file {path} must hold a JSON object, got {type(doc).__name__}")
    return doc


def check_sha256(
    weights: str | os.PathLike,
    config_path: str | os.PathLike,
    doc: Mapping[str, Any],
    key: str = WEIGHTS_HASH_KEY,
) -> None:
    """Refuse ``weights`` unless its SHA-256 is the one ``doc`` (read from ``config_path``)
    records under ``key``. A record without the hash is refused too: a check that is
    skipped when the hash is missing would pass any file whose config was also lost."""
    weights = Path(weights)
    if not weights.is_file():
        raise ValueError(f"weights file {weights} does not exist")
    expected = doc.get(key)
    if not isinstance(expected, str) or len(expected) != 64:
        raise ValueError(
            f"{config_path} records no valid {key} (got {expected!r}), so {weights} cannot "
            "be checked; save the model again with this version, or, if the file is known "
            f"good, record its `sha256sum` as {key}"
        )
    actual = sha256_file(weights)
    if actual != expected.lower():
        raise ValueError(
            f"weights file {weights} is damaged or was replaced: its sha256 is {actual}, but "
            f"{config_path} records {expected}"
        )


def _safetensors_error(path: Path, err: BaseException) -> ValueError:
    return ValueError(
        f"weights file {path} is not a readable safetensors file (empty, cut short or "
        f"damaged): {err}"
    )


def load_tensors(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """``safetensors.torch.load_file`` whose errors name the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file {path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise _safetensors_error(path, err) from None


def tensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The string metadata of a safetensors file; errors name the file."""
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"weights file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, RuntimeError, ValueError) as err:
        raise _safetensors_error(path, err) from None
