"""The on-disk index: columnar, memory-mapped segments (passages, sentences, vectors, token ids, postings) with a
manifest; built once, then updated by appending segments and tombstoning removed documents; rebuilt when stale."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import time
from datetime import datetime, timezone
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from embeddings import Encoder, model_fingerprint
from embeddings.cache import CachedEncoder
from rag.ingest.loader import CorpusLoader, IngestProblem, corpus_fingerprint
from rag.ingest.split import PassageSplitter, SplitResult
from rag.search.analysis import ANALYZER_VERSION, SwedishAnalyzer, stem
from rag.search.columns import RaggedColumn, resident_mb
from rag.search.dense import DenseIndex, exact_search, set_search_threads, top_indices
from rag.search.lexical import LexicalIndex, PostingPart, Vocabulary, fit_analyzer
from rag.search.manifest import manifest_problem
from rag.search.location import (INDEX_KIND, build_lock, cache_root, check_location, default_index_base, has_leftovers, read_manifest,
                                 recover, remove_tree_of_ours, sibling, swap_in)
from rag.search.segment import (DOC, EXTRA, HEADING_FLAG, SEGMENT_FILES, Segment, SegmentParts, byte_offsets,
                                content_sha, invert, text_sha)
from rag.search.views import (DocumentMap, Layout, PassageSentencesView, PassageView, SentenceView, TokenSetView,
                              stack)
from rag.types import Document, Passage

__all__ = ["CorpusIndex", "DenseIndex", "IndexInvalid", "IndexUnavailable", "open_index", "stale_reason",
           "index_status", "passage_embedding_text", "FORMAT_VERSION", "UpdateReport"]

FORMAT_VERSION = 4
"""4: columnar memory-mapped segments with tombstones (3: FAISS flat + JSONL + bm25s matrices)."""
BuildProgress = Callable[[str, int, int], None]
"""Called as `progress(stage, done, total)` while an index is built."""
GLOBAL_FILES = ("lexical/analyzer.json", "lexical/tokens.json", "lexical/stems.json", "lexical/df.npy",
                "lexical/live.npy")
SENTENCE_EXACT_MAX = int(os.environ.get("RAG_SENTENCE_EXACT_MAX", 20_000))
"""Up to this many sentences (and an exact passage index) every sentence is searched exactly, as before segments
existed (0.1 ms for the shipped corpus's 1 508); above it only the sentences of candidate passages are scored."""
REQUIRED_FILES = frozenset(SEGMENT_FILES) | frozenset(GLOBAL_FILES)
"""Files every index has: a manifest must list (and checksum) at least these."""
RESIDENT_BUDGET_MB = 3072
"""Above this resident set (MB) the mapped row pages leave the process before the next question (`CorpusIndex.trim`).
A row read maps a whole cached folio (64 kB to 2 MB) around it: at 10^6 passages on a warm page cache the resident
set grew to 10.5 GB over 284 questions (0.9 GB of it private). Releasing before every question held it at 3.1 GB
but cost ~11 ms per reply at 10^6 (the rows fault back in); with this budget only large indexes ever release, and
rarely. The shipped corpus and 10^5 passages stay far below it (0.6-1.2 GB)."""


class IndexInvalid(RuntimeError):
    """A stored index cannot be served (missing, corrupt, truncated or stale); the message says why."""


class IndexUnavailable(IndexInvalid):
    """An index must be (re)built but cannot be written where it lives (a read-only disk, no permission)."""


def passage_embedding_text(passage: Passage) -> str:
    """What the encoder sees for a passage: document title and section heading give it context."""
    head = passage.title if not passage.heading or passage.heading == passage.title else f"{passage.title} – {passage.heading}"
    return f"{head}\n{passage.text}" if head else passage.text


def _sha256_file(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class SegmentedDense:
    """Dense search over every segment's FAISS index at once, tombstoned rows excluded, results merged by score."""

    def __init__(self, parts: list[DenseIndex], bases: list[int], live: np.ndarray) -> None:
        self.parts = parts
        self.bases = bases
        self.live = live
        self.dim = parts[0].dim if parts else 0

    def count(self) -> int:
        return sum(p.count() for p in self.parts)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(scores, rows) of shape (n_queries, k'), best first, global passage rows."""
        queries = np.atleast_2d(queries)
        if len(self.parts) == 1:
            live = self.live if not bool(np.all(self.live)) else None
            return self.parts[0].search(queries, k, live=live)
        per = [p.search(queries, k, live=self.live[b : b + p.count()]) for p, b in zip(self.parts, self.bases)]
        scores = np.concatenate([s for s, _ in per], axis=1)
        rows = np.concatenate([np.where(r >= 0, r + b, -1) for (_, r), b in zip(per, self.bases)], axis=1)
        k = min(k, scores.shape[1])
        out_s = np.full((len(queries), k), -np.inf, dtype=np.float32)
        out_r = np.full((len(queries), k), -1, dtype=np.int64)
        for i in range(len(queries)):
            valid = np.flatnonzero(rows[i] >= 0)
            top = valid[top_indices(scores[i][valid], k)]
            out_s[i, : len(top)], out_r[i, : len(top)] = scores[i][top], rows[i][top]
        return out_s, out_r

    def reconstruct_all(self) -> np.ndarray:
        return np.concatenate([p.reconstruct_all() for p in self.parts])

    def reconstruct_row(self, row: int) -> np.ndarray:
        for p, b in zip(self.parts, self.bases):
            if b <= row < b + p.count():
                return p.reconstruct_row(row - b)
        raise IndexError(row)

    @property
    def kinds(self) -> list[str]:
        return [p.params.get("type", p.kind) for p in self.parts]


class UpdateReport:
    """What an update did: documents added, replaced, removed, and duplicates that were not indexed."""

    def __init__(self) -> None:
        self.added: list[str] = []
        self.changed: list[str] = []
        self.removed: list[str] = []
        self.duplicates: list[tuple[str, str]] = []  # (path, doc_id it duplicates)
        self.seconds = 0.0

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)

    def summary(self) -> str:
        parts = [f"{len(self.added)} added", f"{len(self.changed)} changed", f"{len(self.removed)} removed"]
        if self.duplicates:
            parts.append(f"{len(self.duplicates)} duplicates not indexed")
        return ", ".join(parts)


class CorpusIndex:
    """Everything retrieval and answering need: lazy views over memory-mapped segments, and the manifest.

    Attributes (unchanged for callers): `documents` (doc_id -> Document), `passages`, `sentences`,
    `passage_sentences` (sequences by row), `passage_vectors`, `sentence_vectors` (row-indexable), `dense`
    (`.search(q, k)`), `lexical` (LexicalIndex), `manifest`, `problems`. New: `sentence_token_sets`,
    `passage_context_token_sets` (stored token ids as frozensets of tokens), `live` (1 per live passage row),
    `passage_row(passage_id)`.
    """

    def __init__(self, segments: list[Segment], dense: SegmentedDense, lexical: LexicalIndex, manifest: dict,
                 problems: list[IngestProblem] | None = None, removed: set[tuple[int, int]] | None = None,
                 directory: Path | None = None) -> None:
        self.segments = segments
        self.layout = Layout(segments)
        self.dense = dense
        self.lexical = lexical
        self.manifest = manifest
        self.problems = problems or []
        self.removed = removed or set()
        self.directory = directory
        self.documents = DocumentMap(self.layout, self.removed)
        self.passages = PassageView(self.layout)
        self.sentences = SentenceView(self.layout)
        self.passage_sentences = PassageSentencesView(self.layout)
        self.passage_vectors = stack([s.passage_vectors for s in segments])
        self.sentence_vectors = stack([s.sentence_vectors for s in segments])
        tokens = lexical.vocabulary.tokens
        self.sentence_token_sets = TokenSetView(self.layout, "sentence_tokens", tokens, "sentence")
        self.passage_context_token_sets = TokenSetView(self.layout, "context_tokens", tokens, "passage")

    @property
    def live(self) -> np.ndarray:
        return self.lexical.live

    def release_pages(self) -> int:
        """Drop the mapped pages of the segments' row-by-row columns from the process (they stay in the page cache):
        the resident set stays near what the current questions use instead of growing with every row ever read."""
        return sum(seg.release_pages() for seg in self.segments)

    def trim(self, budget_mb: float = RESIDENT_BUDGET_MB) -> bool:
        """`release_pages` when this process's resident set is above `budget_mb` (where it can be read); True if
        it released. Called before each question: a no-op for an index far below the budget."""
        resident = resident_mb()
        if resident is None or resident <= budget_mb:
            return False
        self.release_pages()
        return True

    # ------------------------------------------------------------------------------------------------ build

    @classmethod
    def build(
        cls,
        corpus_dir: Path,
        encoder: Encoder,
        splitter: PassageSplitter | None = None,
        progress: BuildProgress | None = None,
        batch_size: int = 16,
    ) -> "CorpusIndex":
        """Ingest, split, embed and index a corpus folder (in memory; `save` writes it)."""
        started = time.time()
        corpus_dir = Path(corpus_dir)
        fingerprint = corpus_fingerprint(corpus_dir)
        say = progress or (lambda stage, done, total: None)
        load = CorpusLoader(corpus_dir, progress=lambda d, t: say("documents", d, t)).run()
        splitter = splitter or PassageSplitter()
        split = splitter.run(load.documents)
        if not split.passages:
            raise IndexInvalid(f"the corpus in {corpus_dir} gave no passages to index")
        analyzer, counts = fit_analyzer(d.text for d in load.documents)
        lexical = LexicalIndex(analyzer)
        lexical.word_counts = counts
        parts = make_parts(load.documents, split, encoder, lexical.vocabulary, analyzer, say, batch_size)
        dense = DenseIndex(encoder.dim).index(parts.passage_vectors, sample_queries=_sample_queries(parts))
        segment = Segment.from_parts(parts)
        lexical.append([], PostingPart(parts.postings, parts.postings_tf, parts.passage_lengths, 0))
        manifest = {
            "format_version": FORMAT_VERSION,
            "store": "faiss",
            "model": encoder.name,
            "model_id": getattr(encoder, "model_id", encoder.name),
            "model_fingerprint": model_fingerprint(encoder.name),
            "dim": encoder.dim,
            "corpus_dir": str(corpus_dir.resolve()),
            "corpus_hash": fingerprint,
            "splitter": splitter.config(),
            "analyzer": analyzer.config(),
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "build_seconds": round(time.time() - started, 2),
            "versions": _versions(encoder),
            "problems": [{"path": q.path, "message": q.message, "skipped": q.skipped} for q in load.problems],
            "segments": [{"dir": ".", "dense": dense.params}],
            "removed_documents": [],
        }
        index = cls([segment], SegmentedDense([dense], [0], lexical.live), lexical, manifest, load.problems)
        index._update_counts()
        return index

    def _update_counts(self) -> None:
        m = self.manifest
        m["document_count"] = len(self.documents)
        m["passage_count"] = self.lexical.live_count()
        m["passage_rows"] = len(self.passages)
        m["sentence_count"] = len(self.sentences)
        m["index_type"] = "+".join(dict.fromkeys(self.dense.kinds))

    @cached_property
    def sentence_passages(self) -> list[list[int]]:
        """For each sentence row, the passage rows that hold it (overlap puts a sentence in up to two). Linear in the
        corpus: kept for callers of the old API only; retrieval never needs it."""
        out: list[list[int]] = [[] for _ in range(len(self.sentences))]
        for prow in range(len(self.passages)):
            for s in self.passage_sentences[prow]:
                out[s].append(prow)
        return out

    @property
    def exact(self) -> bool:
        """True when every segment is searched exactly (small indexes): sentences may then be searched exactly too."""
        return all(kind == "flat" for kind in self.dense.kinds) and len(self.sentences) <= SENTENCE_EXACT_MAX

    def search_sentences(self, query_vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Exact top-k sentences over all segments (for exact indexes only: it reads every sentence vector)."""
        scores, rows = [], []
        for si, seg in enumerate(self.segments):
            if seg.sentence_count:
                s, r = exact_search(seg.sentence_vectors, query_vector[None, :], k)
                scores.append(s[0])
                rows.append(np.where(r[0] >= 0, r[0] + self.layout.sentence_bases[si], -1))
        if not scores:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        scores, rows = np.concatenate(scores), np.concatenate(rows)
        top = top_indices(np.where(rows >= 0, scores, -np.inf), min(k, len(rows)))
        top = top[rows[top] >= 0]
        return scores[top], rows[top]

    def sentence_owners(self, sentence_row: int) -> list[int]:
        """The live passage rows holding a sentence (overlap puts one in up to two), from an inverse of the stored
        passage -> sentences rows, made per segment on first use."""
        seg, si, local = self.layout.sentence(int(sentence_row))
        inverse = self.__dict__.setdefault("_owners", {})
        if si not in inverse:
            indptr = np.asarray(seg.passage_sentences.indptr)
            owners = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
            order = np.argsort(np.asarray(seg.passage_sentences.values), kind="stable")
            counts = np.bincount(np.asarray(seg.passage_sentences.values), minlength=seg.sentence_count)
            inverse[si] = (np.concatenate([[0], np.cumsum(counts)]), owners[order])
            inverse[si] = (inverse[si][0].tolist(), inverse[si][1].tolist())
        ptr, rows = inverse[si]
        base = self.layout.passage_bases[si]
        owners = [r + base for r in rows[ptr[local] : ptr[local + 1]]]
        return owners if self.lexical._all_live() else [r for r in owners if self.live[r]]

    def passage_row(self, passage_id: str) -> int | None:
        """The row of a live passage by its id (binary search per segment; no table in memory)."""
        key = passage_id.encode("ascii")
        for si, seg in enumerate(self.segments):
            order = self._id_order(si)
            ids = seg.passage_ids
            i = int(np.searchsorted(ids[order], key)) if len(order) < 4096 else _search_sorted(ids, order, key)
            if i < len(order) and ids[order[i]] == key:
                row = self.layout.passage_bases[si] + int(order[i])
                if self.live[row]:
                    return row
        return None

    def _id_order(self, si: int) -> np.ndarray:
        cache = self.__dict__.setdefault("_id_orders", {})
        if si not in cache:
            seg = self.segments[si]
            path = seg.directory / "passage_ids.order.npy" if seg.directory is not None else None
            cache[si] = np.load(path, mmap_mode="r") if path is not None and path.exists() else np.argsort(seg.passage_ids, kind="stable")
        return cache[si]

    def document_meta(self) -> dict[str, dict]:
        """doc_id -> its stored metadata row (text_sha, content_sha, path ...) for every live document."""
        return {doc_id: self.documents.meta(doc_id) for doc_id in self.documents}

    # ------------------------------------------------------------------------------------------------ persistence

    def save(self, directory: Path, log: Callable[[str], None] = lambda _: None) -> None:
        """Write the index to `directory` atomically: a half-written index is never left in its place, and of the
        index it replaces only the files its manifest lists are deleted (see `rag.search.location`). Segments that
        are already on disk are hard-linked into the new version, never copied or rewritten."""
        directory = Path(directory)
        check_location(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = sibling(directory, "tmp")
        tmp.mkdir()
        try:
            old_files = self.manifest.get("files") or {}
            files: dict[str, str] = {}
            for si, seg in enumerate(self.segments):
                rel = self.manifest["segments"][si]["dir"]
                target = tmp if rel == "." else tmp / rel
                if seg.directory is None:
                    dense = self.dense.parts[si]
                    Segment.write(target, seg.parts, dense.save, lambda p, rows: _write_jsonl(p, rows))
                    np.save(target / "passage_ids.order.npy", np.argsort(seg.parts.passage_ids, kind="stable"))
                    names = [*SEGMENT_FILES, "passage_ids.order.npy"]
                    for name in names:
                        files[_rel(rel, name)] = _sha256_file(target / name)
                else:
                    target.mkdir(parents=True, exist_ok=True)
                    for name in [*SEGMENT_FILES, "passage_ids.order.npy"]:
                        key = _rel(rel, name)
                        source = seg.directory / name
                        if not source.exists():
                            continue
                        _link_or_copy(source, target / name)
                        digest = old_files.get(key)
                        files[key] = digest if digest and (self.manifest.get("sizes") or {}).get(key) == source.stat().st_size \
                            else _sha256_file(source)
            self.lexical.save_globals(tmp / "lexical")
            for name in GLOBAL_FILES:
                files[name] = _sha256_file(tmp / name)
            self._update_counts()
            manifest = {**self.manifest, "kind": INDEX_KIND, "files": files,
                        "sizes": {name: (tmp / name).stat().st_size for name in files},
                        "removed_documents": sorted([list(x) for x in self.removed])}
            (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
            swap_in(tmp, directory, log)
            self.manifest = manifest
        except BaseException:
            remove_tree_of_ours(tmp)  # a folder this call created: nothing else is in it
            raise

    @classmethod
    def load(cls, directory: Path, verify: bool = False) -> "CorpusIndex":
        """Map an index; raise `IndexInvalid` (with the reason) when it is missing, corrupt or truncated.

        Every listed file must exist with the size the manifest recorded; `verify=True` also checks every file's
        sha256 (done at build and swap, not at every start: it reads the whole index).
        """
        directory = Path(directory)
        manifest_path = directory / "manifest.json"
        if not manifest_path.exists():
            raise IndexInvalid(f"no index at {directory}")
        manifest = read_manifest(directory)
        if manifest is None:
            raise IndexInvalid("the index manifest is unreadable or not a JSON object")
        broken = manifest_problem(manifest)
        if broken:
            raise IndexInvalid(broken)
        if manifest.get("format_version") != FORMAT_VERSION:
            raise IndexInvalid(f"the index format is {manifest.get('format_version')}, this code needs {FORMAT_VERSION}")
        listed = manifest.get("files")
        if not isinstance(listed, dict) or not REQUIRED_FILES <= set(listed):
            missing = sorted(REQUIRED_FILES - set(listed or {})) if isinstance(listed, dict) else ["all"]
            raise IndexInvalid(f"the index manifest does not list (and checksum) {', '.join(missing)}")
        sizes = manifest.get("sizes") or {}
        for name, digest in listed.items():
            path = directory / name
            if not path.exists():
                raise IndexInvalid(f"the index file {name} is missing")
            if path.stat().st_size != sizes.get(name) or (verify and _sha256_file(path) != digest):
                raise IndexInvalid(f"the index file {name} is corrupt or truncated (checksum mismatch)")
        try:
            set_search_threads()
            segments, denses, bases, base = [], [], [], 0
            for entry in manifest["segments"]:
                seg = Segment(directory if entry["dir"] == "." else directory / entry["dir"])
                segments.append(seg)
                denses.append(DenseIndex.load(seg.directory / "dense.faiss", seg.passage_vectors, entry.get("dense")))
                bases.append(base)
                base += seg.passage_count
            parts = [PostingPart(s.postings, s.postings_tf, s.passage_lengths, b) for s, b in zip(segments, bases)]
            lexical = LexicalIndex.load_globals(directory / "lexical", parts)
        except IndexInvalid:
            raise
        except Exception as exc:  # any parse error means the files do not belong together
            raise IndexInvalid(f"the index could not be read ({type(exc).__name__}: {exc})") from exc
        for seg, dense in zip(segments, denses):
            if not (dense.count() == seg.passage_count == len(seg.passage_lengths) == len(seg.passage_ids)):
                raise IndexInvalid("the index parts disagree on the number of passages")
            if seg.sentence_vectors.shape != (seg.sentence_count, dense.dim) or len(seg.sentence_tokens) != seg.sentence_count:
                raise IndexInvalid("the sentence vectors do not match the sentences")
        if lexical.live_count() != manifest.get("passage_count"):
            raise IndexInvalid("the index parts disagree on the number of passages")
        problems = [IngestProblem(**q) for q in manifest.get("problems", [])]
        removed = {tuple(x) for x in manifest.get("removed_documents", [])}
        return cls(segments, SegmentedDense(denses, bases, lexical.live), lexical, manifest, problems, removed, directory)

    # ------------------------------------------------------------------------------------------------ updates

    def updated(self, add: Sequence[Document], remove: Iterable[str], encoder: Encoder,
                progress: BuildProgress | None = None, batch_size: int = 16) -> "CorpusIndex":
        """A new version of this index with `remove` (doc ids) tombstoned and `add` appended as one segment; the
        BM25 statistics and vocabularies follow exactly. A document of `add` whose id is live replaces it (its old
        row is tombstoned too): every id has one live row, which `documents` relies on. Save it to swap it in; this
        index is not changed."""
        say = progress or (lambda stage, done, total: None)
        lexical = self._lexical_copy()
        removed = set(self.removed)
        where = self.documents.locations()
        for doc_id in dict.fromkeys([*remove, *(d.doc_id for d in add)]):
            loc = where.get(doc_id)
            if loc is None:
                continue
            removed.add(loc)
            seg = self.segments[loc[0]]
            local = np.flatnonzero(np.asarray(seg.passages[:, DOC]) == loc[1])
            grows = (local + self.layout.passage_bases[loc[0]]).tolist()
            lexical.remove_rows(grows, [seg.passage_tokens[int(r)] for r in local])
            lexical.add_words([seg.texts[loc[1]]], sign=-1)
        segments, denses = list(self.segments), list(self.dense.parts)
        entries = [dict(e) for e in self.manifest["segments"]]
        if add:
            before = set(lexical.word_counts)
            lexical.add_words(d.text for d in add)
            old = lexical.analyzer
            # only the new words are stemmed (the stored stems of the rest are kept: seconds saved per update)
            stems = None if old.splitter is None else old.splitter.known_stems | {
                stem(w) for w in lexical.word_counts if w not in before and len(w) >= old.splitter.min_part and w.isalpha()}
            analyzer = SwedishAnalyzer(sorted(lexical.word_counts), fold=old.fold, compounds=old.compounds,
                                       known_stems=stems)
            lexical.analyzer = analyzer
            split = PassageSplitter(**self.manifest.get("splitter", {})).run(list(add))
            if split.passages:
                parts = make_parts(list(add), split, encoder, lexical.vocabulary, analyzer, say, batch_size)
                dense = DenseIndex(self.dense.dim).index(parts.passage_vectors, sample_queries=_sample_queries(parts))
                lexical.append([], PostingPart(parts.postings, parts.postings_tf, parts.passage_lengths, lexical.count()))
                segments.append(Segment.from_parts(parts))
                denses.append(dense)
                entries.append({"dir": _next_segment_dir(entries), "dense": dense.params})
            else:
                segments.append(Segment.from_parts(_empty_parts(list(add), self.dense.dim)))
                denses.append(DenseIndex(self.dense.dim, "flat").index(np.zeros((0, self.dense.dim), np.float32)))
                entries.append({"dir": _next_segment_dir(entries), "dense": {"type": "flat"}})
        bases = np.cumsum([0] + [s.passage_count for s in segments]).tolist()[:-1]
        manifest = {**self.manifest, "segments": entries,
                    "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        manifest["analyzer"] = lexical.analyzer.config()
        index = CorpusIndex(segments, SegmentedDense(denses, bases, lexical.live), lexical, manifest, self.problems,
                            removed, self.directory)
        index._update_counts()
        return index

    def _lexical_copy(self) -> LexicalIndex:
        lex = LexicalIndex(self.lexical.analyzer, self.lexical.k1, self.lexical.b)
        lex.vocabulary = Vocabulary(self.lexical.vocabulary.tokens)
        lex.parts = list(self.lexical.parts)
        lex.live = self.lexical.live.copy()
        lex.df = self.lexical.df.copy()
        lex.total_length = self.lexical.total_length
        lex.word_counts = dict(self.lexical.word_counts)
        return lex


def _search_sorted(ids: np.ndarray, order: np.ndarray, key: bytes) -> int:
    lo, hi = 0, len(order)
    while lo < hi:
        mid = (lo + hi) // 2
        if ids[order[mid]] < key:
            lo = mid + 1
        else:
            hi = mid
    return lo


def _rel(segment_dir: str, name: str) -> str:
    return name if segment_dir == "." else f"{segment_dir}/{name}"


def _next_segment_dir(entries: list[dict]) -> str:
    used = {e["dir"] for e in entries}
    n = len(entries)
    while f"seg-{n:04d}" in used:
        n += 1
    return f"seg-{n:04d}"


def _link_or_copy(source: Path, target: Path) -> None:
    """Hard-link an immutable segment file into a new index version (a copy where links are not possible)."""
    import shutil

    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def _sample_queries(parts: SegmentParts, n: int = 200, seed: int = 13) -> np.ndarray | None:
    """Sentence vectors of the segment as sample queries for tuning an approximate index (None when too few)."""
    rows = np.flatnonzero((np.asarray(parts.sentences[:, EXTRA]) & HEADING_FLAG) == 0)
    if len(rows) < 20:
        return None
    rng = np.random.default_rng(seed)
    return np.asarray(parts.sentence_vectors[np.sort(rng.choice(rows, size=min(n, len(rows)), replace=False))])


def make_parts(documents: list[Document], split: SplitResult, encoder: Encoder, vocabulary: Vocabulary,
               analyzer: SwedishAnalyzer, say: BuildProgress = lambda *a: None, batch_size: int = 16) -> SegmentParts:
    """Embed and analyze split documents into the columns of one segment (token ids from `vocabulary`, extended)."""
    texts = [passage_embedding_text(p) for p in split.passages]
    passage_vectors = encoder.encode_passages(texts, batch_size=batch_size, progress=lambda d, t: say("passages", d, t))
    sentence_rows = [i for i, s in enumerate(split.sentences) if not s.is_heading]
    sentence_vectors = np.zeros((len(split.sentences), encoder.dim), dtype=np.float32)
    if sentence_rows:
        sentence_vectors[sentence_rows] = encoder.encode_passages(
            [split.sentences[i].text for i in sentence_rows], batch_size=batch_size * 2,
            progress=lambda d, t: say("sentences", d, t))
    say("lexical", 0, 1)
    passage_tokens = [vocabulary.add(analyzer.analyze(t)) for t in texts]
    sentence_tokens = [sorted(set(vocabulary.add(analyzer.analyze(s.text)))) for s in split.sentences]
    context_tokens = [sorted(set(vocabulary.add(analyzer.analyze(f"{p.title} {p.heading}")))) for p in split.passages]
    postings, tf, lengths = invert(passage_tokens, len(vocabulary))
    say("lexical", 1, 1)
    return assemble_parts(documents, split, np.asarray(passage_vectors, np.float32), sentence_vectors, postings, tf,
                          lengths, RaggedColumn.from_rows(sorted(set(t)) for t in passage_tokens),
                          RaggedColumn.from_rows(sentence_tokens), RaggedColumn.from_rows(context_tokens))


def assemble_parts(documents: list[Document], split: SplitResult, passage_vectors: np.ndarray,
                   sentence_vectors: np.ndarray, postings: RaggedColumn, tf: np.ndarray, lengths: np.ndarray,
                   passage_tokens: RaggedColumn, sentence_tokens: RaggedColumn,
                   context_tokens: RaggedColumn) -> SegmentParts:
    """The int64 tables and string columns of a segment from split documents and their vectors and tokens."""
    doc_row = {d.doc_id: i for i, d in enumerate(documents)}
    offsets = {d.doc_id: byte_offsets(d.text) for d in documents}
    headings: dict[str, int] = {}
    passages = np.zeros((len(split.passages), 6), dtype=np.int64)
    for i, p in enumerate(split.passages):
        b = offsets[p.doc_id]
        h = headings.setdefault(p.heading, len(headings)) if p.heading else -1
        passages[i] = (doc_row[p.doc_id], p.start, p.end, b[p.start], b[p.end], h)
    sentences = np.zeros((len(split.sentences), 6), dtype=np.int64)
    for i, s in enumerate(split.sentences):
        b = offsets[s.doc_id]
        sentences[i] = (doc_row[s.doc_id], s.start, s.end, b[s.start], b[s.end], HEADING_FLAG if s.is_heading else 0)
    rows = [{**{k: v for k, v in d.to_dict().items() if k != "text"}, "text_sha": text_sha(d.text),
             "content_sha": content_sha(d)} for d in documents]
    return SegmentParts(
        documents=rows, texts=[d.text for d in documents], passages=passages,
        passage_ids=np.array([p.passage_id.encode("ascii") for p in split.passages], dtype="S16"),
        headings=list(headings), sentences=sentences,
        passage_sentences=RaggedColumn.from_rows(split.passage_sentences), passage_vectors=passage_vectors,
        sentence_vectors=sentence_vectors, postings=postings, postings_tf=tf, passage_lengths=lengths,
        passage_tokens=passage_tokens, sentence_tokens=sentence_tokens, context_tokens=context_tokens)


def _empty_parts(documents: list[Document], dim: int) -> SegmentParts:
    """A segment of documents that gave no passages (kept so they count as indexed)."""
    empty = RaggedColumn.from_rows([])
    return assemble_parts(documents, SplitResult(), np.zeros((0, dim), np.float32), np.zeros((0, dim), np.float32),
                          RaggedColumn(np.zeros(1, np.int64), np.zeros(0, np.int32)), np.zeros(0, np.float32),
                          np.zeros(0, np.int32), empty, empty, empty)


def _versions(encoder: Encoder) -> dict:
    import faiss

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "faiss": getattr(faiss, "__version__", ""),
        "encoder": getattr(encoder, "version", ""),
    }


def _write_jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def stale_reason(manifest: dict, corpus_dir: Path, model: str) -> str:
    """Why a stored index does not fit the current corpus and model ("" when it fits)."""
    if manifest.get("model") != model:
        return f"it was built with model {manifest.get('model')!r}, not {model!r}"
    if manifest.get("model_fingerprint") != model_fingerprint(model):
        return f"the weights of model {model!r} have changed since it was built"
    analyzer = manifest.get("analyzer")
    if not isinstance(analyzer, dict) or analyzer.get("version") != ANALYZER_VERSION:
        return "the Swedish text analysis has changed since it was built"
    if manifest.get("corpus_hash") != corpus_fingerprint(Path(corpus_dir)):
        return CORPUS_CHANGED
    return ""


CORPUS_CHANGED = "the corpus has changed since it was built"
"""The one stale reason an update (not a rebuild) fixes."""


def embedding_cache_dir(index_dir: Path, model: str) -> Path:
    """Where passage embeddings of this model's weights are cached: beside the index folders in the default index
    location, else under the cache root (never beside a folder a user named with --index)."""
    index_dir = Path(index_dir)
    base = default_index_base()
    root = index_dir.parent if index_dir.parent.resolve() == base.resolve() else cache_root()
    return root / "embedding-cache" / f"{index_dir.name}-{model_fingerprint(model)}"


def _load_checked(corpus_dir: Path, index_dir: Path, model: str) -> tuple[CorpusIndex | None, str]:
    try:
        index = CorpusIndex.load(index_dir)
    except IndexInvalid as exc:
        return None, str(exc)
    return index, stale_reason(index.manifest, corpus_dir, model)


def index_status(corpus_dir: Path, index_dir: Path, model: str) -> str:
    """Why the index must be (re)built before it can be served, or "" when the stored one is fresh."""
    return _load_checked(corpus_dir, index_dir, model)[1]


def update_from_corpus(index: CorpusIndex, corpus_dir: Path, encoder: Encoder,
                       progress: BuildProgress | None = None) -> tuple[CorpusIndex, UpdateReport]:
    """The index brought up to date with the corpus folder by content hash: new and changed documents embedded and
    appended, removed ones tombstoned; unchanged documents are not touched (their vectors are not recomputed)."""
    started = time.time()
    say = progress or (lambda stage, done, total: None)
    fingerprint = corpus_fingerprint(Path(corpus_dir))
    load = CorpusLoader(Path(corpus_dir), progress=lambda d, t: say("documents", d, t)).run()
    stored = index.document_meta()
    current = {d.doc_id: d for d in load.documents}
    report = UpdateReport()
    add, remove = [], []
    for doc_id, doc in current.items():
        meta = stored.get(doc_id)
        if meta is None:
            report.added.append(doc_id)
            add.append(doc)
        elif meta.get("content_sha") != content_sha(doc):
            report.changed.append(doc_id)
            remove.append(doc_id)
            add.append(doc)
    report.removed = [d for d in stored if d not in current]
    remove += report.removed
    new = index.updated(add, remove, encoder, progress=progress) if (add or remove) else index
    new.manifest = {**new.manifest, "corpus_hash": fingerprint, "corpus_dir": str(Path(corpus_dir).resolve()),
                    "problems": [{"path": q.path, "message": q.message, "skipped": q.skipped} for q in load.problems]}
    new.problems = load.problems
    report.seconds = round(time.time() - started, 2)
    new.manifest["last_update"] = {"added": report.added, "changed": report.changed, "removed": report.removed,
                                   "seconds": report.seconds}
    return new, report


def open_index(
    corpus_dir: Path,
    index_dir: Path,
    encoder_factory: Callable[[], Encoder],
    model: str,
    rebuild: bool = False,
    log: Callable[[str], None] = print,
    progress: BuildProgress | None = None,
) -> CorpusIndex:
    """Load the index for this corpus and model, or update or (re)build it, saying why; a stale index is never served.

    A changed corpus is an update (only changed documents are embedded and indexed); anything else that makes the
    index unusable (missing, corrupt, other model or analysis) is a full build.

    Parameters
    ----------
    corpus_dir, index_dir : Path
        Where the corpus files are, and where this model's index lives.
    encoder_factory : callable
        Returns the encoder; only called when a build is needed (loading needs no model).
    model : str
        The encoder's registry name, compared with the manifest.
    """
    index_dir = Path(index_dir)
    check_location(index_dir)
    if not rebuild:
        index, reason = _load_checked(corpus_dir, index_dir, model)
        if index is not None and not reason:
            if has_leftovers(index_dir):  # a killed build's folders beside a good index: clean them unless busy
                with build_lock(index_dir, blocking=False) as got:
                    if got:
                        recover(index_dir, log)
            return index
    encoder = None
    try:
        with build_lock(index_dir):
            recover(index_dir, log)
            check_location(index_dir)
            index = None
            if not rebuild:  # another process or app session may have built it while this one waited
                index, reason = _load_checked(corpus_dir, index_dir, model)
                if index is not None and not reason:
                    return index
            else:
                reason = "a rebuild was asked for"
            encoder = CachedEncoder(encoder_factory(), embedding_cache_dir(index_dir, model))
            if index is not None and reason == CORPUS_CHANGED:
                log(f"Updating the index in {index_dir}: {reason}.")
                new, report = update_from_corpus(index, corpus_dir, encoder, progress=progress)
                new.save(index_dir, log)
                log(f"Index updated: {report.summary()} in {report.seconds} s.")
            else:
                log(f"Building the index in {index_dir}: {reason}.")
                CorpusIndex.build(corpus_dir, encoder, progress=progress).save(index_dir, log)
            index = CorpusIndex.load(index_dir)
    except OSError as exc:
        raise IndexUnavailable(
            f"The index in {index_dir} must be built ({reason}) but cannot be written there "
            f"({type(exc).__name__}: {exc}). Make the folder writable, or point --index / RAG_INDEX_DIR at a "
            "writable folder.") from exc
    for problem in index.problems:
        log(f"  {'skipped' if problem.skipped else 'note'}: {problem.path}: {problem.message}")
    log(
        f"Index ready: {index.manifest['document_count']} documents, {index.manifest['passage_count']} passages, "
        f"{index.manifest['sentence_count']} sentences, built in {index.manifest['build_seconds']} s "
        f"({encoder.hits} texts embedded earlier were reused from the cache, {encoder.misses} embedded now)."
    )
    return index


@contextlib.contextmanager
def locked_index(index_dir: Path, log: Callable[[str], None] = lambda _: None):
    """Hold the build lock of a stored index and yield it loaded (for add/remove: one writer at a time)."""
    index_dir = Path(index_dir)
    check_location(index_dir)
    with build_lock(index_dir):
        recover(index_dir, log)
        yield CorpusIndex.load(index_dir)
