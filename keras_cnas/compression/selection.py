"""Choosing which units to keep so that the shrunk model meets hard cost bounds.

Every method ends with per-unit *scores* (higher = more important: a filter's norm, minus
its dropout rate, its Taylor importance). The helpers here turn scores into a ``keep`` that
meets the bounds, priced with :func:`~keras_cnas.compression.graph_costs` before anything
is built:

* :func:`select_top` keeps the best units of each group, balanced over its blocks;
* :func:`prune_to_bounds` removes units in ascending score order — one *atom* at a time
  (one unit per block of a grouped conv's group) — until every bound holds, bisecting on
  the number removed: this is the threshold a method tunes, and its bounds are hard;
* :func:`uniform_multiplier` finds the largest width multiplier that fits (MorphNet's
  expand step).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import numpy as np

from keras_cnas.compression.costs import graph_costs
from keras_cnas.compression.graph import ChannelGraph
from keras_cnas.costs import Constraints, CostReport
from keras_cnas.errors import InfeasibleConstraintsError

__all__ = ["Selection", "balance_keep", "check_feasible", "prune_to_bounds", "select_top",
           "top_in_blocks", "uniform_multiplier", "unit_costs"]


@dataclasses.dataclass(frozen=True)
class Selection:
    """The units each group keeps and the costs of the resulting model.

    Attributes:
        keep: one sorted index array per group of the graph.
        costs: the analytic costs of the shrunk model.
        removed_by_bound: units removed beyond the method's own choice to meet the bounds.
        threshold: the score of the last unit removed (-inf if none was).
    """

    keep: list[np.ndarray]
    costs: CostReport
    removed_by_bound: int = 0
    threshold: float = -math.inf

    @property
    def counts(self) -> list[int]:
        return [len(k) for k in self.keep]

    def as_keep(self, graph: ChannelGraph) -> dict[str, list[int]]:
        """``{group name: kept units}`` for the groups that lose units (``shrink``'s keep)."""
        return {g.name: k.tolist() for g, k in zip(graph.groups, self.keep) if len(k) < g.size}


def check_feasible(graph: ChannelGraph, bounds: Constraints, baseline: CostReport | None = None,
                   bytes_per_element: int = 4) -> None:
    """Raises InfeasibleConstraintsError if even the smallest shrunk model (one unit per
    block in every prunable group) breaks a bound; the message gives its costs (and, with
    ``baseline``, the fraction of the baseline it reaches)."""
    cheapest = graph_costs(graph, graph.min_counts(), bytes_per_element)
    broken = bounds.violations(cheapest)
    if not broken:
        return
    pinned = [g.name for g in graph.groups if not g.prunable]
    reach = ""
    if baseline is not None:
        reach = "; relax the target to at least " + ", ".join(
            f"{v.cost} fraction {v.value / baseline[v.cost]:.3f}" for v in broken)
    raise InfeasibleConstraintsError(
        f"target: no shrunk model can meet {'; '.join(map(str, broken))}: with one filter left "
        f"per prunable group the model still costs "
        f"{', '.join(f'{v.cost} {v.value:,.0f}' for v in broken)} (the groups "
        f"{', '.join(pinned)} cannot shrink){reach}")


def select_top(graph: ChannelGraph, scores: Sequence[np.ndarray],
               counts: Sequence[int]) -> list[np.ndarray]:
    """The ``counts[g]`` best-scored units of each group, the same number from each of
    its blocks (``counts[g]`` is rounded down to a multiple of the partition, at least one
    per block). Pinned groups keep everything.

    Example:
        >>> from keras_cnas._keras import keras
        >>> model = keras.Sequential([keras.Input((4, 4, 2)), keras.layers.Conv2D(4, 1, name="c"),
        ...                           keras.layers.Flatten(), keras.layers.Dense(2)])
        >>> graph = ChannelGraph(model)
        >>> scores = [np.zeros(2), np.array([0.1, 0.9, 0.5, 0.2]), np.zeros(2)]
        >>> [k.tolist() for k in select_top(graph, scores, [2, 2, 2])]
        [[0, 1], [1, 2], [0, 1]]
    """
    out = []
    for group, score, count in zip(graph.groups, scores, counts):
        if not group.prunable or count >= group.size:
            out.append(np.arange(group.size))
            continue
        out.append(top_in_blocks(np.asarray(score, dtype=np.float64), np.arange(group.size),
                                  group.size, group.partition, max(group.partition, int(count))))
    return out


def top_in_blocks(score: np.ndarray, candidates: np.ndarray, size: int, partition: int,
                   count: int) -> np.ndarray:
    """The ``count // partition`` best ``candidates`` of each block, sorted."""
    block, per_block = size // partition, count // partition
    out = []
    for j in range(partition):
        c = candidates[(candidates >= j * block) & (candidates < (j + 1) * block)]
        # Stable: ties keep the lower index (deterministic across runs).
        order = np.argsort(-score[c], kind="stable")[:per_block]
        out.append(np.sort(c[order]))
    return np.concatenate(out)


def _atoms(graph: ChannelGraph, scores: Sequence[np.ndarray],
           keep: Sequence[np.ndarray]) -> list[tuple[float, int]]:
    """Removable atoms in ascending score: ``(score, group)``; an atom removes the
    lowest-scored remaining unit of every block of the group (never the last one)."""
    atoms = []
    for group, score, kept in zip(graph.groups, scores, keep):
        if not group.prunable:
            continue
        p = group.partition
        block = group.size // p
        per_block = [np.sort(np.asarray(score, dtype=np.float64)[kept[(kept >= j * block)
                                                                      & (kept < (j + 1) * block)]])
                     for j in range(p)]
        depth = min(len(b) for b in per_block) - 1  # leave one unit per block
        for k in range(depth):
            atoms.append((float(np.mean([b[k] for b in per_block])), group.index))
    atoms.sort(key=lambda a: a[0])
    return atoms


def prune_to_bounds(graph: ChannelGraph, scores: Sequence[np.ndarray], bounds: Constraints,
                    keep: Sequence[np.ndarray] | None = None, *,
                    baseline: CostReport | None = None, bytes_per_element: int = 4) -> Selection:
    """Removes the lowest-scored units (from ``keep``, default all) until ``bounds`` hold.

    Costs only fall as units go, so the fewest removals that fit are found by bisection
    over the global score order (a global threshold on the scores).

    Raises:
        InfeasibleConstraintsError: even one unit per block breaks a bound.
    """
    keep = [np.arange(g.size) for g in graph.groups] if keep is None else [np.asarray(k) for k in keep]
    costs = graph_costs(graph, [len(k) for k in keep], bytes_per_element)
    if bounds.satisfied(costs):
        return Selection(keep, costs)
    check_feasible(graph, bounds, baseline, bytes_per_element)
    atoms = _atoms(graph, scores, keep)
    base = [len(k) for k in keep]

    def counts_after(n: int) -> list[int]:
        counts = list(base)
        for _, g in atoms[:n]:
            counts[g] -= graph.groups[g].partition
        return counts

    lo, hi = 0, len(atoms)  # hi fits (one unit per block), lo does not
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if bounds.satisfied(graph_costs(graph, counts_after(mid), bytes_per_element)):
            hi = mid
        else:
            lo = mid
    counts = counts_after(hi)
    chosen = [kept if count == len(kept) else
              top_in_blocks(np.asarray(score, dtype=np.float64), kept, group.size,
                             group.partition, count)
              for group, kept, score, count in zip(graph.groups, keep, scores, counts)]
    final = graph_costs(graph, [len(k) for k in chosen], bytes_per_element)
    removed = sum(base) - sum(len(k) for k in chosen)
    return Selection(chosen, final, removed_by_bound=removed,
                     threshold=atoms[hi - 1][0] if hi else -math.inf)


def uniform_multiplier(graph: ChannelGraph, counts: Sequence[int], bounds: Constraints, *,
                       baseline: CostReport | None = None, bytes_per_element: int = 4,
                       max_multiplier: float = 4.0,
                       tolerance: float = 1e-3) -> tuple[float, list[int]]:
    """The largest ``w`` such that every prunable group at ``w * counts[g]`` units
    (rounded to its partition, at least one per block) meets ``bounds``; returns ``w``
    and the counts. ``w`` may be below 1 (shrink further) or above (expand).

    Raises:
        InfeasibleConstraintsError: even the smallest widths break a bound.
    """
    def scaled(w: float) -> list[int]:
        out = []
        for group, count in zip(graph.groups, counts):
            if group.pinned:
                out.append(group.size)
                continue
            p = group.partition
            out.append(max(p, int(round(w * count / p)) * p))
        return out

    def fits(w: float) -> bool:
        return bounds.satisfied(graph_costs(graph, scaled(w), bytes_per_element))

    if not fits(0.0):
        check_feasible(graph, bounds, baseline, bytes_per_element)
        raise InfeasibleConstraintsError(
            "target: no uniform width multiplier fits the bounds, even at one unit per group")
    lo, hi = 0.0, max_multiplier
    if fits(hi):
        return hi, scaled(hi)
    while hi - lo > tolerance:
        mid = (lo + hi) / 2
        if fits(mid):
            lo = mid
        else:
            hi = mid
    return lo, scaled(lo)


def balance_keep(graph: ChannelGraph, keep: Sequence[np.ndarray],
                 scores: Sequence[np.ndarray]) -> list[np.ndarray]:
    """``keep`` made valid for :func:`~keras_cnas.compression.shrink`: pinned groups keep
    everything, an emptied group keeps its best unit, and a grouped conv's group keeps as
    many units in each block as its fullest block (the best-scored ones are added back)."""
    out = []
    for group, kept, score in zip(graph.groups, keep, scores):
        kept = np.unique(np.asarray(kept, dtype=np.int64))
        if not group.prunable or len(kept) == group.size:
            out.append(np.arange(group.size))
            continue
        p, block = group.partition, group.size // group.partition
        per_block = max(1, max(int(np.sum((kept >= j * block) & (kept < (j + 1) * block)))
                               for j in range(p)))
        # Kept units first (score +inf), then the rest by score.
        priority = np.asarray(score, dtype=np.float64).copy()
        priority[kept] = np.inf
        out.append(top_in_blocks(priority, np.arange(group.size), group.size, p, per_block * p))
    return out


def unit_costs(graph: ChannelGraph, counts: Sequence[int], cost: str,
               bytes_per_element: int = 4) -> list[float]:
    """Per group: what one unit costs at ``counts`` (the ``cost`` saved by removing one
    atom, divided by its units); NaN for groups that cannot shrink."""
    base = float(graph_costs(graph, counts, bytes_per_element)[cost])
    out = []
    for group, n in zip(graph.groups, counts):
        p = group.partition
        if not group.prunable or n <= p:
            out.append(math.nan)
            continue
        fewer = list(counts)
        fewer[group.index] -= p
        out.append((base - float(graph_costs(graph, fewer, bytes_per_element)[cost])) / p)
    return out
