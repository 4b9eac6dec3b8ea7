"""World-seed splits: the one definition of which worlds training, selection and evaluation use.

A *world seed* is the integer a batched world is reset with (``world.reset(seed=...)``);
it fixes every world's initial layout and the random stream that follows. Results are
only honest if the worlds a policy is tuned on are not the worlds it is reported on, so
world seeds come in three disjoint ranges, one per *split*:

============  ==================================  =========================================
split         world seeds                         what draws from it
============  ==================================  =========================================
train         ``[1 * 10**16, 2 * 10**16)``        the worlds RL training samples
                                                  (the batched env runner)
selection     ``[2 * 10**16, 3 * 10**16)``        sweeps, hyperparameter and checkpoint
                                                  choice, the evaluation after training
evaluation    ``[3 * 10**16, 4 * 10**16)``        final reported figures only
============  ==================================  =========================================

Within a split, a (seed index, round) pair names one world seed::

    world_seed(split, seed, round) = BASE[split] + seed * MAX_ROUNDS + round

with ``0 <= seed < MAX_SEED = 2**31`` (every ``TrainConfig.seed``) and
``0 <= round < MAX_ROUNDS = 10**6`` (a round is one batched reset: an evaluation's
``r``-th batch of worlds, an env runner's worker index). As
``MAX_SEED * MAX_ROUNDS < 10**16`` (the width of a split), different ``(seed, round)``
never collide within a split and no split reaches into another; the decimal layout keeps
a world seed readable (``30_000_000_003_000_002`` is evaluation seed 3, round 2).

Seeds below ``10**16`` (those given to a world directly: demonstrations, the stock RLlib
and SB3 adapters, tests, ad hoc runs) lie outside all three ranges, so they can never
coincide with a selection or evaluation world. Every world seed fits a signed 64-bit
integer, as ``torch.Generator.manual_seed`` needs.

This module imports nothing from RL libraries: the simulator, the policies and the
experiment scripts all read the ranges from here.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "MAX_ROUNDS",
    "MAX_SEED",
    "SPLITS",
    "SPLIT_WIDTH",
    "Split",
    "split_range",
    "world_seed",
]

Split = Literal["train", "selection", "evaluation"]
#: The splits, in the order of their ranges.
SPLITS: tuple[str, ...] = get_args(Split)
#: World seeds per split.
SPLIT_WIDTH = 10**16
#: Seed indices per split: ``seed`` must lie in ``[0, MAX_SEED)``.
MAX_SEED = 2**31
#: Rounds per seed index: ``round`` must lie in ``[0, MAX_ROUNDS)``.
MAX_ROUNDS = 10**6
_BASE = {name: (i + 1) * SPLIT_WIDTH for i, name in enumerate(SPLITS)}

assert MAX_SEED * MAX_ROUNDS <= SPLIT_WIDTH  # no (seed, round) spills into the next split
assert _BASE[SPLITS[-1]] + SPLIT_WIDTH <= 2**63  # fits torch's int64 seeds


def _check_index(name: str, value: object, high: int) -> int:
    # bool is an int subclass: True would silently mean 1.
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}={value!r} must be an int in [0, {high})")
    if not 0 <= value < high:
        raise ValueError(f"{name}={value!r} is out of range; allowed [0, {high})")
    return value


def _check_split(split: object) -> str:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not allowed; choose one of {list(SPLITS)}")
    return str(split)


def split_range(split: Split) -> range:
    """The world seeds of ``split`` (``range(BASE, BASE + SPLIT_WIDTH)``)."""
    base = _BASE[_check_split(split)]
    return range(base, base + SPLIT_WIDTH)


def world_seed(split: Split, seed: int, round: int = 0) -> int:
    """The world seed of round ``round`` of seed index ``seed`` in ``split``.

    Args:
        split: ``"train"``, ``"selection"`` or ``"evaluation"`` (see the module docstring).
        seed: Seed index, an int in ``[0, MAX_SEED)`` (a run's seed, not a world seed).
        round: Round index, an int in ``[0, MAX_ROUNDS)``.

    Returns:
        ``BASE[split] + seed * MAX_ROUNDS + round``: distinct for every distinct
        ``(split, seed, round)``.

    Raises:
        ValueError: naming the bad argument, its value and what is allowed.
    """
    base = _BASE[_check_split(split)]
    _check_index("seed", seed, MAX_SEED)
    _check_index("round", round, MAX_ROUNDS)
    return base + seed * MAX_ROUNDS + round
