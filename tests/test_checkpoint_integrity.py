"""Damaged model files name themselves.

Every saver records the SHA-256 of its weights file in the JSON config beside it, and every
loader checks it before reading a tensor: a truncated, empty, random or bit-flipped weights
file, or a config cut mid-way, raises ``ValueError`` naming the file. The shipped models
carry their hashes and keep loading.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import pytest
import torch

WEIGHTS = "model.safetensors"
CONFIG = "config.json"


def _damage(path: Path, kind: str) -> None:
    data = path.read_bytes()
    if kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "random":
        path.write_bytes(os.urandom(len(data)))
    elif kind == "bitflip":
        # One bit of one tensor value: the header stays valid, so safetensors reads it.
        (header,) = struct.unpack("<Q", data[:8])
        at = 8 + header + (len(data) - 8 - header) // 2
        path.write_bytes(data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :])
    elif kind == "cut":
        path.write_bytes(data[: len(data) // 2])
    else:  # pragma: no cover
        raise AssertionError(kind)


def _saved_policy(tmp_path: Path) -> Path:
    from agentcomm.policies.checkpoint import save_policy
    from agentcomm.policies.diffusion import DiffusionPolicy

    policy = DiffusionPolicy(
        5,
        6,
        generator=torch.Generator().manual_seed(0),
        denoising_steps=10,
        ddim_steps=5,
        ft_denoising_steps=4,
        hidden=16,
        depth=1,
    )
    return save_policy(tmp_path / "policy", policy)


def _load_policy(path: Path):
    from agentcomm.policies.checkpoint import load_policy

    return load_policy(path)


def _saved_gaussian(tmp_path: Path) -> Path:
    from agentcomm.policies.gaussian_ppo import _sb3_policy, save_gaussian_actor

    return save_gaussian_actor(tmp_path / "gauss", "sb3", _sb3_policy(5, 6, [8]), 5, 6, [8])


def _load_gaussian(path: Path):
    from agentcomm.policies.gaussian_ppo import load_gaussian_actor

    return load_gaussian_actor(path)


def _saved_jscc(tmp_path: Path) -> Path:
    from agentcomm.decoders.jscc import JSCC, JSCCConfig, save_checkpoint

    torch.manual_seed(0)
    cfg = JSCCConfig(height=4, width=4, channel_uses=4, hidden=8, depth=1)
    return save_checkpoint(JSCC(cfg), tmp_path / "jscc")


def _load_jscc(path: Path):
    from agentcomm.decoders.jscc import JSCC, JSCCConfig, load_checkpoint

    return load_checkpoint(JSCC, JSCCConfig, path)


PAIRS = {
    "policy": (_saved_policy, _load_policy),
    "gaussian": (_saved_gaussian, _load_gaussian),
    "jscc": (_saved_jscc, _load_jscc),
}


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_saved_config_records_the_weights_hash(tmp_path, pair):
    save, load = PAIRS[pair]
    path = save(tmp_path)
    doc = json.loads((path / CONFIG).read_text())
    assert doc["weights_sha256"] == hashlib.sha256((path / WEIGHTS).read_bytes()).hexdigest()
    load(path)  # an intact pair loads


@pytest.mark.parametrize("kind", ["truncated", "empty", "random", "bitflip"])
@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_damaged_weights_are_refused_naming_the_file(tmp_path, pair, kind):
    save, load = PAIRS[pair]
    path = save(tmp_path)
    _damage(path / WEIGHTS, kind)
    with pytest.raises(ValueError) as info:
        load(path)
    assert str(path / WEIGHTS) in str(info.value)
    if kind == "bitflip":
        assert "sha256" in str(info.value)


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_a_config_cut_midway_is_refused_naming_the_file(tmp_path, pair):
    save, load = PAIRS[pair]
    path = save(tmp_path)
    _damage(path / CONFIG, "cut")
    with pytest.raises(ValueError) as info:
        load(path)
    assert str(path / CONFIG) in str(info.value) and "damaged" in str(info.value)


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_a_config_without_the_hash_is_refused(tmp_path, pair):
    """The check is not optional: a config that lost its hash cannot vouch for the weights."""
    save, load = PAIRS[pair]
    path = save(tmp_path)
    doc = json.loads((path / CONFIG).read_text())
    del doc["weights_sha256"]
    (path / CONFIG).write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="records no valid weights_sha256"):
        load(path)


def test_demonstrations_file_damage_names_the_file(tmp_path):
    from agentcomm.policies.demos import Demonstrations, load_demos, save_demos

    demos = Demonstrations(
        obs=torch.zeros(4, 3),
        actions=torch.zeros(4, 6),
        env_id="SearchRescue-v0",
        env_config={},
        seed=0,
        episodes=1,
        successes=0,
        returns=torch.zeros(1),
    )
    path = save_demos(tmp_path / "demos.safetensors", demos)
    _damage(path, "truncated")
    with pytest.raises(ValueError, match="demos.safetensors"):
        load_demos(path)


# ----------------------------------------------------------------------------- shipped
@pytest.fixture(scope="module")
def shipped_bundle_dir():
    from agentcomm.decoders.bundle import shipped_bundles

    return shipped_bundles()["searchrescue-16x16"]


def test_shipped_models_record_their_hashes_and_load(shipped_bundle_dir):
    from agentcomm.decoders.bundle import load_bundle
    from agentcomm.policies.checkpoint import load_policy, policy_path

    for name in ("searchrescue-bc", "searchrescue-dppo"):
        path = policy_path(f"shipped:{name}")
        doc = json.loads((path / CONFIG).read_text())
        assert doc["weights_sha256"] == hashlib.sha256((path / WEIGHTS).read_bytes()).hexdigest()
        load_policy(path)
    assert load_bundle(shipped_bundle_dir).channel_uses == (16, 32, 64)


@pytest.mark.parametrize(
    ("part", "kind"),
    [
        ("k16/model.safetensors", "bitflip"),
        ("k32/model.safetensors", "truncated"),
        ("prior/model.safetensors", "empty"),
        ("k64/cddm.safetensors", "bitflip"),
        ("k16/cddm.safetensors", "random"),
        ("k32/config.json", "cut"),
        ("bundle.json", "cut"),
    ],
)
def test_a_damaged_part_of_a_bundle_is_named(tmp_path, shipped_bundle_dir, part, kind):
    from agentcomm.decoders.bundle import load_bundle

    copy = tmp_path / "bundle"
    shutil.copytree(shipped_bundle_dir, copy)
    _damage(copy / part, kind)
    with pytest.raises(ValueError) as info:
        load_bundle(copy)
    assert str(copy / part) in str(info.value)
