"""Compiled term BM25 (numba): `sparse_term_bm25`'s formula and `LexicalIndex`'s postings scorer, bit for bit."""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager, nullcontext

import numpy as np

ENABLED = os.environ.get("RAG_NUMBA", "1") != "0"
"""Set RAG_NUMBA=0 to keep the numpy formula everywhere (the kernels give the same values bit for bit)."""

_compiled = None  # the `compiled` module, once imported
_ready = threading.Event()
_load_lock = threading.Lock()


def load():
    """Import the kernels (numba, ~0.3 s); None where numba is missing or RAG_NUMBA=0."""
    global _compiled
    if not ENABLED:
        return None
    with _load_lock:
        if _compiled is None:
            try:
                from rag.search import compiled
            except Exception as exc:  # no numba (it comes with ranx), or one that cannot cache: numpy serves
                fall_back("compiled BM25 kernels unavailable", exc)
                return None
            _compiled = compiled
    return _compiled


def fall_back(what: str, exc: Exception) -> None:
    """Warn that the numpy formula serves instead of the kernels (the same scores), and why."""
    import warnings

    warnings.warn(f"{what} ({type(exc).__name__}: {exc}); using numpy")


def ready() -> bool:
    """Whether callers should use the kernels: loaded, and their machine code loaded (see `warm`)."""
    return _ready.is_set()


def warm(run, background: bool = True) -> threading.Thread | None:
    """Load the kernels and call `run()` (which calls each kernel on the real index's arrays, so numba loads the
    machine code of exactly those types: ~1.1 s of CPU from its cache, ~3 s to compile on a machine's first start), then
    mark them ready. In the background by default: until then callers keep the numpy formula (the same values),
    so neither start-up nor the first question waits for numba."""
    def job() -> None:
        try:
            if load() is None:
                return
            run()
        except Exception as exc:  # a kernel that cannot run here leaves the numpy formula in charge
            fall_back("compiled BM25 kernels unavailable", exc)
            return
        _ready.set()

    if not background:
        job()
        return None
    thread = threading.Thread(target=job, name="load-kernels", daemon=True)
    thread.start()
    return thread


DENSE_FROM = 8
"""A group of postings (a term, its parts, one alternative or word) covering at least 1/DENSE_FROM of the rows is
folded by a pass over every row (vectorized, no per-posting bookkeeping); a smaller one through the list of rows
it touched. Either way the scores are the same, bit for bit; this only chooses the faster way."""


def plan(terms, position: dict[str, int], lengths: np.ndarray, n: int,
         dense_from: float | None = None) -> tuple[np.ndarray, ...]:
    """A query's terms as flat arrays the kernel walks.

    Parameters
    ----------
    terms : sequence of QueryTerm
    position : dict
        Token -> its place in the postings lists.
    lengths : np.ndarray
        Postings length at each place.
    n : int
        Rows of the index.
    dense_from : float, optional
        Default `DENSE_FROM`.

    Returns
    -------
    tuple of np.ndarray
        weights (float32); per term the [lo, hi) ranges of its forms, parts and alternatives (into the token lists
        and the alternatives), per alternative the range of its words, per word the range of its tokens; the token
        lists of forms, parts and words (int64 places); whether each term, each term's parts, each alternative and
        each word is folded densely (uint8).
    """
    weights = np.array([term.weight for term in terms], dtype=np.float32)
    form, part, alt, alt_word, word_token = [], [], [], [], []
    form_tokens, part_tokens, word_tokens = [], [], []
    term_dense, part_dense, alt_dense, word_dense = [], [], [], []
    dense_from = DENSE_FROM if dense_from is None else dense_from

    def dense(places: list[int]) -> bool:
        return float(sum(int(lengths[p]) for p in places)) * dense_from >= n

    def places(tokens) -> list[int]:
        return [position[t] for t in tokens]

    for term in terms:
        form.append((len(form_tokens), len(form_tokens) + len(term.tokens)))
        form_tokens.extend(places(term.tokens))
        part.append((len(part_tokens), len(part_tokens) + len(term.parts)))
        part_tokens.extend(places(term.parts))
        part_dense.append(dense(places(term.parts)))
        alt.append((len(alt_word), len(alt_word) + len(term.alternatives)))
        for alternative in term.alternatives:
            alt_word.append((len(word_token), len(word_token) + len(alternative)))
            alt_dense.append(dense([p for word in alternative for p in places(word)]))
            for word in alternative:
                word_token.append((len(word_tokens), len(word_tokens) + len(word)))
                word_tokens.extend(places(word))
                word_dense.append(dense(places(word)))
        term_dense.append(dense(places(term.all_tokens())))

    def pairs(items: list) -> np.ndarray:
        return np.array(items, dtype=np.int64).reshape(-1, 2)

    def ids(items: list) -> np.ndarray:
        return np.array(items, dtype=np.int64)

    def flags(items: list) -> np.ndarray:
        return np.array(items, dtype=np.uint8)

    return (weights, pairs(form), pairs(part), pairs(alt), pairs(alt_word), pairs(word_token), ids(form_tokens),
            ids(part_tokens), ids(word_tokens), flags(term_dense), flags(part_dense), flags(alt_dense),
            flags(word_dense))


class Scratch:
    """Working arrays of the kernel for indexes of up to `n` rows, reused across questions (allocating and zeroing
    a dozen arrays of n entries per question costs more than the scoring at 10^6 passages). One question at a time."""

    STAMP_LIMIT = 2_000_000_000

    def __init__(self, n: int) -> None:
        self.n = n
        # total, best, acc, most: zero between calls; marks and lists of touched rows of a term, a group (its parts
        # or one alternative) and a word. Separate arrays: views of one block would alias in the compiled loops.
        self.floats = [np.zeros(n, dtype=np.float32) for _ in range(4)]
        self.marks = [np.zeros(n, dtype=np.int32) for _ in range(3)]
        self.touched = [np.empty(n, dtype=np.int32) for _ in range(3)]
        self.stamps = np.zeros(3, dtype=np.int64)
        self.rows = np.empty(n, dtype=np.int64)
        self.scores = np.empty(n, dtype=np.float32)

    def checked(self) -> "Scratch":
        if self.stamps.max() > self.STAMP_LIMIT:  # stamps rise by a few per question: reset long before int32 ends
            for mark in self.marks:
                mark[:] = 0
            self.stamps[:] = 0
        return self


class ScratchPool:
    """Scratch arrays for concurrent questions: each takes a free set (or a new one) and gives it back; four are
    kept (two questions at once, each split in two halves)."""

    def __init__(self) -> None:
        self._free: list[Scratch] = []
        self._lock = threading.Lock()

    @contextmanager
    def take(self, n: int):
        with self._lock:
            scratch = next((s for s in self._free if s.n >= n), None)
            if scratch is not None:
                self._free.remove(scratch)
        if scratch is None:
            scratch = Scratch(n)
        try:
            yield scratch.checked()
        finally:
            with self._lock:
                self._free = sorted(self._free + [scratch], key=lambda s: s.n)[-4:]


POOL = ScratchPool()
"""The scratch arrays of `retrieve.sparse_term_bm25`'s kernel calls."""


SPLIT_FROM = 300_000
"""`term_scores` over at least this many postings in all splits the rows in two halves folded at once, one in a
helper thread (the kernel releases the GIL; 2 cores), each with its own scratch arrays: the same rows and scores
bit for bit (every row's arithmetic is its own). `retrieve.top_term_bm25` also scores that many postings in two
halves of the tokens at once. Below it the hand-over (~0.1 ms) costs more than it saves. Measured on the gold
questions at 10^6 synthetic passages (in-process, warm): the lexical top-50 p95 ~69 -> ~57 ms with both splits
(one run each, the same hour; the term formula alone 46 -> 34 ms)."""

HALVES = os.environ.get("RAG_PARALLEL_SEARCH", "1") != "0"
"""RAG_PARALLEL_SEARCH=0 keeps the halves in the calling thread too: nothing splits (unless a caller asks with
`split_from`), as it keeps a hybrid search's lexical half beside the dense one (`retrieve.PARALLEL`)."""

_HELPER: list = []
_HELPER_NAME = "bm25-half"
_HELPER_LOCK = threading.Lock()


def _helper():
    """The thread that runs the second of `halves` (made on first use)."""
    with _HELPER_LOCK:
        if not _HELPER:
            from concurrent.futures import ThreadPoolExecutor

            _HELPER.append(ThreadPoolExecutor(max_workers=1, thread_name_prefix=_HELPER_NAME))
        return _HELPER[0]


def halves(first, second):
    """(first(), second()) with `second` run in the helper thread at the same time; both finish before this returns
    (an exception from either is raised after both have). Called from the helper thread itself: one after the
    other (its one thread would wait on itself)."""
    if threading.current_thread().name.startswith(_HELPER_NAME):
        return first(), second()
    later = _helper().submit(second)
    try:
        low = first()
    finally:
        high = later.result()
    return low, high


def term_scores(n: int, postings: list[tuple[np.ndarray, np.ndarray]], terms, position: dict[str, int],
                parts_credit: float, alternative_credit: float, scratch: Scratch | None = None,
                dense_from: float | None = None, split_from: int | None = None,
                k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`retrieve.sparse_term_bm25` compiled: bit for bit the same rows and scores (every row gets the same float32
    operations in the same order; a maximum's operands may come in another order, which does not change it), or
    only the best k of them. Over `split_from` postings the rows are folded in two halves at once.

    Parameters
    ----------
    n : int
        Rows of the index (every posting row is below it).
    postings : list of (np.ndarray, np.ndarray)
        At each place of `position`, the token's postings: rows (int64, each once) and contributions (float32).
    terms : sequence of QueryTerm
    position : dict
        Token -> its place in `postings`.
    scratch : Scratch, optional
        Working arrays of at least n rows; default: taken from `POOL` (a split takes two).
    split_from : int, optional
        Default `SPLIT_FROM`; 0 always splits (tests), None the default.
    k : int, optional
        Only the k best rows, chosen in the kernel (no array of every row's score leaves it).

    Returns
    -------
    (rows, scores)
        Rows ascending with a score above 0, and their float32 scores; with k, the k best of them, best first (ties
        by row, as `dense.top_indices`).
    """
    if k is not None and k <= 0:
        raise ValueError(f"k must be > 0, got {k}")
    rows = [np.ascontiguousarray(r, dtype=np.int64) for r, _ in postings]
    scores = [np.ascontiguousarray(s, dtype=np.float32) for _, s in postings]
    if any(len(s) != len(r) for s, r in zip(scores, rows)):
        raise ValueError("postings: rows and scores of different lengths")
    if any(term.weight < 0 for term in terms):
        raise ValueError("term weights must be >= 0 (the formula starts each term's best way at 0)")
    split_from = (SPLIT_FROM if HALVES else float("inf")) if split_from is None else split_from
    size = sum(len(r) for r in rows)
    if scratch is not None or size < split_from or n < 2:
        with nullcontext(scratch) if scratch is not None else POOL.take(n) as scratch:
            return _best(k, *_fold_rows(0, n, n, rows, scores, terms, position, parts_credit, alternative_credit,
                                        scratch, dense_from, k))
    # the middle row of the longest postings: halves with about as many postings each
    longest = max(rows, key=len)
    middle = min(max(int(longest[len(longest) // 2]), 1), n - 1) if len(longest) else n // 2
    with POOL.take(n) as first, POOL.take(n) as second:  # given back only once both halves have finished
        low, high = halves(
            lambda: _fold_rows(0, middle, n, rows, scores, terms, position, parts_credit, alternative_credit, first,
                               dense_from, k),
            lambda: _fold_rows(middle, n, n, rows, scores, terms, position, parts_credit, alternative_credit,
                               second, dense_from, k))
    # with k: each half's best k hold the best k of all (one order, score then row, decides within and across)
    return _best(k, np.concatenate([low[0], high[0]]), np.concatenate([low[1], high[1]]))


def _best(k: int | None, rows: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All rows as they are (k None), else the k best, best first, ties by row."""
    if k is None:
        return rows, scores
    order = np.lexsort((rows, -scores))[:k]
    return rows[order], scores[order]


def _fold_rows(r0: int, r1: int, n: int, rows: list[np.ndarray], scores: list[np.ndarray], terms,
               position: dict[str, int], parts_credit: float, alternative_credit: float, scratch: Scratch,
               dense_from: float | None, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The kernel over the rows [r0, r1) of n: each token's postings from its first row >= r0 to its first row >= r1
    (the first half from its start, the last to its end: every posting is checked by one of the halves)."""
    cut = [(int(np.searchsorted(r, r0)) if r0 else 0, int(np.searchsorted(r, r1)) if r1 < n else len(r))
           for r in rows]
    lengths = np.array([hi - lo for lo, hi in cut], dtype=np.int64)
    # the kernel reads each token's arrays through their addresses (no copy into one buffer, no typed list to
    # compile at start-up); `rows` and `scores` keep them alive until it returns
    row_at = np.array([r.ctypes.data + lo * r.itemsize for r, (lo, _) in zip(rows, cut)], dtype=np.int64)
    score_at = np.array([s.ctypes.data + lo * s.itemsize for s, (lo, _) in zip(scores, cut)], dtype=np.int64)
    count = _kernels().term_scores(r0, r1, row_at, score_at, lengths,
                                   *plan(terms, position, lengths, r1 - r0, dense_from),
                                   np.float32(parts_credit), np.float32(alternative_credit), k or 0, *scratch.floats,
                                   *scratch.marks, *scratch.touched, scratch.stamps, scratch.rows, scratch.scores)
    if count < 0:  # the kernel checks every posting as it reads it and stops before reading out of bounds
        raise ValueError("postings: rows not strictly ascending within the index, or a contribution negative or NaN")
    return scratch.rows[:count].copy(), scratch.scores[:count].copy()


def score_postings(values: np.ndarray, tf: np.ndarray, lengths: np.ndarray, lo: int, hi: int, base: int,
                   idf: np.float32, norm0: float, norm1: float, live: np.ndarray, rows: np.ndarray,
                   scores: np.ndarray) -> int:
    """BM25 contributions of one token's postings `values[lo:hi]` (local rows) in one part, as
    `LexicalIndex._weights` computes them (idf x tf in float32, the length normalization in float64): written to
    `rows` (global: + base) and `scores`, rows whose `live` flag is 0 skipped (`live` empty: every row is live).
    Returns how many were written."""
    # read-only views: a segment memory-mapped from disk and one built in this process then have the same numba
    # types, so adding a document never compiles a second variant
    values, tf, lengths, live = (_read_only(a) for a in (values, tf, lengths, live))
    return _kernels().score_postings(values, tf, lengths, lo, hi, base, np.float32(idf), float(norm0), float(norm1),
                                     live, len(live) > 0, rows, scores)


def _read_only(array: np.ndarray) -> np.ndarray:
    view = np.asarray(array).view(np.ndarray)
    view.flags.writeable = False
    return view


def _kernels():
    module = load()
    if module is None:
        raise RuntimeError("the compiled kernels need numba (pip install -r requirements.txt) and RAG_NUMBA unset")
    return module
