"""The JSCC receiver trained online beside a PPO policy (agentcomm.policies.online_receiver)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

pytest.importorskip("ray.rllib")

from agentcomm.channels.registry import make_channel  # noqa: E402
from agentcomm.decoders.data import to_unit  # noqa: E402
from agentcomm.decoders.jscc import JSCCConfig  # noqa: E402
from agentcomm.decoders.prior import PriorConfig  # noqa: E402
from agentcomm.policies.online_diffusion_receiver import online_cddm_receiver  # noqa: E402
from agentcomm.policies.online_receiver import (  # noqa: E402
    BELIEF,
    POLICY_MODULE_ID,
    PRIOR_MODULE_ID,
    RECEIVER_MODULE_ID,
    BeliefInfoMultiAgentEnv,
    MapReplay,
    online_receiver_config,
)

CLIP = 6.0


def _held_out_beliefs(seed: int) -> tuple[torch.Tensor, float]:
    """Beliefs ``[M, 16, 16]`` of one random-action episode, and the scenario's prior (nats)."""
    env = BeliefInfoMultiAgentEnv({"env_id": "SearchRescue-v0"})
    rng = np.random.default_rng(seed)
    _, infos = env.reset(seed=seed)
    maps = [info[BELIEF] for info in infos.values()]
    while env.agents:
        acts = {a: rng.uniform(-1, 1, 6).astype(np.float32) for a in env.agents}
        infos = env.step(acts)[4]
        maps.extend(info[BELIEF] for info in infos.values())
    return torch.as_tensor(np.stack(maps)), float(env.world.prior)


def _mse(module, maps: torch.Tensor) -> float:
    """Reconstruction MSE on normalized log-odds at 10 dB, the channel noise seeded."""
    module._generator = None  # restart the module's seeded stream: same noise for each call
    with torch.no_grad():
        out = module.forward_inference({BELIEF: maps, "snr_db": torch.full((len(maps),), 10.0)})
    return float((to_unit(out["belief_hat"], CLIP) - to_unit(maps, CLIP)).square().mean())


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_receiver_loss_falls_during_ppo(ray_session):
    episodes = [_held_out_beliefs(seed=s) for s in (7, 8, 9, 10)]
    maps, prior = torch.cat([m for m, _ in episodes]), episodes[0][1]
    prior_mse = float((to_unit(maps, CLIP) - prior / CLIP).square().mean())
    target = to_unit(maps, CLIP).flatten(1)
    # The best constant map: the held-out maps' own per-cell mean (no constant does better).
    mean_map_mse = float((target - target.mean(0)).square().mean())
    # For scale only: each episode's own mean map, a constant that knows the episode.
    per_episode = [to_unit(m, CLIP) for m, _ in episodes]
    episode_sse = sum(float((u - u.mean(0)).square().sum()) for u in per_episode)
    episode_mse = episode_sse / target.numel()
    print(
        f"held-out ({len(maps)} maps): prior MSE {prior_mse:.5f}, own mean-map MSE "
        f"{mean_map_mse:.5f}, per-episode mean-map MSE {episode_mse:.5f}"
    )

    config = online_receiver_config(
        train_batch_size=120,  # env steps: ~500 maps of 4 agents per iteration
        minibatch_size=40,
        num_epochs=8,  # ~100 receiver steps of 40 (+ 40 replayed) maps per iteration
        hidden=(64, 64),
        receiver_lr=2e-3,
        seed=0,
    )
    algo = config.build_algo()
    try:
        # num_env_runners=0: the local env runner's modules get the learner's weights
        # after every iteration, the receiver's included.
        untrained = copy.deepcopy(algo.get_module(RECEIVER_MODULE_ID))
        policy_before = {
            k: v.clone() for k, v in algo.get_module(POLICY_MODULE_ID).state_dict().items()
        }
        learned = []
        for _ in range(5):
            result = algo.train()
            learned.append(result["learners"][RECEIVER_MODULE_ID])
        before = _mse(untrained, maps)
        after = _mse(algo.get_module(RECEIVER_MODULE_ID), maps)
        policy_after = algo.get_module(POLICY_MODULE_ID).state_dict()
    finally:
        algo.stop()

    # The policy trained too, on the same learner and in the same update calls.
    assert any(not torch.equal(policy_before[k], policy_after[k].cpu()) for k in policy_before)
    # Every iteration logged the receiver's self-supervised metrics.
    for metrics in learned:
        assert {"reconstruction_mse", "mean_map_mse", "prior_mse"} <= set(metrics)
    last = learned[-1]["reconstruction_mse"]
    # On held-out beliefs (four random-action episodes, fixed 10 dB noise) training removed
    # at least 30% of the untrained receiver's error and beats predicting the prior and the
    # best constant map by 8%: the message carries information. (Trained on each batch alone,
    # 8 epochs over it without the replay of earlier maps, five iterations end 3-4% below the
    # constant map; with it 14-19%.)
    assert after < 0.7 * before, (before, after, mean_map_mse)
    assert after < prior_mse, (after, prior_mse)
    assert after < 0.92 * mean_map_mse, (after, mean_map_mse)
    # The learner's own loss ends below the prior's on the same batch. (It is not compared
    # with the first iteration's: that one already averages ~100 receiver steps, and each
    # iteration's loss is taken on a fresh batch of policy-driven beliefs, whose spread
    # between iterations exceeds what later iterations still gain.)
    assert last < learned[-1]["prior_mse"], learned[-1]
    print(f"held-out MSE {before:.5f} -> {after:.5f}; learner MSE (last) {last:.5f}")


def _prior_loss(module, maps: torch.Tensor) -> float:
    """Denoising loss of the prior module on ``maps``, timesteps and noise seeded."""
    module._generator = None
    return float(module.forward_inference({BELIEF: maps})["denoising_loss"])


def test_map_replay_keeps_the_latest_maps_and_mixes_them_in():
    replay = MapReplay(5, 2, 2)
    g = torch.Generator().manual_seed(0)
    first = torch.zeros(3, 2, 2)
    assert torch.equal(replay.mix(first, g), first)  # empty: the batch alone
    replay.add(first)
    replay.add(torch.arange(4.0).view(4, 1, 1).expand(4, 2, 2))
    # Capacity 5: the oldest two zeros were overwritten by 2 and 3.
    assert replay.size == 5
    assert sorted(replay.maps[:, 0, 0].tolist()) == [0.0, 0.0, 1.0, 2.0, 3.0]
    mixed = replay.mix(torch.full((2, 2, 2), 9.0), g)
    assert mixed.shape == (4, 2, 2)
    assert (mixed[:2] == 9.0).all() and (mixed[2:] != 9.0).all()
    with pytest.raises(ValueError, match="replay_maps"):
        MapReplay(-1, 2, 2)


def test_online_receiver_config_checks_the_prior():
    with pytest.raises(ValueError, match="prior.height"):
        online_receiver_config(prior=PriorConfig(height=8, width=8))
    with pytest.raises(ValueError, match="replay_maps"):
        online_receiver_config(replay_maps=-1)
    config = online_receiver_config(
        receiver=JSCCConfig(height=16, width=16, hidden=32),
        prior=PriorConfig(height=16, width=16, hidden=32, depth=1),
    )
    specs = config.rl_module_spec.rl_module_specs
    assert list(specs) == [POLICY_MODULE_ID, RECEIVER_MODULE_ID, PRIOR_MODULE_ID]


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_diffusion_prior_trains_online_beside_the_policy(ray_session):
    maps, _ = _held_out_beliefs(seed=11)
    config = online_receiver_config(
        train_batch_size=120,
        minibatch_size=40,
        num_epochs=4,
        hidden=(32, 32),
        receiver=JSCCConfig(height=16, width=16, hidden=64),
        prior=PriorConfig(height=16, width=16, hidden=128, depth=2),
        prior_lr=2e-3,
        seed=0,
    )
    algo = config.build_algo()
    try:
        untrained = copy.deepcopy(algo.get_module(PRIOR_MODULE_ID))
        before = _prior_loss(untrained, maps)
        learned = [algo.train()["learners"] for _ in range(3)]
        trained = algo.get_module(PRIOR_MODULE_ID)
        after = _prior_loss(trained, maps)
        # The learner's own copy (the runner's copy gets weights only) keeps the replay store.
        replay_size = algo.learner_group._learner.module[PRIOR_MODULE_ID].replay.size
        rx = online_cddm_receiver(
            algo.get_module(RECEIVER_MODULE_ID).jscc, trained.prior, maps[::2], steps=2
        )
    finally:
        algo.stop()
    # The learner stepped the prior by its denoising loss every iteration (with the loss not
    # wired in, the module would keep its initial weights and the held-out loss would not move).
    assert all("denoising_loss" in m[PRIOR_MODULE_ID] for m in learned)
    assert all("reconstruction_mse" in m[RECEIVER_MODULE_ID] for m in learned)
    assert after < 0.6 * before, (before, after)
    # Its replay store holds the maps of the three updates (every agent-step of each batch).
    assert replay_size >= 3 * 120, replay_size
    # The online JSCC and prior decode CDDM-style.
    g = torch.Generator().manual_seed(0)
    _, out = rx.jscc.transmit(maps[1::2], make_channel("awgn"), 5.0, g)
    decoded = rx.decode(out)
    assert decoded.shape == maps[1::2].shape and torch.isfinite(decoded).all()
    print(f"held-out denoising loss {before:.4f} -> {after:.4f}; replay store {replay_size} maps")
