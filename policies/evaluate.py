"""Evaluate a policy in the batched world: success rate, return, channel uses.

Shape legend: ``B`` worlds, ``N`` agents, ``Do`` observation dim, ``Da = 6`` action dim.

An *actor* maps the world and its observations ``[B, N, Do]`` to actions ``[B, N, Da]``.
:func:`load_actor` builds one from

* ``"expert"`` / ``"random"``: the scenario's scripted expert, uniform random actions;
* ``"oracle"``: the expert deciding on the true state (a reference, not a policy:
  :func:`~agentcomm.envs.experts.oracle_actions`);
* a policy directory: a diffusion policy (``save_policy``: BC or a DPPO export) or an
  exported Gaussian policy (``save_gaussian_actor``); ``"shipped:NAME"`` names one shipped
  with the package (``agentcomm/models/policies/NAME``);
* a training run directory (``agentcomm train --out DIR``): its exported ``policy/``,
  one sub-directory per agent for per-agent policies.

Learned policies act deterministically by default: a diffusion policy runs its chain from
the fixed initial noise without step noise, a Gaussian policy takes its mean. With
``stochastic=True`` (``--stochastic``) they act as they did while training: a diffusion
policy samples its chain (``DiffusionPolicy.sample``; with ``exploration="around_eval"``,
the deterministic chain with the fine-tuned steps' noise), a Gaussian policy draws from its
distribution; the draws come from the evaluation's generator (seeded by ``--seed``). Either
may be the better policy: a Gaussian PPO policy often relies on its noise, and a
diffusion policy's deterministic chain is what DPPO's ``around_eval`` fine-tunes.

This is the one evaluation of the project: ``agentcomm eval``, the main job
(``agentcomm run`` and ``agentcomm sweep``, through :mod:`agentcomm.experiments.metrics`),
the training runs' final evaluation and the training and shipped-model scripts call
:func:`evaluate` with an actor from :func:`load_actor`, so their figures share one
definition of each quantity:

* an *episode* is the first episode of one world: every world runs exactly one episode per
  round (worlds that finish early are reset and stepped on, but their further episodes are
  not counted), so short episodes are not over-represented;
* *success* is the world's ``info["success"]`` on the step its episode ends (terminated or
  truncated): a task solved and then lost again (a track dropped) is not a success;
* the *return* is the sum over the episode of the agents' mean reward (the team reward for
  any credit mix);
* *per agent per step* quantities (channel uses, bits, delivered bits, capacity, messages,
  belief error) are totals over the counted steps of every episode divided by the counted
  agent-steps (episodes' lengths summed, times ``N``), so a long episode weighs by its steps.

Worlds come from a world-seed *split* (:mod:`agentcomm.worlds`): ``"selection"`` for
anything whose result chooses a setting or a checkpoint, ``"evaluation"`` (the default)
for final figures only. ``seed`` is an index into the split, not a world seed: round ``r``
of seed ``s`` resets with ``world_seed(split, s, r)``, so different seeds never share a
world and the two splits never do.

Command line::

    agentcomm eval --checkpoint runs/bc --env SearchRescue-v0 --episodes 64
    agentcomm eval --checkpoint expert --env SearchRescue-v0 --episodes 64
    agentcomm eval --checkpoint runs/dppo --split selection --seed 2
"""

from __future__ import annotations

import argparse
import json
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from agentcomm._checks import check_choice, check_range
from agentcomm.worlds import world_seed

__all__ = [
    "EvalResult",
    "add_arguments",
    "checkpoint_env",
    "evaluate",
    "load_actor",
    "main",
    "policy_actor",
]

Actor = Callable[[Any, torch.Tensor], torch.Tensor]


@dataclass
class EvalResult:
    """Outcome of :func:`evaluate` (per world episode unless stated).

    Attributes:
        episodes: Episodes evaluated (``n``).
        success_rate: Fraction that succeeded (success on the step the episode ended).
        success_stderr: Binomial standard error ``sqrt(p (1 - p) / episodes)``.
        return_mean, return_std: Return: the sum over the episode of the agents' mean reward.
        length_mean: Steps per episode.
        channel_uses_per_agent_step: Complex channel uses per agent per step: peer messages,
            uplinks and the fusion centre's downlinks (the world's ``channel_uses``).
        bits_per_agent_step: Information bits per agent per step, over the same messages
            (an analog message's: the capacity of the uses it spent).
        successes: Episodes that succeeded (``success_rate * episodes``, exactly).
        bits_delivered_per_agent_step: Of ``bits_per_agent_step``, the bits of the messages
            that arrived.
        capacity_bits_per_agent_step: Channel uses spent x ``log2(1 + SNR)`` of their links:
            the Shannon bound on ``bits_delivered_per_agent_step``.
        messages_sent_per_agent_step, messages_delivered_per_agent_step: Messages per agent
            per step, sent and arrived.
        belief_error: The world's ``belief_error`` averaged over agent-steps.
        fc_channel_uses_per_step: The fusion centre's downlink channel uses per world step.
        peer_snr_db: Mean agent-to-agent link SNR over pairs and counted steps, dB.
        fc_snr_db: Mean agent-to-fusion-centre link SNR over agents and counted steps, dB.
    """

    episodes: int
    success_rate: float
    success_stderr: float
    return_mean: float
    return_std: float
    length_mean: float
    channel_uses_per_agent_step: float
    bits_per_agent_step: float
    successes: int = 0
    bits_delivered_per_agent_step: float = 0.0
    capacity_bits_per_agent_step: float = 0.0
    messages_sent_per_agent_step: float = 0.0
    messages_delivered_per_agent_step: float = 0.0
    belief_error: float = 0.0
    fc_channel_uses_per_step: float = 0.0
    peer_snr_db: float = 0.0
    fc_snr_db: float = 0.0


#: ``info`` keys summed over agents and counted steps, divided by the counted agent-steps.
_PER_AGENT_STEP = (
    ("channel_uses", "channel_uses_per_agent_step"),
    ("bits", "bits_per_agent_step"),
    ("bits_delivered", "bits_delivered_per_agent_step"),
    ("capacity_bits", "capacity_bits_per_agent_step"),
    ("messages_sent", "messages_sent_per_agent_step"),
    ("messages_delivered", "messages_delivered_per_agent_step"),
    ("belief_error", "belief_error"),
)


def policy_actor(
    policy: torch.nn.Module,
    sampler: Literal["ddpm", "ddim"] = "ddim",
    stochastic: bool = False,
    generator: torch.Generator | None = None,
) -> Actor:
    """Actor from a diffusion policy or a ``GaussianActor``.

    Args:
        policy: ``DiffusionPolicy``, ``DPPOPolicy`` or ``GaussianActor``.
        sampler: Chain of a diffusion policy: ``"ddpm"`` (``K`` steps) or ``"ddim"``.
        stochastic: Sample actions (the training-time policy) instead of the deterministic
            chain / the mean action.
        generator: CPU generator of the stochastic draws (``None``: torch's global one).
    """
    from agentcomm.policies.diffusion import _DiffusionSampler

    check_choice("sampler", sampler, ("ddpm", "ddim"))
    if not isinstance(stochastic, bool):
        raise ValueError(f"stochastic={stochastic!r} must be a bool")

    def act(world: Any, obs: torch.Tensor) -> torch.Tensor:
        b, n, _ = obs.shape
        flat = obs.reshape(b * n, -1).to(next(policy.parameters()).device)
        if isinstance(policy, _DiffusionSampler):
            # A CUDA policy draws its noise on its device: the CPU generator then only
            # seeds the deterministic path (which draws nothing).
            gen = generator if flat.device.type == "cpu" else None
            actions = policy.sample(
                flat,
                generator=gen,
                deterministic=not stochastic,
                mode=sampler,
                with_logprob=False,
            ).action
        elif stochastic:
            actions = policy.sample(flat, generator)
        else:
            actions = policy(flat)
        return actions.reshape(b, n, -1).to(world.device)

    return act


def _per_agent_actor(actors: list[Actor]) -> Actor:
    def act(world: Any, obs: torch.Tensor) -> torch.Tensor:
        # One module per agent: a loop over N modules, each on its [B] slice.
        return torch.cat([a(world, obs[:, i : i + 1]) for i, a in enumerate(actors)], dim=1)

    return act


def _load_policy_dir(
    path: Path, device: str, sampler: str | None, stochastic: bool, generator: Any
) -> tuple[Actor, dict]:
    from agentcomm._integrity import read_json_file
    from agentcomm.policies.checkpoint import load_policy, read_config
    from agentcomm.policies.gaussian_ppo import load_gaussian_actor

    meta = read_json_file(path / "config.json", "policy config")
    if str(meta.get("kind", "")).startswith("gaussian-"):
        actor = load_gaussian_actor(path).to(device)
        return policy_actor(actor, stochastic=stochastic, generator=generator), dict(
            meta.get("metadata", {})
        )
    info = read_config(path)
    metadata = dict(info.get("metadata", {}))
    mode = sampler or metadata.get("sampler", "ddim")
    policy = load_policy(path).to(device)
    return policy_actor(policy, mode, stochastic, generator), metadata


def load_actor(
    checkpoint: str | os.PathLike,
    device: str = "cpu",
    sampler: Literal["ddpm", "ddim"] | None = None,
    generator: torch.Generator | None = None,
    stochastic: bool = False,
) -> tuple[Actor, dict[str, Any]]:
    """Build an actor from a name or a directory (see the module docstring).

    Args:
        checkpoint: ``"expert"``, ``"random"``, ``"shipped:NAME"`` (a policy shipped with the
            package), a policy directory or a run directory.
        device: Device of the policy network.
        sampler: Override of a diffusion policy's sampler (default: the one it was
            trained / fine-tuned with, recorded in its metadata; else ``"ddim"``).
        generator: Source of the random actor's noise and of a stochastic policy's draws.
        stochastic: Learned policies sample their actions (see the module docstring);
            the expert and the random actor ignore it.

    Returns:
        ``(actor, metadata)``; the metadata holds ``env_id`` and ``env_config`` when the
        checkpoint recorded them (empty for the named actors).
    """
    from agentcomm.envs.experts import expert_actions, oracle_actions, random_actions

    if sampler is not None:
        check_choice("sampler", sampler, ("ddpm", "ddim"))
    if str(checkpoint) == "expert":
        return (lambda world, obs: expert_actions(world)), {}
    if str(checkpoint) == "oracle":
        return (lambda world, obs: oracle_actions(world)), {}
    if str(checkpoint) == "random":
        return (lambda world, obs: random_actions(world, generator)), {}
    from agentcomm.policies.checkpoint import policy_path

    path = policy_path(checkpoint)
    if (path / "config.json").is_file():
        return _load_policy_dir(path, device, sampler, stochastic, generator)
    agents = sorted(
        (p for p in path.glob("agent_*") if (p / "config.json").is_file()),
        key=lambda p: int(p.name.split("_")[-1]),
    )
    if not agents:
        raise ValueError(
            f"checkpoint={str(checkpoint)!r} is neither 'expert', 'oracle', 'random', a policy "
            "directory (config.json) nor a training run directory (train_config.yaml)"
        )
    loaded = [_load_policy_dir(p, device, sampler, stochastic, generator) for p in agents]
    return _per_agent_actor([a for a, _ in loaded]), loaded[0][1]


def checkpoint_env(metadata: Mapping[str, Any]) -> tuple[str | None, dict[str, Any]]:
    """``(env_id, env_config)`` a checkpoint was trained on (``None``/``{}`` if unknown)."""
    return metadata.get("env_id"), dict(metadata.get("env_config") or {})


@torch.no_grad()
def evaluate(
    actor: Actor,
    env_id: str,
    episodes: int,
    num_envs: int = 64,
    seed: int = 0,
    env_config: Mapping[str, Any] | None = None,
    device: str = "cpu",
    progress: bool = False,
    split: Literal["selection", "evaluation"] = "evaluation",
) -> EvalResult:
    """Run ``actor`` for ``episodes`` world episodes and summarise them.

    Args:
        actor: ``(world, obs [B, N, Do]) -> actions [B, N, 6]``.
        env_id: Scenario id.
        episodes: World episodes to evaluate, >= 1.
        num_envs: Worlds per round (``min(num_envs, episodes)`` are used).
        seed: Seed index into ``split``, in ``[0, agentcomm.worlds.MAX_SEED)``; round ``r``
            resets with ``agentcomm.worlds.world_seed(split, seed, r)``.
        env_config: Scenario overrides.
        device: World device.
        progress: tqdm bar over rounds.
        split: World-seed split: ``"selection"`` (tuning, checkpoint choice) or
            ``"evaluation"`` (final figures). Training worlds are not offered.

    Returns:
        ``EvalResult``.
    """
    from tqdm.auto import tqdm

    import agentcomm

    check_choice("split", split, ("selection", "evaluation"))
    check_range("episodes", episodes, 1)
    check_range("num_envs", num_envs, 1)
    b = min(num_envs, episodes)
    rounds = math.ceil(episodes / b)
    # Every round's world seed, checked (seed, rounds) before any world is built.
    seeds = [world_seed(split, seed, r) for r in range(rounds)]
    world = agentcomm.make_vec(env_id, num_envs=b, device=device, **dict(env_config or {}))
    dev, n = world.device, world.num_agents
    off_diagonal = ~torch.eye(n, dtype=torch.bool, device=dev)
    keys = [k for k, _ in _PER_AGENT_STEP]
    # Per world: its return, length, success, and (columns) the per-agent sums of ``keys``,
    # the fusion centre's downlink uses, the mean peer and fusion-centre link SNR (dB).
    returns, lengths, successes, sums = [], [], [], []
    for r in tqdm(range(rounds), desc=f"eval {env_id}", disable=not progress):
        obs = world.reset(seed=seeds[r])
        counting = torch.ones(b, dtype=torch.bool, device=dev)
        ret = torch.zeros(b, dtype=torch.float64, device=dev)
        length = torch.zeros(b, dtype=torch.long, device=dev)
        success = torch.zeros(b, dtype=torch.bool, device=dev)
        total = torch.zeros(b, len(keys) + 3, dtype=torch.float64, device=dev)
        while bool(counting.any()):
            obs, reward, terminated, truncated, info = world.step(actor(world, obs))
            step = torch.stack(
                [info[k].double().sum(1) for k in keys]
                + [
                    info["fc_channel_uses"].double(),
                    world.peer_snr[:, off_diagonal].double().mean(1),
                    world.fc_snr.double().mean(1),
                ],
                dim=1,
            )
            ret += torch.where(counting, reward.double().mean(1), 0.0)
            length += counting.long()
            total += torch.where(counting.unsqueeze(1), step, 0.0)
            done = terminated | truncated
            success |= counting & done & info["success"]
            counting &= ~done
            if bool(done.any()):
                world.reset_at(done)
                obs = world.observation()
        take = min(b, episodes - r * b)
        for out, value in zip((returns, lengths, successes, sums), (ret, length, success, total)):
            out.append(value[:take].cpu())
    ret_t, len_t = torch.cat(returns), torch.cat(lengths).double()
    ok = torch.cat(successes)
    count = int(ok.sum())
    m = int(ret_t.numel())
    p = count / m
    steps = float(len_t.sum())
    totals = torch.cat(sums).sum(0).tolist()
    per_agent_step = {name: totals[i] / (steps * n) for i, (_, name) in enumerate(_PER_AGENT_STEP)}
    fc_uses, peer_snr, fc_snr = totals[len(keys) :]
    result = EvalResult(
        episodes=m,
        success_rate=p,
        success_stderr=math.sqrt(p * (1 - p) / m),
        return_mean=float(ret_t.mean()),
        return_std=float(ret_t.std()) if m > 1 else 0.0,
        length_mean=float(len_t.mean()),
        successes=count,
        fc_channel_uses_per_step=fc_uses / steps,
        peer_snr_db=peer_snr / steps,
        fc_snr_db=fc_snr / steps,
        **per_agent_step,
    )
    for key, value in asdict(result).items():
        if not math.isfinite(value):
            raise RuntimeError(f"evaluation of {env_id} produced a non-finite {key}={value}")
    return result


# ---------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``agentcomm eval``."""
    parser.add_argument(
        "--checkpoint",
        required=True,
        help="policy directory, training run directory, or 'expert' / 'random'",
    )
    parser.add_argument("--env", default=None, help="scenario id (default: the checkpoint's)")
    parser.add_argument("--episodes", type=int, default=64, help="world episodes (default 64)")
    parser.add_argument(
        "--num-envs",
        type=int,
        default=None,
        help="parallel worlds per round (default: all --episodes in one round, the worlds "
        "the main job evaluates for the same --seed)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed index into --split (default 0): its worlds, and the stochastic draws",
    )
    parser.add_argument(
        "--split",
        choices=("selection", "evaluation"),
        default="evaluation",
        help="world-seed split: selection (tuning, checkpoint choice) or evaluation "
        "(final figures; default); see agentcomm.worlds",
    )
    parser.add_argument(
        "--env-config",
        default=None,
        help="JSON of scenario overrides, merged over the checkpoint's own env_config",
    )
    parser.add_argument("--device", default="cpu", help="device of the world and the policy")
    parser.add_argument(
        "--sampler", choices=("ddpm", "ddim"), default=None, help="diffusion sampler override"
    )
    parser.add_argument(
        "--stochastic",
        action="store_true",
        help="learned policies sample their actions as in training (default: deterministic "
        "chain / mean action); draws seeded by --seed",
    )
    parser.add_argument("--json", default=None, help="also write the result to this JSON file")


def main(args: argparse.Namespace) -> int:
    """Run ``agentcomm eval``; prints one line per metric."""
    from agentcomm.config import atomic_write_text

    generator = torch.Generator().manual_seed(args.seed)
    actor, meta = load_actor(
        args.checkpoint, args.device, args.sampler, generator, stochastic=args.stochastic
    )
    env_id, env_config = checkpoint_env(meta)
    env_id = args.env or env_id
    if env_id is None:
        raise ValueError(f"--env is required: checkpoint {args.checkpoint!r} records no env id")
    if args.env_config:
        extra = json.loads(args.env_config)
        if not isinstance(extra, dict):
            raise ValueError(f"--env-config={args.env_config!r} must be a JSON object")
        env_config = {**env_config, **extra}
    result = evaluate(
        actor,
        env_id,
        args.episodes,
        num_envs=args.episodes if args.num_envs is None else args.num_envs,
        seed=args.seed,
        env_config=env_config,
        device=args.device,
        split=args.split,
    )
    mode = "stochastic" if args.stochastic else "deterministic"
    print(
        f"policy: {args.checkpoint}  env: {env_id}  episodes: {result.episodes}  ({mode})  "
        f"worlds: {args.split} seed {args.seed}"
    )
    print(
        f"success_rate: {result.success_rate:.3f} +- {result.success_stderr:.3f}  "
        f"({result.successes} of {result.episodes} episodes)"
    )
    print(f"return: {result.return_mean:.3f} +- {result.return_std:.3f}")
    print(f"episode_length: {result.length_mean:.2f}")
    print(f"channel_uses_per_agent_step: {result.channel_uses_per_agent_step:.3f}")
    print(f"bits_per_agent_step: {result.bits_per_agent_step:.3f}")
    if args.json:
        atomic_write_text(args.json, json.dumps(asdict(result), indent=2))
    return 0
