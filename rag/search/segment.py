"""One immutable, columnar segment of an index: documents, passages, sentences, vectors, token ids and postings.

An index is one or more segments (the first at the top of the index folder, later ones in `seg-NNNN/`). A segment
is written once and never changed: adding documents appends a segment, removing them marks tombstones elsewhere.
Every column is a file that is memory-mapped on open, so opening a segment reads no rows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from rag.search.columns import RaggedColumn, StringColumn, open_array, release_pages, save_array
from rag.types import Document

# Columns of the int64 tables (passages.npy, sentences.npy)
DOC, START, END, BSTART, BEND, EXTRA = range(6)
"""passages: EXTRA = heading row; sentences: EXTRA = flags (bit 0: heading)."""
HEADING_FLAG = 1

SEGMENT_FILES = (
    "documents.jsonl", "documents.off.npy", *StringColumn.files("doc_texts.bin"), "passages.npy", "passage_ids.npy",
    *StringColumn.files("headings.bin"), "sentences.npy", *RaggedColumn.files("passage_sentences"),
    "passage_vectors.npy", "sentence_vectors.npy", "dense.faiss", *RaggedColumn.files("postings"), "postings_tf.npy",
    "passage_lengths.npy", *RaggedColumn.files("passage_tokens"), *RaggedColumn.files("sentence_tokens"), *RaggedColumn.files("context_tokens"),
)
"""The files of one segment (the dense index adds none: dense.faiss is the only FAISS file)."""


def text_sha(text: str) -> str:
    """Hash of a document's text: two files with the same text are duplicates."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def content_sha(doc: Document) -> str:
    """Hash of everything indexed about a document (text and metadata): a change means it is indexed again."""
    return hashlib.sha256(json.dumps(doc.to_dict(), ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()


def byte_offsets(text: str) -> np.ndarray:
    """UTF-8 byte offset of every character position of `text` (len(text) + 1 entries)."""
    cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    sizes = 1 + (cps >= 0x80).astype(np.int64) + (cps >= 0x800) + (cps >= 0x10000)
    return np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)


@dataclass
class SegmentParts:
    """What a segment is written from (the in-memory result of ingest, split, embedding and analysis).

    `passages` and `sentences` are int64 tables with the columns DOC, START, END, BSTART, BEND, EXTRA;
    `postings` maps token id -> passage rows with term frequencies `postings_tf`.
    """

    documents: list[dict]  # Document.to_dict() without "text", plus "text_sha" and "content_sha"
    texts: list[str]
    passages: np.ndarray
    passage_ids: np.ndarray  # S16
    headings: list[str]
    sentences: np.ndarray
    passage_sentences: RaggedColumn
    passage_vectors: np.ndarray
    sentence_vectors: np.ndarray
    postings: RaggedColumn
    postings_tf: np.ndarray
    passage_lengths: np.ndarray
    passage_tokens: RaggedColumn  # each passage's distinct token ids (for the statistics when it is removed)
    sentence_tokens: RaggedColumn
    context_tokens: RaggedColumn


def invert(passage_tokens: Sequence[Sequence[int]], vocab_size: int) -> tuple[RaggedColumn, np.ndarray, np.ndarray]:
    """Postings (token id -> passage rows, term frequencies) and passage lengths from per-passage token ids."""
    lengths = np.fromiter((len(t) for t in passage_tokens), dtype=np.int32, count=len(passage_tokens))
    rows = np.repeat(np.arange(len(passage_tokens), dtype=np.int64), lengths)
    toks = np.fromiter((t for ts in passage_tokens for t in ts), dtype=np.int64, count=int(lengths.sum()))
    if toks.size:
        key = np.unique(toks * len(passage_tokens) + rows, return_counts=True)
        pairs, tf = key
        tok_of, row_of = np.divmod(pairs, len(passage_tokens))
    else:
        tok_of = row_of = tf = np.zeros(0, dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(tok_of, minlength=vocab_size))]).astype(np.int64)
    return RaggedColumn(indptr, row_of.astype(np.int32)), tf.astype(np.float32), lengths


class Segment:
    """An opened segment: every column memory-mapped; documents and texts decoded one row at a time.

    Parameters
    ----------
    directory : Path
        The segment's folder.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        d = self.directory
        self.passages = open_array(d / "passages.npy", random_access=True)
        self.passage_ids = open_array(d / "passage_ids.npy")
        self.sentences = open_array(d / "sentences.npy", random_access=True)
        self.passage_sentences = RaggedColumn.open(d / "passage_sentences", random_access=True)
        self.passage_vectors = open_array(d / "passage_vectors.npy", random_access=True)
        self.sentence_vectors = open_array(d / "sentence_vectors.npy", random_access=True)
        self.postings = RaggedColumn.open(d / "postings")
        self.postings_tf = open_array(d / "postings_tf.npy")
        self.passage_lengths = open_array(d / "passage_lengths.npy")
        self.passage_tokens = RaggedColumn.open(d / "passage_tokens", random_access=True)
        self.sentence_tokens = RaggedColumn.open(d / "sentence_tokens", random_access=True)
        self.context_tokens = RaggedColumn.open(d / "context_tokens", random_access=True)
        self.texts = StringColumn.open(d / "doc_texts.bin", random_access=True)
        self.headings = StringColumn.open(d / "headings.bin")
        self._doc_offsets = open_array(d / "documents.off.npy")

    def release_pages(self) -> int:
        """Drop the row-by-row columns' mapped pages from the process (`columns.release_pages`): vectors, texts,
        passages, sentences and their tokens. Nothing is re-read from disk while the page cache holds them."""
        return release_pages(self.passages, self.sentences, self.passage_sentences, self.passage_vectors,
                             self.sentence_vectors, self.passage_tokens, self.sentence_tokens, self.context_tokens,
                             self.texts)

    @classmethod
    def from_parts(cls, parts: SegmentParts) -> "Segment":
        """A segment held in memory (a build not saved yet): the same attributes, backed by the parts' arrays."""
        seg = cls.__new__(cls)
        seg.directory = None
        seg.parts = parts
        for name in ("passages", "passage_ids", "sentences", "passage_sentences", "passage_vectors", "sentence_vectors",
                     "postings", "postings_tf", "passage_lengths", "passage_tokens", "sentence_tokens", "context_tokens"):
            setattr(seg, name, getattr(parts, name))
        seg.texts = _memory_strings(parts.texts)
        seg.headings = _memory_strings(parts.headings)
        seg._doc_offsets = np.zeros(len(parts.documents) + 1, dtype=np.int64)
        seg.__dict__["document_rows"] = parts.documents
        return seg

    # ------------------------------------------------------------------------------------------------ writing

    @staticmethod
    def write(directory: Path, parts: SegmentParts, dense_writer: Callable[[Path], None],
              write_jsonl: Callable[[Path, Iterable[dict]], None]) -> None:
        """Write all columns of a segment into `directory` (created); `dense_writer(path)` writes dense.faiss."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        lines = [json.dumps(row, ensure_ascii=False) for row in parts.documents]
        write_jsonl(d / "documents.jsonl", parts.documents)
        offsets = np.concatenate([[0], np.cumsum([len(line.encode("utf-8")) + 1 for line in lines])]).astype(np.int64)
        save_array(d / "documents.off.npy", offsets)
        StringColumn.write(d / "doc_texts.bin", parts.texts)
        save_array(d / "passages.npy", parts.passages.astype(np.int64))
        save_array(d / "passage_ids.npy", parts.passage_ids.astype("S16"))
        StringColumn.write(d / "headings.bin", parts.headings)
        save_array(d / "sentences.npy", parts.sentences.astype(np.int64))
        parts.passage_sentences.save(d / "passage_sentences")
        save_array(d / "passage_vectors.npy", parts.passage_vectors.astype(np.float32))
        save_array(d / "sentence_vectors.npy", parts.sentence_vectors.astype(np.float32))
        dense_writer(d / "dense.faiss")
        parts.postings.save(d / "postings")
        save_array(d / "postings_tf.npy", parts.postings_tf.astype(np.float32))
        save_array(d / "passage_lengths.npy", parts.passage_lengths.astype(np.int32))
        parts.passage_tokens.save(d / "passage_tokens")
        parts.sentence_tokens.save(d / "sentence_tokens")
        parts.context_tokens.save(d / "context_tokens")

    # ------------------------------------------------------------------------------------------------ reading

    @property
    def passage_count(self) -> int:
        return len(self.passages)

    @property
    def sentence_count(self) -> int:
        return len(self.sentences)

    @property
    def document_count(self) -> int:
        return len(self._doc_offsets) - 1

    def document_row(self, row: int) -> dict:
        """The metadata row of a document (no text)."""
        if self.directory is None:
            return self.parts.documents[row]
        lo, hi = int(self._doc_offsets[row]), int(self._doc_offsets[row + 1])
        with open(self.directory / "documents.jsonl", "rb") as f:
            f.seek(lo)
            return json.loads(f.read(hi - lo))

    @cached_property
    def document_rows(self) -> list[dict]:
        """Every document's metadata row (read once, when first needed: by updates and the documents' keys)."""
        with open(self.directory / "documents.jsonl", encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]

    def text_slice(self, doc_row: int, bstart: int, bend: int) -> str:
        """Part of a document's text by byte offsets relative to the document's start."""
        base = int(self.texts._offsets[doc_row])
        return self.texts.bytes_at(base + int(bstart), base + int(bend)).decode("utf-8")


def _memory_strings(values: list[str]) -> StringColumn:
    data = [v.encode("utf-8") for v in values]
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in data])]).astype(np.int64)
    return StringColumn(np.frombuffer(b"".join(data), dtype=np.uint8), offsets)
