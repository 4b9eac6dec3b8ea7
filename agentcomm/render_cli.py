"""``agentcomm render``: play one episode and write it as an animated GIF.

    agentcomm render --env SearchRescue-v0 --out episode.gif --policy expert --seed 0

Frames come from :func:`agentcomm.envs.render.render_frame` (one before the first step,
then one per step); the episode stops when it ends or after ``--steps`` steps.
Heavy imports (torch, the environments, imageio) happen inside :func:`main`, so
``agentcomm --help`` stays fast.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_arguments", "main", "record_episode"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--env", required=True, help="environment id (agentcomm.list_envs())")
    parser.add_argument("--out", required=True, type=Path, help="output file, must end in .gif")
    parser.add_argument(
        "--steps", type=int, default=None, help="most steps to play (default: the episode length)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the world's generator")
    parser.add_argument(
        "--policy",
        choices=("expert", "random"),
        default="expert",
        help="the scenario's scripted expert, or uniform random actions",
    )
    parser.add_argument("--size", type=int, default=400, help="frame side in pixels")
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second of the GIF")
    parser.add_argument(
        "--agent",
        type=int,
        default=None,
        help="draw this agent's belief (default: the team mean)",
    )


def record_episode(
    env_id: str,
    steps: int | None = None,
    seed: int = 0,
    policy: str = "expert",
    size: int = 400,
    agent: int | None = None,
):
    """Play one episode of one world and return its frames and outcome.

    Args:
        env_id: a registered id.
        steps: most steps to play; ``None`` plays until the episode ends.
        seed: seeds the world's generator (and the random policy's).
        policy: ``"expert"`` (:func:`agentcomm.envs.experts.expert_actions`) or
            ``"random"`` (uniform in ``[-1, 1]``).
        size: frame side in pixels.
        agent: whose belief to draw; ``None`` the team mean.
    Returns:
        ``(frames, team_return, success)``: a list of uint8 ``[size, size, 3]`` frames
        (``steps + 1`` of them at most), the summed team reward and whether the last step
        reported success.
    """
    import torch

    from agentcomm._checks import check_choice
    from agentcomm.envs import make_vec
    from agentcomm.envs.experts import expert_actions, random_actions
    from agentcomm.envs.render import render_frame

    check_choice("policy", policy, ("expert", "random"))
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"steps={steps!r} is not allowed; expected None or an int >= 1")
    world = make_vec(env_id, num_envs=1, seed=seed)
    world.reset()
    gen = torch.Generator().manual_seed(seed)
    frames = [render_frame(world, 0, size=size, agent=agent)]
    total, success = 0.0, False
    limit = world.config.max_steps if steps is None else steps
    for _ in range(limit):
        if policy == "expert":
            actions = expert_actions(world)
        else:
            actions = random_actions(world, gen)
        _, rew, term, trunc, info = world.step(actions)
        frames.append(render_frame(world, 0, size=size, agent=agent))
        total += float(rew[0, 0])
        success = bool(info["success"][0])
        if bool(term[0] | trunc[0]):
            break
    return frames, total, success


def main(args: argparse.Namespace) -> int:
    import imageio.v3 as iio
    import numpy as np

    out: Path = args.out
    if out.suffix.lower() != ".gif":
        raise ValueError(f"--out={str(out)!r} must end in .gif")
    if args.fps <= 0:
        raise ValueError(f"--fps={args.fps} must be > 0")
    frames, total, success = record_episode(
        args.env, args.steps, args.seed, args.policy, args.size, args.agent
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    # Pillow's GIF writer takes the frame duration in milliseconds; loop=0 repeats forever.
    iio.imwrite(out, np.stack(frames), duration=1000.0 / args.fps, loop=0)
    print(
        f"wrote {out}: {len(frames)} frames, {len(frames) - 1} steps, "
        f"team return {total:.3f}, success {success}"
    )
    return 0
