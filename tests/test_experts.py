"""The scripted experts: they solve their tasks, read no ground truth, and use information
rationally (an exact belief is worth at least a blurred one, a larger budget at least a
smaller one)."""

from __future__ import annotations

import math

import pytest
import torch
from episodes import first_episode_successes

import agentcomm
from agentcomm.codecs.raw import RawCodec
from agentcomm.envs import expert_base
from agentcomm.envs.experts import expert_actions, random_actions
from agentcomm.envs.scenarios import search_rescue_expert as sr_expert
from agentcomm.envs.scenarios import target_tracking_expert as tt_expert
from agentcomm.experiments.stats import wilson_interval

ENV_IDS = ("SearchRescue-v0", "TargetTracking-v0", "IntentCoverage-v0")
#: What no agent can observe: the hidden state of each scenario, and the world's random
#: stream (an expert drawing from it would also change the world's future).
HIDDEN = {
    "SearchRescue-v0": ("victim_pos", "victim_cell", "rescued", "true_map", "_true_map"),
    "TargetTracking-v0": ("target", "tracked_steps", "_errors"),
    "IntentCoverage-v0": (),
}
COMMON_HIDDEN = ("generator", "state", "_scenario_state", "_success", "fc_store")


class BlurRaw(RawCodec):
    """The ideal codec with the receiver's estimate passed through a 3 x 3 mean filter
    (replicated borders): the same information, less of it."""

    def _decode(self, received, prior):
        values = received.message.payload["values"].to(prior.dtype)
        m = values.shape[0]
        h, w = self.source_shape
        x = torch.nn.functional.pad(values.view(m, 1, h, w), (1, 1, 1, 1), mode="replicate")
        return torch.nn.functional.avg_pool2d(x, 3, 1).reshape(m, -1)


def _success(
    env_id: str,
    episodes: int,
    policy=expert_actions,
    blur: bool = False,
    seed: int = 5,
    config: dict | None = None,
    **comm,
) -> int:
    """Successful first episodes out of ``episodes`` parallel worlds (``config``: further
    overrides of the scenario's config)."""
    world = agentcomm.make_vec(env_id, num_envs=episodes, seed=seed, comm=comm, **(config or {}))
    if blur:
        world.comm.codec = BlurRaw(world.comm.codec.source_shape)
    world.reset(seed=seed)
    return int(first_episode_successes(world, policy).sum())


class _Observer:
    """A world seen through an agent's eyes: hidden attributes raise."""

    def __init__(self, world, hidden: tuple[str, ...]) -> None:
        object.__setattr__(self, "_world", world)
        object.__setattr__(self, "_hidden", hidden)

    def __getattr__(self, name: str):
        if name in self._hidden:
            raise AssertionError(f"the expert read {name!r}, which no agent can observe")
        return getattr(self._world, name)


# ----------------------------------------------------------------------------- fast


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_expert_solves_its_task_and_beats_random(env_id):
    """64 worlds with full communication: the expert solves at least half (SearchRescue's
    default episode is too short for every world, see the scenario), random actions almost
    none."""
    comm = {"codec": "raw"} if env_id != "IntentCoverage-v0" else {}
    expert = _success(env_id, 64, **comm)
    gen = torch.Generator().manual_seed(0)
    rand = _success(env_id, 64, policy=lambda w: random_actions(w, gen), **comm)
    assert expert >= 32 and expert >= rand + 28, (expert, rand)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_expert_reads_no_ground_truth(env_id):
    """Rolled out through a view that raises on every hidden attribute, the expert acts
    exactly as it does on the world itself (its memory included)."""
    hidden = HIDDEN[env_id] + COMMON_HIDDEN
    worlds = [agentcomm.make_vec(env_id, num_envs=8, seed=3) for _ in range(2)]
    for world in worlds:
        world.reset(seed=3)
    view = _Observer(worlds[1], hidden)
    for _ in range(12):
        a, b = expert_actions(worlds[0]), expert_actions(view)
        assert torch.equal(a, b)
        for world, act in zip(worlds, (a, b)):
            _, _, term, trunc, _ = world.step(act)
            if bool((term | trunc).any()):
                world.reset_at(term | trunc)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_expert_answers_one_state_once_and_forgets_between_episodes(env_id):
    """A second call on the same state gives the same actions (memory advances once per
    step); after a reset the expert acts as on a fresh world with the same seed."""
    world = agentcomm.make_vec(env_id, num_envs=6, seed=1)
    world.reset(seed=1)
    for _ in range(5):
        a = expert_actions(world)
        assert torch.equal(a, expert_actions(world))
        world.step(a)
    world.reset(seed=9)
    fresh = agentcomm.make_vec(env_id, num_envs=6, seed=9)
    fresh.reset(seed=9)
    for _ in range(3):
        a, b = expert_actions(world), expert_actions(fresh)
        assert torch.equal(a, b)
        world.step(a)
        fresh.step(b)


def test_on_demand_intent_coverage_keeps_success_with_fewer_bits():
    """The event-triggered variant, 256 selection worlds per budget, distributed: the same
    successes as the expert (measured 1,000 of 1,000 both at 4 and 16 uses) with at most
    70 % of its bits (measured 61 % at both)."""
    from agentcomm.policies.evaluate import evaluate

    for budget in (4, 16):
        runs = [
            evaluate(
                lambda w, o, v=variant: expert_actions(w, v),
                "IntentCoverage-v0",
                256,
                num_envs=256,
                env_config={"comm": {"budget": budget}},
                split="selection",
            )
            for variant in ("default", "on_demand")
        ]
        expert, on_demand = runs
        assert on_demand.successes >= expert.successes, (budget, runs)
        assert on_demand.bits_per_agent_step <= 0.7 * expert.bits_per_agent_step, (budget, runs)


def test_on_demand_agents_speak_unless_settled_and_unchallenged():
    """Every agent's transmit component, checked against the rule stated from the world's
    own tensors: silent (-1) exactly when within ``site_radius`` of its target and no
    teammate's last heard intent lies within twice the claim radius of that target;
    otherwise +1. The rest of the action is the expert's."""
    world = agentcomm.make_vec("IntentCoverage-v0", num_envs=32, seed=4)
    world.reset(seed=4)
    cfg, silent_seen = world.config, 0
    for _ in range(15):
        a, base = expert_actions(world, "on_demand"), expert_actions(world)
        assert torch.equal(a[..., :4], base[..., :4]) and torch.equal(a[..., 5], base[..., 5])
        target = (a[..., 2:4] + 1) / 2 * world.grid  # the announced intent is the target
        settled = (world.pos - target).norm(dim=-1) <= cfg.site_radius + 1e-4
        others = ~torch.eye(4, dtype=torch.bool)
        reach = 2 * (cfg.site_radius + expert_base._intent_slack(world))
        near = (world.known_intent - target.unsqueeze(2)).norm(dim=-1) <= reach + 1e-4
        quiet = settled & ~(near & others).any(-1)
        assert torch.equal(a[..., 4], torch.where(quiet, -1.0, 1.0))
        silent_seen += int(quiet.sum())
        _, _, term, trunc, _ = world.step(a)
        world.reset_at(term | trunc)
    assert silent_seen > 0


def test_unknown_expert_variants_are_refused_naming_the_allowed_ones():
    from agentcomm.envs.experts import expert_variants
    from agentcomm.policies.demos import collect_demos

    assert expert_variants("IntentCoverage-v0") == ("default", "on_demand")
    assert expert_variants("SearchRescue-v0") == ("default",)
    world = agentcomm.make_vec("SearchRescue-v0", num_envs=2, seed=0)
    world.reset(seed=0)
    with pytest.raises(ValueError, match=r"expert='on_demand'.*SearchRescue-v0.*\['default'\]"):
        expert_actions(world, "on_demand")
    with pytest.raises(ValueError, match=r"expert='often'.*\['default', 'on_demand'\]"):
        collect_demos("IntentCoverage-v0", 2, num_envs=2, expert="often")


def test_search_rescue_sweep_plan_covers_every_cell_once_per_territory():
    """Quadrants for four agents around the centre; each of the four routes of a territory
    visits its waypoints in a strict order and starts at a corner of the territory; every
    cell lies within the sensing radius of a waypoint."""
    sector, waypoints, owner, orders, corners, foot = sr_expert._sweep_plan(
        16, 4, (8.0, 8.0), 2.0, torch.device("cpu")
    )
    assert torch.bincount(sector).tolist() == [64, 64, 64, 64]
    assert bool((foot.sum(1) >= 1).all())  # [C, M]: each cell is seen from some waypoint
    for i in range(4):
        for variant in range(4):
            ranks = orders[variant, owner == i].sort().values
            assert torch.equal(ranks, torch.arange(ranks.numel()))
        # Four distinct corners, each a waypoint of the territory.
        assert torch.unique(corners[i], dim=0).shape[0] == 4
        assert bool((torch.cdist(corners[i], waypoints[owner == i]).amin(1) == 0).all())
    # Lanes at rows 2, 6, 10, 14: the disks of neighbouring lanes tile the area.
    assert sorted(set(waypoints[:, 0].tolist())) == [2.0, 6.0, 10.0, 14.0]


def _run_expert(world, steps: int) -> None:
    for _ in range(steps):
        _, _, term, trunc, _ = world.step(expert_actions(world))
        if bool((term | trunc).any()):
            world.reset_at(term | trunc)


def test_search_rescue_territories_follow_the_starts_the_agents_heard():
    """Without messages every agent keeps territory ``i`` (the convention); with perfect
    communication the agents that heard every start agree on one assignment, and the
    team's longest walk to its territories is shorter than under the convention."""
    silent = agentcomm.make_vec("SearchRescue-v0", num_envs=64, seed=2, comm={"budget": 0})
    silent.reset(seed=2)
    _run_expert(silent, 5)
    assert torch.equal(expert_base._memory(silent)["territory"], torch.arange(4).expand(64, 4))
    world = agentcomm.make_vec(
        "SearchRescue-v0", num_envs=64, seed=2, comm={"codec": "raw", "mode": "centralized"}
    )
    world.reset(seed=2)
    start = world.pos.clone()
    _run_expert(world, sr_expert._ANNOUNCE_STEPS + 1)
    mem = expert_base._memory(world)
    decided = mem["decided"].all(1)
    assert int(decided.sum()) >= 48, int(decided.sum())
    sweeper = mem["sweeper"][decided]  # [D, N, S]: the same in every agent's view
    assert torch.equal(sweeper, sweeper[:, :1].expand_as(sweeper))
    territory = mem["territory"][decided]
    assert torch.equal(territory.sort(1).values, torch.arange(4).expand_as(territory))
    corners = sr_expert._sweep_plan(16, 4, (8.0, 8.0), 2.0, torch.device("cpu"))[4]

    def longest(assign):  # [D, N] territories -> [D] longest walk to a territory corner
        walk = (corners[assign] - start[decided].unsqueeze(2)).norm(dim=-1).amin(-1)
        return walk.amax(1)

    assigned, convention = longest(territory), longest(torch.arange(4).expand_as(territory))
    assert bool((assigned <= convention + 0.5).all())
    assert float(assigned.mean()) < float(convention.mean()) - 2.0


def test_search_rescue_start_options():
    """``scattered`` starts the agents apart and keeps victims out of their rescue radius;
    ``base`` starts them together; other values and a base with scattered starts raise."""
    world = agentcomm.make_vec("SearchRescue-v0", num_envs=256, seed=0)
    world.reset(seed=0)
    assert world.config.start == "scattered"
    spread = (world.pos - world.pos.mean(1, keepdim=True)).norm(dim=-1).mean()
    assert float(spread) > 3.0
    gap = (world.victim_pos.unsqueeze(1) - world.pos.unsqueeze(2)).norm(dim=-1)
    assert bool((gap > world.config.rescue_radius).all())
    base = agentcomm.make_vec("SearchRescue-v0", num_envs=256, seed=0, start="base")
    base.reset(seed=0)
    assert bool(((base.pos - 8.0).abs() <= 0.5).all())
    with pytest.raises(ValueError, match="start"):
        agentcomm.make_vec("SearchRescue-v0", start="corner")
    with pytest.raises(ValueError, match="base"):
        agentcomm.make_vec("SearchRescue-v0", base=(2.0, 2.0))


@pytest.mark.parametrize(
    ("comm", "shared"),
    [
        ({"budget": 0}, False),
        ({"budget": 4}, False),  # the header alone
        ({"budget": 64, "codec": "raw"}, True),
        ({"budget": 16}, False),  # 5 quantized values: the second target's state is missing
        ({"budget": 64}, True),
        ({"budget": 16, "mode": "centralized", "codec": "raw"}, False),  # downlink: 4 intents
        ({"budget": 64, "mode": "centralized"}, True),
        ({"budget": 64, "mode": "hybrid"}, True),  # 13 values on the peer half: both states
    ],
)
def test_tracking_expert_knows_whether_its_radio_carries_tracks(comm, shared):
    world = agentcomm.make_vec("TargetTracking-v0", num_envs=1, seed=0, comm=comm)
    before = world.generator.get_state()
    assert tt_expert._shares_tracks(world) is shared
    assert torch.equal(world.generator.get_state(), before)  # the dry run drew nothing


def test_search_rescue_expert_recovers_its_own_evidence_beyond_the_clip():
    """Standing still (and with false alarms made negligible), each agent misses the same
    empty cells every step: its own clipped evidence stops at the floor after one miss, the
    unclipped sum falls by one miss per step."""
    world = agentcomm.make_vec(
        "SearchRescue-v0", num_envs=2, seed=0, comm={"budget": 0}, sensing={"pfa": 1e-6}
    )
    world.reset(seed=0)
    still = torch.zeros(2, 4, 6)
    still[..., 4] = -1.0  # silent
    for _ in range(4):
        expert_actions(world)
        world.step(still)
    expert_actions(world)
    total = expert_base._memory(world)["own_total"]
    sensed = world.local.reshape(2, 4, -1) <= -world.config.comm.logodds_clip + 1e-6
    victims = torch.zeros(2, 256, dtype=torch.bool).scatter_(1, world.victim_cell, True)
    sensed &= ~victims.unsqueeze(1)
    miss = torch.log(torch.tensor((1 - 0.9) / (1 - 1e-6)))
    assert int(sensed.sum()) >= 8 * 9  # every agent's window, all at the floor
    assert torch.allclose(total[sensed], world.prior + 4 * miss, atol=1e-4)


def test_search_rescue_own_evidence_on_the_window_matches_the_whole_grid():
    """The unclipped own evidence, updated only on the cells around each agent that its
    sensing disk can reach, equals the sum of detections and misses over the whole grid,
    step after step through partial resets and with repeated calls on one state."""
    world = agentcomm.make_vec("SearchRescue-v0", num_envs=32, seed=4, comm={"codec": "raw"})
    world.reset(seed=4)
    cfg = world.config
    clip, rs = cfg.comm.logodds_clip, cfg.sensing.radius
    hit = math.log(cfg.sensing.pd / cfg.sensing.pfa)
    miss = math.log((1 - cfg.sensing.pd) / (1 - cfg.sensing.pfa))
    cells = expert_base._cells(world.grid, world.device)
    total = last = None
    resets = 0
    for t in range(2 * cfg.max_steps + 2):
        own = world.local.reshape(32, 4, -1)
        window = expert_base._dist(world.pos, cells) <= rs
        start = (world.t == 0).view(-1, 1, 1)
        if total is None:
            total, last = own.clone(), own.clone()
        up = (own > last + 1e-6) | ((own >= clip - 1e-6) & (own >= last - 1e-6))
        down = (own < last - 1e-6) | ((own <= -clip + 1e-6) & (own <= last + 1e-6))
        step = torch.where(up, hit, torch.where(down, miss, 0.0)) * window
        total = torch.where(start, own, total + step)
        last = own.clone()
        actions = expert_actions(world)
        if t % 5 == 2:
            assert torch.equal(actions, expert_actions(world))
        kept = expert_base._memory(world)["own_total"]
        assert torch.equal(kept, total), t
        _, _, term, trunc, _ = world.step(actions)
        done = term | trunc
        if bool(done.any()):
            resets += int(done.sum())
            world.reset_at(done)
    assert resets >= 32  # every world went through at least one reset


# ----------------------------------------------------------------------------- slow

POINTS = 2048
BUDGETS = (0, 4, 16, 64, 256)


def _interval(k: int) -> tuple[float, float]:
    _, low, high = wilson_interval(k, POINTS)
    return low, high


def _not_worse(better: int, worse: int) -> bool:
    """The better-informed point is not significantly worse: the upper end of its Wilson
    95% interval reaches the lower end of the other's."""
    return _interval(better)[1] >= _interval(worse)[0]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["distributed", "centralized", "hybrid"])
def test_exact_maps_are_worth_at_least_blurred_ones(mode):
    """SearchRescue-v0, the scenario whose messages are maps (TargetTracking-v0 sends track
    tables, IntentCoverage-v0 intents only)."""
    exact = _success("SearchRescue-v0", POINTS, codec="raw", mode=mode)
    blurred = _success("SearchRescue-v0", POINTS, blur=True, codec="raw", mode=mode)
    assert _not_worse(exact, blurred), (exact, blurred)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["distributed", "centralized", "hybrid"])
@pytest.mark.parametrize("env_id", ENV_IDS)
def test_success_does_not_fall_with_the_budget(env_id, mode):
    """Quantized at budgets 0, 4, 16, 64, 256, then the ideal codec: every point is not
    significantly worse than any point before it."""
    points = [_success(env_id, POINTS, budget=k, mode=mode) for k in BUDGETS]
    points.append(_success(env_id, POINTS, codec="raw", mode=mode))
    names = [*map(str, BUDGETS), "raw"]
    for j, better in enumerate(points):
        for i in range(j):
            assert _not_worse(better, points[i]), (names[j], names[i], points)


@pytest.mark.slow
def test_search_rescue_weak_links_are_worth_at_least_silence():
    """Distributed, quantized, 64 channel uses per link at 0 dBm transmit power (mean link
    SNR near -5 dB): most starts are lost, a few goals get through. What is heard must not
    make the team significantly worse than hearing nothing (budget 0): the upper end of its
    Wilson 95% interval reaches the lower end of silence's, at 4,096 worlds."""
    n = 2 * POINTS
    weak = _success(
        "SearchRescue-v0",
        n,
        budget=64,
        mode="distributed",
        config={"channel": {"tx_power_dbm": 0.0}},
    )
    silent = _success("SearchRescue-v0", n, budget=0, mode="distributed")
    assert wilson_interval(weak, n)[2] >= wilson_interval(silent, n)[1], (weak, silent, n)


def main() -> None:
    """Print success of each scenario's expert per mode and budget (quantized codec), with
    the ideal codec (``raw``) and the ideal codec blurred at the receiver (``blur``): ``n``
    first episodes of the worlds the slow tests use, Wilson 95% intervals. Environment:
    ``EXPERT_TABLE_EPISODES`` (default 2048), ``EXPERT_TABLE_SCENARIOS`` (comma-separated
    ids, default all three)."""
    import os
    import time

    torch.set_num_threads(1)
    n = int(os.environ.get("EXPERT_TABLE_EPISODES", POINTS))
    scenarios = os.environ.get("EXPERT_TABLE_SCENARIOS", ",".join(ENV_IDS)).split(",")
    print("| scenario | mode | budget | n | success | 95% interval |")
    print("|---|---|---|---|---|---|")
    for env_id in scenarios:
        for mode in ("centralized", "distributed", "hybrid"):
            blur = ("blur",) if env_id == "SearchRescue-v0" else ()  # the others send no maps
            for point in (*BUDGETS, "raw", *blur):
                start = time.perf_counter()
                if point in ("raw", "blur"):
                    k = _success(env_id, n, blur=point == "blur", codec="raw", mode=mode)
                else:
                    k = _success(env_id, n, budget=point, mode=mode)
                p, low, high = wilson_interval(k, n)
                took = time.perf_counter() - start
                print(
                    f"| {env_id} | {mode} | {point} | {n} | {p:.3f} | [{low:.3f}, {high:.3f}] |"
                    f"  <!-- {took:.0f} s -->",
                    flush=True,
                )


def cost(num_envs: int = 1024, steps: int = 40) -> None:
    """Print, per scenario, the median time of one expert call and of one world step over
    an expert rollout of ``num_envs`` worlds (defaults, 1 torch thread, alternating)."""
    import statistics
    import time

    torch.set_num_threads(1)
    for env_id in ENV_IDS:
        world = agentcomm.make_vec(env_id, num_envs=num_envs, seed=0)
        world.reset(seed=0)
        expert, step = [], []
        for t in range(steps):
            start = time.perf_counter()
            actions = expert_actions(world)
            mid = time.perf_counter()
            _, _, term, trunc, _ = world.step(actions)
            end = time.perf_counter()
            if bool((term | trunc).any()):
                world.reset_at(term | trunc)
            if t >= 5:  # warm-up
                expert.append(mid - start)
                step.append(end - mid)
        print(
            f"{env_id}: B={num_envs}, 1 thread: expert {statistics.median(expert) * 1e3:.1f} "
            f"ms/step, world step {statistics.median(step) * 1e3:.1f} ms/step "
            f"(medians of {len(step)} steps)",
            flush=True,
        )


def power_sweep(
    powers: tuple[float, ...] = (-30.0, -20.0, -15.0, -10.0, -5.0, 0.0, 5.0, 10.0, 15.0, 20.0),
    seeds: int = 4,
    episodes: int = 1024,
) -> None:
    """Print SearchRescue-v0 expert success over the transmit power (distributed, quantized,
    64 channel uses per link) beside no communication: ``seeds x episodes`` evaluation
    worlds per point (seed indices ``0 .. seeds - 1``), Wilson 95% intervals, and the mean
    peer link SNR."""
    from agentcomm.experiments.metrics import evaluate

    torch.set_num_threads(1)
    print("| tx power | mean link SNR | n | success | 95% interval |")
    print("|---|---|---|---|---|")
    for power in (None, *powers):
        comm = {"mode": "distributed", "budget": 0 if power is None else 64}
        channel = {"tx_power_dbm": 20.0 if power is None else power}
        runs = [
            evaluate("SearchRescue-v0", "expert", episodes, s, {"comm": comm, "channel": channel})
            for s in range(seeds)
        ]
        k, n = sum(int(r["successes"]) for r in runs), seeds * episodes
        snr = sum(float(r["peer_snr_db"]) for r in runs) / seeds
        p, low, high = wilson_interval(k, n)
        label = "no link (budget 0)" if power is None else f"{power:g} dBm"
        snr_text = "-" if power is None else f"{snr:.1f} dB"
        print(f"| {label} | {snr_text} | {n} | {p:.3f} | [{low:.3f}, {high:.3f}] |", flush=True)


if __name__ == "__main__":
    import sys

    if "--cost" in sys.argv[1:]:
        cost()
    elif "--power" in sys.argv[1:]:
        power_sweep()
    else:
        main()


def test_tracking_expert_knows_each_worlds_drawn_budget_cap():
    # Worlds drawing their cap from {0, 16, 64}: only the cap-64 worlds' radios carry tracks.
    comm = {"budget": 64, "budget_levels": [0, 16, 64]}
    world = agentcomm.make_vec("TargetTracking-v0", num_envs=32, seed=0, comm=comm)
    world.reset(seed=0)
    assert set(world.budget_cap.tolist()) == {0, 16, 64}
    assert torch.equal(tt_expert._shares_tracks(world), world.budget_cap == 64)
    assert expert_actions(world).shape == (32, 4, 6)
