"""BM25 (Lucene variant) over token-id postings with live statistics: segments are appended, rows tombstoned, and
N, the mean length and document frequencies always describe exactly the live passages."""

from __future__ import annotations

import json
import threading
from collections import Counter, OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from rag.search.analysis import SwedishAnalyzer, words
from rag.search.columns import RaggedColumn, open_array, save_array
from rag.search.dense import top_indices


@dataclass
class PostingPart:
    """The postings of one segment: token id -> local passage rows and term frequencies, plus passage lengths."""

    postings: RaggedColumn
    tf: np.ndarray
    lengths: np.ndarray
    base: int  # global row of the segment's first passage

    def span_of(self, token_id: int) -> tuple[int, int]:
        """Where the token's postings lie in `postings.values` and `tf` ([lo, hi); empty if the part lacks it)."""
        if token_id + 1 >= len(self.postings.indptr):
            return 0, 0
        return int(self.postings.indptr[token_id]), int(self.postings.indptr[token_id + 1])

    def rows_of(self, token_id: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.span_of(token_id)
        return np.asarray(self.postings.values[lo:hi]), np.asarray(self.tf[lo:hi])


class Vocabulary:
    """Token strings <-> ids: ids are assigned once and never change, so stored token ids stay valid."""

    def __init__(self, tokens: Sequence[str] = ()) -> None:
        self.tokens = list(tokens)
        self.ids = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def get(self, token: str) -> int | None:
        return self.ids.get(token)

    def add(self, tokens: Iterable[str]) -> list[int]:
        """Ids of `tokens`, new tokens appended."""
        out = []
        for t in tokens:
            i = self.ids.get(t)
            if i is None:
                i = self.ids[t] = len(self.tokens)
                self.tokens.append(t)
            out.append(i)
        return out


class IdfMap(Mapping):
    """Lucene idf of every token the live passages hold, computed from the document frequencies on access."""

    def __init__(self, lexical: "LexicalIndex") -> None:
        self._lex = lexical

    def __getitem__(self, token: str) -> float:
        i = self._lex.vocabulary.get(token)
        if i is None or i >= len(self._lex.df) or self._lex.df[i] <= 0 or not token:
            raise KeyError(token)
        return self._lex.idf_of(int(self._lex.df[i]))

    def __iter__(self) -> Iterator[str]:
        df = self._lex.df
        return (t for i, t in enumerate(self._lex.vocabulary.tokens) if t and i < len(df) and df[i] > 0)

    def __len__(self) -> int:
        return int(np.count_nonzero(self._lex.df > 0))

    def values(self):  # type: ignore[override]
        df = self._lex.df
        return self._lex.idf_of(df[df > 0]).tolist()


class LexicalIndex:
    """BM25 over analyzed passage texts, scored at query time from term frequencies (so appends and removals keep the
    statistics exact); only the postings of the query's tokens are read.

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
        self.vocabulary = Vocabulary()
        self.parts: list[PostingPart] = []
        self.live = np.zeros(0, dtype=np.uint8)
        self.df = np.zeros(0, dtype=np.int64)
        self.total_length = 0
        self.word_counts: dict[str, int] = {}
        self._cache_lock = threading.Lock()
        self._version = 0  # changes with every append or removal: cached postings of older statistics never match

    # ------------------------------------------------------------------------------------------------ building

    def index(self, texts: Sequence[str]) -> None:
        """Index `texts` as the only passages (a fresh index)."""
        self.vocabulary = Vocabulary()
        self.parts, self.live, self.df, self.total_length = [], np.zeros(0, dtype=np.uint8), np.zeros(0, np.int64), 0
        self.append([self.vocabulary.add(self.analyzer.analyze(t)) for t in texts])

    def append(self, passage_tokens: Sequence[Sequence[int]], part: PostingPart | None = None) -> PostingPart:
        """Add a segment of passages given their token ids (all occurrences, in order); returns its postings."""
        from rag.search.segment import invert

        if part is None:
            postings, tf, lengths = invert(passage_tokens, len(self.vocabulary))
            part = PostingPart(postings, tf, lengths, self.count())
        self.parts.append(part)
        self._version += 1
        self.live = np.concatenate([self.live, np.ones(len(part.lengths), dtype=np.uint8)])
        self._grow_df()
        self.df[: len(part.postings.indptr) - 1] += np.diff(np.asarray(part.postings.indptr))
        self.total_length += int(np.asarray(part.lengths, dtype=np.int64).sum())
        return part

    def _grow_df(self) -> None:
        if len(self.df) < len(self.vocabulary):
            self.df = np.concatenate([self.df, np.zeros(len(self.vocabulary) - len(self.df), dtype=np.int64)])

    def remove_rows(self, rows: Iterable[int], unique_tokens: Iterable[Sequence[int]]) -> None:
        """Tombstone passage rows; `unique_tokens` holds each row's distinct token ids (for the frequencies)."""
        self._version += 1
        for row, toks in zip(rows, unique_tokens):
            if not self.live[row]:
                continue
            self.live[row] = 0
            self.df[np.asarray(toks, dtype=np.int64)] -= 1
            part = self.part_of(row)
            self.total_length -= int(part.lengths[row - part.base])

    def part_of(self, row: int) -> PostingPart:
        for part in reversed(self.parts):
            if row >= part.base:
                return part
        raise IndexError(row)

    def add_words(self, texts: Iterable[str], sign: int = 1) -> None:
        """Count (or, with sign=-1, uncount) the words of document texts: the analyzer's and speller's vocabulary."""
        for w, c in Counter(w for t in texts for w in words(t)).items():
            n = self.word_counts.get(w, 0) + sign * c
            if n > 0:
                self.word_counts[w] = n
            else:
                self.word_counts.pop(w, None)

    # ------------------------------------------------------------------------------------------------ scoring

    def count(self) -> int:
        """Passage rows (live and tombstoned): the length of every score array."""
        return len(self.live)

    def live_count(self) -> int:
        """Live passages (cached per version of the statistics: idf reads it for every term of every question)."""
        cached = self.__dict__.get("_live_count")
        if cached is None or cached[0] != (self._version, id(self.live), len(self.live)):
            cached = ((self._version, id(self.live), len(self.live)), int(np.count_nonzero(self.live)))
            self._live_count = cached
        return cached[1]

    @property
    def avgdl(self) -> float:
        n = self.live_count()
        return self.total_length / n if n else 1.0

    def idf_of(self, df):
        n = self.live_count()
        return np.log(1 + (n - np.asarray(df, dtype=np.float64) + 0.5) / (np.asarray(df, dtype=np.float64) + 0.5)) \
            if np.ndim(df) else float(np.log(1 + (n - df + 0.5) / (df + 0.5)))

    CONCURRENT_READS = True
    """`postings` may be called from two threads at once (its cache is locked; the scorer releases the GIL)."""

    POSTINGS_CACHE = 4_000_000
    """Scored postings of recent tokens are kept up to this many entries in all (~48 MB): common tokens recur in
    most questions and in the checks of refusal suggestions. An update makes a new index, with an empty cache."""

    def postings(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        """(live passage rows, BM25 contribution of `token` to each), rows ascending; empty when unknown."""
        cache = self.__dict__.setdefault("_postings_cache", OrderedDict())
        key = (token, self._version)
        with self._cache_lock:
            hit = cache.get(key)
            if hit is not None:
                cache.move_to_end(key)
                return hit
        out = self._postings(token)
        with self._cache_lock:
            if key in cache:  # another thread scored it meanwhile (the same values): count it once
                return cache[key]
            cache[key] = out
            self._cached = getattr(self, "_cached", 0) + len(out[0])
            while self._cached > self.POSTINGS_CACHE and len(cache) > 1:
                _, (rows, _) = cache.popitem(last=False)
                self._cached -= len(rows)
        return out

    def _token_id(self, token: str) -> int | None:
        """The vocabulary id of a token some live passage holds, else None."""
        i = self.vocabulary.get(token) if token else None
        return i if i is not None and i < len(self.df) and self.df[i] > 0 else None

    def _scored(self, token: str):
        """The token's scored postings if `postings` has them in its cache (for these statistics), else None."""
        return self.__dict__.get("_postings_cache", {}).get((token, self._version))

    def _weights(self, i: int, tf: np.ndarray, dl: np.ndarray) -> np.ndarray:
        """BM25 contributions of token id `i` for term frequencies `tf` in passages of lengths `dl` (float32)."""
        idf = self.idf_of(int(self.df[i]))
        norm = self._norm()
        return (idf * tf / (tf + (norm[0] + norm[1] * dl))).astype(np.float32)

    def _norm(self) -> tuple[float, float]:
        """BM25's length normalization as two terms, k1 (1 - b) and k1 b / avgdl: K(dl) = norm0 + norm1 dl."""
        return self.k1 * (1 - self.b), self.k1 * self.b / self.avgdl

    def _postings(self, token: str, compiled: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(live rows, contributions) of a token, scored compiled (`kernels.score_postings`) once the kernels are
        ready (`compiled`: force either way) and where the stored term frequencies are float32 (every index this
        code builds), else by `_postings_numpy`: the same values bit for bit."""
        from rag.search import kernels

        if not (kernels.ready() if compiled is None else compiled) or any(
                (part.tf.dtype, part.postings.values.dtype, part.lengths.dtype) != (np.float32, np.int32, np.int32)
                for part in self.parts):  # the types the kernel is loaded for (every index this code builds)
            return self._postings_numpy(token)
        i = self._token_id(token)
        if i is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        spans = [(part, *part.span_of(i)) for part in self.parts]
        size = sum(hi - lo for _, lo, hi in spans)
        rows, scores = np.empty(size, dtype=np.int64), np.empty(size, dtype=np.float32)
        idf = self.idf_of(int(self.df[i]))  # as `_weights`: a Python float times float32 values (float32)
        norm = self._norm()
        live = np.zeros(0, dtype=np.uint8) if self._all_live() else self.live
        count = 0
        for part, lo, hi in spans:
            if hi > lo:
                count += kernels.score_postings(part.postings.values, part.tf, part.lengths, lo, hi, part.base, idf,
                                                norm[0], norm[1], live, rows[count:], scores[count:])
        return (rows, scores) if count == size else (rows[:count].copy(), scores[:count].copy())

    def _postings_numpy(self, token: str) -> tuple[np.ndarray, np.ndarray]:
        i = self._token_id(token)
        if i is None:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        all_live = self._all_live()
        rows_out, scores_out = [], []
        for part in self.parts:
            rows, tf = part.rows_of(i)
            if not rows.size:
                continue
            score = self._weights(i, tf, part.lengths[rows])
            grows = rows.astype(np.int64) + part.base if part.base else rows.astype(np.int64)
            if not all_live:
                keep = self.live[grows].astype(bool)
                grows, score = grows[keep], score[keep]
            rows_out.append(grows)
            scores_out.append(score)
        if not rows_out:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return np.concatenate(rows_out), np.concatenate(scores_out)

    def frequency(self, token: str) -> int:
        """Live document frequency of `token` (0 when unknown): the length of its live postings."""
        i = self._token_id(token)
        return int(self.df[i]) if i is not None else 0

    def same_postings(self, a: str, b: str) -> bool:
        """Whether two tokens are held by the same passages with the same term frequencies (so the same BM25
        contribution everywhere): a word without accents and its accent-folded form ("regering", "~regering"),
        about a third of the postings a question's tokens have on the corpus's text. Compared on the stored
        postings (a memory read, no scoring), only when the frequencies agree; cached for these statistics."""
        i, j = self._token_id(a), self._token_id(b)
        if i is None or j is None:
            return i is None and j is None
        if i == j:
            return True
        if self.df[i] != self.df[j]:
            return False
        cache = self.__dict__.setdefault("_same_cache", {})
        key = (self._version, min(i, j), max(i, j))
        same = cache.get(key)
        if same is None:
            same = True
            for part in self.parts:
                (lo, hi), (lo2, hi2) = part.span_of(i), part.span_of(j)
                if not (np.array_equal(part.postings.values[lo:hi], part.postings.values[lo2:hi2])
                        and np.array_equal(part.tf[lo:hi], part.tf[lo2:hi2])):
                    same = False
                    break
            if len(cache) > 100_000:
                cache.clear()
            cache[key] = same
        return same

    def bound(self, token: str) -> float:
        """An upper bound of the token's BM25 contribution to any passage: its largest one when its postings are
        already scored, else its idf (tf / (tf + K) < 1); 0 if absent."""
        hit = self._scored(token)
        if hit is not None:
            return float(hit[1].max()) if len(hit[1]) else 0.0
        df = self.frequency(token)
        return self.idf_of(df) if df else 0.0

    def scores_at(self, token: str, rows: np.ndarray) -> np.ndarray:
        """BM25 contribution of `token` at the given live passage rows (ascending), 0 where it is absent.

        Reads only the entries found by binary search in the token's postings, so a common token costs
        O(len(rows) log df), not O(df); the values equal those of `postings` bit for bit.
        """
        rows = np.asarray(rows, dtype=np.int64)
        out = np.zeros(len(rows), dtype=np.float32)
        hit = self._scored(token)
        if hit is not None:  # already scored whole: look the rows up in it
            cached_rows, cached_scores = hit
            if len(cached_rows):
                at = np.minimum(np.searchsorted(cached_rows, rows), len(cached_rows) - 1)
                found = cached_rows[at] == rows
                out[found] = cached_scores[at[found]]
            return out
        i = self._token_id(token)
        if i is None or not len(rows):
            return out
        for part in self.parts:
            lo, hi = np.searchsorted(rows, [part.base, part.base + len(part.lengths)])
            if lo == hi:
                continue
            prows, tf = part.rows_of(i)
            if not prows.size:
                continue
            local = rows[lo:hi] - part.base
            at = np.minimum(np.searchsorted(prows, local), len(prows) - 1)
            found = np.asarray(prows[at]) == local
            if not found.any():
                continue
            out[lo + np.flatnonzero(found)] = self._weights(i, tf[at[found]], part.lengths[local[found]])
        return out

    def _all_live(self) -> bool:
        key = (id(self.live), len(self.live), self.total_length)
        cached = getattr(self, "_live_all", None)  # one (key, answer) pair: threads never see half of it
        if cached is None or cached[0] != key:
            cached = self._live_all = (key, bool(np.all(self.live)))
        return cached[1]

    def token_scores(self, token: str) -> np.ndarray:
        """BM25 contribution of one token to every passage row (zeros when unknown): dense, for small indexes."""
        out = np.zeros(self.count(), dtype=np.float32)
        rows, scores = self.postings(token)
        out[rows] = scores
        return out

    def scores(self, query_tokens: Sequence[str]) -> np.ndarray:
        """BM25 score of every passage row for already analyzed query tokens (unknown tokens are ignored)."""
        out = np.zeros(self.count(), dtype=np.float32)
        for token in query_tokens:
            rows, scores = self.postings(token)
            np.add.at(out, rows, scores)
        return out

    def document_frequencies(self) -> dict[str, int]:
        """Number of live passages each token occurs in."""
        return {t: int(self.df[i]) for i, t in enumerate(self.vocabulary.tokens) if t and i < len(self.df) and self.df[i] > 0}

    def idf(self) -> IdfMap:
        """Lucene BM25 idf of each token: log(1 + (N - df + 0.5) / (df + 0.5)), a lazy mapping."""
        return IdfMap(self)

    def search(self, query: str, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """Top-k passage rows and BM25 scores for a query text; rows with score 0 are left out."""
        scores = self.scores(self.analyzer.analyze(query))
        top = top_indices(scores, min(k, self.count()))
        top = top[scores[top] > 0]
        return top, scores[top]

    # ------------------------------------------------------------------------------------------------ files

    def save_globals(self, directory: Path) -> None:
        """The statistics and vocabularies every segment shares (rewritten at each update; small)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "analyzer.json").write_text(json.dumps(
            {"k1": self.k1, "b": self.b, "count": self.count(), "total_length": self.total_length,
             **self.analyzer.config(), "vocabulary": sorted(self.word_counts),
             "counts": [self.word_counts[w] for w in sorted(self.word_counts)]}, ensure_ascii=False), encoding="utf-8")
        (directory / "tokens.json").write_text(json.dumps(self.vocabulary.tokens, ensure_ascii=False), encoding="utf-8")
        stems = sorted(self.analyzer.splitter.known_stems) if self.analyzer.splitter is not None else []
        (directory / "stems.json").write_text(json.dumps(stems, ensure_ascii=False), encoding="utf-8")
        save_array(directory / "df.npy", self.df.astype(np.int64))
        save_array(directory / "live.npy", self.live.astype(np.uint8))

    @classmethod
    def load_globals(cls, directory: Path, parts: list[PostingPart]) -> "LexicalIndex":
        directory = Path(directory)
        meta = json.loads((directory / "analyzer.json").read_text(encoding="utf-8"))
        stems_file = directory / "stems.json"
        stems = json.loads(stems_file.read_text(encoding="utf-8")) if stems_file.exists() and meta["compounds"] else None
        analyzer = SwedishAnalyzer(meta["vocabulary"], fold=meta["fold"], compounds=meta["compounds"], known_stems=stems)
        lex = cls(analyzer, k1=meta["k1"], b=meta["b"])
        lex.word_counts = dict(zip(meta["vocabulary"], meta.get("counts") or [1] * len(meta["vocabulary"])))
        lex.vocabulary = Vocabulary(json.loads((directory / "tokens.json").read_text(encoding="utf-8")))
        lex.parts = parts
        lex.df = np.array(open_array(directory / "df.npy"), dtype=np.int64)  # small and updated in place: a copy
        lex.live = np.array(open_array(directory / "live.npy"), dtype=np.uint8)
        lex.total_length = int(meta["total_length"])
        if len(lex.live) != meta["count"] or sum(len(p.lengths) for p in parts) != len(lex.live):
            raise ValueError("the lexical statistics do not match the segments")
        return lex

    def save(self, directory: Path) -> None:
        """A stand-alone lexical index (one folder): globals plus its postings."""
        directory = Path(directory)
        self.save_globals(directory)
        (directory / "parts.json").write_text(json.dumps([p.base for p in self.parts]), encoding="utf-8")
        for n, part in enumerate(self.parts):
            part.postings.save(directory / f"postings-{n}")
            save_array(directory / f"postings_tf-{n}.npy", part.tf)
            save_array(directory / f"passage_lengths-{n}.npy", part.lengths)

    @classmethod
    def load(cls, directory: Path) -> "LexicalIndex":
        directory = Path(directory)
        bases = json.loads((directory / "parts.json").read_text(encoding="utf-8"))
        parts = [PostingPart(RaggedColumn.open(directory / f"postings-{n}"), open_array(directory / f"postings_tf-{n}.npy"),
                             open_array(directory / f"passage_lengths-{n}.npy"), base) for n, base in enumerate(bases)]
        return cls.load_globals(directory, parts)


def fit_analyzer(texts: Iterable[str], **kwargs) -> tuple[SwedishAnalyzer, dict[str, int]]:
    """The analyzer fitted on document texts, and the word counts it was fitted on (kept for updates)."""
    counts = Counter(w for t in texts for w in words(t))
    return SwedishAnalyzer(list(counts), **kwargs), dict(counts)
