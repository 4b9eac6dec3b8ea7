"""Train policies on agentcomm's scenarios: BC, DPPO fine-tuning, Gaussian PPO, SB3 PPO.

One typed config (:class:`TrainConfig`: a common part and one section per group of
algorithms, YAML/JSON via ``--config FILE``, ``--set section.key=VALUE`` overrides) and one
entry point, :func:`train`, with the command line ``agentcomm train``. The parts live in their own
modules: the config in :mod:`~agentcomm.policies.train_config`, the run directory's files
(CSV, plots, checkpoints, ``eval.json``) in :mod:`~agentcomm.policies.run_dir`, and one
module per kind of run, each read top to bottom (:mod:`~agentcomm.policies.bc_run`,
:mod:`~agentcomm.policies.rllib_run`, :mod:`~agentcomm.policies.sb3_run`):

* ``bc``: collect expert demonstrations in the batched world (every agent-step of ``B``
  worlds), fit a :class:`~agentcomm.policies.diffusion.DiffusionPolicy` with the DDPM loss
  (:func:`~agentcomm.policies.bc.train_bc`), save it with ``save_policy``.
* ``dppo``: RLlib PPO with the DPPO module and learner (:func:`~agentcomm.policies.dppo.
  dppo_config`), starting from a BC checkpoint (``dppo.pretrained``; without one a BC stage
  runs first into ``OUT/bc``, with the ``bc`` section). Exports the frozen base + fine-tuned copy.
* ``ppo``: RLlib PPO with a Gaussian MLP from scratch (:mod:`~agentcomm.policies.gaussian_ppo`).
* ``sb3-ppo``: stable-baselines3 PPO with parameter sharing.

Multi-agent: ``rllib.multi_agent="shared"`` (one policy for all agents; the default) runs
on the batched EnvRunner (:mod:`~agentcomm.policies.env_runner`) unless
``rllib.runner="stock"``; ``"per_agent"`` needs the stock ``MultiAgentEnvRunner`` on the
RLlib adapter. ``dppo.critic_input="state"`` gives the DPPO critic the global state (CTDE),
``"obs+state"`` both (needed with per-agent reward shares, ``env_config={"team_reward_weight": w < 1}``).

Output directory (``out``)::

    train_config.yaml     the full config (``--resume OUT`` reads it back)
    progress.csv          one row per iteration (RLlib algos) / epoch (bc: bc_loss.csv)
    tb/                   TensorBoard scalars (tensorboardX)
    rllib/iter_NNNNN/     RLlib checkpoint after iteration NNNNN (last two kept), with
                          the worlds and generators a bit-exact resume needs
                          (:mod:`~agentcomm.policies.resume_state`)
    rllib/LATEST.json     {"iteration": i, "path": "iter_..."}: the last *complete* one
    sb3/                  sb3-ppo: SB3's progress.csv and model.zip (saved after every
                          rollout's update, written beside and renamed; ``--resume``)
    policy/               exported policy (safetensors + config.json), per agent for
                          per-agent policies: policy/agent_0/, ...
    eval.json             deterministic evaluation of the exported policy (on the
                          ``eval_split`` worlds of seed index ``seed``)

A checkpoint is written to its own directory and only then named in ``LATEST.json``
(atomic rename), so a ``kill -9`` at any moment loses at most the iteration in progress.

What a resume reproduces. ``dppo`` and ``ppo`` on the batched runner: a run killed after
iteration ``k`` and resumed writes the uninterrupted run's ``progress.csv`` rows (all but
the wall-clock ``seconds``) and final weights bit for bit, on the same machine and device
(:mod:`~agentcomm.policies.resume_state` says what is saved, and the cases it does not
cover: ``rllib.runner="stock"``, remote learners). ``sb3-ppo``: SB3's ``model.zip`` holds the
policy, optimizer and step count, not the worlds or the generators; a resumed run starts
fresh episodes from worlds seeded with ``seed`` plus the steps done, so it continues
the run without repeating the uninterrupted one's samples.

A run directory is trusted input: resuming unpickles RLlib's checkpoint files, the resume
state beside them and SB3's ``model.zip``. Resume only runs you or a trusted party wrote.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import torch

from agentcomm.config import load_yaml
from agentcomm.policies import bc_run, rllib_run, run_dir, sb3_run
from agentcomm.policies.run_dir import TrainResult
from agentcomm.policies.train_config import ALGOS, TrainConfig

__all__ = ["TrainConfig", "TrainResult", "add_arguments", "main", "train"]


# ---------------------------------------------------------------------- entry point
def train(config: TrainConfig, resume: bool = False) -> TrainResult:
    """Run one training job (see the module docstring for the output layout).

    Args:
        config: The run's configuration.
        resume: Continue from ``config.out``'s latest complete checkpoint: RLlib's
            (``dppo``, ``ppo``) or SB3's ``sb3/model.zip`` (``sb3-ppo``).

    Returns:
        ``TrainResult``.
    """
    if resume and config.algo == "bc":
        raise ValueError("resume is supported for algo 'dppo', 'ppo' and 'sb3-ppo', not 'bc'")
    out = Path(config.out)
    if resume:
        run_dir.check_resume(config, out)  # before train_config.yaml is rewritten
    out.mkdir(parents=True, exist_ok=True)
    config.save(out / "train_config.yaml")
    torch.manual_seed(config.seed)
    if config.algo == "bc":
        return bc_run.train_bc_run(config, out)
    if config.algo == "sb3-ppo":
        return sb3_run.train_sb3_run(config, out, resume)
    return rllib_run.train_rllib_run(config, out, resume, _pretrained_policy(config, out))


def _pretrained_policy(config: TrainConfig, out: Path) -> str | None:
    """The BC policy a ``dppo`` run starts from, as an absolute directory: ``dppo.pretrained``,
    or, without one, a BC stage trained first into ``OUT/bc`` (reused when it is there)."""
    if config.algo != "dppo":
        return None
    pretrained = config.dppo.pretrained
    if pretrained is None:
        bc_out = out / "bc"
        if not (bc_out / "policy" / "config.json").is_file():
            bc_cfg = config.replace(algo="bc", out=str(bc_out), eval_episodes=0)
            bc_out.mkdir(parents=True, exist_ok=True)
            bc_cfg.save(bc_out / "train_config.yaml")
            bc_run.train_bc_run(bc_cfg, bc_out)
        pretrained = str(bc_out / "policy")
    from agentcomm.policies.checkpoint import policy_path

    return os.path.abspath(policy_path(pretrained))


# ---------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``agentcomm train``: ``--config FILE`` plus overrides of its keys."""
    parser.add_argument("--config", default=None, help="YAML/JSON TrainConfig file")
    parser.add_argument(
        "--resume",
        default=None,
        metavar="DIR",
        help="continue the run in DIR from its latest complete checkpoint (reads "
        "DIR/train_config.yaml; --iterations may extend it)",
    )
    parser.add_argument("--algo", choices=ALGOS, default=None)
    parser.add_argument("--env", default=None, help="scenario id")
    parser.add_argument("--out", default=None, help="output directory")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--device", choices=("cpu", "cuda", "auto"), default=None)
    parser.add_argument(
        "--iterations", type=int, default=None, help="ppo.iterations (RL algorithms)"
    )
    parser.add_argument(
        "--pretrained",
        default=None,
        help="dppo.pretrained: BC policy directory or shipped:NAME",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override any TrainConfig key, a section's by its dotted path; VALUE is parsed "
        "as YAML (repeatable), e.g. --set bc.epochs=20 --set dppo.critic_lr=1e-3 "
        "--set env_config.comm.budget=16",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress output")


def main(args: argparse.Namespace) -> int:
    """Run ``agentcomm train``."""
    if args.resume is not None:
        recorded = Path(args.resume) / "train_config.yaml"
        if args.config is not None:
            raise ValueError(
                f"--config and --resume exclude each other: a resumed run reads its own {recorded}"
            )
        if args.out is not None and Path(args.out) != Path(args.resume):
            raise ValueError(
                f"--out={args.out!r} conflicts with --resume={args.resume!r}: a run resumes "
                "in its own directory"
            )
        if not recorded.is_file():
            raise ValueError(
                f"--resume={args.resume!r}: {recorded} does not exist; pass the output "
                "directory of the run to resume"
            )
        base = TrainConfig.load(recorded)
    elif args.config is not None:
        base = TrainConfig.load(args.config)
    else:
        base = TrainConfig()
    changes: dict[str, Any] = {}
    for name, key in _FLAGS.items():
        value = getattr(args, name)
        if value is not None:
            _set_dotted(changes, key, value, f"--{name}")
    for item in args.set:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {item!r} must look like KEY=VALUE")
        _set_dotted(changes, key.strip(), load_yaml(raw), f"--set {item!r}")
    if args.quiet:
        changes["progress"] = False
    if args.resume is not None:
        changes["out"] = args.resume
    config = base.replace(**changes) if changes else base
    result = train(config, resume=args.resume is not None)
    print(f"policy: {result.policy_dir}")
    return 0


#: Command-line flags -> the TrainConfig key each sets.
_FLAGS = {
    "algo": "algo",
    "env": "env",
    "out": "out",
    "seed": "seed",
    "device": "device",
    "iterations": "ppo.iterations",
    "pretrained": "dppo.pretrained",
}


def _set_dotted(changes: dict[str, Any], key: str, value: Any, source: str) -> None:
    """Set ``changes[a][b]... = value`` for the dotted ``key`` ``"a.b..."``; a key given
    twice (or inside one given as a whole) raises ``ValueError`` naming ``source``."""
    *parents, leaf = key.split(".")
    node = changes
    for i, part in enumerate(parents):
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ValueError(f"{source}: {'.'.join(parents[: i + 1])} is already set as a whole")
    if leaf in node:
        raise ValueError(f"{source}: {key} is already set")
    node[leaf] = value
