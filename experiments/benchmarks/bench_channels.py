"""Throughput of agentcomm's channels against Sionna's, on one CPU thread.

Workload: B worlds x N agents, each sending one message of k complex symbols
(``[B, N, k]``), produced by a simple linear codec: a fixed random matrix with
orthonormal rows or columns maps a source vector ``[B, N, n]`` to 2k reals, read as k
complex symbols and power-normalized; the receiver equalizes (one-tap MMSE), undoes the
normalization gain (ideal side information) and applies the transpose.

Four pipelines per channel (AWGN, Rayleigh block fading), all on the same tensors:

* ``ours``: ``AWGN`` / ``RayleighBlockFading`` ``.apply`` + ``ChannelOutput.equalized("mmse")``
* ``sionna``: ``sionna.phy.channel.AWGN`` (and ``RayleighBlockFading`` for the
  coefficients, one per message) + the same one-tap MMSE formula written out
  (Sionna has no SISO one-tap equalizer block)

each timed for the channel alone and for codec + channel. Sionna draws from its own
RNG, seeded through ``sionna.phy.config.seed`` (which also seeds torch's global
generator); agentcomm draws from an explicit ``torch.Generator``.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python experiments/benchmarks/bench_channels.py --repeats 7

The last line printed is ``RESULT key=value ...`` with the headline figures.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from agentcomm.channels import AWGN, RayleighBlockFading, power_normalize
from agentcomm.experiments.threads import use_one_thread


@dataclass
class Args:
    batch: int = 1024
    """B: parallel worlds."""
    agents: int = 8
    """N: agents per world (one message each)."""
    k: int = 64
    """complex channel uses per message."""
    source_dim: int = 128
    """n: real source dimensions per message (bandwidth ratio k/n)."""
    snr_db: float = 10.0
    """Es/N0 in dB."""
    repeats: int = 7
    """timed calls per pipeline; the median is reported."""
    warmup: int = 2
    """untimed calls per pipeline before timing."""
    seed: int = 0


def parse_args() -> Args:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = Args()
    for name, value in vars(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    ns = parser.parse_args()
    args = Args(**vars(ns))
    if args.repeats < 1 or args.warmup < 0:
        parser.error("--repeats must be >= 1 and --warmup >= 0")
    return args


class LinearCodec:
    """Fixed random linear JSCC: ``[B, N, n]`` reals <-> ``[B, N, k]`` unit-power symbols.

    The encoder ``[n, 2k]`` has orthonormal columns (``2k <= n``) or rows (``2k > n``), so
    its transpose is its pseudo-inverse and decoding does not amplify the channel noise.
    """

    def __init__(self, n: int, k: int, generator: torch.Generator) -> None:
        self.k = k
        q, _ = torch.linalg.qr(torch.randn(max(n, 2 * k), min(n, 2 * k), generator=generator))
        self.enc = q if 2 * k <= n else q.T
        self.dec = self.enc.T

    def encode(self, s: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, N, n]`` -> unit-power symbols ``[B, N, k]`` and their gain ``[B, N, 1]``."""
        z = s @ self.enc
        x = power_normalize(torch.view_as_complex(z.reshape(*s.shape[:-1], self.k, 2)))
        # The same gain power_normalize applied, from the real view (cheaper than |x|^2).
        gain = torch.sqrt(self.k / z.square().sum(-1, keepdim=True).clamp_min(1e-12))
        return x, gain

    def decode(self, x_hat: torch.Tensor, gain: torch.Tensor) -> torch.Tensor:
        """Symbols ``[B, N, k]`` and gain ``[B, N, 1]`` -> source estimate ``[B, N, n]``."""
        z = torch.view_as_real(x_hat).reshape(*x_hat.shape[:-1], 2 * self.k)
        # Undo the gain on the real view: dividing a complex tensor by a real one is slow.
        return (z / gain) @ self.dec


def sionna_pipelines(snr_db: float, seed: int):
    """Sionna's AWGN and Rayleigh block fading with the one-tap MMSE written out."""
    import sionna.phy
    from sionna.phy.channel import AWGN as SionnaAWGN
    from sionna.phy.channel import RayleighBlockFading as SionnaRBF

    sionna.phy.config.seed = seed
    awgn = SionnaAWGN()
    rbf = SionnaRBF(num_rx=1, num_rx_ant=1, num_tx=1, num_tx_ant=1)
    n0 = 10 ** (-snr_db / 10)

    def awgn_channel(x: torch.Tensor) -> torch.Tensor:
        return awgn(x, n0) / (1 + n0)

    def rayleigh_channel(x: torch.Tensor) -> torch.Tensor:
        messages = x.shape[:-1].numel()
        a, _ = rbf(batch_size=messages, num_time_steps=1)
        h = a.reshape(*x.shape[:-1], 1)
        y = awgn(h * x, n0)
        return h.conj() * y / (h.abs().square() + n0)

    return awgn_channel, rayleigh_channel


def time_interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int
) -> dict[str, tuple[float, float]]:
    """(median, min) seconds per call of each function.

    The functions take turns within every repeat, so load from other processes on a
    shared machine hits all of them alike instead of skewing whichever ran at the time.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(t), min(t)) for name, t in times.items()}


def main() -> None:
    args = parse_args()
    use_one_thread()
    gen = torch.Generator().manual_seed(args.seed)
    codec = LinearCodec(args.source_dim, args.k, gen)
    s = torch.randn(args.batch, args.agents, args.source_dim, generator=gen)
    x, gain = codec.encode(s)
    messages = args.batch * args.agents
    symbols = messages * args.k

    ours = {"awgn": AWGN(), "rayleigh_block": RayleighBlockFading()}
    sionna_awgn, sionna_rbf = sionna_pipelines(args.snr_db, args.seed)
    theirs = {"awgn": sionna_awgn, "rayleigh_block": sionna_rbf}

    def our_channel(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
        return lambda x_: ours[name].apply(x_, args.snr_db, gen).equalized("mmse")

    def full(channel: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            x_, g_ = codec.encode(s)
            return codec.decode(channel(x_), g_)

        return run

    pipelines = {
        (name, impl): channel
        for name in ours
        for impl, channel in (("ours", our_channel(name)), ("sionna", theirs[name]))
    }
    fns: dict[str, Callable[[], object]] = {}
    for key, channel in pipelines.items():
        fns[f"{key}:channel"] = lambda c=channel: c(x)
        fns[f"{key}:full"] = full(channel)
    medians = time_interleaved(fns, args.repeats, args.warmup)
    rows = []
    for key, channel in pipelines.items():
        mse = (full(channel)() - s).square().mean().item()
        rows.append((*key, medians[f"{key}:channel"], medians[f"{key}:full"], mse))

    print(
        f"B={args.batch} N={args.agents} k={args.k} n={args.source_dim} "
        f"snr_db={args.snr_db} repeats={args.repeats} threads={torch.get_num_threads()} "
        f"torch={torch.__version__}"
    )
    header = (
        f"{'channel':<15}{'impl':<8}{'stage':<15}{'ms/call':>10}{'min ms':>9}{'msgs/s':>14}"
        f"{'symbols/s':>14}{'src MSE':>10}"
    )
    print(header)
    print("-" * len(header))
    for name, impl, t_chan, t_full, mse in rows:
        for stage, (t, t_min) in (("channel", t_chan), ("codec+channel", t_full)):
            print(
                f"{name:<15}{impl:<8}{stage:<15}{1e3 * t:>10.2f}{1e3 * t_min:>9.2f}"
                f"{messages / t:>14,.0f}{symbols / t:>14,.0f}{mse:>10.4f}"
            )

    result = {(r[0], r[1]): r for r in rows}
    fields = {}
    for name in ours:
        (oc, _), (of, _) = result[name, "ours"][2:4]
        (sc, _), (sf, _) = result[name, "sionna"][2:4]
        fields[f"{name}_msgs_per_s"] = f"{messages / of:.0f}"
        fields[f"sionna_{name}_msgs_per_s"] = f"{messages / sf:.0f}"
        fields[f"ratio_{name}_vs_sionna"] = f"{sf / of:.2f}"
        fields[f"ratio_{name}_channel_only_vs_sionna"] = f"{sc / oc:.2f}"
    fields["threads"] = str(torch.get_num_threads())
    fields.update(B=str(args.batch), N=str(args.agents), k=str(args.k))
    print()
    print("msgs/s and symbols/s from the median; ratio = ours msgs/s / sionna msgs/s")
    print("(codec+channel unless 'channel_only')")
    print("RESULT " + " ".join(f"{k}={v}" for k, v in fields.items()))


if __name__ == "__main__":
    main()
