"""Files on disk: atomic writes, and models stored as safetensors weights + a JSON config.

Every file the project writes goes through :func:`atomic_write`: the bytes land in a
temporary file in the target's folder, which ``os.replace`` moves into place (atomic on
POSIX), so a reader sees the old file or the new one and a crash never leaves half a file.

A model on disk is a folder with two files (:func:`save_model_files`)::

    model.safetensors   the weights (no pickle); optional string metadata in its header
    config.json         what rebuilds the model (the caller's document) plus the weights
                        file's SHA-256 under ``weights_sha256``

and is read back with :func:`read_model_config` then :func:`load_model_tensors`, which
refuses a weights file whose SHA-256 is not the recorded one before reading a tensor
(:mod:`agentcomm._integrity`). A loader that was told which config to expect compares it
with :func:`check_config_match`, whose :class:`ConfigMismatchError` names every
differing key: the one error for "this checkpoint was written by another config".
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from agentcomm._integrity import (
    WEIGHTS_HASH_KEY,
    check_sha256,
    load_tensors,
    read_json_file,
    sha256_file,
)

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "ConfigMismatchError",
    "atomic_write",
    "atomic_write_text",
    "check_config_match",
    "load_model_tensors",
    "read_model_config",
    "save_model_files",
]

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class ConfigMismatchError(ValueError):
    """A checkpoint on disk was written by another config than the one expected."""


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """Call ``write(tmp)`` on a temporary path beside ``path``, then move it into place.

    The parent folder is created if missing; the temporary file is removed if ``write``
    or the move fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` (flushed to disk first) so readers see the old file or
    the new one, never half."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)


def save_model_files(
    directory: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    config: Mapping[str, Any],
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``config.json`` into ``directory``, each atomically.

    Args:
        directory: created if missing.
        tensors: the weights (contiguous CPU tensors).
        config: a JSON-serialisable mapping; ``config.json`` holds it plus the weights
            file's SHA-256 under ``weights_sha256`` (written last, so a ``config.json``
            never records weights that are not on disk).
        metadata: optional string metadata stored in the safetensors header.
    Returns:
        The directory as a :class:`~pathlib.Path`.
    """
    from safetensors.torch import save_file

    if WEIGHTS_HASH_KEY in config:
        raise ValueError(f"config must not hold {WEIGHTS_HASH_KEY!r}; it is computed here")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / WEIGHTS_FILE
    atomic_write(weights, lambda tmp: save_file(dict(tensors), tmp, metadata=metadata))
    doc = {**config, WEIGHTS_HASH_KEY: sha256_file(weights)}
    atomic_write_text(out / CONFIG_FILE, json.dumps(doc, indent=2, sort_keys=True) + "\n")
    return out


def read_model_config(directory: str | os.PathLike, what: str = "model") -> dict[str, Any]:
    """The ``config.json`` of a model folder; ``ValueError`` naming the folder or file if
    either file is missing or the JSON is damaged."""
    src = Path(directory)
    side = src / CONFIG_FILE
    missing = [name for name in (WEIGHTS_FILE, CONFIG_FILE) if not (src / name).is_file()]
    if missing:
        raise ValueError(
            f"directory={str(src)!r} holds no {' and no '.join(missing)}; not a saved {what} "
            f"({WEIGHTS_FILE} holds the weights, {CONFIG_FILE} the config and their SHA-256)"
        )
    return read_json_file(side, f"{what} config")


def load_model_tensors(directory: str | os.PathLike, doc: Mapping[str, Any]) -> dict[str, Any]:
    """The weights of a model folder, after checking their SHA-256 against ``doc`` (the
    folder's ``config.json`` as :func:`read_model_config` returned it)."""
    src = Path(directory)
    check_sha256(src / WEIGHTS_FILE, src / CONFIG_FILE, doc)
    return load_tensors(src / WEIGHTS_FILE)


def check_config_match(
    where: str | os.PathLike, stored: Mapping[str, Any], expected: Mapping[str, Any] | None
) -> None:
    """Refuse a checkpoint whose config differs from the ``expected`` values.

    Args:
        where: the checkpoint, for the message.
        stored: the checkpoint's config values.
        expected: the values the caller needs (a subset of the keys, or all of them);
            ``None`` or empty checks nothing.
    Raises:
        ConfigMismatchError: naming every differing key with both values; an expected key
            the checkpoint does not have counts as differing.
    """
    if not expected:
        return
    missing = object()
    diff = [
        (k, v, stored.get(k, missing)) for k, v in expected.items() if stored.get(k, missing) != v
    ]
    if diff:
        detail = ", ".join(
            f"{k}: expected {e!r}, checkpoint has {'no such key' if s is missing else repr(s)}"
            for k, e, s in sorted(diff, key=lambda d: str(d[0]))
        )
        raise ConfigMismatchError(f"checkpoint at {str(where)!r} does not match ({detail})")
