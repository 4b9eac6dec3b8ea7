"""Policy-side costs on one CPU thread: diffusion action latency, DPPO vs PPO updates, sampling.

Measured (medians over ``--repeats``; sections 0 and 1 run before Ray starts):

0. Mish on ``[1024, 256]``, forward and forward + backward: torch's kernel against the
   composition ``policies.activations.mish`` that the denoiser and the DPPO critic use.
1. Action latency of a diffusion policy (SearchRescue-v0 observation, residual MLP 3x256,
   and the shipped BC policy, 3x128) at batch 1 and 1024, for DDIM with 5 steps and DDPM with 20 steps
   (``DiffusionPolicy.sample``, stochastic): with the step log-likelihoods a DPPO rollout
   records, and acting only (``with_logprob=False``, keys ending ``_act_ms``).
2. Learner cost per agent-step: the wall time of one iteration's learner update divided by
   the agent-steps it trained on (``experiments/timing.py``), DPPO (``K' = 5`` DDIM steps fine-tuned) vs Gaussian PPO
   (MLP 256x256), same batch sizes and epochs, both on the batched EnvRunner. DPPO three
   times: the default denoiser (3x256, keys ``update_dppo_*``), the shipped BC policy
   (3x128, ``update_dppo_shipped_*``), both with every DDIM step fine-tuned, and what the
   learning-curve experiment runs (the shipped policy, ``K' = 2``, critic on observation +
   state, ``update_dppo_recipe_*``). The cost is arithmetic: each agent-step
   back-propagates through ``K'`` denoiser passes. The four algorithms' iterations are
   interleaved, and each ``*_over_ppo`` ratio is the median of the per-round ratios.
3. Sampling throughput in agent-steps/s of an RLlib runner's ``sample()`` with a Gaussian
   PPO module: the batched EnvRunner on SearchRescue-v0 (``B`` worlds x 4 agents per
   step), RLlib's stock ``MultiAgentEnvRunner`` on the RLlib adapter
   (``CommMultiAgentEnv``, vectorized over ``--stock-envs`` copies), and the stock runner on
   MPE2 ``simple_spread_v3`` (3 agents, continuous actions, via ``ParallelPettingZooEnv``).

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/benchmarks/bench_policy.py --repeats 5

The last line printed is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from agentcomm.experiments.threads import use_one_thread

ENV = "SearchRescue-v0"


def _median_time(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_latency(repeats: int) -> dict[str, float]:
    """Median milliseconds per ``sample`` call, with and without the step log-likelihoods.

    Two networks: the default residual MLP 3x256 (keys ``latency_*``) and the shipped BC
    policy, 3x128 (keys ``shipped_latency_*``).
    """
    import agentcomm
    from agentcomm.policies.checkpoint import load_policy, shipped_policy_dir
    from agentcomm.policies.diffusion import DiffusionPolicy

    obs_dim = agentcomm.make_vec(ENV, num_envs=1).obs_dim
    gen = torch.Generator().manual_seed(0)
    shipped = shipped_policy_dir("searchrescue-bc")
    policies = {
        "": DiffusionPolicy(obs_dim, 6, denoising_steps=20, ddim_steps=5, generator=gen),
        "shipped_": load_policy(shipped),
    }
    out = {}
    for prefix, policy in policies.items():
        policy.eval()
        for batch in (1, 1024):
            obs = torch.rand(batch, obs_dim, generator=gen) * 2 - 1
            for mode, steps in (("ddim", 5), ("ddpm", 20)):
                key = f"{prefix}latency_{mode}{steps}_b{batch}"
                for suffix, with_logprob in (("_ms", True), ("_act_ms", False)):
                    t = _median_time(
                        lambda obs=obs, mode=mode, lp=with_logprob, p=policy: p.sample(
                            obs, generator=gen, mode=mode, with_logprob=lp
                        ),
                        # A batch-1 call takes milliseconds and its median wanders with the
                        # machine's load: take 20x the repeats there.
                        repeats * (20 if batch == 1 else 1),
                    )
                    out[key + suffix] = t * 1e3
                print(
                    f"latency {prefix or 'default_'}{mode.upper()}-{steps} batch {batch}: "
                    f"{out[key + '_ms']:.2f} ms "
                    f"({out[key + '_act_ms']:.2f} ms acting only, no log-probs)",
                    flush=True,
                )
    out |= _matmul_floor(policies["shipped_"], repeats)
    return out


def _matmul_floor(policy, repeats: int) -> dict[str, float]:
    """The shortest time a batch-1,024 DDPM-20 chain of ``policy`` could take on this core:
    its multiply-adds over the rate of one ``[1024, H] x [H, H]`` product (the residual
    blocks' shape), ignoring every other op."""
    net = policy.denoiser
    hidden, da = net.input.out_features, net.action_dim
    # Per row and denoising step: the action columns of the input layer, two H x H products
    # per residual block, the output layer (the observation columns run once per chain).
    macs_per_row_step = da * hidden + 2 * len(net.blocks) * hidden**2 + hidden * da
    steps = policy.num_steps("ddpm")
    chain_macs = steps * 1024 * macs_per_row_step + 1024 * net.obs_dim * hidden
    gen = torch.Generator().manual_seed(0)
    x, w, b = (
        torch.randn(*shape, generator=gen)
        for shape in ((1024, hidden), (hidden, hidden), (1, hidden))
    )
    with torch.inference_mode():
        seconds = _median_time(lambda: torch.addmm(b, x, w), 20 * repeats)
    rate = 1024 * hidden * hidden / seconds
    floor_ms = chain_macs / rate * 1e3
    print(
        f"matmul [1024, {hidden}] x [{hidden}, {hidden}]: {rate / 1e9:.1f} GMAC/s; a batch-1,024 "
        f"DDPM-{steps} chain of the shipped policy is {chain_macs / 1e9:.2f} GMAC, >= {floor_ms:.0f} ms",
        flush=True,
    )
    return {"matmul_gmac_per_s": rate / 1e9, "shipped_ddpm20_b1024_matmul_floor_ms": floor_ms}


def bench_mish(repeats: int) -> dict[str, float]:
    """Microseconds of Mish on ``[1024, 256]``: torch's kernel vs ``policies.activations``.

    Forward (no autograd) and forward + backward; the denoiser and the DPPO critic use the
    latter on CPU tensors this large.
    """
    from torch.nn import functional as F

    from agentcomm.policies.activations import mish

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 256, generator=gen) * 3
    grad = torch.randn(1024, 256, generator=gen)
    out = {}
    for name, fn in (("torch", F.mish), ("agentcomm", mish)):
        xr = x.clone().requires_grad_()
        with torch.no_grad():
            out[f"mish_{name}_fwd_us"] = _median_time(lambda f=fn: f(x), 20 * repeats) * 1e6
        out[f"mish_{name}_fwd_bwd_us"] = (
            _median_time(lambda f=fn, xr=xr: f(xr).backward(grad), 20 * repeats) * 1e6
        )
    for part in ("fwd", "fwd_bwd"):
        out[f"mish_speedup_{part}"] = (
            out[f"mish_torch_{part}_us"] / out[f"mish_agentcomm_{part}_us"]
        )
        print(
            f"mish [1024, 256] {part.replace('_', '+')}: torch {out[f'mish_torch_{part}_us']:.0f} "
            f"us, agentcomm {out[f'mish_agentcomm_{part}_us']:.0f} us "
            f"({out[f'mish_speedup_{part}']:.2f}x)",
            flush=True,
        )
    return out


def _gaussian_ppo(env: str, env_config: dict, batched: bool, num_envs: int, batch: int, **kw):
    from agentcomm.policies.env_runner import BatchedCommEnvRunner
    from agentcomm.policies.gaussian_ppo import gaussian_ppo_config

    config = gaussian_ppo_config(
        env,
        env_config=env_config,
        multi_agent=None if batched else "shared",
        num_envs_per_env_runner=num_envs,
        train_batch_size=batch,
        minibatch_size=min(batch, 1024),
        num_epochs=kw.pop("num_epochs", 1),
        **kw,
    )
    if batched:
        config = config.env_runners(env_runner_cls=BatchedCommEnvRunner)
    return config


def bench_updates(repeats: int, batch: int, num_worlds: int) -> dict[str, float]:
    """Learner seconds per agent-step, DPPO vs Gaussian PPO (median over iterations)."""
    from agentcomm.experiments.recipes.train_search_rescue import FULL as recipe
    from agentcomm.experiments.timing import IterationClock
    from agentcomm.policies.checkpoint import shipped_policy_dir
    from agentcomm.policies.dppo import dppo_config
    from agentcomm.policies.env_runner import BatchedCommEnvRunner

    shipped = shipped_policy_dir("searchrescue-bc")
    dppo_common = dict(
        sampler="ddim",
        num_envs_per_env_runner=num_worlds,
        train_batch_size=batch,
        minibatch_size=min(batch, 1024),
        num_epochs=5,
    )
    configs = {
        # The default architecture (residual MLP 3x256), every DDIM step fine-tuned.
        "dppo": dppo_config(
            f"agentcomm/{ENV}",
            policy={"denoising_steps": 20, "ddim_steps": 5, "ft_denoising_steps": 5},
            **dppo_common,
        ).env_runners(env_runner_cls=BatchedCommEnvRunner),
        # The shipped BC policy (3x128), every DDIM step fine-tuned.
        "dppo_shipped": dppo_config(
            f"agentcomm/{ENV}",
            pretrained=shipped,
            policy={"ft_denoising_steps": 5},
            **dppo_common,
        ).env_runners(env_runner_cls=BatchedCommEnvRunner),
        # What experiments/recipes/train_search_rescue.py fine-tunes (its FULL settings): the
        # shipped BC policy, the last 2 DDIM steps, a critic on observation + global state.
        "dppo_recipe": dppo_config(
            f"agentcomm/{ENV}",
            env_config=recipe["rl"]["env_config"],
            pretrained=shipped,
            policy=recipe["dppo"]["policy"],
            critic_input=recipe["dppo"]["critic_input"],
            **dppo_common,
        ).env_runners(env_runner_cls=BatchedCommEnvRunner),
        "ppo": _gaussian_ppo(f"agentcomm/{ENV}", {}, True, num_worlds, batch, num_epochs=5),
    }
    # All four algorithms are built first and their iterations interleaved (one of each per
    # round), so that every round's ratio compares updates that ran under the same machine
    # load; measured one after the other, the ratio wandered by 40 % on this shared machine.
    # Each update is timed by wrapping the learner group's update call (experiments/
    # timing.py): RLlib's own learner_update_timer is a slow moving average that still
    # reflects the first (warm-up) iteration after several more.
    algos, clocks = {}, {}
    us_per_step: dict[str, list[float]] = {name: [] for name in configs}
    try:
        for name, config in configs.items():
            algos[name] = config.build_algo()
            clocks[name] = IterationClock(algos[name])
            algos[name].train()
        for _ in range(repeats):
            for name, algo in algos.items():
                _, timing = clocks[name].train(algo)
                us_per_step[name].append(timing["update_us_per_agent_step"])
    finally:
        for algo in algos.values():
            algo.stop()
    out = {}
    for name, times in us_per_step.items():
        out[f"update_{name}_us_per_agent_step"] = statistics.median(times)
        print(
            f"learner update {name}: {out[f'update_{name}_us_per_agent_step']:.1f} us per "
            f"agent-step (batch {batch}, 5 epochs)",
            flush=True,
        )
    for name in ("dppo", "dppo_shipped", "dppo_recipe"):
        ratios = [a / b for a, b in zip(us_per_step[name], us_per_step["ppo"])]
        out[f"update_{name}_over_ppo"] = statistics.median(ratios)
        print(
            f"learner update {name} / ppo: median {out[f'update_{name}_over_ppo']:.2f}x of "
            f"{len(ratios)} interleaved rounds (range {min(ratios):.2f}-{max(ratios):.2f}x)",
            flush=True,
        )
    return out


def _sampling_rate(config, steps: int, repeats: int) -> float:
    algo = config.build_algo()
    try:
        runner = algo.env_runner
        t = _median_time(lambda: runner.sample(num_timesteps=steps), repeats)
    finally:
        algo.stop()
    return steps / t


def bench_sampling(repeats: int, num_worlds: int, stock_envs: int, steps: int) -> dict:
    """Agent-steps per second of ``EnvRunner.sample`` (Gaussian PPO module, explore)."""
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv
    from ray.tune.registry import register_env

    from agentcomm.envs.adapters.rllib import register_rllib_envs

    register_rllib_envs()

    def mpe(cfg):
        from mpe2 import simple_spread_v3

        return ParallelPettingZooEnv(
            simple_spread_v3.parallel_env(N=3, continuous_actions=True, max_cycles=25)
        )

    register_env("mpe2-simple-spread", mpe)
    cases = {
        "batched": _gaussian_ppo(f"agentcomm/{ENV}", {}, True, num_worlds, steps),
        "stock_adapter": _gaussian_ppo(f"agentcomm/{ENV}", {}, False, stock_envs, steps),
        "stock_mpe2": _gaussian_ppo("mpe2-simple-spread", {}, False, stock_envs, steps),
    }
    out = {}
    for name, config in cases.items():
        rate = _sampling_rate(config, steps, repeats)
        out[f"sample_{name}_agent_steps_per_s"] = rate
        print(f"sampling {name}: {rate:,.0f} agent-steps/s", flush=True)
    out["batched_over_stock_adapter"] = (
        out["sample_batched_agent_steps_per_s"] / out["sample_stock_adapter_agent_steps_per_s"]
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=4096, help="agent-steps per update")
    parser.add_argument("--worlds", type=int, default=64, help="worlds of the batched runner")
    parser.add_argument("--stock-envs", type=int, default=8, help="envs per stock runner")
    parser.add_argument("--sample-steps", type=int, default=2048, help="agent-steps per sample")
    args = parser.parse_args()
    use_one_thread()

    import ray

    from agentcomm.experiments.execute import init_local_ray

    print(f"torch threads: {torch.get_num_threads()}", flush=True)
    # Mish and the action latency first, before Ray starts: its daemons (GCS, raylet, log
    # monitor) take CPU time in the background, which on this 2-core machine doubled the
    # batch-1 latency (1.7-2.2 ms measured next to them, 0.8-0.9 ms without).
    res = bench_mish(args.repeats)
    res |= bench_latency(args.repeats)
    init_local_ray(2)
    try:
        res |= bench_sampling(args.repeats, args.worlds, args.stock_envs, args.sample_steps)
        res |= bench_updates(args.repeats, args.batch, args.worlds)
    finally:
        ray.shutdown()
    print("RESULT threads=1 " + " ".join(f"{k}={v:.4g}" for k, v in res.items()))


if __name__ == "__main__":
    main()
