"""The embedded default backend: FAISS for vectors and our own BM25 postings, in memory-mapped files of an index
folder (`CorpusIndex`); changes append segments and swap the folder atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from embeddings import Encoder
from rag.search.index import CorpusIndex, locked_index
from rag.search.stores.base import convex_top, postings_top
from rag.types import Document


class FaissStore:
    """A `Store` over an index folder.

    Parameters
    ----------
    directory : Path
        The index folder (built by `CorpusIndex.build(...).save(directory)` or `python -m rag build`).
    """

    name = "faiss"

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.index = CorpusIndex.load(self.directory)

    def add(self, documents: Sequence[Document], encoder: Encoder) -> list[str]:
        with locked_index(self.directory) as index:
            index.updated(list(documents), [], encoder).save(self.directory)  # an indexed id is replaced
        self.index = CorpusIndex.load(self.directory)
        return [d.doc_id for d in documents]

    def delete(self, doc_ids: Sequence[str]) -> list[str]:
        with locked_index(self.directory) as index:
            found = [d for d in doc_ids if d in index.documents]
            if found:
                index.updated([], found, None).save(self.directory)
        self.index = CorpusIndex.load(self.directory)
        return found

    def search(self, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        scores, rows = self.index.dense.search(np.asarray(vector)[None, :], k)
        return [(int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0]

    def lexical_search(self, tokens: Sequence[str], k: int) -> list[tuple[int, float]]:
        return postings_top(self.index.lexical.postings, tokens, k)

    def hybrid_search(self, tokens: Sequence[str], vector: np.ndarray, k: int,
                      weights: tuple[float, float] = (0.5, 0.5)) -> list[tuple[int, float]]:
        return convex_top(self.search(vector, 50), self.lexical_search(tokens, 50), k, weights)

    def count(self) -> int:
        return self.index.lexical.live_count()

    def save(self) -> None:
        """Every change is already swapped in."""

    def load(self) -> CorpusIndex:
        return self.index

    def close(self) -> None:
        self.index = None
