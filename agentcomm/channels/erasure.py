r"""Packet erasure: i.i.d. loss and bursty loss (Gilbert-Elliott).

A message is either delivered whole or lost whole; these models say which.

* :class:`IIDErasure`: each message is lost independently with probability :math:`p`.
* :class:`GilbertElliott`: a two-state Markov chain (good G / bad B) whose state
  sets the loss probability, so losses come in bursts (Gilbert, *Bell Syst. Tech. J.*
  39, 1960; Elliott, *Bell Syst. Tech. J.* 42, 1963). Transition probabilities
  per step: :math:`p_{GB} = P(G \to B)`, :math:`p_{BG} = P(B \to G)`.
"""

from __future__ import annotations

import math

import torch

from agentcomm._checks import check_probability, check_range, check_tensor

__all__ = ["GilbertElliott", "IIDErasure"]


def _check_shape(shape: torch.Size | tuple[int, ...]) -> tuple[int, ...]:
    shape = tuple(shape)
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in shape):
        raise ValueError(f"shape={shape!r} must be a tuple of sizes >= 0")
    return shape


class IIDErasure:
    """Independent loss of each message with probability ``p``.

    Args:
        p: loss probability in [0, 1].
    """

    def __init__(self, p: float) -> None:
        self.p = float(check_probability("p", p))

    @property
    def loss_rate(self) -> float:
        """Long-run fraction of lost messages (equals ``p``)."""
        return self.p

    def sample(
        self,
        shape: torch.Size | tuple[int, ...],
        generator: torch.Generator | None,
        *,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw which messages are lost.

        Args:
            shape: any shape, e.g. ``[B, N, N]`` for every link of every world.
            generator: the explicit source of randomness.
            device: device of the result.
        Returns:
            bool ``shape``: ``True`` where the message is lost.
        """
        return torch.rand(_check_shape(shape), generator=generator, device=device) < self.p

    def __repr__(self) -> str:
        return f"IIDErasure(p={self.p})"


class GilbertElliott:
    r"""Two-state Markov (Gilbert-Elliott) bursty loss, batched over any shape.

    Each step the chain moves (G -> B with :math:`p_{GB}`, B -> G with :math:`p_{BG}`),
    then a message is lost with probability ``loss_good`` in G or ``loss_bad`` in B.
    Stationary distribution: :math:`\pi_B = p_{GB}/(p_{GB}+p_{BG})`, :math:`\pi_G = 1-\pi_B`.
    With ``loss_good=0, loss_bad=1`` (the Gilbert model) the loss rate is :math:`\pi_B`
    and loss bursts are geometric with mean length :math:`1/p_{BG}`.

    Args:
        p_gb: probability of moving from good to bad per step, in [0, 1].
        p_bg: probability of moving from bad to good per step, in (0, 1] (0 would make
            the bad state absorbing).
        loss_good: loss probability in the good state, in [0, 1].
        loss_bad: loss probability in the bad state, in [0, 1].

    State tensors are bool, ``True`` = bad.
    """

    def __init__(
        self, p_gb: float, p_bg: float, loss_good: float = 0.0, loss_bad: float = 1.0
    ) -> None:
        self.p_gb = float(check_probability("p_gb", p_gb))
        self.p_bg = float(check_range("p_bg", p_bg, 0.0, 1.0, low_inclusive=False))
        self.loss_good = float(check_probability("loss_good", loss_good))
        self.loss_bad = float(check_probability("loss_bad", loss_bad))

    @property
    def stationary_bad(self) -> float:
        r""":math:`\pi_B = p_{GB} / (p_{GB} + p_{BG})`."""
        return self.p_gb / (self.p_gb + self.p_bg)

    @property
    def stationary_loss_rate(self) -> float:
        r"""Long-run loss probability :math:`\pi_G \ell_G + \pi_B \ell_B`."""
        pi_b = self.stationary_bad
        return (1.0 - pi_b) * self.loss_good + pi_b * self.loss_bad

    @property
    def mean_burst_length(self) -> float:
        r"""Mean number of consecutive lost messages in a loss burst (stationary chain).

        A burst ends where a loss is followed by a delivery, so the mean burst length
        is :math:`P(L_t) / P(L_t, \bar L_{t+1})`, with
        :math:`P(L_t, \bar L_{t+1}) = \sum_{s, s'} \pi_s \ell_s P(s \to s') (1 - \ell_{s'})`.
        For ``loss_good=0, loss_bad=1`` this is :math:`1/p_{BG}`. Returns 0 when nothing
        is ever lost and ``inf`` when a burst never ends.
        """
        pi_b = self.stationary_bad
        pi = {"g": 1.0 - pi_b, "b": pi_b}
        loss = {"g": self.loss_good, "b": self.loss_bad}
        trans = {
            ("g", "g"): 1.0 - self.p_gb,
            ("g", "b"): self.p_gb,
            ("b", "g"): self.p_bg,
            ("b", "b"): 1.0 - self.p_bg,
        }
        p_loss = self.stationary_loss_rate
        p_end = sum(pi[s] * loss[s] * trans[s, t] * (1.0 - loss[t]) for s, t in trans)
        if p_loss == 0.0:
            return 0.0
        if p_end == 0.0:
            return math.inf
        return p_loss / p_end

    def init_state(
        self,
        shape: torch.Size | tuple[int, ...],
        generator: torch.Generator | None,
        *,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Draw initial states from the stationary distribution.

        Args:
            shape: any batch shape, e.g. ``[B, N, N]`` (one chain per link).
            generator: the explicit source of randomness.
            device: device of the result.
        Returns:
            bool ``shape``, ``True`` = bad.
        """
        shape = _check_shape(shape)
        return torch.rand(shape, generator=generator, device=device) < self.stationary_bad

    def step(
        self, state: torch.Tensor, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance every chain one step and draw a loss in the new state.

        Args:
            state: bool ``[...]``, ``True`` = bad.
            generator: the explicit source of randomness.
        Returns:
            ``(new_state, lost)``: both bool ``[...]``.
        """
        check_tensor("state", state, dtypes=(torch.bool,))
        u = torch.rand((2,) + tuple(state.shape), generator=generator, device=state.device)
        return self._advance(state, u[0], u[1])

    def _advance(
        self, state: torch.Tensor, u_move: torch.Tensor, u_loss: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        new_state = torch.where(state, u_move >= self.p_bg, u_move < self.p_gb)
        loss_p = torch.where(new_state, self.loss_bad, self.loss_good)
        return new_state, u_loss < loss_p

    def sample_sequence(
        self,
        shape: torch.Size | tuple[int, ...],
        steps: int,
        generator: torch.Generator | None,
        *,
        device: torch.device | str | None = None,
    ) -> torch.Tensor:
        """Loss pattern of ``steps`` consecutive messages per chain, started stationary.

        The uniforms for all steps are drawn in one call; only the Markov recursion
        itself runs over time (it cannot be vectorized over ``t``).

        Args:
            shape: batch shape ``[...]``.
            steps: number of time steps ``T >= 0``.
            generator: the explicit source of randomness.
            device: device of the result.
        Returns:
            bool ``[..., T]``: ``True`` where the message at step ``t`` is lost.
        """
        shape = _check_shape(shape)
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise ValueError(f"steps={steps!r} must be an int >= 0")
        state = self.init_state(shape, generator, device=device)
        u = torch.rand((steps, 2) + shape, generator=generator, device=device)
        lost = torch.empty((steps,) + shape, dtype=torch.bool, device=device)
        for t in range(steps):
            state, lost[t] = self._advance(state, u[t, 0], u[t, 1])
        return lost.movedim(0, -1)

    def __repr__(self) -> str:
        return (
            f"GilbertElliott(p_gb={self.p_gb}, p_bg={self.p_bg}, "
            f"loss_good={self.loss_good}, loss_bad={self.loss_bad})"
        )
