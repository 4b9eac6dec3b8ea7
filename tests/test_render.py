"""Frames drawn from the world's state (pixel checks at known positions) and the
``agentcomm render`` GIF writer."""

from __future__ import annotations

import argparse

import imageio.v3 as iio
import numpy as np
import pytest
import torch

import agentcomm
from agentcomm import render_cli
from agentcomm.envs.render import (
    _CLEAR,
    _HEAT,
    _RESCUED,
    _TARGET,
    _VICTIM,
    AGENT_COLOURS,
    render_frame,
)

SIZE = 400  # 16 x 16 grid -> 25 px per cell


def _px(cell_row: float, cell_col: float) -> tuple[int, int]:
    return int(cell_row * SIZE / 16), int(cell_col * SIZE / 16)


def _corner_team(world) -> None:
    """Agents in the bottom-right corner, announcing their own positions, so the rest
    of the map is free of overlays."""
    pos = torch.tensor([[15.5, 15.5], [15.5, 12.5], [12.5, 15.5], [12.5, 12.5]])
    world.pos = pos.expand(world.num_envs, -1, -1).clone()
    world.intent = world.pos.clone()


def test_frame_shape_dtype_and_argument_checks() -> None:
    world = agentcomm.make_vec("IntentCoverage-v0", num_envs=2, seed=0)
    world.reset()
    frame = render_frame(world, 1, size=128)
    assert frame.shape == (128, 128, 3) and frame.dtype == np.uint8
    with pytest.raises(ValueError, match="index=2"):
        render_frame(world, 2)
    with pytest.raises(ValueError, match="size=16"):
        render_frame(world, 0, size=16)
    with pytest.raises(ValueError, match="agent=4"):
        render_frame(world, 0, agent=4)


def test_agents_are_discs_in_their_palette_colour() -> None:
    world = agentcomm.make_vec("IntentCoverage-v0", seed=0)
    world.reset()
    _corner_team(world)
    frame = render_frame(world, 0)
    for i, (r, c) in enumerate(world.pos[0].tolist()):
        assert tuple(frame[_px(r, c)]) == tuple(AGENT_COLOURS[i])


def test_belief_heat_map_shows_evidence_relative_to_the_prior() -> None:
    world = agentcomm.make_vec("SearchRescue-v0", seed=0)
    world.reset()
    _corner_team(world)
    world.victim_pos = torch.tensor([[[12.5, 2.5], [13.5, 2.5], [14.5, 2.5]]])
    clip = world.config.comm.logodds_clip
    world.belief[0, :, 2, 3] = clip  # every agent: a victim is likely at cell (2, 3)
    world.belief[0, :, 5, 9] = -clip  # every agent: cell (5, 9) searched and clear
    world.belief[0, 1, 7, 2] = clip  # only agent 1 believes in cell (7, 2)
    team, one = render_frame(world, 0), render_frame(world, 0, agent=1)
    assert tuple(team[_px(2.5, 3.5)]) == tuple(np.rint(_HEAT).astype(np.uint8))
    assert tuple(team[_px(5.5, 9.5)]) == tuple(np.rint(_CLEAR).astype(np.uint8))
    assert tuple(team[_px(0.5, 0.5)]) == (255, 255, 255)  # at the prior: unexplored
    # Agent 1's own view is fully orange there; the team mean only a quarter of the way.
    assert tuple(one[_px(7.5, 2.5)]) == tuple(np.rint(_HEAT).astype(np.uint8))
    quarter = 255 + (_HEAT - 255) / 4
    assert np.abs(team[_px(7.5, 2.5)] - quarter).max() <= 1.0  # rounding


def test_victims_rescued_and_not() -> None:
    world = agentcomm.make_vec("SearchRescue-v0", seed=0)
    world.reset()
    _corner_team(world)
    world.victim_pos = torch.tensor([[[2.5, 2.5], [2.5, 8.5], [8.5, 2.5]]])
    world.rescued = torch.tensor([[False, True, False]])
    frame = render_frame(world, 0)
    assert tuple(frame[_px(2.5, 2.5)]) == _VICTIM  # cross centre
    assert tuple(frame[_px(2.5, 8.5)]) != _RESCUED  # ring: hollow centre ...
    ring = frame[_px(2.5, 8.5)[0] - 9 : _px(2.5, 8.5)[0] + 9, _px(2.5, 8.5)[1]]
    assert any(tuple(p) == _RESCUED for p in ring)  # ... green rim


def test_sites_and_targets() -> None:
    sites = agentcomm.make_vec("IntentCoverage-v0", seed=0)
    sites.reset()
    _corner_team(sites)
    sites.sites = torch.tensor([[[3.0, 3.0], [3.0, 9.0], [9.0, 3.0], [6.0, 6.0]]])
    frame = render_frame(sites, 0)
    radius_px = sites.config.site_radius * SIZE / 16
    y, x = _px(3.0, 3.0)
    assert tuple(frame[y, int(x + radius_px - 0.5)]) == (0, 0, 0)
    assert tuple(frame[y, x]) == (255, 255, 255)

    tracking = agentcomm.make_vec("TargetTracking-v0", seed=0)
    tracking.reset()
    _corner_team(tracking)
    tracking.target[0, :, :2] = torch.tensor([[4.0, 4.0], [4.0, 10.0]])
    frame = render_frame(tracking, 0)
    assert tuple(frame[_px(4.0, 10.0)]) == _TARGET


def test_same_seed_same_frames() -> None:
    frames = []
    for _ in range(2):
        world = agentcomm.make_vec("SearchRescue-v0", seed=5)
        world.reset()
        world.step(torch.zeros(1, 4, 6))
        frames.append(render_frame(world, 0))
    assert np.array_equal(*frames)


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    render_cli.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_cli_writes_a_gif_of_the_episode(tmp_path, capsys) -> None:
    out = tmp_path / "clip" / "episode.gif"
    args = _parse("--env", "IntentCoverage-v0", "--out", str(out), "--steps", "5", "--size", "64")
    assert render_cli.main(args) == 0
    frames = iio.imread(out, index=None)
    assert frames.shape == (6, 64, 64, 3)  # the reset frame plus one per step
    assert iio.immeta(out)["duration"] == 100  # ms at the default 10 fps
    assert "6 frames, 5 steps" in capsys.readouterr().out


def test_expert_episode_runs_to_its_end_and_seeds_reproduce() -> None:
    frames, total, success = render_cli.record_episode("IntentCoverage-v0", seed=0, size=64)
    assert success and 1 < len(frames) <= 41  # the expert occupies every site early
    again, total2, _ = render_cli.record_episode("IntentCoverage-v0", seed=0, size=64)
    assert total == total2 and all(np.array_equal(a, b) for a, b in zip(frames, again))
    rand, *_ = render_cli.record_episode("IntentCoverage-v0", 3, seed=0, policy="random", size=64)
    assert len(rand) == 4


def test_cli_rejects_bad_arguments(tmp_path) -> None:
    with pytest.raises(ValueError, match="must end in .gif"):
        render_cli.main(_parse("--env", "IntentCoverage-v0", "--out", str(tmp_path / "a.mp4")))
    with pytest.raises(ValueError, match="not registered"):
        render_cli.main(_parse("--env", "Nope-v0", "--out", str(tmp_path / "a.gif")))
    with pytest.raises(ValueError, match="steps=0"):
        render_cli.record_episode("IntentCoverage-v0", steps=0)
