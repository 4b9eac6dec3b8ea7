"""The uplink share a policy conditioned on its channel chooses in hybrid mode, against the
link SNR to the fusion centre.

    python experiments/plot_uplink_share.py          # runs/conditioned/searchrescue-hybrid-dppo
    python experiments/plot_uplink_share.py --policy runs/conditioned/searchrescue-hybrid-bc
    python experiments/plot_uplink_share.py --quick  # few episodes

In ``hybrid`` mode each agent splits the channel uses it spends between its uplink to the
fusion centre and its peer links: action component 5, the uplink share ``(a5 + 1) / 2``
(``agentcomm.envs.actions``; the scripted expert always sends half, ``a5 = 0``). The policy
(``--policy``, trained with ``comm.mode: hybrid``, e.g.
``experiments/recipes/configs/conditioned_searchrescue_hybrid_*.yaml``) runs on its own
training config, whose budget cap and transmit power are drawn per episode, so the
fusion-centre SNR spreads, on ``--episodes`` worlds of the ``evaluation`` split. Every
agent-step of a counted episode (the first episode of each world, as
:func:`agentcomm.policies.evaluate.evaluate` counts them) in which the agent spends at least
one channel use (``floor((a4 + 1) / 2 * cap) >= 1``) gives one pair: the agent's
fusion-centre link SNR in dB when it chose the action, and its uplink share.

Written to ``--out``: ``uplink_share.csv`` (per SNR bin: its range, the pairs, the mean share
and its standard error) and ``uplink_share.png`` (the binned means with +-1.96 standard
errors, the expert's 0.5 for reference). Then success at one budget (``--budget``) and the
three modes, each with its 95 % Wilson interval on ``--episodes`` worlds: the hybrid policy
in hybrid mode, the shipped policy conditioned on its channel (trained distributed,
``--reference``) in distributed and centralized mode, and the expert in all three, every one
through :func:`~agentcomm.experiments.eval_learned_comm.point_config` (the policies) or the
plain point (the expert), so all run on the same worlds.

The last line is ``RESULT`` with ``share_snr_corr`` (Pearson correlation of share and SNR
over the pairs; ``nan`` when the share never varies), ``share_mean``, ``share_std``,
``share_slope_per_10db`` (least-squares slope), ``pairs``, and per policy and mode
``success_<who>_<mode>`` with ``_low``/``_high``.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

__all__ = ["main", "share_pairs"]

DEFAULT_POLICY = "runs/conditioned/searchrescue-hybrid-dppo"
DEFAULT_REFERENCE = "shipped:searchrescue-conditioned-dppo"
ENV_ID = "SearchRescue-v0"
MODES = ("hybrid", "distributed", "centralized")
#: Training config of a policy that records none (the expert): hybrid, drawn caps and power.
HYBRID_DRAWS = {
    "comm": {"mode": "hybrid", "budget": 256, "budget_levels": [0, 4, 16, 64, 256]},
    "channel": {"tx_power_dbm_range": [10.0, 30.0]},
}
NAN = float("nan")


def share_pairs(
    actor: Any, env_id: str, episodes: int, env_config: dict[str, Any], seed: int = 0
) -> tuple[Any, Any]:
    """``(snr_db [P], share [P])``: one pair per agent-step of the first episode of each of
    ``episodes`` evaluation worlds (one round) in which the agent spends a channel use
    (module docstring)."""
    import torch

    import agentcomm
    from agentcomm.worlds import world_seed

    world = agentcomm.make_vec(env_id, num_envs=episodes, **env_config)
    if world.config.comm.mode != "hybrid":
        raise ValueError(
            f"comm.mode={world.config.comm.mode!r} is not allowed; the uplink share acts only "
            "in 'hybrid' mode"
        )
    obs = world.reset(seed=world_seed("evaluation", seed, 0))
    counting = torch.ones(episodes, dtype=torch.bool, device=world.device)
    snrs, shares = [], []
    with torch.no_grad():
        while bool(counting.any()):
            action = actor(world, obs).clamp(-1.0, 1.0)
            cap = world.budget_cap.view(-1, 1).to(action.dtype)
            uses = torch.floor((action[..., 4] + 1.0) * 0.5 * cap)
            spends = counting.view(-1, 1) & (uses >= 1)
            snrs.append(world.fc_snr[spends].double().cpu())
            shares.append(((action[..., 5] + 1.0) * 0.5)[spends].double().cpu())
            obs, _, terminated, truncated, _ = world.step(action)
            done = terminated | truncated
            counting &= ~done
            if bool(done.any()):
                world.reset_at(done)
                obs = world.observation()
    return torch.cat(snrs), torch.cat(shares)


def _bins(snr: Any, share: Any, edges: list[float]) -> list[dict[str, float]]:
    """Per SNR bin ``[lo, hi)``: its pairs, mean share and the mean's standard error."""
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        pick = (snr >= lo) & (snr < hi)
        n = int(pick.sum())
        mean = float(share[pick].mean()) if n else NAN
        sem = float(share[pick].std() / math.sqrt(n)) if n > 1 else NAN
        rows.append({"snr_low_db": lo, "snr_high_db": hi, "pairs": n, "share": mean, "sem": sem})
    return rows


def _plot(rows: list[dict[str, float]], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = [r for r in rows if r["pairs"] > 1]
    x = [(r["snr_low_db"] + r["snr_high_db"]) / 2 for r in drawn]
    y = [r["share"] for r in drawn]
    err = [1.96 * r["sem"] for r in drawn]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label="policy (mean, 95% CI)")
    ax.axhline(0.5, color="k", linestyle=":", label="scripted expert (always 0.5)")
    ax.set_xlabel("fusion-centre link SNR (dB)")
    ax.set_ylabel("uplink share of the channel uses spent")
    ax.set_ylim(0.0, 1.0)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> dict[str, float]:
    """Collect the pairs, write the CSV and PNG, compare the modes; print ``RESULT``."""
    import torch

    from agentcomm.experiments.eval_learned_comm import point_config, result_line
    from agentcomm.experiments.execute import write_csv
    from agentcomm.experiments.stats import wilson_interval
    from agentcomm.policies.evaluate import checkpoint_env, evaluate, load_actor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policy", default=DEFAULT_POLICY, help="hybrid-trained policy")
    parser.add_argument(
        "--reference", default=DEFAULT_REFERENCE, help="distributed-trained conditioned policy"
    )
    parser.add_argument("--episodes", type=int, default=None, help="worlds (default 1000)")
    parser.add_argument("--quick", action="store_true", help="64 worlds")
    parser.add_argument("--budget", type=int, default=16, help="budget of the mode comparison")
    parser.add_argument("--seed", type=int, default=0, help="seed index of the evaluation split")
    parser.add_argument("--out", default="docs/training/conditioned_hybrid", help="output folder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    episodes = args.episodes or (64 if args.quick else 1000)
    if episodes < 2:
        raise ValueError(f"--episodes={episodes} is not allowed; expected at least 2")
    if args.budget < 1:
        raise ValueError(f"--budget={args.budget} is not allowed; expected at least 1 use")
    actor, meta = load_actor(args.policy)
    _, trained_on = checkpoint_env(meta)
    trained_on = trained_on or HYBRID_DRAWS
    snr, share = share_pairs(actor, ENV_ID, episodes, trained_on, args.seed)
    if share.numel() < 2:
        raise RuntimeError(f"{args.policy} spent a channel use on {share.numel()} agent-steps")
    varies = float(share.std()) > 0
    corr = float(torch.corrcoef(torch.stack([share, snr]))[0, 1]) if varies else NAN
    centred = snr - snr.mean()
    slope = float((centred * (share - share.mean())).sum() / (centred**2).sum()) * 10.0
    result: dict[str, float] = {
        "share_snr_corr": corr,
        "share_mean": float(share.mean()),
        "share_std": float(share.std()),
        "share_slope_per_10db": slope,
        "pairs": float(share.numel()),
    }
    lo, hi = math.floor(float(snr.min())), math.ceil(float(snr.max()))
    step = max(1, math.ceil((hi - lo) / 12))
    edges = [float(v) for v in range(lo, hi + step, step)]
    rows = _bins(snr, share, edges)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(out / "uplink_share.csv", rows)
    title = (
        f"{ENV_ID} hybrid, {Path(args.policy).name}\n{share.numel()} agent-steps spending a "
        f"use, {episodes} evaluation worlds; r = {corr:.3f}"
    )
    _plot(rows, title, out / "uplink_share.png")
    for r in rows:
        print(
            f"SNR [{r['snr_low_db']:5.1f}, {r['snr_high_db']:5.1f}) dB: share {r['share']:.3f} "
            f"+- {r['sem']:.3f} (pairs {r['pairs']})"
        )
    print(f"wrote {out / 'uplink_share.csv'} and {out / 'uplink_share.png'}")

    reference, ref_meta = load_actor(args.reference)
    ref_on = checkpoint_env(ref_meta)[1]
    expert, _ = load_actor("expert")
    k = args.budget
    cases = [("policy", actor, point_config(trained_on, k, "hybrid"), "hybrid")]
    cases += [("reference", reference, point_config(ref_on, k, m), m) for m in MODES[1:]]
    cases += [("expert", expert, {"comm": {"budget": k, "mode": m}}, m) for m in MODES]
    for who, act, cfg, mode in cases:
        res = evaluate(act, ENV_ID, episodes, num_envs=episodes, seed=args.seed, env_config=cfg)
        p, low, high = wilson_interval(res.successes, res.episodes)
        key = f"success_{who}_{mode}"
        result.update({key: p, f"{key}_low": low, f"{key}_high": high})
        print(
            f"{who:>9} {mode:>11} k={k}: success {p:.3f} [{low:.3f}, {high:.3f}] "
            f"(n={res.episodes}), bits/agent-step {res.bits_per_agent_step:.1f}",
            flush=True,
        )
    print(result_line(result))
    return result


if __name__ == "__main__":
    main()
