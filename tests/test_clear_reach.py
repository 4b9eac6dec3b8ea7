"""SearchRescue's ``clear_reach``: an agent knows the cells within its rescue reach are empty."""

from __future__ import annotations

import pytest
import torch

import agentcomm
from agentcomm.envs.experts import expert_actions

SR = "SearchRescue-v0"


def _cells_within_reach(world) -> torch.Tensor:
    """bool ``[B, N, H, W]``: cell centres within ``rescue_radius`` of each agent."""
    g = world.grid
    centre = torch.stack(torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij"), -1)
    gap = centre.float() + 0.5 - world.pos.view(world.num_envs, world.num_agents, 1, 1, 2)
    return gap.norm(dim=-1) <= world.config.rescue_radius


@pytest.mark.parametrize("mode", ["distributed", "centralized", "hybrid"])
def test_cells_within_reach_are_cleared_in_the_agents_own_beliefs(mode):
    world = agentcomm.make_vec(SR, num_envs=16, seed=2, clear_reach=True, comm={"mode": mode})
    world.reset(seed=2)
    clip = world.config.comm.logodds_clip
    for _ in range(5):
        world.step(expert_actions(world))
        reach = _cells_within_reach(world)
        assert bool(reach.any())
        assert bool((world.beliefs.local[reach] == -clip).all())
        assert bool((world.belief[reach] == -clip).all())


def _confident_hit_rate(clear: bool) -> float:
    """Fraction of fused-belief cells at p >= 0.5 that hold an unrescued victim."""
    world = agentcomm.make_vec(SR, num_envs=256, seed=11, clear_reach=clear, comm={"budget": 0})
    world.reset(seed=11)
    hits = total = 0
    for _ in range(30):
        _, _, terminated, truncated, _ = world.step(expert_actions(world))
        confident = world.belief > 0
        truth = world.true_map().unsqueeze(1).expand_as(confident)
        hits += int((confident & truth).sum())
        total += int(confident.sum())
        done = terminated | truncated
        if bool(done.any()):
            world.reset_at(done)
    return hits / total


def test_clearing_the_reach_makes_confident_cells_mostly_right():
    """Without it, the false alarms an agent senses next to itself stay in its belief (a victim
    there would have been rescued) and its confident cells are mostly wrong."""
    off, on = _confident_hit_rate(False), _confident_hit_rate(True)
    assert off < 0.15 and on > 0.3 and on > 3 * off


def test_clear_reach_is_a_validated_bool():
    with pytest.raises(ValueError, match="clear_reach"):
        agentcomm.make_vec(SR, num_envs=1, clear_reach=1)


def test_belief_calibration_script_prints_its_result_keys(monkeypatch, capsys):
    import sys

    from agentcomm.experiments.belief_calibration import main

    monkeypatch.setattr(sys, "argv", ["belief_calibration.py", "--quick"])
    main()
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert out.startswith("RESULT ")
    found = dict(kv.split("=", 1) for kv in out.split()[1:])
    for rule in ("off", "on"):
        for k in (0, 64):
            assert 0.0 <= float(found[f"hit_rate_p50_{rule}_b{k}"]) <= 1.0
            assert 0.0 <= float(found[f"success_{rule}_b{k}"]) <= 1.0


def test_decoder_recipe_trains_on_clear_reach_maps_on_request(tmp_path, monkeypatch):
    """``train_decoders.py --clear-reach`` is the shipped config with the scenario option on."""
    import dataclasses
    import sys

    from agentcomm.experiments.recipes import train_decoders
    from agentcomm.policies.receiver_training import DecoderTrainConfig

    out = tmp_path / "cfg.yaml"
    argv = ["train_decoders.py", "--clear-reach", "--dump-config", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    train_decoders.main()
    cfg = DecoderTrainConfig.load(out)
    assert cfg.env_overrides == {"clear_reach": True}
    assert dataclasses.replace(cfg, env_overrides={}) == train_decoders.SHIPPED
