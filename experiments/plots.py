"""The figures of ``agentcomm run`` (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .bounds import fano_success_bound, log2_hypotheses

__all__ = ["plot_bandwidth", "plot_modes", "plot_snr"]

_MODE_COLOURS = {"centralized": "tab:blue", "distributed": "tab:orange", "hybrid": "tab:green"}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _by_mode(rows: list[dict[str, Any]], experiment: str) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        if r["experiment"] == experiment and r["policy"] == "expert":
            out.setdefault(str(r["comm.mode"]) or "distributed", []).append(r)
    return out


def plot_bandwidth(
    rows: list[dict[str, Any]], path: Path, cells: int, victims: int, experiment: str = "bandwidth"
) -> None:
    """Success vs delivered bits per agent per step, with each point's Shannon bound
    (the bits its channel uses could carry) and the Fano bound on localizing the
    victims from messages alone (:mod:`agentcomm.experiments.bounds`)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    groups = _by_mode(rows, experiment)
    xmax = 1.0
    for mode, rs in sorted(groups.items()):
        # Raw beliefs are the ideal reference: they bypass the channel, so they have no
        # Shannon bound and are drawn as a level, not a point on the bits axis.
        for r in rs:
            if r["comm.codec"] == "raw":
                ax.axhline(
                    r["success_iqm"],
                    color=_MODE_COLOURS.get(mode, "k"),
                    lw=0.8,
                    ls="-.",
                    alpha=0.6,
                    label=f"{mode}: raw beliefs (ideal)",
                )
        rs = sorted((r for r in rs if r["comm.codec"] != "raw"), key=lambda r: r["bits_delivered"])
        if not rs:
            continue
        x = np.array([r["bits_delivered"] for r in rs])
        y = np.array([r["success_iqm"] for r in rs])
        err = np.array(
            [[r["success_iqm"] - r["success_lo"], r["success_hi"] - r["success_iqm"]] for r in rs]
        ).T
        cap = np.array([r["capacity_bits"] for r in rs])
        c = _MODE_COLOURS.get(mode, "k")
        ax.errorbar(x + 1, y, yerr=err, marker="o", color=c, label=f"{mode} (expert)", capsize=2)
        ax.plot(
            cap + 1,
            y,
            ls=":",
            marker="|",
            ms=10,
            color=c,
            alpha=0.7,
            label=f"{mode}: Shannon bound of its uses",
        )
        xmax = max(xmax, float(cap.max()) + 1, float(x.max()) + 1)
    log2_m = log2_hypotheses(cells, victims)
    grid = np.logspace(0, np.log10(xmax * 1.5), 200)
    ax.plot(
        grid,
        fano_success_bound(grid - 1, log2_m),
        color="grey",
        ls="--",
        label="Fano: naming the victims' cells from one step's bits",
    )
    ax.set_xscale("log")
    ax.set_xlabel("bits delivered per agent per step (+1, log scale)")
    ax.set_ylabel("success rate (IQM over seeds, 95% CI)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Task success versus bandwidth")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_snr(rows: list[dict[str, Any]], path: Path, experiment: str = "snr") -> None:
    """Success vs the mean agent-to-agent link SNR (transmit power sweep)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for mode, rs in sorted(_by_mode(rows, experiment).items()):
        rs = sorted(rs, key=lambda r: r["peer_snr_db"])
        x = [r["peer_snr_db"] for r in rs]
        y = np.array([r["success_iqm"] for r in rs])
        lo = np.array([r["success_lo"] for r in rs])
        hi = np.array([r["success_hi"] for r in rs])
        c = _MODE_COLOURS.get(mode, "k")
        ax.plot(x, y, marker="o", color=c, label=mode)
        ax.fill_between(x, lo, hi, color=c, alpha=0.15)
    ax.set_xlabel("mean link SNR between agents (dB)")
    ax.set_ylabel("success rate (IQM, 95% CI)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Task success versus SNR")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_modes(
    rows: list[dict[str, Any]], path: Path, num_agents: int, experiment: str = "bandwidth"
) -> None:
    """Centralized vs distributed vs hybrid: success against total communication cost
    (agents' channel uses plus the fusion centre's downlinks, per agent per step)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for mode, rs in sorted(_by_mode(rows, experiment).items()):
        rs = [r for r in rs if r["comm.codec"] != "raw"]  # the ideal reference has no real cost
        rs = sorted(rs, key=lambda r: r["channel_uses"] + r["fc_channel_uses"] / num_agents)
        x = [r["channel_uses"] + r["fc_channel_uses"] / num_agents for r in rs]
        y = [r["success_iqm"] for r in rs]
        ax.plot(x, y, marker="s", color=_MODE_COLOURS.get(mode, "k"), label=mode)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlabel("channel uses per agent per step (incl. fusion-centre downlinks)")
    ax.set_ylabel("success rate (IQM over seeds)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("Coordination modes and their communication cost")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
