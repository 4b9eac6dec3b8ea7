"""DPPO inside RLlib: module outputs, loss pieces, learning on a toy task, multi-agent wiring."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.env.multi_agent_env import MultiAgentEnv
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.tune.registry import register_env

from agentcomm.policies.checkpoint import save_policy
from agentcomm.policies.diffusion import DiffusionPolicy
from agentcomm.policies.dppo import SHARED_MODULE_ID, dppo_config
from agentcomm.policies.dppo_learner import clip_schedule, denoising_weights
from agentcomm.policies.dppo_module import (
    DPPO_CHAIN,
    DPPO_LOGP_NEW,
    DPPO_LOGP_STEPS,
    DiffusionChainDistribution,
    DPPOTorchRLModule,
)

W = np.array([[1.2, -0.8, 0.5], [0.4, 0.9, -1.0]], dtype=np.float32)
SMALL = {"denoising_steps": 5, "ddim_steps": 5, "ft_denoising_steps": 5, "hidden": 64, "depth": 2}


def _target(obs: np.ndarray) -> np.ndarray:
    return 0.8 * np.tanh(obs @ W.T)


class TargetBandit(gym.Env):
    """One-step task: observe o ~ U[-1, 1]^3, reward -10 ||a - 0.8 tanh(W o)||^2."""

    def __init__(self, config: dict | None = None) -> None:
        self.observation_space = gym.spaces.Box(-1, 1, (3,), np.float32)
        self.action_space = gym.spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self._obs = self.np_random.uniform(-1, 1, 3).astype(np.float32)
        return self._obs, {}

    def step(self, action):
        reward = -10.0 * float(np.sum((np.asarray(action) - _target(self._obs)) ** 2))
        return self._obs, reward, True, False, {}


class TwoAgentBandit(MultiAgentEnv):
    """Two agents, each the bandit above; obs = {"obs": own o_i, "state": [o_0, o_1]}."""

    def __init__(self, config: dict | None = None) -> None:
        super().__init__()
        self.agents = self.possible_agents = ["agent_0", "agent_1"]
        obs_space = gym.spaces.Dict(
            {
                "obs": gym.spaces.Box(-1, 1, (3,), np.float32),
                "state": gym.spaces.Box(-1, 1, (6,), np.float32),
            }
        )
        self.observation_spaces = dict.fromkeys(self.agents, obs_space)
        self.action_spaces = dict.fromkeys(self.agents, gym.spaces.Box(-1, 1, (2,), np.float32))
        self._rng = np.random.default_rng(0)

    def _observe(self):
        state = np.concatenate(self._o).astype(np.float32)
        return {a: {"obs": self._o[i], "state": state} for i, a in enumerate(self.agents)}

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self._o = [self._rng.uniform(-1, 1, 3).astype(np.float32) for _ in self.agents]
        return self._observe(), {}

    def step(self, action_dict):
        rewards = {
            a: -float(np.sum((np.asarray(action_dict[a]) - _target(self._o[i])) ** 2))
            for i, a in enumerate(self.agents)
        }
        done = dict.fromkeys(self.agents, True) | {"__all__": True}
        return self._observe(), rewards, done, dict(done), {}


def _module(**model_config) -> DPPOTorchRLModule:
    return DPPOTorchRLModule(
        observation_space=gym.spaces.Box(-1, 1, (3,), np.float32),
        action_space=gym.spaces.Box(-1, 1, (2,), np.float32),
        model_config={"policy": SMALL, "critic_hidden": [16], **model_config},
    )


# ---------------------------------------------------------------- loss pieces (no Ray)


def test_clip_schedule_is_exponential_between_endpoints():
    clip = clip_schedule(5, 0.001, 0.01, 3.0)
    assert clip[0] == pytest.approx(0.001) and clip[-1] == pytest.approx(0.01)
    assert bool((clip.diff() > 0).all())
    mid = 0.001 + 0.009 * math.expm1(1.5) / math.expm1(3.0)
    assert float(clip[2]) == pytest.approx(mid)
    assert clip_schedule(1, 0.001, 0.01, 3.0).tolist() == [0.01]
    with pytest.raises(ValueError, match="clip_max"):
        clip_schedule(3, 0.1, 0.01, 3.0)


def test_denoising_weights_discount_early_steps():
    assert denoising_weights(3, 0.5).tolist() == [0.25, 0.5, 1.0]
    with pytest.raises(ValueError, match="gamma_denoise"):
        denoising_weights(3, 0.0)


# ---------------------------------------------------------------- module (no Ray)


def _sampled_batch(module, advantages: torch.Tensor, value_targets: torch.Tensor) -> dict:
    """A learner batch: ``len(advantages)`` observations in ``[-1, 1]^3`` (seed 0), the
    module's exploration chains and step log-likelihoods on them, and the given targets."""
    n = advantages.shape[0]
    obs = torch.rand(n, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = module.forward_exploration({Columns.OBS: obs})
    return {
        Columns.OBS: obs,
        DPPO_CHAIN: out[DPPO_CHAIN],
        DPPO_LOGP_STEPS: out[DPPO_LOGP_STEPS],
        Postprocessing.ADVANTAGES: advantages,
        Postprocessing.VALUE_TARGETS: value_targets,
    }


def test_module_outputs_and_ratio_is_one_before_update():
    module = _module()
    obs = torch.rand(32, 3) * 2 - 1
    out = module.forward_exploration({Columns.OBS: obs})
    assert out[Columns.ACTIONS].shape == (32, 2)
    assert out[DPPO_CHAIN].shape == (32, 6, 2)
    assert out[DPPO_LOGP_STEPS].shape == (32, 5)
    torch.testing.assert_close(out[Columns.ACTION_LOGP], out[DPPO_LOGP_STEPS].sum(-1))
    train = module.forward_train({Columns.OBS: obs, DPPO_CHAIN: out[DPPO_CHAIN]})
    assert torch.equal(torch.exp(train[DPPO_LOGP_NEW] - out[DPPO_LOGP_STEPS]), torch.ones(32, 5))
    assert module.compute_values({Columns.OBS: obs}).shape == (32,)
    inf1 = module.forward_inference({Columns.OBS: obs})[Columns.ACTIONS]
    inf2 = module.forward_inference({Columns.OBS: obs})[Columns.ACTIONS]
    assert torch.equal(inf1, inf2)
    dist = module.get_exploration_action_dist_cls().from_logits(torch.zeros(32, 0))
    assert isinstance(dist, DiffusionChainDistribution)
    with pytest.raises(NotImplementedError, match="denoising chain"):
        dist.logp(out[Columns.ACTIONS])


def test_module_same_seed_same_weights_and_inference_only_drops_critic():
    a, b = _module(seed=3), _module(seed=3)
    for key, value in a.state_dict().items():
        assert torch.equal(value, b.state_dict()[key]), key
    assert "critic" in a.get_non_inference_attributes()
    assert not any(k.startswith("critic") for k in a.get_state(inference_only=True))


def test_module_loads_pretrained_checkpoint(tmp_path, generator):
    pre = DiffusionPolicy(3, 2, **SMALL, generator=generator)
    save_policy(tmp_path, pre)
    module = _module(pretrained=str(tmp_path), policy={"ft_denoising_steps": 3})
    for key, value in pre.denoiser.state_dict().items():
        assert torch.equal(module.policy.actor_ft.state_dict()[key], value)
        assert torch.equal(module.policy.base.state_dict()[key], value)
    assert module.policy.config.ft_denoising_steps == 3
    with pytest.raises(ValueError, match="obs_dim"):
        DPPOTorchRLModule(
            observation_space=gym.spaces.Box(-1, 1, (4,), np.float32),
            action_space=gym.spaces.Box(-1, 1, (2,), np.float32),
            model_config={"pretrained": str(tmp_path)},
        )
    with pytest.raises(ValueError, match="architecture"):
        _module(pretrained=str(tmp_path), policy={"hidden": 8})


@pytest.mark.parametrize(
    ("model_config", "match"),
    [
        ({"sampler": "euler"}, "sampler"),
        ({"critic_input": "state"}, "Dict observation_space"),
        ({"critic_input": "obs+state"}, "Dict observation_space"),
        ({"critic_input": "global"}, "critic_input"),
        ({"critic_hidden": []}, "critic_hidden"),
        ({"bogus": 1}, "bogus"),
        ({"sampler": "ddim", "policy": {**SMALL, "ddim_steps": 2}}, "ft_denoising_steps"),
    ],
)
def test_module_bad_model_config_raises(model_config, match):
    with pytest.raises(ValueError, match=match):
        _module(**model_config)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sampler": "euler"}, "sampler"),
        ({"multi_agent": "teams"}, "multi_agent"),
        ({"multi_agent": "per_agent"}, "agent_ids"),
        ({"clip_param": 0.01, "clip_param_min": 0.1}, "clip_param_min"),
        ({"gamma_denoise": 1.5}, "gamma_denoise"),
        ({"minibatch_size": 4096}, "minibatch_size"),
        ({"num_env_runners": -1}, "num_env_runners"),
        ({"lr": 0.0}, "lr"),
    ],
)
def test_dppo_config_bad_values_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        dppo_config("any-env", **kwargs)


@pytest.mark.parametrize("critic_input", ["obs", "state", "obs+state"])
def test_dppo_config_asks_our_envs_for_the_state_the_critic_reads(critic_input):
    config = dppo_config(
        "agentcomm/SearchRescue-v0", env_config={"max_steps": 5}, critic_input=critic_input
    )
    want = {"max_steps": 5} | ({} if critic_input == "obs" else {"centralized_critic": True})
    assert config.env_config == want
    # Someone else's env gets its env_config untouched.
    assert dppo_config("my-env", critic_input=critic_input).env_config == {}
    if critic_input != "obs":
        with pytest.raises(ValueError, match=r"centralized_critic.*False.*critic_input"):
            dppo_config(
                "agentcomm/SearchRescue-v0",
                env_config={"centralized_critic": False},
                critic_input=critic_input,
            )


# ---------------------------------------------------------------- RLlib end to end


def _bandit_config(**kwargs):
    register_env("agentcomm-test-bandit", lambda cfg: TargetBandit(cfg))
    args = dict(
        policy=SMALL,
        critic_hidden=(64,),
        num_envs_per_env_runner=64,
        train_batch_size=512,
        minibatch_size=256,
        num_epochs=4,
        lr=3e-4,
        critic_lr=1e-2,
        clip_param=0.2,
        clip_param_min=0.05,
        gamma_denoise=0.9,
        seed=0,
    )
    args.update(kwargs)
    return dppo_config("agentcomm-test-bandit", **args)


def test_learner_loss_on_fresh_samples_has_unit_ratio_and_skips_base():
    """Before any update the per-step ratios are exactly 1 (same weights, same rows), and the
    loss's gradients reach actor_ft and the critic only; only those are optimised."""
    learner = _bandit_config(policy=SMALL, critic_hidden=(16,)).build_learner(env=TargetBandit())
    mid = "default_policy"
    module = learner.module[mid]
    gen = torch.Generator().manual_seed(1)
    batch = _sampled_batch(module, torch.randn(64, generator=gen), torch.randn(64, generator=gen))
    loss = learner.compute_loss_for_module(
        module_id=mid,
        config=learner.config.get_config_for_module(mid),
        batch=batch,
        fwd_out=module.forward_train(batch),
    )
    for j in range(5):
        assert float(learner.metrics.peek((mid, f"dppo_ratio_min_k{j}"))) == 1.0
        assert float(learner.metrics.peek((mid, f"dppo_ratio_max_k{j}"))) == 1.0
        assert float(learner.metrics.peek((mid, f"dppo_approx_kl_k{j}"))) == 0.0
    loss.backward()
    assert all(p.grad is None for p in module.policy.base.parameters())
    assert all(p.grad is not None for p in module.policy.actor_ft.parameters())
    assert all(p.grad is not None for p in module.critic.parameters())
    optimised = {id(p) for p in learner.get_parameters(module) if p.requires_grad}
    registered = {id(p) for opt in learner.get_optimizers_for_module(mid) for p in _params(opt)}
    assert registered == optimised
    assert not registered & {id(p) for p in module.policy.base.parameters()}


def test_critic_learns_from_returns_far_from_its_values():
    """Value targets of 30 (SearchRescue's returns reach that) against a fresh critic near 0:
    with the default vf_clip_param the critic still gets a gradient. RLlib's own default
    (10, a clamp on the squared error) would zero it for every such sample."""
    learner = _bandit_config(policy=SMALL, critic_hidden=(16,)).build_learner(env=TargetBandit())
    mid = "default_policy"
    module = learner.module[mid]
    batch = _sampled_batch(module, torch.zeros(32), torch.full((32,), 30.0))
    loss = learner.compute_loss_for_module(
        module_id=mid,
        config=learner.config.get_config_for_module(mid),
        batch=batch,
        fwd_out=module.forward_train(batch),
    )
    loss.backward()
    grad = torch.cat([p.grad.flatten() for p in module.critic.parameters()])
    assert float(grad.norm()) > 1.0


def _params(named_optimizer) -> list[torch.nn.Parameter]:
    _, optimizer = named_optimizer
    return [p for group in optimizer.param_groups for p in group["params"]]


@pytest.mark.ray
def test_training_moves_actor_ft_and_never_the_base(ray_session):
    algo = _bandit_config(train_batch_size=256, minibatch_size=256, num_epochs=1).build_algo()
    try:
        learner = algo.learner_group._learner
        module = learner.module["default_policy"]
        # Both optimizers are torch's fused Adam on CPU (one kernel over all tensors).
        for name in ("actor", "critic"):
            optimizer = learner.get_optimizer("default_policy", name)
            assert isinstance(optimizer, torch.optim.Adam) and optimizer.defaults["fused"]
        base = {k: v.clone() for k, v in module.policy.base.state_dict().items()}
        ft = {k: v.clone() for k, v in module.policy.actor_ft.state_dict().items()}
        stats = algo.train()["learners"]["default_policy"]
        for j in range(5):
            assert 0.0 < stats[f"dppo_ratio_min_k{j}"] <= 1.0 <= stats[f"dppo_ratio_max_k{j}"]
            assert 0.0 <= stats[f"dppo_clip_frac_k{j}"] <= 1.0
        for key, value in module.policy.base.state_dict().items():
            assert torch.equal(value, base[key]), key
        assert any(
            not torch.equal(v, ft[k]) for k, v in module.policy.actor_ft.state_dict().items()
        )
    finally:
        algo.stop()


@pytest.mark.ray
def test_critic_warmup_freezes_the_actor_only_while_it_lasts(ray_session):
    """critic_warmup_steps=256 covers the first 256-step iteration: actor_ft is bit-identical
    after it while the critic moved; the second iteration moves actor_ft."""
    algo = _bandit_config(
        train_batch_size=256, minibatch_size=256, num_epochs=1, critic_warmup_steps=256
    ).build_algo()
    try:
        module = algo.learner_group._learner.module["default_policy"]
        ft = {k: v.clone() for k, v in module.policy.actor_ft.state_dict().items()}
        critic = {k: v.clone() for k, v in module.critic.state_dict().items()}
        stats = algo.train()["learners"]["default_policy"]
        assert stats["dppo_actor_frozen"] == 1.0
        for key, value in module.policy.actor_ft.state_dict().items():
            assert torch.equal(value, ft[key]), key
        assert any(not torch.equal(v, critic[k]) for k, v in module.critic.state_dict().items())
        stats = algo.train()["learners"]["default_policy"]
        assert stats["dppo_actor_frozen"] == 0.0
        assert any(
            not torch.equal(v, ft[k]) for k, v in module.policy.actor_ft.state_dict().items()
        )
    finally:
        algo.stop()


def test_annealed_lr_schedule_values_and_bad_values():
    from agentcomm.policies.ppo_config import annealed_lr, check_lr

    assert annealed_lr(1e-3, 1000, 0.0) == 1e-3
    assert annealed_lr(1e-3, 1000, 0.25) == [[0, 1e-3], [750, 1e-3], [1000, 0.0]]
    assert annealed_lr(1e-3, 1000, 1.0) == [[0, 1e-3], [1000, 0.0]]
    check_lr("lr", annealed_lr(1e-3, 1000, 0.25))
    for bad in (0.0, [], [[5, 1e-3]], [[0, 1e-3], [10, 1e-3], [5, 0.0]], [[0, 0.0]]):
        with pytest.raises(ValueError, match="lr"):
            check_lr("lr", bad)
    with pytest.raises(ValueError, match="fraction"):
        annealed_lr(1e-3, 1000, 1.5)
    with pytest.raises(ValueError, match="lr"):
        dppo_config("any-env", lr=[[1, 1e-3]])
    with pytest.raises(ValueError, match="critic_lr"):
        dppo_config("any-env", critic_lr=-1.0)


def test_sb3_annealed_lr_matches_the_rllib_schedule():
    """SB3's schedule (a function of progress_remaining, 1 -> 0) takes the RLlib schedule's
    values at the same fraction of training."""
    from agentcomm.policies.gaussian_ppo import _AnnealedLr
    from agentcomm.policies.ppo_config import annealed_lr

    sb3 = _AnnealedLr(2e-4, 0.4)
    (_, lr0), (t1, lr1), (t2, lr2) = annealed_lr(2e-4, 1000, 0.4)
    assert (lr0, t1, lr1, t2, lr2) == (2e-4, 600, 2e-4, 1000, 0.0)
    for done in (0.0, 0.3, 0.6, 0.8, 0.9, 1.0):
        rllib = 2e-4 if done <= 0.6 else 2e-4 * (1.0 - done) / 0.4
        assert sb3(1.0 - done) == pytest.approx(rllib, abs=1e-12)
    with pytest.raises(ValueError, match="lr_anneal_fraction"):
        _AnnealedLr(2e-4, 0.0)


@pytest.mark.ray
def test_annealed_lr_drives_the_actor_optimizer_and_keeps_the_start(ray_session):
    """annealed_lr(1e-3, 768, 2/3) over 256-step iterations: RLlib sets the actor's rate after
    each update from the steps sampled so far (1e-3 at 256, 5e-4 at 512, 0 at 768), the
    critic's stays, and the first two updates (both at 1e-3) are bit-identical to a
    constant-rate run's."""
    from agentcomm.policies.ppo_config import annealed_lr

    kw = dict(train_batch_size=256, minibatch_size=256, num_epochs=1, lr=1e-3)
    runs = {}
    for name, lr in (("constant", 1e-3), ("annealed", annealed_lr(1e-3, 768, 2 / 3))):
        algo = _bandit_config(**{**kw, "lr": lr}).build_algo()
        try:
            learner = algo.learner_group._learner
            actor = learner.get_optimizer("default_policy", "actor")
            critic = learner.get_optimizer("default_policy", "critic")
            rates = []
            for _ in range(3 if name == "annealed" else 2):
                algo.train()
                rates.append((actor.param_groups[0]["lr"], critic.param_groups[0]["lr"]))
                if len(rates) == 2:
                    module = learner.module["default_policy"]
                    runs[name] = {
                        k: v.clone() for k, v in module.policy.actor_ft.state_dict().items()
                    }
        finally:
            algo.stop()
        if name == "annealed":
            assert [float(a) for a, _ in rates] == pytest.approx([1e-3, 5e-4, 0.0], abs=1e-12)
            assert [float(c) for _, c in rates] == pytest.approx([1e-2] * 3)
    for key, value in runs["constant"].items():
        assert torch.equal(value, runs["annealed"][key]), key


def test_learner_settings_reject_bad_warmup():
    with pytest.raises(ValueError, match="critic_warmup_steps"):
        dppo_config("any-env", critic_warmup_steps=-1)


@pytest.mark.ray
def test_dppo_improves_target_bandit(ray_session):
    """Seed 0, 10 iterations of 512 one-step episodes, DPPO from random weights: the mean
    return of the last iteration is at least 5 above the first (measured -15.4 -> -4.9)."""
    algo = _bandit_config().build_algo()
    try:
        returns = [algo.train()["env_runners"]["episode_return_mean"] for _ in range(10)]
    finally:
        algo.stop()
    assert returns[-1] > returns[0] + 5.0, returns


@pytest.mark.ray
@pytest.mark.parametrize(
    ("mode", "critic_input"),
    [("shared", "state"), ("per_agent", "state"), ("shared", "obs+state")],
)
def test_multi_agent_with_centralized_critic(ray_session, mode, critic_input):
    register_env("agentcomm-test-two-agent", lambda cfg: TwoAgentBandit(cfg))
    config = dppo_config(
        "agentcomm-test-two-agent",
        policy={**SMALL, "ft_denoising_steps": 2},
        critic_hidden=(16,),
        critic_input=critic_input,
        multi_agent=mode,
        agent_ids=["agent_0", "agent_1"],
        num_envs_per_env_runner=1,
        train_batch_size=64,
        minibatch_size=32,
        num_epochs=1,
    )
    algo = config.build_algo()
    try:
        learners = algo.train()["learners"]
        ids = [SHARED_MODULE_ID] if mode == "shared" else ["agent_0", "agent_1"]
        for mid in ids:
            assert "dppo_ratio_max_k1" in learners[mid]
            module = algo.learner_group._learner.module[mid]
            assert module.critic[0].in_features == (6 if critic_input == "state" else 9)
            assert module.policy.config.obs_dim == 3
        obs = {"obs": torch.zeros(4, 3), "state": torch.zeros(4, 6)}
        module = algo.learner_group._learner.module[ids[0]]
        assert module.forward_inference({Columns.OBS: obs})[Columns.ACTIONS].shape == (4, 2)
    finally:
        algo.stop()


# ---------------------------------------------------------------- likelihood form (no Ray)


def _form_pair(generator, **form):
    """A sum-form DPPO policy and a copy in ``form``, both from one pretrained policy."""
    from agentcomm.policies.diffusion import DPPOPolicy

    pre = DiffusionPolicy(obs_dim=3, action_dim=2, generator=generator, **SMALL)
    return DPPOPolicy.from_pretrained(pre), DPPOPolicy.from_pretrained(pre, **form)


def _per_dim_logprobs(policy, obs, chain):
    """``l_d`` of every fine-tuned step, ``[B, K', D]``, through the public per-step API."""
    kp = policy.config.ft_denoising_steps
    first = policy.num_steps("ddpm") - kp
    out = []
    with torch.no_grad():
        for j in range(kp):
            mean, _, lp_std = policy.step_distribution(obs, chain[:, j], first + j, "ddpm")
            out.append(torch.distributions.Normal(mean, lp_std).log_prob(chain[:, j + 1]))
    return torch.stack(out, dim=1)


def test_default_likelihood_is_the_sum_over_action_dims(generator):
    """Default: each step's log-likelihood is the Gaussian's log-density (the sum of the
    per-dimension ones), set through dppo_config and the TrainConfig alike."""
    from agentcomm.policies.diffusion import DiffusionConfig
    from agentcomm.policies.train import TrainConfig

    cfg = DiffusionConfig(obs_dim=3, action_dim=2)
    assert (cfg.logprob_reduction, cfg.logprob_min, cfg.logprob_max) == ("sum", None, None)
    train = TrainConfig().dppo
    assert (train.logprob_reduction, train.logprob_min, train.logprob_max) == ("sum", None, None)
    spec = dppo_config("any-env", policy=SMALL).rl_module_spec
    assert spec.model_config["policy"] == {
        **SMALL,
        "logprob_reduction": "sum",
        "logprob_min": None,
        "logprob_max": None,
    }
    policy, _ = _form_pair(generator)
    obs = torch.rand(16, 3, generator=generator) * 2 - 1
    out = policy.sample(obs, generator=generator)
    want = _per_dim_logprobs(policy, obs, out.chain).sum(-1)
    torch.testing.assert_close(out.logprob, want)
    # The module built from dppo_config's model_config (default form written out) gives
    # the same bits as one built without the keys.
    plain = _module(seed=2)
    spelled = _module(seed=2, policy=spec.model_config["policy"])
    torch.manual_seed(5)
    a = plain.forward_exploration({Columns.OBS: obs})
    torch.manual_seed(5)
    b = spelled.forward_exploration({Columns.OBS: obs})
    assert torch.equal(a[DPPO_LOGP_STEPS], b[DPPO_LOGP_STEPS])


def test_mean_likelihood_is_the_sum_over_dims_divided_by_their_number(generator):
    summed, meaned = _form_pair(generator, logprob_reduction="mean")
    obs = torch.rand(16, 3, generator=generator) * 2 - 1
    a = summed.sample(obs, generator=torch.Generator().manual_seed(7))
    b = meaned.sample(obs, generator=torch.Generator().manual_seed(7))
    assert torch.equal(a.chain, b.chain) and torch.equal(a.action, b.action)
    d = summed.config.chunk_dim
    torch.testing.assert_close(b.logprob, a.logprob / d)
    torch.testing.assert_close(meaned.chain_logprob(obs, a.chain), a.logprob / d)
    # The ratio of a changed step is the D-th root of the sum form's.
    with torch.no_grad():
        for p in (*summed.actor_ft.parameters(), *meaned.actor_ft.parameters()):
            p.add_(0.01)
    ratio_sum = torch.exp(summed.chain_logprob(obs, a.chain) - a.logprob)
    ratio_mean = torch.exp(meaned.chain_logprob(obs, a.chain) - b.logprob)
    torch.testing.assert_close(ratio_mean, ratio_sum ** (1 / d))


def test_logprob_clamp_applies_per_dimension_before_the_reduction():
    from agentcomm.policies.diffusion import gaussian_logprob

    std = torch.tensor(1.0)
    mean = torch.zeros(1, 2)
    # Dimension 0 far in the tail (l_0 = -50.92), dimension 1 at the mean (l_1 = -0.92).
    x = torch.tensor([[10.0, 0.0]], requires_grad=True)
    c = 0.5 * math.log(2 * math.pi)
    per_dim = torch.tensor([[-50.0 - c, -c]])
    torch.testing.assert_close(gaussian_logprob(x, mean, std, "mean"), per_dim.mean(-1))
    got = gaussian_logprob(x, mean, std, "mean", low=-5.0)
    # Clamped per dimension ([-5, -0.92] -> mean -2.96), not after the mean (-25.92 -> -5).
    torch.testing.assert_close(got, torch.tensor([(-5.0 - c) / 2]))
    got.sum().backward()
    assert x.grad[0, 0] == 0.0 and x.grad[0, 1] == 0.0  # at the mean: zero slope anyway
    x2 = torch.tensor([[10.0, 0.5]], requires_grad=True)
    gaussian_logprob(x2, mean, std, "sum", low=-5.0, high=2.0).sum().backward()
    assert x2.grad[0, 0] == 0.0 and x2.grad[0, 1] == pytest.approx(-0.5)
    # The ceiling: l_d is at most -log(s sqrt(2 pi)) = 1.38 for s = 0.1, cut to 1.0.
    top = gaussian_logprob(torch.zeros(1, 2), mean, torch.tensor(0.1), "sum", high=1.0)
    assert float(top) == pytest.approx(2.0)


def test_policy_clamp_matches_the_per_dimension_formula(generator):
    _, clamped = _form_pair(generator, logprob_reduction="mean", logprob_min=-1.0)
    obs = torch.rand(32, 3, generator=generator) * 2 - 1
    out = clamped.sample(obs, generator=generator)
    per_dim = _per_dim_logprobs(clamped, obs, out.chain)
    assert bool((per_dim < -1.0).any()), "the example must exercise the floor"
    torch.testing.assert_close(out.logprob, per_dim.clamp(min=-1.0).mean(-1))
    torch.testing.assert_close(clamped.chain_logprob(obs, out.chain), out.logprob)


def test_mean_form_reaches_the_learner_through_dppo_config_and_train_config():
    """dppo_config writes the form into the module's policy; the learner's ratios on fresh
    samples are 1 in it; TrainConfig's fields reach dppo_config."""
    from agentcomm.policies.rllib_run import rllib_config
    from agentcomm.policies.train import TrainConfig

    form = {"logprob_reduction": "mean", "logprob_min": -5.0, "logprob_max": 2.0}
    learner = _bandit_config(critic_hidden=(16,), **form).build_learner(env=TargetBandit())
    mid = "default_policy"
    module = learner.module[mid]
    cfg = module.policy.config
    assert (cfg.logprob_reduction, cfg.logprob_min, cfg.logprob_max) == ("mean", -5.0, 2.0)
    advantages = torch.randn(32, generator=torch.Generator().manual_seed(1))
    batch = _sampled_batch(module, advantages, torch.zeros(32))
    learner.compute_loss_for_module(
        module_id=mid,
        config=learner.config.get_config_for_module(mid),
        batch=batch,
        fwd_out=module.forward_train(batch),
    )
    assert float(learner.metrics.peek((mid, "dppo_ratio_max"))) == 1.0
    train = TrainConfig.from_dict(
        {"algo": "dppo", "dppo": {"pretrained": "shipped:searchrescue-bc", **form}}
    )
    rl = rllib_config(train, None)
    assert {k: rl.rl_module_spec.model_config["policy"][k] for k in form} == form


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"logprob_reduction": "median"}, r"logprob_reduction='median' is not allowed"),
        ({"logprob_min": float("nan")}, r"logprob_min=nan"),
        ({"logprob_max": float("inf")}, r"logprob_max=inf is not allowed; expected a finite"),
        ({"logprob_min": "low"}, r"logprob_min='low' is not allowed; expected a finite real"),
        ({"logprob_min": 2.0, "logprob_max": -5.0}, r"logprob_min=2.0 must be below"),
    ],
)
def test_bad_likelihood_form_raises_naming_it(kwargs, match):
    from agentcomm.policies.diffusion import DiffusionConfig

    with pytest.raises(ValueError, match=match):
        DiffusionConfig(obs_dim=3, action_dim=2, **kwargs)
    with pytest.raises(ValueError, match=match):
        dppo_config("any-env", **kwargs)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        (
            {"dppo": {"logprob_reduction": "median"}},
            r"^dppo\.logprob_reduction='median' is not allowed",
        ),
        ({"dppo": {"logprob_min": float("nan")}}, r"^dppo\.logprob_min"),
        (
            {"dppo": {"logprob_min": -1.0, "logprob_max": -2.0}},
            r"^dppo\.logprob_min=-1.0 must be below dppo\.logprob_max",
        ),
        ({"policy": {"logprob_min": -5.0}}, r"policy cannot set \['logprob_min'\]"),
        (
            {"algo": "ppo", "dppo": {"logprob_reduction": "mean"}},
            r"algo='ppo' has a Gaussian policy",
        ),
    ],
)
def test_train_config_rejects_bad_likelihood_form(fields, match):
    from agentcomm.policies.train import TrainConfig

    with pytest.raises(ValueError, match=match):
        TrainConfig.from_dict(fields)


def test_likelihood_form_set_twice_or_badly_elsewhere_raises():
    from agentcomm.policies.diffusion import gaussian_logprob

    with pytest.raises(ValueError, match=r"policy sets \['logprob_reduction'\]"):
        dppo_config("any-env", policy={"logprob_reduction": "mean"})
    with pytest.raises(ValueError, match=r"reduction='max' is not allowed"):
        gaussian_logprob(torch.zeros(2), torch.zeros(2), torch.tensor(1.0), "max")
