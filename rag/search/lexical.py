"""BM25 lexical retrieval over passages with the Swedish analyzer (bm25s), saved as .npy + JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.search.analysis import SwedishAnalyzer


class LexicalIndex:
    """BM25 (Lucene variant, via bm25s) over analyzed passage texts.

    Parameters
    ----------
    analyzer : SwedishAnalyzer
        Turns passage and query text into tokens; fitted on the corpus.
    k1, b : float
        BM25 parameters.

    Example
    -------
    >>> lex = LexicalIndex(SwedishAnalyzer.fit(texts)); lex.index(texts)
    >>> ids, scores = lex.search("kontaktsjuksköterska", k=5)
    """

    def __init__(self, analyzer: SwedishAnalyzer, k1: float = 1.2, b: float = 0.75) -> None:
        self.analyzer = analyzer
        self.k1 = k1
        self.b = b
        self._bm25 = None
        self._count = 0

    def index(self, texts: Sequence[str]) -> None:
        import bm25s

        tokens = [self.analyzer.analyze(t) or [""] for t in texts]
        self._bm25 = bm25s.BM25(k1=self.k1, b=self.b, method="lucene")
        self._bm25.index(tokens, show_progress=False)
        self._count = len(texts)

    def count(self) -> int:
        return self._count

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every passage for already analyzed query tokens (unknown tokens are ignored)."""
        if self._bm25 is None:
            raise RuntimeError("LexicalIndex is empty: call index() or load() first")
        vocab = self._bm25.vocab_dict
        known = [t for t in query_tokens if t in vocab]
        if not known:
            return np.zeros(self._count, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(known), dtype=np.float32)

    def token_scores(self, token: str) -> np.ndarray:
        """BM25 contribution of one token to every passage (zeros when the token is unknown).

        Read straight from bm25s's precomputed sparse score matrix (one column per token).
        """
        out = np.zeros(self._count, dtype=np.float32)
        col = self._bm25.vocab_dict.get(token) if self._bm25 is not None else None
        if col is None or not token:
            return out
        s = self._bm25.scores
        lo, hi = s["indptr"][col], s["indptr"][col + 1]
        out[s["indices"][lo:hi]] = s["data"][lo:hi]
        return out

    def document_frequencies(self) -> dict[str, int]:
        """Number of passages each token occurs in (from the BM25 matrix's column lengths)."""
        if self._bm25 is None:
            return {}
        df = np.diff(self._bm25.scores["indptr"])
        return {tok: int(df[i]) if i < len(df) else 0 for tok, i in self._bm25.vocab_dict.items() if tok}

    def idf(self) -> dict[str, float]:
        """Lucene BM25 idf of each token: log(1 + (N - df + 0.5) / (df + 0.5))."""
        n = self._count
        return {tok: float(np.log(1 + (n - df + 0.5) / (df + 0.5))) for tok, df in self.document_frequencies().items()}

    def search(self, query: str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k passage rows and BM25 scores for a query text; rows with score 0 are left out."""
        scores = self.scores(self.analyzer.analyze(query))
        k = min(k, self._count)
        top = np.argsort(-scores, kind="stable")[:k]
        top = top[scores[top] > 0]
        return top, scores[top]

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self._bm25.save(str(directory), show_progress=False)
        (directory / "analyzer.json").write_text(
            json.dumps({"k1": self.k1, "b": self.b, "count": self._count, **self.analyzer.config(),
                        "vocabulary": self.analyzer.vocabulary}, ensure_ascii=False),
            encoding="utf-8",
        )

    @classmethod
    def load(cls, directory: Path) -> "LexicalIndex":
        import bm25s

        directory = Path(directory)
        meta = json.loads((directory / "analyzer.json").read_text(encoding="utf-8"))
        analyzer = SwedishAnalyzer(meta["vocabulary"], fold=meta["fold"], compounds=meta["compounds"])
        lex = cls(analyzer, k1=meta["k1"], b=meta["b"])
        lex._bm25 = bm25s.BM25.load(str(directory), show_progress=False, allow_pickle=False)
        lex._count = meta["count"]
        return lex
