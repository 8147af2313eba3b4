"""The backend interface (txtai style): a store holds the passages of one index and answers dense, lexical and, where
the engine has it natively, hybrid searches; it is opened as a `CorpusIndex`-shaped object for the pipeline."""

from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from embeddings import Encoder
from rag.types import Document


@runtime_checkable
class Store(Protocol):
    """What every backend provides.

    Rows are passage rows (ints, as in `CorpusIndex.passages[row]`); scores are cosines (dense) or BM25 (lexical).
    Changes (`add`, `delete`) are atomic: a reader sees the index before or after, never in between.
    """

    name: str

    def add(self, documents: Sequence[Document], encoder: Encoder) -> list[str]:
        """Index documents (embedded with `encoder`); a document whose id is indexed is replaced. Returns the ids."""

    def delete(self, doc_ids: Sequence[str]) -> list[str]:
        """Take documents out; returns the ids that were there."""

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        """Dense top-k passages for a query vector: (row, cosine), best first."""

    def lexical_search(self, tokens: Sequence[str], k: int) -> list[tuple[int, float]]:
        """BM25 top-k passages for analyzed query tokens: (row, score), best first."""

    def hybrid_search(self, tokens: Sequence[str], vector: np.ndarray, k: int,
                      weights: tuple[float, float] = (0.5, 0.5)) -> list[tuple[int, float]]:
        """Fused top-k (convex combination of min-max normalized dense and BM25 scores)."""

    def count(self) -> int:
        """Live passages."""

    def save(self) -> None:
        """Make changes durable (a no-op where every change is committed at once)."""

    def load(self):
        """The index as the pipeline reads it (`documents`, `passages`, `sentences`, `dense`, `lexical`, ...)."""

    def close(self) -> None:
        """Release files, connections or servers."""


def postings_top(postings, tokens: Sequence[str], k: int) -> list[tuple[int, float]]:
    """BM25 top-k of a token bag: the tokens' contributions (`postings(token) -> (rows, scores)`) summed per row;
    ties by row."""
    scores: dict[int, float] = {}
    for token in tokens:
        for r, s in zip(*postings(token)):
            scores[int(r)] = scores.get(int(r), 0.0) + float(s)
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


def convex_top(dense: list[tuple[int, float]], lexical: list[tuple[int, float]], k: int,
               weights: tuple[float, float]) -> list[tuple[int, float]]:
    """The pipeline's fusion (rag.search.fuse.convex_combination) of two candidate lists, top-k by fused score."""
    from rag.search.fuse import convex_combination, top_k

    fused = convex_combination(
        {"dense": (np.array([r for r, _ in dense]), np.array([s for _, s in dense])),
         "lexical": (np.array([r for r, _ in lexical]), np.array([s for _, s in lexical]))},
        {"dense": weights[0], "lexical": weights[1]})
    return top_k(fused, k)
