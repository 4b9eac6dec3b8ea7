"""``experiments/expert_memory.py``: the SearchRescue expert with its memory cleared or cut."""

from __future__ import annotations

import torch

import agentcomm
from agentcomm.envs import expert_base
from agentcomm.experiments.expert_memory import TERRITORY_KEYS, expert_with_memory, main


def test_cleared_memory_changes_the_experts_decisions_and_kept_keys_survive():
    full = agentcomm.make_vec("SearchRescue-v0", num_envs=32, seed=4, comm={"budget": 16})
    cut = agentcomm.make_vec("SearchRescue-v0", num_envs=32, seed=4, comm={"budget": 16})
    full.reset(seed=4), cut.reset(seed=4)
    act_full, act_cut = expert_with_memory(None), expert_with_memory(())
    differ = False
    for _ in range(8):
        a, b = act_full(full), act_cut(cut)
        differ |= not torch.equal(a, b)
        full.step(a), cut.step(a)  # the same trajectory: only the decisions are compared
        assert "visited" in expert_base._memory(cut)  # written by the call, cleared by the next
    assert differ  # the territory chosen from the starts, the visited cells: where it goes
    # The kept keys are ones the expert writes (a renamed key would silently be cleared).
    assert set(TERRITORY_KEYS) <= set(expert_base._memory(full))
    # Cut to the territory memory, the expert still knows the territory it chose at the start.
    mem = expert_base._memory(full)
    kept = {k: mem[k] for k in ("start", "decided")}
    visited = mem["visited"]
    expert_with_memory(TERRITORY_KEYS)(full)
    assert all(mem[k] is kept[k] or torch.equal(mem[k], kept[k]) for k in kept)
    assert mem["visited"].sum() < visited.sum()  # rebuilt from the current position alone


def test_script_prints_every_variant_and_budget(capsys):
    result = main(["--episodes", "16"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("RESULT ")
    for variant in ("full", "memoryless", "territory"):
        for k in (0, 16, 256):
            assert 0.0 <= result[f"success_{variant}_b{k}"] <= 1.0
            assert f"success_{variant}_b{k}=" in line
