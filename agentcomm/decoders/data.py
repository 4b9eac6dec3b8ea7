r"""Synthetic belief maps for training and testing learned receivers, without the environment.

A search-and-rescue world in miniature: victims sit at random cells of an
``H x W`` grid; a few agents random-walk over it, sense every cell inside a
disk of radius ``sensing_radius`` with detection probability :math:`p_d` and
false-alarm probability :math:`p_{fa}`, and pool their observations into one
log-odds occupancy map by Bayes' rule (the fused team belief a fusion centre
would hold). Each map stops after a random number of steps, so a data set
covers barely explored maps as well as well explored ones.

Bayes update of cell :math:`c` after a binary observation :math:`z` (standard
occupancy-grid form, Thrun et al., *Probabilistic Robotics*, 2005, eq. 9.7):

.. math::
    \ell_c \leftarrow \mathrm{clip}\Big(\ell_c + z \log\frac{p_d}{p_{fa}}
        + (1 - z)\log\frac{1 - p_d}{1 - p_{fa}},\ -L,\ L\Big),
    \qquad \ell_c^{(0)} = \log\frac{p_0}{1 - p_0},\ p_0 = \frac{V}{HW}

with :math:`V` victims. Clipping at :math:`\pm L` keeps the map able to
change its mind, as occupancy grids do.

:func:`agentcomm.policies.receiver_training.collect_payload_maps` gathers what the codecs
see in the batched environments instead: the maps put on the air (own evidence, fused
beliefs, the fusion centre's map, as each coordination mode sends them) at every step of
rollouts under the expert and the shipped policies, across modes and budgets; the training
data of the shipped receivers. :func:`~agentcomm.policies.receiver_training.collect_env_beliefs`
keeps every agent's fused belief under the expert.

Shape legend: ``D`` maps, ``A`` agents, ``H x W`` grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from agentcomm._checks import check_range, check_tensor
from agentcomm.config import Config, rng

__all__ = [
    "BeliefMapConfig",
    "BeliefMaps",
    "check_maps",
    "from_unit",
    "prior_logodds",
    "simulate_belief_maps",
    "to_unit",
]


@dataclass(frozen=True)
class BeliefMapConfig(Config):
    """How synthetic belief maps are generated.

    Attributes:
        height: grid rows ``H``.
        width: grid columns ``W``.
        n_victims: victims per map ``V`` (distinct cells), ``1 <= V < H * W``.
        n_agents: agents pooling their observations ``A``.
        max_steps: a map's horizon is drawn uniformly from ``1..max_steps`` steps.
        sensing_radius: radius of the sensing disk, in cells.
        pd: detection probability :math:`p_d = P(z = 1 \\mid \\text{victim})`.
        pfa: false-alarm probability :math:`p_{fa} = P(z = 1 \\mid \\text{empty})`, ``pfa < pd``.
        clip: log-odds clipping bound ``L`` (nats).
    """

    height: int = field(default=16, metadata=rng(1))
    width: int = field(default=16, metadata=rng(1))
    n_victims: int = field(default=3, metadata=rng(1))
    n_agents: int = field(default=3, metadata=rng(1))
    max_steps: int = field(default=30, metadata=rng(1))
    sensing_radius: float = field(default=2.5, metadata=rng(0.0, low_inclusive=False))
    pd: float = field(default=0.9, metadata=rng(0.0, 1.0))
    pfa: float = field(default=0.1, metadata=rng(0.0, 1.0))
    clip: float = field(default=6.0, metadata=rng(0.0, low_inclusive=False))

    def validate(self, prefix: str = "") -> None:
        super().validate(prefix)
        check_range(f"{prefix}n_victims", self.n_victims, 1, self.height * self.width - 1)
        check_range(
            f"{prefix}pfa", self.pfa, 0.0, self.pd, low_inclusive=False, high_inclusive=False
        )
        check_range(
            f"{prefix}pd", self.pd, self.pfa, 1.0, low_inclusive=False, high_inclusive=False
        )


@dataclass
class BeliefMaps:
    """A data set of belief maps and the worlds they describe.

    Attributes:
        logodds: float32 ``[D, H, W]``, log-odds of a victim in each cell, in ``[-L, L]`` (nats).
        truth: bool ``[D, H, W]``, where the victims are.
    """

    logodds: torch.Tensor
    truth: torch.Tensor


def prior_logodds(config: BeliefMapConfig) -> float:
    """The uninformed log-odds :math:`\\log(p_0 / (1 - p_0))`, :math:`p_0 = V / (HW)` (nats)."""
    p0 = config.n_victims / (config.height * config.width)
    return math.log(p0 / (1.0 - p0))


def to_unit(logodds: torch.Tensor, clip: float) -> torch.Tensor:
    """Map log-odds ``[...]`` (nats) to the diffusion / JSCC domain ``clamp(l, -L, L) / L`` in [-1, 1]."""
    return logodds.clamp(-clip, clip) / clip


def from_unit(x: torch.Tensor, clip: float) -> torch.Tensor:
    """Inverse of :func:`to_unit`: ``clamp(x, -1, 1) * L`` (nats)."""
    return x.clamp(-1.0, 1.0) * clip


def simulate_belief_maps(
    n_maps: int, config: BeliefMapConfig, generator: torch.Generator
) -> BeliefMaps:
    """Simulate ``n_maps`` independent worlds and the team belief each ends with.

    All worlds advance together (batched over ``D``); the only Python loop is
    over time steps.

    Args:
        n_maps: number of maps ``D``.
        config: the world and sensor model.
        generator: the only source of randomness.
    Returns:
        :class:`BeliefMaps` with ``logodds`` float32 ``[D, H, W]`` and ``truth`` bool ``[D, H, W]``.
    """
    check_range("n_maps", n_maps, 1, None)
    if not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    c = config
    d, h, w, a = n_maps, c.height, c.width, c.n_agents
    n_cells = h * w

    # Distinct victim cells: the V smallest of i.i.d. uniforms is a uniform V-subset.
    keys = torch.rand(d, n_cells, generator=generator)
    victims = keys.topk(c.n_victims, dim=1, largest=False).indices
    truth = torch.zeros(d, n_cells, dtype=torch.bool).scatter_(1, victims, True).view(d, h, w)

    horizon = torch.randint(1, c.max_steps + 1, (d,), generator=generator)
    pos = torch.stack(
        [
            torch.randint(0, h, (d, a), generator=generator),
            torch.randint(0, w, (d, a), generator=generator),
        ],
        dim=-1,
    )
    rows = torch.arange(h).view(1, 1, h, 1)
    cols = torch.arange(w).view(1, 1, 1, w)
    llr_hit = math.log(c.pd / c.pfa)
    llr_miss = math.log((1.0 - c.pd) / (1.0 - c.pfa))
    hit_prob = torch.where(truth, c.pd, c.pfa).unsqueeze(1)  # [D, 1, H, W]
    lim = torch.tensor([h - 1, w - 1])

    logodds = torch.full((d, h, w), prior_logodds(c))
    for step in range(c.max_steps):
        dist2 = (rows - pos[..., 0, None, None]) ** 2 + (cols - pos[..., 1, None, None]) ** 2
        sensed = dist2 <= c.sensing_radius**2  # [D, A, H, W]
        z = torch.rand(d, a, h, w, generator=generator) < hit_prob
        llr = torch.where(z, llr_hit, llr_miss) * sensed
        active = (step < horizon).view(d, 1, 1)
        logodds = torch.where(active, (logodds + llr.sum(1)).clamp(-c.clip, c.clip), logodds)
        moves = torch.randint(-1, 2, (d, a, 2), generator=generator)
        pos = torch.minimum((pos + moves).clamp_min(0), lim)
    return BeliefMaps(logodds=logodds.float(), truth=truth)


def check_maps(name: str, maps: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Validate a log-odds batch ``[M, H, W]`` of real floats (every receiver takes these)."""
    check_tensor(
        name,
        maps,
        shape=(None, height, width),
        dtypes=(torch.float32, torch.float64),
        finite=True,
    )
    return maps
