"""The on-disk index: FAISS passage vectors, sentence vectors, BM25, passages and a manifest; rebuilt when stale."""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from embeddings import Encoder, model_fingerprint
from embeddings.cache import CachedEncoder
from rag.search.analysis import ANALYZER_VERSION, SwedishAnalyzer
from rag.ingest.loader import CorpusLoader, IngestProblem, corpus_fingerprint
from rag.search.lexical import LexicalIndex
from rag.search.manifest import manifest_problem
from rag.search.location import (INDEX_KIND, build_lock, cache_root, check_location, default_index_base, read_manifest,
                                 recover, remove_tree_of_ours, sibling, swap_in)
from rag.ingest.split import PassageSplitter, Sentence
from rag.types import Document, Passage

FORMAT_VERSION = 3
BuildProgress = Callable[[str, int, int], None]
"""Called as `progress(stage, done, total)` while an index is built."""


class IndexInvalid(RuntimeError):
    """A stored index cannot be served (missing, corrupt, truncated or stale); the message says why."""


class IndexUnavailable(IndexInvalid):
    """An index must be (re)built but cannot be written where it lives (a read-only disk, no permission)."""


REQUIRED_FILES = frozenset({
    "dense.faiss", "sentence_vectors.npy", "documents.jsonl", "passages.jsonl", "sentences.jsonl",
    "lexical/analyzer.json", "lexical/params.index.json", "lexical/vocab.index.json", "lexical/data.csc.index.npy",
    "lexical/indices.csc.index.npy", "lexical/indptr.csc.index.npy",
})
"""Files every index has: a manifest must list (and checksum) at least these."""


class DenseIndex:
    """Exact inner-product search over L2-normalized vectors (= cosine) with FAISS.

    Exact search is right for this corpus size (hundreds to a few thousand passages: well under a millisecond);
    the row position is the passage id.
    """

    def __init__(self, dim: int) -> None:
        import faiss

        self.dim = dim
        self._index = faiss.IndexFlatIP(dim)

    def index(self, vectors: np.ndarray) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != self.dim:
            raise ValueError(f"expected vectors of shape (n, {self.dim}), got {vectors.shape}")
        self._index.reset()
        self._index.add(vectors)

    def count(self) -> int:
        return int(self._index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, rows), each of shape (n_queries, k'), k' = min(k, count); best first."""
        k = max(1, min(k, self.count()))
        scores, rows = self._index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, rows

    def reconstruct_row(self, row: int) -> np.ndarray:
        return self._index.reconstruct(int(row))

    def reconstruct_all(self) -> np.ndarray:
        return self._index.reconstruct_n(0, self.count())

    def save(self, path: Path) -> None:
        import faiss

        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: Path) -> "DenseIndex":
        import faiss

        index = faiss.read_index(str(path))
        dense = cls(index.d)
        dense._index = index
        return dense


def passage_embedding_text(passage: Passage) -> str:
    """What the encoder sees for a passage: document title and section heading give it context."""
    head = passage.title if not passage.heading or passage.heading == passage.title else f"{passage.title} – {passage.heading}"
    return f"{head}\n{passage.text}" if head else passage.text


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass
class CorpusIndex:
    """Everything retrieval and answering need, built once from a corpus and loaded from disk."""

    documents: dict[str, Document]
    passages: list[Passage]
    sentences: list[Sentence]
    passage_sentences: list[list[int]]
    dense: DenseIndex
    sentence_vectors: np.ndarray
    lexical: LexicalIndex
    manifest: dict = field(default_factory=dict)
    problems: list[IngestProblem] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        corpus_dir: Path,
        encoder: Encoder,
        splitter: PassageSplitter | None = None,
        progress: BuildProgress | None = None,
        batch_size: int = 16,
    ) -> "CorpusIndex":
        """Ingest, split, embed and index a corpus folder."""
        started = time.time()
        corpus_dir = Path(corpus_dir)
        fingerprint = corpus_fingerprint(corpus_dir)
        say = progress or (lambda stage, done, total: None)
        load = CorpusLoader(corpus_dir, progress=lambda d, t: say("documents", d, t)).run()
        splitter = splitter or PassageSplitter()
        split = splitter.run(load.documents)
        if not split.passages:
            raise IndexInvalid(f"the corpus in {corpus_dir} gave no passages to index")
        texts = [passage_embedding_text(p) for p in split.passages]
        passage_vectors = encoder.encode_passages(
            texts, batch_size=batch_size, progress=lambda d, t: say("passages", d, t)
        )
        dense = DenseIndex(encoder.dim)
        dense.index(passage_vectors)
        sentence_rows = [i for i, s in enumerate(split.sentences) if not s.is_heading]
        sentence_vectors = np.zeros((len(split.sentences), encoder.dim), dtype=np.float32)
        if sentence_rows:
            sentence_vectors[sentence_rows] = encoder.encode_passages(
                [split.sentences[i].text for i in sentence_rows],
                batch_size=batch_size * 2,
                progress=lambda d, t: say("sentences", d, t),
            )
        say("lexical", 0, 1)
        analyzer = SwedishAnalyzer.fit(d.text for d in load.documents)
        lexical = LexicalIndex(analyzer)
        lexical.index(texts)
        say("lexical", 1, 1)
        manifest = {
            "format_version": FORMAT_VERSION,
            "model": encoder.name,
            "model_id": getattr(encoder, "model_id", encoder.name),
            "model_fingerprint": model_fingerprint(encoder.name),
            "dim": encoder.dim,
            "corpus_dir": str(corpus_dir.resolve()),
            "corpus_hash": fingerprint,
            "document_count": len(load.documents),
            "passage_count": len(split.passages),
            "sentence_count": len(split.sentences),
            "splitter": splitter.config(),
            "analyzer": analyzer.config(),
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "build_seconds": round(time.time() - started, 2),
            "versions": _versions(encoder),
            "problems": [{"path": q.path, "message": q.message, "skipped": q.skipped} for q in load.problems],
        }
        return cls(
            documents={d.doc_id: d for d in load.documents},
            passages=split.passages,
            sentences=split.sentences,
            passage_sentences=split.passage_sentences,
            dense=dense,
            sentence_vectors=sentence_vectors,
            lexical=lexical,
            manifest=manifest,
            problems=load.problems,
        )

    @cached_property
    def sentence_dense(self) -> DenseIndex:
        """FAISS index over sentence vectors (heading rows are zero vectors and never match)."""
        dense = DenseIndex(self.sentence_vectors.shape[1])
        dense.index(self.sentence_vectors)
        return dense

    @cached_property
    def sentence_passages(self) -> list[list[int]]:
        """For each sentence row, the passage rows that hold it (overlap puts a sentence in up to two)."""
        out: list[list[int]] = [[] for _ in self.sentences]
        for prow, srows in enumerate(self.passage_sentences):
            for s in srows:
                out[s].append(prow)
        return out

    @cached_property
    def passage_vectors(self) -> np.ndarray:
        return self.dense.reconstruct_all()

    # ------------------------------------------------------------------------------------------------ persistence

    def save(self, directory: Path, log: Callable[[str], None] = lambda _: None) -> None:
        """Write the index to `directory` atomically: a half-written index is never left in its place, and of the
        index it replaces only the files its manifest lists are deleted (see `rag.search.location`)."""
        directory = Path(directory)
        check_location(directory)
        directory.parent.mkdir(parents=True, exist_ok=True)
        tmp = sibling(directory, "tmp")
        tmp.mkdir()
        try:
            self.dense.save(tmp / "dense.faiss")
            np.save(tmp / "sentence_vectors.npy", self.sentence_vectors, allow_pickle=False)
            _write_jsonl(tmp / "documents.jsonl", (d.to_dict() for d in self.documents.values()))
            _write_jsonl(tmp / "passages.jsonl", (
                {**p.to_dict(), "sentences": s} for p, s in zip(self.passages, self.passage_sentences)
            ))
            _write_jsonl(tmp / "sentences.jsonl", (
                {"doc_id": s.doc_id, "start": s.start, "end": s.end, "is_heading": s.is_heading} for s in self.sentences
            ))
            self.lexical.save(tmp / "lexical")
            files = sorted(p for p in tmp.rglob("*") if p.is_file())
            manifest = {**self.manifest, "kind": INDEX_KIND,
                        "files": {p.relative_to(tmp).as_posix(): _sha256_file(p) for p in files}}
            (tmp / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=2), encoding="utf-8")
            self.manifest = manifest
            swap_in(tmp, directory, log)
        except BaseException:
            remove_tree_of_ours(tmp)  # a folder this call created: nothing else is in it
            raise

    @classmethod
    def load(cls, directory: Path, verify: bool = True) -> "CorpusIndex":
        """Read an index; raise `IndexInvalid` (with the reason) when it is missing, corrupt or truncated."""
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
        if verify:
            for name, digest in listed.items():
                path = directory / name
                if not path.exists():
                    raise IndexInvalid(f"the index file {name} is missing")
                if _sha256_file(path) != digest:
                    raise IndexInvalid(f"the index file {name} is corrupt or truncated (checksum mismatch)")
        try:
            documents = {d["doc_id"]: Document.from_dict(d) for d in _read_jsonl(directory / "documents.jsonl")}
            passages, passage_sentences = [], []
            for row in _read_jsonl(directory / "passages.jsonl"):
                passage_sentences.append(row.pop("sentences"))
                passages.append(Passage.from_dict(row))
            sentences = [
                Sentence(r["doc_id"], r["start"], r["end"], documents[r["doc_id"]].text[r["start"] : r["end"]], r["is_heading"])
                for r in _read_jsonl(directory / "sentences.jsonl")
            ]
            dense = DenseIndex.load(directory / "dense.faiss")
            sentence_vectors = np.load(directory / "sentence_vectors.npy", allow_pickle=False)
            lexical = LexicalIndex.load(directory / "lexical")
        except IndexInvalid:
            raise
        except Exception as exc:  # any parse error means the files do not belong together
            raise IndexInvalid(f"the index could not be read ({type(exc).__name__}: {exc})") from exc
        if not (dense.count() == len(passages) == manifest.get("passage_count") == lexical.count()):
            raise IndexInvalid("the index parts disagree on the number of passages")
        if sentence_vectors.shape != (len(sentences), dense.dim):
            raise IndexInvalid("the sentence vectors do not match the sentences")
        problems = [IngestProblem(**q) for q in manifest.get("problems", [])]
        return cls(documents, passages, sentences, passage_sentences, dense, sentence_vectors, lexical, manifest, problems)


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
    if manifest.get("corpus_hash") != corpus_fingerprint(Path(corpus_dir)):
        return "the corpus has changed since it was built"
    analyzer = manifest.get("analyzer")
    if not isinstance(analyzer, dict) or analyzer.get("version") != ANALYZER_VERSION:
        return "the Swedish text analysis has changed since it was built"
    return ""


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


def open_index(
    corpus_dir: Path,
    index_dir: Path,
    encoder_factory: Callable[[], Encoder],
    model: str,
    rebuild: bool = False,
    log: Callable[[str], None] = print,
    progress: BuildProgress | None = None,
) -> CorpusIndex:
    """Load the index for this corpus and model, or (re)build it, saying why; a stale index is never served.

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
            return index
    try:
        with build_lock(index_dir):
            recover(index_dir, log)
            check_location(index_dir)
            if not rebuild:  # another process or app session may have built it while this one waited
                index, reason = _load_checked(corpus_dir, index_dir, model)
                if index is not None and not reason:
                    return index
            else:
                reason = "a rebuild was asked for"
            log(f"Building the index in {index_dir}: {reason}.")
            encoder = CachedEncoder(encoder_factory(), embedding_cache_dir(index_dir, model))
            index = CorpusIndex.build(corpus_dir, encoder, progress=progress)
            index.save(index_dir, log)
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
