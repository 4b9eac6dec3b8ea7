"""Specifications of decoder training: environment data, the config, Ray Train end to end."""

from __future__ import annotations

import argparse
import csv
import json

import pytest
import torch

import agentcomm.channels as channels
from agentcomm.codecs.base import transmit
from agentcomm.codecs.registry import make_codec
from agentcomm.decoders import load_bundle
from agentcomm.policies.receiver_training import DecoderTrainConfig, collect_env_beliefs

# A config small enough to train end to end in seconds (the models are useless).
TINY = {
    "num_envs": 4,
    "rollout_steps": 6,
    "val_rollout_steps": 4,
    "channel_uses": [4, 8],
    "jscc_hidden": 16,
    "jscc_depth": 1,
    "jscc_steps": 12,
    "jscc_batch": 16,
    "prior_hidden": 16,
    "prior_depth": 1,
    "prior_steps": 10,
    "prior_batch": 16,
    "cddm_steps": 2,
    "diffcom_steps": 2,
    "zeta_grid": [0.0, 0.1],
    "zeta_snr_db": [0.0],
    "zeta_maps": 8,
    "log_every": 5,
}


def test_env_beliefs_shapes_range_truth_and_seeding():
    data = collect_env_beliefs("SearchRescue-v0", num_envs=3, steps=5, seed=7, max_steps=4)
    n = 4  # SearchRescue-v0 default agents
    assert data.logodds.shape == (5 * 3 * n, 16, 16) and data.logodds.dtype == torch.float32
    assert data.truth.shape == data.logodds.shape and data.truth.dtype == torch.bool
    assert float(data.logodds.abs().max()) <= 6.0
    # Every agent of a world sees the same truth; 3 victims, none rescued at the first step.
    truth = data.truth.view(5, 3, n, 16, 16)
    assert torch.equal(truth, truth[:, :, :1].expand_as(truth))
    assert truth[0, :, 0].flatten(1).sum(1).tolist() == [3, 3, 3]
    again = collect_env_beliefs("SearchRescue-v0", num_envs=3, steps=5, seed=7, max_steps=4)
    assert torch.equal(data.logodds, again.logodds)
    other = collect_env_beliefs("SearchRescue-v0", num_envs=3, steps=5, seed=8, max_steps=4)
    assert not torch.equal(data.logodds, other.logodds)
    with pytest.raises(ValueError, match="belief_kind"):
        collect_env_beliefs("TargetTracking-v0", num_envs=1, steps=1, seed=0)


def test_config_round_trip_and_errors(tmp_path):
    cfg = DecoderTrainConfig.from_dict(TINY)
    for name in ("c.yaml", "c.json"):
        cfg.save(tmp_path / name)
        assert DecoderTrainConfig.load(tmp_path / name) == cfg
    assert cfg.channel_uses == (4, 8)
    with pytest.raises(ValueError, match="unknown config key.*jscc_widht"):
        DecoderTrainConfig.from_dict({"jscc_widht": 3})
    with pytest.raises(ValueError, match="train_channel"):
        DecoderTrainConfig(train_channel="rician")
    with pytest.raises(ValueError, match="channel_uses"):
        DecoderTrainConfig(channel_uses=(8, 8))
    with pytest.raises(ValueError, match="snr_high_db"):
        DecoderTrainConfig(snr_low_db=10.0, snr_high_db=0.0)
    with pytest.raises(ValueError, match="zeta_grid"):
        DecoderTrainConfig(zeta_grid=(-0.1,))
    with pytest.raises(ValueError, match="num_workers"):
        DecoderTrainConfig(num_workers=0)


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_train_decoder_command_end_to_end(ray_session, tmp_path):
    from agentcomm.decoders import cli

    cfg_path = tmp_path / "tiny.yaml"
    DecoderTrainConfig.from_dict(TINY).save(cfg_path)
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = tmp_path / "bundle"
    assert cli.main(parser.parse_args(["--config", str(cfg_path), "--out", str(out)])) == 0

    with open(out / "losses.csv") as f:
        rows = list(csv.DictReader(f))
    phases = [r["phase"] for r in rows]
    assert phases.count("prior") == 10 and phases.count("jscc_k4") == 12
    assert phases.count("jscc_k8") == 12
    assert (out / "losses.png").stat().st_size > 0
    assert DecoderTrainConfig.load(out / "train_config.yaml") == DecoderTrainConfig.from_dict(TINY)
    doc = json.loads((out / "bundle.json").read_text())
    assert doc["channel_uses"] == [4, 8] and set(doc["diffcom_zeta"]) == {"4", "8"}
    assert doc["info"]["train_maps_per_worker"] == 4 * 6 * 4
    assert not (out / "ray_results").exists()

    bundle = load_bundle(out)
    assert set(bundle.zeta.values()) <= {0.0, 0.1}
    x = collect_env_beliefs("SearchRescue-v0", num_envs=1, steps=1, seed=3).logodds
    for name in ("jscc", "jscc+cddm", "jscc+diffcom"):
        codec = make_codec(name, (16, 16), checkpoint=str(out))
        t = transmit(codec, x, 10, channels.AWGN(), 5.0, torch.Generator().manual_seed(0))
        assert t.channel_uses.tolist() == [8] * 4 and torch.isfinite(t.estimate).all()


def test_learned_codecs_resolve_without_importing_decoders():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from agentcomm.codecs import make_codec\n"
        "c = make_codec('jscc', (16, 16))\n"
        "assert 'agentcomm.decoders' in sys.modules and c.source_shape == (16, 16)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
