"""Dense passage search with FAISS: exact inner product up to a measured size, IVF (8-bit codes) with exact re-ranking
above it, parameters chosen on measured recall@10 against exact search; tombstoned rows never returned."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

FLAT_MAX = int(os.environ.get("RAG_FLAT_MAX", 20_000))
"""Segments up to this many passages are searched exactly (IndexFlatIP). Measured single-threaded on 2 cores:
exact search takes ~0.9 ms at 10^4, ~3.5 ms at 3·10^4 and ~30 ms at 10^5 passages (384 dims); IVF stays at 1-4 ms."""
RECALL_TARGET = 0.97
"""nprobe is the smallest that reaches this recall@10 against exact search on sample queries at build time (a margin
above the 0.95 goal, since real questions are not the sample)."""
RERANK = 4
"""An approximate search fetches RERANK x k candidates by their 8-bit codes and re-ranks them with the float vectors."""
NPROBES = (4, 8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)


def _faiss():
    import faiss

    return faiss


def set_search_threads(n: int | None = None) -> int:
    """Threads FAISS may use for one search: $RAG_SEARCH_THREADS, default 1 (a question is one query: threads only
    add wake-up and spin costs, and fight the encoder's threads when both run). Returns the number set."""
    n = int(n if n is not None else os.environ.get("RAG_SEARCH_THREADS", 1))
    _faiss().omp_set_num_threads(max(1, n))
    return n


class _build_threads:
    """Training and adding use every core (a search uses `set_search_threads`'s number, restored afterwards)."""

    def __enter__(self):
        faiss = _faiss()
        self.before = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(os.cpu_count() or 1)

    def __exit__(self, *exc):
        _faiss().omp_set_num_threads(self.before)


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k inner product over `vectors` (a memory map is fine: FAISS reads it in place)."""
    faiss = _faiss()
    k = max(1, min(k, len(vectors)))
    return faiss.knn(np.ascontiguousarray(queries, dtype=np.float32), np.ascontiguousarray(vectors), k,
                     metric=faiss.METRIC_INNER_PRODUCT)


def recall_at(exact_rows: np.ndarray, approx_rows: np.ndarray, k: int = 10) -> float:
    """Mean share of the exact top-k found in the approximate top-k."""
    hits = [len(set(a[:k].tolist()) & set(e[:k].tolist())) / max(1, min(k, len(e))) for e, a in zip(exact_rows, approx_rows)]
    return float(np.mean(hits)) if hits else 1.0


def ivf_lists(n: int) -> int:
    """Number of IVF lists for n vectors: about 4·sqrt(n), a power of two, at least 64."""
    return int(max(64, 2 ** round(np.log2(4 * np.sqrt(n)))))


class DenseIndex:
    """Inner-product search over L2-normalized vectors (= cosine); the row position is the passage row.

    `kind` is "flat" (exact) or "ivf" (IVF lists of 8-bit scalar-quantized codes, re-ranked exactly with the float
    vectors). `DenseIndex(dim).index(vectors)` chooses the kind by size (see `FLAT_MAX`).

    Parameters
    ----------
    dim : int
    kind : {"auto", "flat", "ivf"}
    """

    def __init__(self, dim: int, kind: str = "auto") -> None:
        if kind not in ("auto", "flat", "ivf"):
            raise ValueError(f"kind must be auto, flat or ivf, got {kind!r}")
        self.dim = dim
        self.kind = kind
        self.params: dict = {}
        self._index = None
        self._vectors = np.zeros((0, dim), dtype=np.float32)

    # ------------------------------------------------------------------------------------------------ build

    def index(self, vectors: np.ndarray, sample_queries: np.ndarray | None = None, seed: int = 13) -> "DenseIndex":
        """Index `vectors` (kept by reference: pass the memory map the segment wrote)."""
        faiss = _faiss()
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        self._vectors = vectors
        n = len(vectors)
        kind = self.kind if self.kind != "auto" else ("flat" if n <= FLAT_MAX else "ivf")
        self.kind = kind
        if kind == "flat":
            self._index = faiss.IndexFlatIP(self.dim)
            if n:
                self._index.add(np.ascontiguousarray(vectors, dtype=np.float32))
            self.params = {"type": "flat"}
            return self
        with _build_threads():
            self._build_ivf(vectors, sample_queries, seed)
        return self

    def _build_ivf(self, vectors: np.ndarray, sample_queries: np.ndarray | None, seed: int) -> None:
        faiss = _faiss()
        n = len(vectors)
        rng = np.random.default_rng(seed)
        nlist = ivf_lists(n)
        train = vectors[np.sort(rng.choice(n, size=min(n, max(40 * nlist, 20_000)), replace=False))]
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFScalarQuantizer(quantizer, self.dim, nlist, faiss.ScalarQuantizer.QT_8bit,
                                            faiss.METRIC_INNER_PRODUCT)
        ivf.train(np.ascontiguousarray(train, dtype=np.float32))
        for lo in range(0, n, 100_000):
            ivf.add(np.ascontiguousarray(vectors[lo : lo + 100_000], dtype=np.float32))
        self._index = ivf
        self.params = {"type": "ivf_sq8", "nlist": nlist, "rerank": RERANK}
        self._tune(sample_queries if sample_queries is not None else vectors[rng.choice(n, 200, replace=False)])

    def _tune(self, queries: np.ndarray, k: int = 10) -> None:
        """Choose nprobe: the smallest reaching RECALL_TARGET recall@10 against exact search on `queries`."""
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        _, exact = exact_search(self._vectors, queries, k)
        measured = {}
        for nprobe in NPROBES:
            if nprobe > self.params["nlist"]:
                break
            self.params["nprobe"] = nprobe
            _, rows = self.search(queries, k)
            measured[nprobe] = recall_at(exact, rows, k)
            if measured[nprobe] >= RECALL_TARGET:
                break
        self.params["recall_at_10"] = round(measured[self.params["nprobe"]], 4)
        self.params["tuning"] = {"queries": len(queries), "target": RECALL_TARGET,
                                 "recall_by_nprobe": {str(a): round(b, 4) for a, b in measured.items()}}

    # ------------------------------------------------------------------------------------------------ search

    def count(self) -> int:
        return int(self._index.ntotal) if self._index is not None else 0

    def search(self, queries: np.ndarray, k: int, live: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows), each (n_queries, k'), best first; rows of -1 pad when fewer exist.

        Parameters
        ----------
        live : np.ndarray of uint8, optional
            1 for rows that may be returned (tombstoned rows are 0); None: all.
        """
        faiss = _faiss()
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        n = self.count()
        k = max(1, min(k, n)) if n else 1
        if n == 0:
            return np.full((len(queries), 1), -np.inf, dtype=np.float32), np.full((len(queries), 1), -1)
        params = None
        bitmap = None
        if live is not None and not bool(np.all(live)):
            bitmap = np.packbits(np.asarray(live, dtype=bool), bitorder="little")
            selector = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
        else:
            selector = None
        if self.kind == "flat":
            if selector is not None:
                params = faiss.SearchParameters(sel=selector)
            return self._index.search(queries, k, params=params)
        fetch = min(n, k * self.params.get("rerank", RERANK))
        params = faiss.SearchParametersIVF(nprobe=int(self.params.get("nprobe", 16)), sel=selector)
        _, rows = self._index.search(queries, fetch, params=params)
        del bitmap
        scores_out = np.full((len(queries), k), -np.inf, dtype=np.float32)
        rows_out = np.full((len(queries), k), -1, dtype=np.int64)
        for i, (q, cand) in enumerate(zip(queries, rows)):
            cand = np.sort(cand[cand >= 0])
            if not cand.size:
                continue
            exact = np.asarray(self._vectors[cand]) @ q
            top = top_indices(exact, k)
            scores_out[i, : len(top)] = exact[top]
            rows_out[i, : len(top)] = cand[top]
        return scores_out, rows_out

    def reconstruct_row(self, row: int) -> np.ndarray:
        return np.asarray(self._vectors[int(row)])

    def reconstruct_all(self) -> np.ndarray:
        return np.asarray(self._vectors)

    # ------------------------------------------------------------------------------------------------ files

    def save(self, path: Path) -> None:
        _faiss().write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path, vectors: np.ndarray, params: dict | None = None) -> "DenseIndex":
        """Map a saved index (its lists stay on disk until searched); `vectors` are the segment's float vectors."""
        faiss = _faiss()
        params = dict(params or {"type": "flat"})
        kind = "flat" if params.get("type", "flat") == "flat" else "ivf"
        flag = faiss.IO_FLAG_MMAP_IFC if kind == "flat" else faiss.IO_FLAG_MMAP
        index = faiss.read_index(str(path), flag)
        dense = cls(index.d, kind)
        dense._index = index
        dense._vectors = vectors
        dense.params = params
        return dense


def top_indices(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k largest scores, best first (argpartition, then a sort of only those k); ties by position."""
    n = len(scores)
    if n == 0 or k <= 0:
        return np.zeros(0, dtype=np.int64)
    if k < n:
        part = np.argpartition(-scores, k - 1)[:k]
        # ties at the k-th score: keep the lowest positions, as a stable full sort would
        kth = scores[part].min()
        tied = np.flatnonzero(scores == kth)
        keep = np.concatenate([part[scores[part] > kth], tied])[:k] if len(tied) > 1 else part
    else:
        keep = np.arange(n)
    return keep[np.lexsort((keep, -scores[keep]))]
