"""Evaluate the learned receivers against SNR and bandwidth, their latency and their task effect.

Run (1 torch thread; the full run takes about 12 minutes plus part 4, not yet timed; ``--quick``
about two; ``--robust-only`` runs part 4 alone)::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/eval_decoders.py --out runs/eval_decoders
    OMP_NUM_THREADS=1 .venv/bin/python experiments/eval_decoders.py --quick --out /tmp/ev
    OMP_NUM_THREADS=1 .venv/bin/python experiments/eval_decoders.py --quick --robust-only --out /tmp/ev

``--clear-reach`` runs every part on SearchRescue-v0 with ``clear_reach`` (each agent clears
the cells within its rescue reach: better calibrated sent beliefs), e.g. with ``--bundle`` a
bundle trained on such maps.

Four parts, each a CSV (and PNG) under ``--out``:

1. ``recon.csv`` / ``recon_snr.png`` / ``recon_bw.png``: belief reconstruction on held-out
   SearchRescue-v0 expert rollouts (a seed used neither for training nor validation; each
   map with the true victim cells of its world) over AWGN, Rayleigh block fading with
   perfect CSI and Rayleigh block fading with estimated CSI (20 dB pilots; learned
   receivers only), SNR 0-20 dB and every ``k`` of the bundle (bandwidth ratio ``k / n``,
   ``n = 256`` cells), all schemes at equal channel uses ``k``:

   * ``raw``: the ideal reference (the belief itself; it would need ``32 n`` bits);
   * ``quantized``: 4-bit values under the capacity rule, the best of rates
     0.5/1/2/4 bits per channel use at each point (an oracle rate choice, generous
     to digital); an outage leaves the receiver at its prior;
   * ``ldpc``: the same source bits over a real 5G LDPC + QAM chain (Sionna), QPSK or
     16-QAM at code rate 1/2, best of the two; a block error leaves the prior;
   * ``jscc``, ``jscc+cddm``, ``jscc+diffcom``: the bundle's codecs (one deterministic
     reconstruction each);
   * ``diffusion``: the few-step receiver ``jscc+flow`` decoding to its posterior-mean
     belief (``posterior_samples=4``, ``steps=2``: 3 network calls,
     :mod:`agentcomm.decoders.flow`, :mod:`agentcomm.decoders.posterior`);
   * ``ddim_posterior``: the DDIM reference, ``jscc+cddm`` decoding to its posterior-mean
     belief (``posterior_samples=8``, ``steps=3``);
   * ``send_nothing``: the receiver's prior alone.

   Metrics: ``mse`` of normalized log-odds ``clip(l, -6, 6)/6`` (multiply by 36 for
   nats^2), ``kl_bits`` the mean per-cell KL divergence KL(Bern(p) || Bern(p_hat)) of
   the decoded belief from the sent one (bits per cell), ``top1`` the fraction of maps
   whose most likely decoded cell holds a victim, ``f1`` the F1 score of cells with
   decoded probability > 0.5 against the victims, ``xent_bits`` the cross-entropy (log
   loss, bits per cell) of the decoded belief against the true occupancy.
   ``reliability.png`` / ``reliability.csv``: reliability diagram (predicted probability
   bins vs empirical occupancy frequency, log-spaced bins) of the sent belief, ``jscc`` and
   ``diffusion`` below 5 dB. ``xent_diff_low``: diffusion minus JSCC cross-entropy below
   5 dB, with a 95% Student-t interval over the world slots the maps came from
   (:func:`xent_difference`: maps of one world are not independent).
2. ``latency.csv``: decode time per message at batch 1 and 64 for each receiver (1 thread),
   and the network calls per decode (counted with forward hooks; one batched call serves
   every message and sample).
3. ``task.csv`` / ``task.png``: the expert's success rate on SearchRescue-v0 with codec
   ``jscc`` vs ``diffusion`` (and ``quantized`` for reference) at 38 channel uses and
   ``tx_power_dbm = 8`` (a mean peer-link SNR of about 2 dB, reported), ``--episodes``
   episodes each (one batch of worlds), Wilson 95% intervals.
   ``fused.csv``: the same task point with ``jscc`` and ``diffusion``, scoring every agent's
   *fused* belief against the truth at every step (:func:`fused_belief`, ``--fused-worlds``
   worlds x 30 steps; the unit is the world, Welch's t interval of the difference).

4. ``robust.csv``: receivers that do not know the SNR exactly or have no CSI, on the same
   held-out maps at SNR 0 and 2.5 dB (below ``LOW_DB``), every ``k``, the encoder
   conditioned on the true SNR. Scenarios: ``matched`` (AWGN and Rayleigh block, perfect
   CSI, the receiver assumes the true SNR), ``mismatch`` (the same channels, the receiver
   assumes the true SNR -5 dB and +5 dB), ``nocsi`` (Rayleigh block, ``csi="none"``, true
   SNR assumed) and ``nocsi_mismatch`` (both). Receivers, each on the same channel output:

   * ``jscc``: the JSCC decoder at the assumed SNR; without CSI it gets the unequalised
     ``y`` and the assumed SNR for every symbol (it takes ``h = 1``);
   * ``jscc_blind``: the JSCC decoder at the blind gain estimate (``jscc`` where CSI is given);
   * ``jscc_est``: ``jscc_blind`` at the SNR estimated from the decoding residual;
   * ``cddm``, ``diffcom``: the bundle's receivers at the assumed SNR (blind gain estimate
     without CSI; :mod:`agentcomm.decoders.cddm`, :mod:`agentcomm.decoders.diffcom`);
   * ``cddm_est``, ``diffcom_est``: the same with ``estimate_snr=True``.

   ``diffusion`` in the RESULT keys of this part is ``diffcom_est`` (blind DiffCom with the
   residual SNR estimate), ``jscc`` the plain JSCC decoder; ``dxent_*`` / ``dmse_*`` are the
   degradations from ``matched`` (for ``nocsi``: from Rayleigh block with perfect CSI).

The last line printed is ``RESULT key=value ...``.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy import stats

import agentcomm.decoders  # noqa: F401  (registers the learned codecs)
from agentcomm.channels import AWGN, RayleighBlockFading
from agentcomm.codecs import make_codec, transmit
from agentcomm.codecs.base import Received
from agentcomm.decoders import default_bundle_dir, load_bundle
from agentcomm.decoders.data import to_unit
from agentcomm.decoders.diffcom import DiffComReceiver
from agentcomm.decoders.posterior import cross_entropy_bits, reliability
from agentcomm.experiments.execute import write_csv
from agentcomm.experiments.threads import use_one_thread
from agentcomm.policies.receiver_training import collect_env_beliefs

CLIP = 6.0
METHODS = (
    "raw",
    "quantized",
    "ldpc",
    "jscc",
    "jscc+cddm",
    "jscc+diffcom",
    "diffusion",
    "ddim_posterior",
)
#: The posterior-mean receiver: the few-step flow codec with these parameters.
DIFFUSION_CODEC = "jscc+flow"
DIFFUSION = {"posterior_samples": 4, "steps": 2}
#: The DDIM reference: ``jscc+cddm`` decoding to its posterior mean with these parameters.
DDIM_POSTERIOR = {"posterior_samples": 8, "steps": 3}
#: Transmit power (dBm) of the task runs: a mean peer-link SNR of 0-5 dB on SearchRescue-v0.
TASK_POWER_DBM = 8.0
TASK_BUDGET = 38
LOW_DB = 5.0
#: True SNRs (dB) of the robustness part, and the receivers' assumption errors (dB).
ROBUST_SNRS = (0.0, 2.5)
MISMATCH_DB = (-5.0, 5.0)
ROBUST_RECEIVERS = ("jscc", "jscc_blind", "jscc_est", "cddm", "cddm_est", "diffcom", "diffcom_est")


def metrics(est: torch.Tensor, sent: torch.Tensor, truth: torch.Tensor) -> dict[str, float]:
    """Reconstruction metrics of decoded log-odds ``est [M, H, W]`` vs ``sent`` and ``truth``."""
    est = est.float().clamp(-CLIP, CLIP)
    sent = sent.float().clamp(-CLIP, CLIP)
    mse = float((to_unit(est, CLIP) - to_unit(sent, CLIP)).square().mean())
    # KL(Bern(p) || Bern(q)) from log-odds, in bits: p(log p - log q) + (1-p)(log(1-p) - log(1-q)).
    p = torch.sigmoid(sent)
    kl = p * (F.logsigmoid(sent) - F.logsigmoid(est)) + (1 - p) * (
        F.logsigmoid(-sent) - F.logsigmoid(-est)
    )
    flat_est, flat_truth = est.flatten(1), truth.flatten(1)
    top1 = flat_truth.gather(1, flat_est.argmax(1, keepdim=True)).float().mean()
    pred = flat_est > 0
    tp = (pred & flat_truth).sum().float()
    f1 = 2 * tp / (pred.sum() + flat_truth.sum()).clamp_min(1)
    return {
        "mse": mse,
        "kl_bits": float(kl.mean() / math.log(2)),
        "xent_bits": float(cross_entropy_bits(est, truth)),
        "top1": float(top1),
        "f1": float(f1),
    }


def digital(
    maps: torch.Tensor,
    k: int,
    channel,
    snr: float,
    prior: float,
    g: torch.Generator,
    chains: dict,
) -> dict[str, tuple[torch.Tensor, float]]:
    """Best-rate quantized (capacity rule) and LDPC+QAM estimates at ``k`` channel uses."""
    out = {}
    best = None
    for rate in (0.5, 1.0, 2.0, 4.0):
        codec = make_codec("quantized", (16, 16), bits_per_value=4, rate=rate, range=(-CLIP, CLIP))
        t = transmit(codec, maps, k, channel, snr, g, prior=prior)
        mse = float((to_unit(t.estimate, CLIP) - to_unit(maps, CLIP)).square().mean())
        if best is None or mse < best[0]:
            best = (mse, t.estimate, float(t.delivered.float().mean()))
    out["quantized"] = (best[1], best[2])
    if chains is not None:
        best = None
        for bps in (2, 4):
            key = (k, bps)
            if key not in chains:
                chains[key] = _chain(k, bps)
            chain = chains[key]
            if chain is None:
                continue
            # The source: as many 4-bit values as the code carries, sent by the quantized codec
            # (rate = LDPC info bits per channel use); delivery is the chain's block success.
            codec = make_codec(
                "quantized",
                (16, 16),
                bits_per_value=4,
                rate=chain.bits_per_channel_use,
                range=(-CLIP, CLIP),
            )
            msg = codec.encode(maps, k, prior=prior)
            # Block errors of a linear code on a symmetric channel do not depend on the data,
            # so random information bits stand in for the packed indices.
            bits = torch.randint(0, 2, (maps.shape[0], chain.k_info), generator=g).float()
            ok = chain.transmit(bits, channel, snr, g).block_delivered.bool()
            est = codec.decode(Received(msg, ok & (msg.bits > 0)))
            mse = float((to_unit(est, CLIP) - to_unit(maps, CLIP)).square().mean())
            if best is None or mse < best[0]:
                best = (mse, est, float(ok.float().mean()))
        if best is not None:
            out["ldpc"] = (best[1], best[2])
    return out


def _chain(k: int, bits_per_symbol: int):
    """A rate-1/2 LDPC + QAM chain filling exactly ``k`` channel uses, or None if impossible."""
    from agentcomm.channels.sionna_chain import LDPCQAMChain

    n_coded = k * bits_per_symbol
    k_info = n_coded // 2
    if k_info < 12:
        return None
    return LDPCQAMChain(k_info, n_coded, bits_per_symbol)


def recon(bundle, bundle_dir, maps, truth, prior, snrs, out_dir, seed) -> tuple[list[dict], dict]:
    """Reconstruction rows, and the decoded probabilities of ``jscc`` and ``diffusion`` below
    ``LOW_DB`` (with the truth) for the reliability diagram."""
    try:
        import sionna.phy  # noqa: F401

        chains: dict | None = {}
    except ImportError:
        chains = None
        print("sionna is not installed: skipping the LDPC+QAM baseline")
    codecs = {
        name: make_codec(name, (16, 16), checkpoint=bundle_dir)
        for name in ("jscc", "jscc+cddm", "jscc+diffcom")
    }
    codecs["diffusion"] = make_codec(DIFFUSION_CODEC, (16, 16), checkpoint=bundle_dir, **DIFFUSION)
    codecs["ddim_posterior"] = make_codec(
        "jscc+cddm", (16, 16), checkpoint=bundle_dir, **DDIM_POSTERIOR
    )
    low = {"jscc": [], "diffusion": [], "sent": [], "truth": []}
    rows = []
    channels = (
        ("awgn", AWGN()),
        ("rayleigh_block", RayleighBlockFading()),
        ("rayleigh_block_est", RayleighBlockFading(csi="estimated")),
    )
    for ch_name, channel in channels:
        for k in bundle.channel_uses:
            for snr in snrs:
                g = torch.Generator().manual_seed(seed + k + int(snr * 10))
                est = {"raw": (maps, 1.0), "send_nothing": (torch.full_like(maps, prior), 0.0)}
                if ch_name != "rayleigh_block_est":
                    est.update(digital(maps, k, channel, snr, prior, g, chains))
                for name, codec in codecs.items():
                    # The transmitter knows the link's average SNR (the codec docstring).
                    codec.encoder_snr_db = float(snr)
                    gg = torch.Generator().manual_seed(seed + 1 + k + int(snr * 10))
                    t = transmit(codec, maps, k, channel, float(snr), gg, prior=prior)
                    est[name] = (t.estimate, float(t.delivered.float().mean()))
                if snr < LOW_DB:
                    for name in ("jscc", "diffusion"):
                        low[name].append(torch.sigmoid(est[name][0].clamp(-CLIP, CLIP)))
                    low["sent"].append(torch.sigmoid(maps.float().clamp(-CLIP, CLIP)))
                    low["truth"].append(truth)
                for name, (e, delivered) in est.items():
                    row = {
                        "method": name,
                        "channel": ch_name,
                        "snr_db": snr,
                        "k": k,
                        "bw_ratio": k / 256,
                        "delivered": delivered,
                    }
                    row.update(metrics(e, maps, truth))
                    rows.append(row)
                print(
                    f"{ch_name:18s} k={k:3d} snr={snr:5.1f} "
                    + " ".join(
                        f"{r['method']}={r['mse']:.4f}/{r['xent_bits']:.4f}"
                        for r in rows[-len(est) :]
                    ),
                    flush=True,
                )
    write_csv(out_dir / "recon.csv", rows)
    return rows, {key: torch.cat(v) for key, v in low.items()}


def per_map_xent_bits(prob: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """float64 ``[M]``: the cross-entropy (bits per cell) of each decoded map ``prob [M, H, W]``
    against ``truth``; :func:`cross_entropy_bits` per map instead of over all cells."""
    p = prob.double().clamp(1e-12, 1 - 1e-12)
    z = truth.double()
    nll = -(z * p.log() + (1 - z) * (-p).log1p()) / math.log(2)
    return nll.flatten(1).mean(1)


def xent_difference(low: dict[str, torch.Tensor], slots: torch.Tensor) -> dict[str, float]:
    """Diffusion minus JSCC cross-entropy below ``LOW_DB``, with a 95% interval.

    The maps of one world slot of :func:`collect_env_beliefs` (its agents, its successive
    episodes, and every channel, ``k`` and SNR they were sent at) are not independent, so
    the unit is the slot: the per-map differences are averaged within each slot and the
    interval is Student's t over the slot means (a map-level interval would be far too
    narrow).

    Args:
        low: the decoded probabilities of :func:`recon` (``jscc``, ``diffusion``, ``truth``,
            each ``[R * D, H, W]``: ``R`` settings of the same ``D`` maps).
        slots: int ``[D]``, the world slot of each map.
    """
    diff = per_map_xent_bits(low["diffusion"], low["truth"]) - per_map_xent_bits(
        low["jscc"], low["truth"]
    )
    slot = slots.repeat(diff.shape[0] // slots.shape[0])
    count = torch.bincount(slot).double()
    means = torch.bincount(slot, weights=diff) / count
    ci = stats.ttest_1samp(means.numpy(), 0.0).confidence_interval(0.95)
    return {
        "xent_diff_low": float(diff.mean()),
        "xent_diff_low_ci_low": float(ci.low),
        "xent_diff_low_ci_high": float(ci.high),
        "xent_diff_slots": int(means.shape[0]),
    }


def robust_receivers(bundle, k: int) -> dict:
    """``{name: (channel output, true SNR, assumed SNR) -> log-odds}`` of part 4 for ``k``."""
    model, cddm = bundle.jscc[k], bundle.cddm[k]
    cddm_est = cddm.options(estimate_snr=True)
    diffcom = bundle.diffcom(k)
    diffcom_est = DiffComReceiver(
        model, bundle.prior, steps=diffcom.steps, zeta=diffcom.zeta, start=cddm_est
    )
    return {
        "jscc": lambda out, snr, assumed: model.decode(out, assumed),
        "jscc_blind": lambda out, snr, assumed: model.decode(
            cddm.receiver_output(out, assumed, snr)
        ),
        "jscc_est": lambda out, snr, assumed: model.decode(
            cddm_est.receiver_output(out, assumed, snr)
        ),
        "cddm": lambda out, snr, assumed: cddm.decode(out, assumed, snr),
        "cddm_est": lambda out, snr, assumed: cddm_est.decode(out, assumed, snr),
        "diffcom": lambda out, snr, assumed: diffcom.decode(out, snr, assumed_snr_db=assumed),
        "diffcom_est": lambda out, snr, assumed: diffcom_est.decode(
            out, snr, assumed_snr_db=assumed
        ),
    }


def robustness(bundle, maps, truth, out_dir: Path, seed: int) -> list[dict]:
    """Rows of ``robust.csv`` (module docstring, part 4): every receiver on the same channel
    output per scenario, ``k`` and SNR."""
    scenarios = [("matched", ch, 0.0) for ch in ("awgn", "rayleigh_block")]
    scenarios += [("mismatch", ch, d) for ch in ("awgn", "rayleigh_block") for d in MISMATCH_DB]
    scenarios += [("nocsi", "rayleigh_block_nocsi", 0.0)]
    scenarios += [("nocsi_mismatch", "rayleigh_block_nocsi", d) for d in MISMATCH_DB]
    channels = {
        "awgn": AWGN(),
        "rayleigh_block": RayleighBlockFading(),
        "rayleigh_block_nocsi": RayleighBlockFading(csi="none"),
    }
    rows = []
    for k in bundle.channel_uses:
        model = bundle.jscc[k]
        rx = robust_receivers(bundle, k)
        for snr in ROBUST_SNRS:
            with torch.no_grad():
                z = model.encode(maps, snr)
            for scenario, ch_name, offset in scenarios:
                # The same channel realization for every scenario of a (k, SNR, channel).
                g = torch.Generator().manual_seed(seed + 7 + k + int(snr * 10))
                out = channels[ch_name].apply(z, snr, g)
                assumed = snr + offset
                for name, fn in rx.items():
                    with torch.no_grad():
                        est = fn(out, snr, assumed)
                    row = {
                        "scenario": scenario,
                        "channel": ch_name,
                        "csi": "none" if ch_name.endswith("nocsi") else "perfect",
                        "snr_db": snr,
                        "assumed_snr_db": assumed,
                        "offset_db": offset,
                        "k": k,
                        "receiver": name,
                    }
                    row.update(metrics(est, maps, truth))
                    rows.append(row)
                print(
                    f"robust {scenario:14s} {ch_name:20s} k={k:3d} snr={snr:4.1f} "
                    f"assumed={assumed:5.1f} "
                    + " ".join(
                        f"{r['receiver']}={r['mse']:.4f}/{r['xent_bits']:.4f}"
                        for r in rows[-len(rx) :]
                    ),
                    flush=True,
                )
    write_csv(out_dir / "robust.csv", rows)
    return rows


def robust_summary(rows: list[dict]) -> dict[str, str]:
    """RESULT keys of the robustness part (module docstring, part 4)."""

    def mean(receiver: str, metric: str, scenario: str, channel: str | None = None) -> float:
        sel = [
            r[metric]
            for r in rows
            if r["receiver"] == receiver
            and r["scenario"] == scenario
            and (channel is None or r["channel"] == channel)
        ]
        return sum(sel) / len(sel)

    result = {}
    labels = {"jscc": "jscc", "diffusion": "diffcom_est"}
    labels.update({r: r for r in ROBUST_RECEIVERS if r != "jscc"})
    for label, receiver in labels.items():
        for metric, short in (("xent_bits", "xent"), ("mse", "mse")):
            matched = mean(receiver, metric, "matched")
            mismatch = mean(receiver, metric, "mismatch")
            matched_ray = mean(receiver, metric, "matched", "rayleigh_block")
            nocsi = mean(receiver, metric, "nocsi")
            nocsi_mm = mean(receiver, metric, "nocsi_mismatch")
            result[f"{short}_{label}_matched_low"] = f"{matched:.5f}"
            result[f"{short}_{label}_mismatch_low"] = f"{mismatch:.5f}"
            result[f"{short}_{label}_nocsi_low"] = f"{nocsi:.5f}"
            result[f"{short}_{label}_nocsi_mismatch_low"] = f"{nocsi_mm:.5f}"
            result[f"d{short}_{label}_mismatch"] = f"{mismatch - matched:.5f}"
            result[f"d{short}_{label}_nocsi"] = f"{nocsi - matched_ray:.5f}"
            result[f"d{short}_{label}_nocsi_mismatch"] = f"{nocsi_mm - matched_ray:.5f}"
    return result


def count_calls(modules: dict[str, torch.nn.Module], fn, *args) -> int:
    """Forward calls of ``modules`` (top-level networks) during ``fn(*args)``."""
    calls = [0]

    def hook(*_):
        calls[0] += 1

    handles = [m.register_forward_hook(hook) for m in modules.values()]
    try:
        fn(*args)
    finally:
        for h in handles:
            h.remove()
    return calls[0]


def latency(bundle, reps: int) -> list[dict]:
    k = sorted(bundle.channel_uses)[len(bundle.channel_uses) // 2]
    model = bundle.jscc[k]
    cddm = bundle.cddm[k]
    ddim = type(cddm)(
        cddm.jscc, cddm.prior, cddm.snr_grid_db, cddm.error_var_table, DDIM_POSTERIOR["steps"]
    )
    flow = bundle.flow_receiver(k, DIFFUSION["steps"])
    s, s_ddim = DIFFUSION["posterior_samples"], DDIM_POSTERIOR["posterior_samples"]
    rx = {
        "jscc": lambda out, snr: model.decode(out),
        "jscc+cddm": lambda out, snr: cddm.decode(out),
        "jscc+diffcom": lambda out, snr: bundle.diffcom(k).decode(out, snr),
        "diffusion": lambda out, snr: (
            flow.sample(out, s, torch.Generator().manual_seed(1)).sigmoid().mean(1)
        ),
        "ddim_posterior": lambda out, snr: (
            ddim.sample(out, s_ddim, torch.Generator().manual_seed(1)).sigmoid().mean(1)
        ),
    }
    nets = {
        "encoder": model.encoder,
        "decoder": model.decoder,
        "prior": bundle.prior.net,
        "flow": bundle.flow.net,
    }
    maps = collect_env_beliefs("SearchRescue-v0", 16, 4, seed=4242).logodds
    rows = []
    for batch in (1, 64):
        x = maps[:batch]
        g = torch.Generator().manual_seed(0)
        with torch.no_grad():
            out = AWGN().apply(model.encode(x, 2.0), 2.0, g)
        for name, fn in rx.items():
            calls = count_calls(nets, fn, out, 2.0)  # also the warm-up
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                with torch.inference_mode(name != "jscc+diffcom"):
                    fn(out, 2.0)
                times.append(time.perf_counter() - t0)
            med = sorted(times)[len(times) // 2]
            rows.append(
                {
                    "receiver": name,
                    "k": k,
                    "batch": batch,
                    "samples": {"diffusion": s, "ddim_posterior": s_ddim}.get(name, 1),
                    "network_calls": calls,
                    "ms_per_batch": 1e3 * med,
                    "ms_per_message": 1e3 * med / batch,
                    "threads": torch.get_num_threads(),
                }
            )
    return rows


def task(bundle_dir, episodes: int, seed: int, env: dict | None = None) -> list[dict]:
    """Expert success per codec at ``TASK_BUDGET`` channel uses and ``TASK_POWER_DBM`` through
    the project's one evaluation (:func:`agentcomm.experiments.metrics.evaluate`:
    evaluation-split worlds, success at episode end), with a Wilson 95% interval."""
    from agentcomm.experiments.metrics import evaluate
    from agentcomm.experiments.stats import wilson_interval

    settings = (
        ("quantized", "quantized", {}),
        ("jscc", "jscc", {"checkpoint": str(bundle_dir)}),
        ("diffusion", DIFFUSION_CODEC, {"checkpoint": str(bundle_dir), **DIFFUSION}),
    )
    rows = []
    for label, codec, params in settings:
        t0 = time.perf_counter()
        m = evaluate(
            "SearchRescue-v0",
            "expert",
            episodes,
            seed,
            {
                "comm": {"codec": codec, "codec_params": params, "budget": TASK_BUDGET},
                "channel": {"tx_power_dbm": TASK_POWER_DBM},
                **(env or {}),
            },
        )
        _, low, high = wilson_interval(int(m["successes"]), episodes)
        row = {
            "codec": label,
            "budget": TASK_BUDGET,
            "tx_power_dbm": TASK_POWER_DBM,
            "episodes": episodes,
            "success_rate": float(m["success"]),
            "ci_low": low,
            "ci_high": high,
            "mean_steps": float(m["episode_length"]),
            "mean_link_snr_db": float(m["peer_snr_db"]),
            "seconds": time.perf_counter() - t0,
        }
        rows.append(row)
        print(
            f"task {label:10s} budget={TASK_BUDGET:3d} tx={TASK_POWER_DBM:5.1f} dBm "
            f"success={row['success_rate']:.3f} [{low:.3f}, {high:.3f}] n={episodes} "
            f"link_snr={row['mean_link_snr_db']:.1f} dB ({row['seconds']:.0f}s)",
            flush=True,
        )
    return rows


def fused_belief(
    bundle_dir, worlds: int, steps: int, seed: int, env: dict | None = None
) -> tuple[list[dict], dict]:
    """Cross-entropy of the *fused* beliefs against the truth at the task point.

    ``worlds`` SearchRescue-v0 worlds under the expert with codec ``jscc`` or the diffusion
    receiver (the config of :func:`task`) run ``steps`` steps (finished worlds restart in
    place); every step, every agent's fused belief ``world.belief`` is scored against
    ``world.true_map()``, and each world's mean over its agents and steps is one unit. The
    two codecs run on the same world seeds, but their trajectories part (the agents act on
    what they decoded), so the difference's 95% interval is Welch's t over the two sets of
    world means.

    Returns:
        one row per codec (``xent_bits`` with its interval, worlds, steps) and the RESULT keys.
    """
    from agentcomm import make_vec
    from agentcomm.envs.experts import expert_actions

    settings = (
        ("jscc", "jscc", {"checkpoint": str(bundle_dir)}),
        ("diffusion", DIFFUSION_CODEC, {"checkpoint": str(bundle_dir), **DIFFUSION}),
    )
    per_world, rows = {}, []
    for label, codec, params in settings:
        t0 = time.perf_counter()
        world = make_vec(
            "SearchRescue-v0",
            num_envs=worlds,
            seed=seed,
            comm={"codec": codec, "codec_params": params, "budget": TASK_BUDGET},
            channel={"tx_power_dbm": TASK_POWER_DBM},
            **(env or {}),
        )
        world.reset(seed=seed)
        total = torch.zeros(worlds, dtype=torch.float64)
        for _ in range(steps):
            _, _, terminated, truncated, _ = world.step(expert_actions(world))
            z = world.true_map().unsqueeze(1).expand_as(world.belief).double()
            logodds = world.belief.double()
            nll = -(z * F.logsigmoid(logodds) + (1 - z) * F.logsigmoid(-logodds))
            total += nll.mean((1, 2, 3)) / math.log(2)
            done = terminated | truncated
            if bool(done.any()):
                world.reset_at(done)
        per_world[label] = (total / steps).numpy()
        ci = stats.ttest_1samp(per_world[label], 0.0).confidence_interval(0.95)
        rows.append(
            {
                "codec": label,
                "worlds": worlds,
                "steps": steps,
                "xent_bits": float(per_world[label].mean()),
                "ci_low": float(ci.low),
                "ci_high": float(ci.high),
                "seconds": time.perf_counter() - t0,
            }
        )
        print(
            f"fused {label:10s} xent={rows[-1]['xent_bits']:.5f} "
            f"[{ci.low:.5f}, {ci.high:.5f}] worlds={worlds} steps={steps} "
            f"({rows[-1]['seconds']:.0f}s)",
            flush=True,
        )
    diff = stats.ttest_ind(per_world["diffusion"], per_world["jscc"], equal_var=False)
    ci = diff.confidence_interval(0.95)
    result = {
        "xent_fused_jscc_low": f"{rows[0]['xent_bits']:.5f}",
        "xent_fused_diffusion_low": f"{rows[1]['xent_bits']:.5f}",
        "xent_fused_diff_low": f"{rows[1]['xent_bits'] - rows[0]['xent_bits']:.5f}",
        "xent_fused_diff_low_ci_low": f"{ci.low:.5f}",
        "xent_fused_diff_low_ci_high": f"{ci.high:.5f}",
        "fused_worlds": str(worlds),
    }
    return rows, result


#: Bin edges of the reliability diagram: log-spaced where the cells are (nearly every cell
#: sits near SearchRescue-v0's prior 3/256, where equal-width bins would show one point).
RELIABILITY_EDGES = (0.0, 1e-3, 3e-3, 6e-3, 0.01, 0.0135, 0.02, 0.05, 0.2, 0.5, 1.0)


def reliability_plot(low: dict[str, torch.Tensor], out_dir: Path) -> list[dict]:
    """Reliability diagram of ``jscc``, ``diffusion`` and the sent belief below ``LOW_DB``
    (log-spaced bins, log axes; a bin's marker area grows with its cells): PNG and CSV rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = torch.tensor(RELIABILITY_EDGES)
    rows = []
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([1e-4, 1], [1e-4, 1], "k:", label="calibrated")
    for name in ("sent", "jscc", "diffusion"):
        r = reliability(low[name], low["truth"], edges=edges)
        for i in range(edges.numel() - 1):
            rows.append(
                {
                    "receiver": name,
                    "bin_low": float(edges[i]),
                    "bin_high": float(edges[i + 1]),
                    "predicted": float(r["predicted"][i]),
                    "observed": float(r["observed"][i]),
                    "cells": int(r["count"][i]),
                }
            )
        ok = r["count"] > 0
        size = 3 + 12 * (r["count"][ok] / r["count"].sum()).sqrt()
        obs = r["observed"][ok].clamp_min(1e-4)  # an empty-occupancy bin drawn at the floor
        ax.plot(r["predicted"][ok], obs, "-", alpha=0.6)
        ax.scatter(r["predicted"][ok], obs, s=size.square(), label=name, alpha=0.7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("predicted victim probability")
    ax.set_ylabel("observed victim frequency (floor 1e-4)")
    ax.set_title(f"reliability below {LOW_DB:g} dB (all channels, k)")
    ax.legend(loc="upper left", markerscale=0.5)
    fig.tight_layout()
    fig.savefig(out_dir / "reliability.png", dpi=110)
    plt.close(fig)
    write_csv(out_dir / "reliability.csv", rows)
    return rows


def plots(rows: list[dict], task_rows: list[dict], out_dir: Path, ks) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kmid = sorted(ks)[len(ks) // 2]
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    for col, ch in enumerate(("awgn", "rayleigh_block")):
        for row_i, metric in enumerate(("mse", "top1")):
            ax = axes[row_i, col]
            for m in METHODS:
                pts = [
                    r for r in rows if r["method"] == m and r["channel"] == ch and r["k"] == kmid
                ]
                if pts:
                    ax.plot([p["snr_db"] for p in pts], [p[metric] for p in pts], "o-", label=m)
            ax.set_title(f"{ch}, k={kmid} (ratio {kmid / 256:.3f})")
            ax.set_xlabel("SNR (dB)")
            ax.set_ylabel(metric)
            if metric == "mse":
                ax.set_yscale("log")
    axes[0, 0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "recon_snr.png", dpi=110)
    plt.close(fig)

    snrs = sorted({r["snr_db"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, snr in zip(axes, (snrs[0], snrs[-1])):
        for m in METHODS:
            pts = [
                r
                for r in rows
                if r["method"] == m and r["channel"] == "awgn" and r["snr_db"] == snr
            ]
            if pts:
                ax.plot([p["bw_ratio"] for p in pts], [p["mse"] for p in pts], "o-", label=m)
        ax.set_title(f"AWGN, SNR {snr} dB")
        ax.set_xlabel("bandwidth ratio k/n")
        ax.set_ylabel("mse")
        ax.set_yscale("log")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "recon_bw.png", dpi=110)
    plt.close(fig)

    if task_rows:
        fig, ax = plt.subplots(figsize=(6, 4))
        names = [r["codec"] for r in task_rows]
        rates = [r["success_rate"] for r in task_rows]
        err = [
            [r["success_rate"] - r["ci_low"] for r in task_rows],
            [r["ci_high"] - r["success_rate"] for r in task_rows],
        ]
        ax.bar(names, rates, yerr=err, capsize=4)
        r0 = task_rows[0]
        ax.set_title(
            f"k={r0['budget']}, {r0['tx_power_dbm']:g} dBm, link SNR "
            f"{r0['mean_link_snr_db']:.1f} dB, n={r0['episodes']}"
        )
        ax.set_ylabel("expert success rate (Wilson 95%)")
        fig.tight_layout()
        fig.savefig(out_dir / "task.png", dpi=110)
        plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/eval_decoders")
    parser.add_argument("--bundle", help="bundle folder (default: the shipped one)")
    parser.add_argument("--quick", action="store_true", help="fewer maps, SNRs and episodes")
    parser.add_argument("--episodes", type=int, help="episodes per task setting (default 100)")
    parser.add_argument("--no-task", action="store_true", help="skip the task evaluation")
    parser.add_argument(
        "--clear-reach",
        action="store_true",
        help="SearchRescue with clear_reach (every map, task and fused-belief world)",
    )
    parser.add_argument(
        "--fused-worlds",
        type=int,
        help="worlds of the fused-belief part (default 2048; --quick 32)",
    )
    parser.add_argument("--seed", type=int, default=20_000)
    parser.add_argument(
        "--robust-only",
        action="store_true",
        help="only the SNR-mismatch / no-CSI part (robust.csv and its RESULT keys)",
    )
    args = parser.parse_args()
    if args.fused_worlds is not None and args.fused_worlds < 2:
        parser.error(f"--fused-worlds={args.fused_worlds} is not allowed; allowed: integers >= 2")
    use_one_thread(override=False)
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    bundle_dir = Path(args.bundle) if args.bundle else default_bundle_dir((16, 16))
    bundle = load_bundle(bundle_dir)

    n_envs, n_steps = (8, 10) if args.quick else (16, 30)
    env = {"clear_reach": True} if args.clear_reach else {}
    data = collect_env_beliefs("SearchRescue-v0", n_envs, n_steps, seed=args.seed, **env)
    maps, truth = data.logodds, data.truth
    prior = math.log(3 / 253)  # SearchRescue-v0's prior log-odds: p0 = 3 victims / 256 cells
    snrs = [0.0, 5.0, 10.0, 20.0] if args.quick else [0.0, 2.5, 5.0, 7.5, 10.0, 15.0, 20.0]
    print(f"{maps.shape[0]} test maps; bundle {bundle_dir} k={bundle.channel_uses}", flush=True)
    robust_rows = robustness(bundle, maps, truth, out_dir, args.seed)
    robust = robust_summary(robust_rows)
    robust["robust_maps"] = str(maps.shape[0])
    if args.robust_only:
        print("RESULT " + " ".join(f"{k}={v}" for k, v in robust.items()))
        return
    rows, low = recon(bundle, bundle_dir, maps, truth, prior, snrs, out_dir, args.seed)
    reliability_plot(low, out_dir)

    lat = latency(bundle, reps=5 if args.quick else 20)
    write_csv(out_dir / "latency.csv", lat)
    for r in lat:
        print(
            f"latency {r['receiver']:13s} batch={r['batch']:3d} "
            f"{r['ms_per_message']:.3f} ms/message ({r['ms_per_batch']:.1f} ms/batch, "
            f"{r['network_calls']} network calls)"
        )

    task_rows, fused = [], {}
    if not args.no_task:
        episodes = args.episodes or (20 if args.quick else 2000)
        task_rows = task(bundle_dir, episodes, args.seed, env)
        write_csv(out_dir / "task.csv", task_rows)
        fused_rows, fused = fused_belief(
            bundle_dir, args.fused_worlds or (32 if args.quick else 2048), 30, args.seed + 3, env
        )
        write_csv(out_dir / "fused.csv", fused_rows)
    plots(rows, task_rows, out_dir, bundle.channel_uses)
    result = summary(rows, lat, task_rows)
    slots = torch.arange(maps.shape[0]) // (maps.shape[0] // (n_envs * n_steps)) % n_envs
    result.update(
        {
            k: f"{v:.5f}" if isinstance(v, float) else str(v)
            for k, v in xent_difference(low, slots).items()
        }
    )
    result.update(fused)
    result.update(robust)
    print("RESULT " + " ".join(f"{k}={v}" for k, v in result.items()))


def summary(rows: list[dict], lat: list[dict], task_rows: list[dict]) -> dict[str, str]:
    """The RESULT keys: calibration, MSE, cost and task effect below ``LOW_DB``."""

    def low_mean(method: str, metric: str) -> float:
        sel = [r[metric] for r in rows if r["method"] == method and r["snr_db"] < LOW_DB]
        return sum(sel) / len(sel)

    diff = {r["batch"]: r for r in lat if r["receiver"] == "diffusion"}
    ddim = {r["batch"]: r for r in lat if r["receiver"] == "ddim_posterior"}
    result = {
        "xent_jscc_low": f"{low_mean('jscc', 'xent_bits'):.5f}",
        "xent_diffusion_low": f"{low_mean('diffusion', 'xent_bits'):.5f}",
        "xent_cddm_sample_low": f"{low_mean('jscc+cddm', 'xent_bits'):.5f}",
        "xent_sent_low": f"{low_mean('raw', 'xent_bits'):.5f}",
        "mse_jscc_low": f"{low_mean('jscc', 'mse'):.5f}",
        "mse_diffusion_mean_low": f"{low_mean('diffusion', 'mse'):.5f}",
        "mse_cddm_sample_low": f"{low_mean('jscc+cddm', 'mse'):.5f}",
        "mse_send_nothing": f"{low_mean('send_nothing', 'mse'):.5f}",
        "xent_ddim_posterior_low": f"{low_mean('ddim_posterior', 'xent_bits'):.5f}",
        "mse_ddim_posterior_low": f"{low_mean('ddim_posterior', 'mse'):.5f}",
        "latency_ms_b1_ddim_posterior": f"{ddim[1]['ms_per_message']:.3f}",
        "posterior_samples": str(DIFFUSION["posterior_samples"]),
        "calls_per_message": str(diff[1]["network_calls"]),
        "latency_ms_b1": f"{diff[1]['ms_per_message']:.3f}",
        "latency_ms_b64": f"{diff[64]['ms_per_message']:.3f}",
        "latency_ms_b1_jscc": f"{next(r['ms_per_message'] for r in lat if r['receiver'] == 'jscc' and r['batch'] == 1):.3f}",
    }
    for r in task_rows:
        if r["codec"] in ("jscc", "diffusion"):
            key = f"task_success_{r['codec']}_low"
            result[key] = f"{r['success_rate']:.4f}"
            result[f"{key}_ci_low"] = f"{r['ci_low']:.4f}"
            result[f"{key}_ci_high"] = f"{r['ci_high']:.4f}"
            result[f"task_peer_snr_db_{r['codec']}"] = f"{r['mean_link_snr_db']:.2f}"
    if task_rows:
        result["task_episodes"] = str(task_rows[0]["episodes"])
    return result


if __name__ == "__main__":
    main()
