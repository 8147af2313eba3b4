"""Pure functions that fuse rankings from several retrievers: reciprocal rank fusion and convex combination."""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], k: float = 60.0, weights: Sequence[float] | None = None
) -> dict[int, float]:
    """Reciprocal rank fusion (Cormack, Clarke & Büttcher, SIGIR 2009): score(d) = sum_r w_r / (k + rank_r(d)).

    Parameters
    ----------
    rankings : sequence of sequences of int
        Each ranking lists item ids, best first (rank 1 = first).
    k : float
        The damping constant (60 in the paper).
    weights : sequence of float, optional
        One weight per ranking (default 1 each).

    Returns
    -------
    dict
        Item id -> fused score (higher is better).
    """
    weights = weights or [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError("one weight per ranking is needed")
    fused: dict[int, float] = {}
    for ranking, w in zip(rankings, weights):
        for rank, item in enumerate(ranking, 1):
            fused[item] = fused.get(item, 0.0) + w / (k + rank)
    return fused


def min_max(scores: np.ndarray) -> np.ndarray:
    """Scale scores to [0, 1]; constant input maps to 0 (no evidence of difference)."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0:
        return scores
    lo, hi = float(scores.min()), float(scores.max())
    return (scores - lo) / (hi - lo) if hi > lo else np.zeros_like(scores)


def convex_combination(score_lists: Mapping[str, tuple[np.ndarray, np.ndarray]], weights: Mapping[str, float]) -> dict[int, float]:
    """Weighted sum of min-max normalized scores (Bruch et al., "An analysis of fusion functions for hybrid
    retrieval", TOIS 2023). Items missing from a list get 0 from it.

    Parameters
    ----------
    score_lists : mapping
        Retriever name -> (item ids, scores), over that retriever's candidates.
    weights : mapping
        Retriever name -> weight (typically summing to 1).
    """
    fused: dict[int, float] = {}
    for name, (ids, scores) in score_lists.items():
        w = weights.get(name, 0.0)
        for item, s in zip(np.asarray(ids).tolist(), min_max(scores).tolist()):
            fused[item] = fused.get(item, 0.0) + w * s
    return fused


def top_k(fused: Mapping[int, float], k: int) -> list[tuple[int, float]]:
    """Best `k` (item, score) pairs, ties broken by item id for determinism."""
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
