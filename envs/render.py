"""Top-down RGB frames of one world of a batched :class:`~agentcomm.envs.world.CommWorld`.

Drawn with numpy alone: no display, no GUI toolkit, identical pixels on every machine,
and about a millisecond per frame, so frames can be written for every step of an episode.
Rendering is not the hot path: the small Python loops over agents and objects here are
deliberate.

What a frame shows, bottom to top:

* the belief heat map (grid scenarios): the evidence of one agent's fused belief (or
  the team mean) relative to the prior, in log-odds: white at the prior (unexplored),
  orange up to ``+logodds_clip`` (a victim is likely), blue down to ``-logodds_clip``
  (searched and clear);
* peer links (``distributed``/``hybrid``) and fusion-centre links
  (``centralized``/``hybrid``): thin lines coloured by mean link SNR, red at the
  link threshold to green at threshold + 30 dB;
* each agent's announced intent: a line from the agent to its goal, in the agent's colour;
* scenario objects: victims (red crosses; rescued ones small green rings), goal sites
  (black rings of ``site_radius``), targets (purple discs) with each agent's track
  estimate (crosses in the agent's colour);
* the fusion centre (black square; hollow when the coordination mode does not use it);
* the agents (discs in the palette colours, outlined in black).

Coordinates: the world's positions are ``(row, col)`` in cells; a cell is
``size / grid_size`` pixels; row 0 is the top of the image.
"""

from __future__ import annotations

import numpy as np
import torch

from .world import CommWorld

__all__ = ["AGENT_COLOURS", "render_frame"]

#: Agent ``i`` is drawn in ``AGENT_COLOURS[i % len(AGENT_COLOURS)]`` (RGB, Tableau 10).
AGENT_COLOURS = np.array(
    [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ],
    dtype=np.uint8,
)
_WHITE = np.array((255, 255, 255), np.float32)
_HEAT = np.array((230, 85, 13), np.float32)  # log-odds at +clip
_CLEAR = np.array((158, 202, 225), np.float32)  # log-odds at -clip
_BLACK = (0, 0, 0)
_VICTIM = (200, 0, 0)
_RESCUED = (0, 150, 0)
_TARGET = (120, 40, 160)
_SNR_SPAN_DB = 30.0


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


class _Canvas:
    """An ``[S, S, 3]`` uint8 image with primitives in cell coordinates."""

    def __init__(self, size: int, grid: int) -> None:
        self.img = np.full((size, size, 3), 255, dtype=np.uint8)
        self.size = size
        self.scale = size / grid

    def px(self, p: np.ndarray) -> np.ndarray:
        """Cell ``(row, col)`` -> pixel ``(y, x)`` (float)."""
        return np.asarray(p, np.float64) * self.scale

    def line(self, p0: np.ndarray, p1: np.ndarray, colour) -> None:
        (y0, x0), (y1, x1) = self.px(p0), self.px(p1)
        n = int(max(abs(y1 - y0), abs(x1 - x0))) + 2
        ys = np.rint(np.linspace(y0, y1, n)).astype(int)
        xs = np.rint(np.linspace(x0, x1, n)).astype(int)
        ok = (ys >= 0) & (ys < self.size) & (xs >= 0) & (xs < self.size)
        self.img[ys[ok], xs[ok]] = colour

    def _box(self, cy: float, cx: float, r: float):
        y0, y1 = max(int(cy - r) - 1, 0), min(int(cy + r) + 2, self.size)
        x0, x1 = max(int(cx - r) - 1, 0), min(int(cx + r) + 2, self.size)
        yy, xx = np.mgrid[y0:y1, x0:x1]
        return (slice(y0, y1), slice(x0, x1)), np.hypot(yy + 0.5 - cy, xx + 0.5 - cx)

    def disc(self, p: np.ndarray, radius_px: float, colour, outline=None) -> None:
        cy, cx = self.px(p)
        box, d = self._box(cy, cx, radius_px)
        self.img[box][d <= radius_px] = colour
        if outline is not None:
            self.img[box][(d <= radius_px) & (d > radius_px - 1.5)] = outline

    def ring(self, p: np.ndarray, radius_px: float, colour, width: float = 1.5) -> None:
        cy, cx = self.px(p)
        box, d = self._box(cy, cx, radius_px)
        self.img[box][(d <= radius_px) & (d > radius_px - width)] = colour

    def square(self, p: np.ndarray, half_px: float, colour, filled: bool) -> None:
        cy, cx = self.px(p)
        y0, y1 = max(int(cy - half_px), 0), min(int(cy + half_px) + 1, self.size)
        x0, x1 = max(int(cx - half_px), 0), min(int(cx + half_px) + 1, self.size)
        if filled:
            self.img[y0:y1, x0:x1] = colour
        else:
            self.img[y0:y1, [x0, x1 - 1]] = colour
            self.img[[y0, y1 - 1], x0:x1] = colour

    def cross(self, p: np.ndarray, half_px: float, colour) -> None:
        d = half_px / self.scale
        p = np.asarray(p, np.float64)
        self.line(p - d, p + d, colour)
        self.line(p + (-d, d), p + (d, -d), colour)


def _snr_colour(snr_db: float, threshold_db: float) -> tuple[int, int, int]:
    """Red at the link threshold, through yellow, to green at threshold + 30 dB."""
    u = float(np.clip((snr_db - threshold_db) / _SNR_SPAN_DB, 0.0, 1.0))
    return (int(round(220 * min(1.0, 2 - 2 * u))), int(round(180 * min(1.0, 2 * u))), 0)


def render_frame(
    world: CommWorld, index: int = 0, size: int = 400, agent: int | None = None
) -> np.ndarray:
    """Draw world ``index`` of a batched world (see the module docstring for the legend).

    Args:
        world: the batched world (any scenario); read, never modified.
        index: which of the ``B`` worlds, in ``[0, B)``.
        size: side of the square image in pixels, at least 32.
        agent: whose fused belief (and track estimates) to draw, in ``[0, N)``;
            ``None`` draws the team mean of the belief and every agent's tracks.
    Returns:
        uint8 ``[size, size, 3]`` RGB image.
    """
    b, n, g = world.num_envs, world.num_agents, world.grid
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < b:
        raise ValueError(f"index={index!r} is not allowed; expected an int in [0, {b})")
    if isinstance(size, bool) or not isinstance(size, int) or size < 32:
        raise ValueError(f"size={size!r} is not allowed; expected an int >= 32 (pixels)")
    if agent is not None and (
        isinstance(agent, bool) or not isinstance(agent, int) or not 0 <= agent < n
    ):
        raise ValueError(f"agent={agent!r} is not allowed; expected None or an int in [0, {n})")
    canvas = _Canvas(size, g)
    who = list(range(n)) if agent is None else [agent]
    mode = world.config.comm.mode
    threshold = world.config.channel.link_threshold_db

    # --- belief heat map: evidence relative to the prior, nearest-neighbour upsampled
    if world.belief_kind == "grid":
        clip, prior = world.config.comm.logodds_clip, world.prior
        evidence = _np(world.belief[index, who].mean(0)) - prior  # [H, W] log-odds
        up = np.clip(evidence / max(clip - prior, 1e-6), 0.0, 1.0)
        down = np.clip(-evidence / max(clip + prior, 1e-6), 0.0, 1.0)
        cell = (np.arange(size) * g) // size
        up, down = up[cell][:, cell][..., None], down[cell][:, cell][..., None]
        rgb = _WHITE + (_HEAT - _WHITE) * up + (_CLEAR - _WHITE) * down
        canvas.img[:] = np.rint(rgb).astype(np.uint8)

    pos = _np(world.pos[index])  # [N, 2]
    # --- links
    if mode in ("distributed", "hybrid"):
        adj = _np(world.adj[index]) > 0
        snr = _np(world.peer_snr[index])
        for i in range(n):
            for j in range(i + 1, n):
                if adj[i, j] or adj[j, i]:
                    mean = 0.5 * (snr[i, j] + snr[j, i])
                    canvas.line(pos[i], pos[j], _snr_colour(mean, threshold))
    fc = _np(world.fc_pos)
    if mode in ("centralized", "hybrid"):
        fc_snr = _np(world.fc_snr[index])
        for i in range(n):
            if fc_snr[i] >= threshold:
                canvas.line(pos[i], fc, _snr_colour(fc_snr[i], threshold))
    # --- announced intents
    intent = _np(world.intent[index])
    for i in range(n):
        colour = AGENT_COLOURS[i % len(AGENT_COLOURS)]
        canvas.line(pos[i], intent[i], colour)
        canvas.ring(intent[i], max(3.0, 0.25 * canvas.scale), colour)
    # --- scenario objects
    if hasattr(world, "victim_pos"):
        rescued = _np(world.rescued[index]) > 0
        for v, p in enumerate(_np(world.victim_pos[index])):
            if rescued[v]:
                canvas.ring(p, max(3.0, 0.3 * canvas.scale), _RESCUED)
            else:
                canvas.cross(p, max(3.0, 0.35 * canvas.scale), _VICTIM)
    if hasattr(world, "sites"):
        radius = world.config.site_radius * canvas.scale
        for p in _np(world.sites[index]):
            canvas.ring(p, max(radius, 3.0), _BLACK)
    if hasattr(world, "target"):
        for p in _np(world.target[index, :, :2]):
            canvas.disc(p, max(3.0, 0.3 * canvas.scale), _TARGET)
        tracks = _np(world.track_mean[index, :, :, :2])  # [N, T, 2]
        for i in who:
            for p in tracks[i]:
                canvas.cross(
                    p, max(3.0, 0.25 * canvas.scale), AGENT_COLOURS[i % len(AGENT_COLOURS)]
                )
    # --- fusion centre and agents on top
    canvas.square(fc, max(4.0, 0.35 * canvas.scale), _BLACK, mode != "distributed")
    for i in range(n):
        colour = AGENT_COLOURS[i % len(AGENT_COLOURS)]
        canvas.disc(pos[i], max(4.0, 0.4 * canvas.scale), colour, outline=_BLACK)
    return canvas.img
