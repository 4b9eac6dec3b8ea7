"""The figures of ``agentcomm run`` (matplotlib, Agg backend, PNG).

They read :func:`~agentcomm.experiments.execute.summarize` rows: ``success`` is the rate
over the ``episodes`` pooled across seeds, with its interval ``ci_low``/``ci_high`` (the
method in ``interval``); every figure states n. :func:`plot_scenario` is the headline
figure, one per scenario.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_bandwidth", "plot_modes", "plot_scenario", "plot_snr"]

_MODE_COLOURS = {"centralized": "tab:blue", "distributed": "tab:orange", "hybrid": "tab:green"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _n_text(rows: list[dict[str, Any]]) -> str:
    """``"n = 384 episodes (3 seeds) per point, wilson 95% CI"`` for the rows drawn (ranges
    where they differ)."""
    if not rows:
        return "no points"

    def span(key: str) -> str:
        lo, hi = min(int(r[key]) for r in rows), max(int(r[key]) for r in rows)
        return str(lo) if lo == hi else f"{lo}-{hi}"

    methods = ", ".join(sorted({str(r["interval"]) for r in rows}))
    seeds = span("seeds")
    return (
        f"n = {span('episodes')} episodes ({seeds} seed{'' if seeds == '1' else 's'}) "
        f"per point, {methods} CI"
    )


def _yerr(rs: list[dict[str, Any]]) -> np.ndarray:
    """``[2, points]`` distances from ``success`` down to ``ci_low`` and up to ``ci_high``."""
    return np.array([[r["success"] - r["ci_low"], r["ci_high"] - r["success"]] for r in rs]).T


_CODEC_STYLE = {
    "quantized": ("o", "-"),
    "topk": ("v", "-"),
    "dct": ("P", "-"),
    "linear": ("X", "-"),
    "jscc": ("s", "--"),
    "jscc+cddm": ("D", ":"),
    "jscc+diffcom": ("^", ":"),
    "ldpc_qam": ("h", "-."),
}
_POLICY_COLOURS = ("tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan")


def plot_scenario(rows: list[dict[str, Any]], env_id: str, path: Path) -> None:
    """The headline figure of one scenario: success against communication, two panels.

    Left: x = channel uses per agent per step (peer messages, uplinks and fusion-centre
    downlinks) on a log2 axis, the convention for communication volume; right: the same
    points against the bits delivered per agent per step (log2). y: success with its
    interval. One curve per (coordination mode, codec) of the expert (colour: mode; marker
    and line: codec) and one per learned policy; no communication (budget 0) and perfect
    communication (codec ``raw``, which bypasses the channel) have no place on a log axis
    and are drawn as horizontal levels with their intervals as bands: the floor and the
    ceiling of each mode, and above them the oracle (policy ``"oracle"``: the expert
    deciding on the true state) where the run has it.
    """
    plt = _plt()
    mine = [r for r in rows if r["env_id"] == env_id]
    # One row per config and policy: experiments may share points.
    unique: dict[tuple, dict[str, Any]] = {}
    for r in mine:
        unique.setdefault((r["policy"], r.get("config_id", r["point"])), r)
    # Points at another transmit power than the curves' belong to the SNR figure.
    settings: dict[str, int] = {}
    for r in unique.values():
        settings[r.get("setting_id", "")] = settings.get(r.get("setting_id", ""), 0) + 1
    main = max(settings, key=settings.__getitem__) if settings else ""
    drawn = [r for r in unique.values() if r.get("setting_id", "") == main]
    fig, axes = plt.subplots(1, 2, figsize=(12.0, 4.8), sharey=True)
    policies = sorted({r["policy"] for r in drawn if r["policy"] != "expert"})
    colour = {p: _POLICY_COLOURS[i % len(_POLICY_COLOURS)] for i, p in enumerate(policies)}
    for ax, key, label in (
        (axes[0], "channel_uses", "channel uses per agent per step (log2)"),
        (axes[1], "bits_delivered", "bits delivered per agent per step (log2)"),
    ):
        curves: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
        # (policy, raw?) -> the level rows of each mode; one line when all modes agree.
        levels: dict[tuple[str, bool], list[dict[str, Any]]] = {}
        for r in drawn:
            if r["codec"] == "raw" or int(r["budget"]) == 0:
                levels.setdefault((r["policy"], r["codec"] == "raw"), []).append(r)
            elif float(r[key]) > 0:
                curves.setdefault((r["policy"], str(r["mode"]), str(r["codec"])), []).append(r)
        for (policy, raw), rs in sorted(levels.items()):
            who = "" if policy == "expert" else f"{policy.removeprefix('shipped:')} "
            what = "perfect comm. (raw)" if raw else "no comm."
            if policy == "oracle":
                who, what = "", "oracle: true state shared"
            same = len({(r["success"], r["ci_low"], r["ci_high"]) for r in rs}) == 1
            for r in rs[:1] if same and len(rs) > 1 else rs:
                mode = "all modes" if same and len(rs) > 1 else str(r["mode"])
                if policy != "expert":
                    c = colour[policy]
                else:
                    c = "0.35" if mode == "all modes" else _MODE_COLOURS.get(mode, "k")
                ax.axhline(
                    r["success"],
                    color=c,
                    lw=1.0,
                    ls="-." if raw else (0, (2, 2)),
                    alpha=0.8,
                    label=f"{who}{mode}: {what}",
                )
                ax.axhspan(r["ci_low"], r["ci_high"], color=c, alpha=0.06, lw=0)
        for (policy, mode, codec), rs in sorted(curves.items()):
            rs = sorted(rs, key=lambda r: float(r[key]))
            marker, ls = _CODEC_STYLE.get(codec, ("o", "-"))
            c = _MODE_COLOURS.get(mode, "k") if policy == "expert" else colour[policy]
            who = "expert" if policy == "expert" else policy.removeprefix("shipped:")
            ax.errorbar(
                [float(r[key]) for r in rs],
                [r["success"] for r in rs],
                yerr=_yerr(rs),
                marker=marker,
                ls=ls,
                color=c,
                capsize=2,
                label=f"{who} {mode} {codec}",
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3, which="both")
    axes[0].set_ylabel("task success (95% interval)")
    axes[0].set_ylim(-0.02, 1.02)
    handles, labels = axes[0].get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    fig.suptitle(f"{env_id}: task success versus communication\n{_n_text(drawn)}", fontsize=10)
    fig.legend(
        uniq.values(),
        uniq.keys(),
        fontsize=7,
        loc="upper center",
        ncol=4,
        bbox_to_anchor=(0.5, 0.0),
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def _codec(r: dict[str, Any]) -> str:
    return str(r.get("codec") or r["comm.codec"])


def _by_mode(rows: list[dict[str, Any]], experiment: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["experiment"] == experiment and r["policy"] == "expert":
            out.setdefault(str(r.get("mode") or r["comm.mode"] or "distributed"), []).append(r)
    return out


def plot_bandwidth(rows: list[dict[str, Any]], path: Path, experiment: str = "bandwidth") -> None:
    """Success vs delivered bits per agent per step, with each point's Shannon bound.

    The x axis is ``bits_delivered``, because the Shannon marker beside each point
    (``capacity_bits``: channel uses spent x log2(1 + SNR)) bounds delivered bits, not
    success; no bound on success is drawn (see :mod:`agentcomm.experiments.bounds`).
    Error bars are the pooled-episode intervals ``ci_low``/``ci_high``.
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    groups = _by_mode(rows, experiment)
    for mode, rs in sorted(groups.items()):
        c = _MODE_COLOURS.get(mode, "k")
        # Raw beliefs are the ideal reference: they bypass the channel, so they have no
        # Shannon bound and are drawn as a level (with its interval), not a point on x.
        for r in rs:
            if _codec(r) == "raw":
                ax.axhline(
                    r["success"],
                    color=c,
                    lw=0.8,
                    ls="-.",
                    alpha=0.6,
                    label=f"{mode}: raw beliefs (ideal; band: its CI)",
                )
                ax.axhspan(r["ci_low"], r["ci_high"], color=c, alpha=0.07, lw=0)
        rs = sorted((r for r in rs if _codec(r) != "raw"), key=lambda r: r["bits_delivered"])
        if not rs:
            continue
        x = np.array([r["bits_delivered"] for r in rs])
        y = np.array([r["success"] for r in rs])
        cap = np.array([r["capacity_bits"] for r in rs])
        ax.errorbar(
            x + 1, y, yerr=_yerr(rs), marker="o", color=c, label=f"{mode} (expert)", capsize=2
        )
        ax.plot(
            cap + 1,
            y,
            ls=":",
            marker="|",
            ms=10,
            color=c,
            alpha=0.7,
            label=f"{mode}: Shannon bound on its delivered bits",
        )
    drawn = [r for rs in groups.values() for r in rs]
    ax.set_xscale("log")
    ax.set_xlabel(
        "bits delivered per agent per step (+1, log scale)\n"
        "(uplink, downlink and peer; analog: capacity of the uses spent)"
    )
    ax.set_ylabel("success rate (episodes pooled over seeds)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Task success versus bandwidth\n{_n_text(drawn)}", fontsize=10)
    # Below the axes: inside, it would cover points or their error bars.
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_snr(rows: list[dict[str, Any]], path: Path, experiment: str = "snr") -> None:
    """Success vs the mean agent-to-agent link SNR (transmit power sweep), one curve per
    (coordination mode, codec)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    groups = _by_mode(rows, experiment)
    for mode, mode_rows in sorted(groups.items()):
        for codec in sorted({_codec(r) for r in mode_rows}):
            rs = sorted(
                (r for r in mode_rows if _codec(r) == codec), key=lambda r: r["peer_snr_db"]
            )
            x = [r["peer_snr_db"] for r in rs]
            lo = np.array([r["ci_low"] for r in rs])
            hi = np.array([r["ci_high"] for r in rs])
            c = _MODE_COLOURS.get(mode, "k")
            marker, ls = _CODEC_STYLE.get(codec, ("o", "-"))
            y = [r["success"] for r in rs]
            ax.plot(x, y, marker=marker, ls=ls, color=c, label=f"{mode} {codec}")
            ax.fill_between(x, lo, hi, color=c, alpha=0.12)
    ax.set_xlabel("mean link SNR between agents (dB)")
    ax.set_ylabel("success rate (episodes pooled over seeds)")
    ax.set_ylim(-0.02, 1.02)
    drawn = [r for rs in groups.values() for r in rs]
    ax.set_title(f"Task success versus SNR\n{_n_text(drawn)}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_modes(rows: list[dict[str, Any]], path: Path, experiment: str = "bandwidth") -> None:
    """Centralized vs distributed vs hybrid: success against total communication cost
    (``channel_uses``: the agents' peer messages and uplinks and the fusion centre's
    downlinks to them, per agent per step)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    drawn = []
    for mode, rs in sorted(_by_mode(rows, experiment).items()):
        rs = [r for r in rs if _codec(r) != "raw"]  # the ideal reference has no real cost
        rs = sorted(rs, key=lambda r: r["channel_uses"])
        drawn += rs
        x = [r["channel_uses"] for r in rs]
        y = [r["success"] for r in rs]
        c = _MODE_COLOURS.get(mode, "k")
        ax.errorbar(x, y, yerr=_yerr(rs), marker="s", color=c, label=mode, capsize=2)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("channel uses per agent per step (incl. fusion-centre downlinks)")
    ax.set_ylabel("success rate (episodes pooled over seeds)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Coordination modes and their communication cost\n{_n_text(drawn)}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
