"""Lazy, read-only views over the segments of an index: passages, sentences, documents, vectors and token sets are
made into objects only when a row is used, so opening an index of a million passages reads almost nothing."""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Callable, Iterator

import numpy as np

from rag.ingest.split import Sentence
from rag.search.segment import BEND, BSTART, DOC, END, EXTRA, HEADING_FLAG, START, Segment
from rag.types import Document, Passage


class LRU:
    """A small thread-safe least-recently-used cache of computed values."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._data: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def has(self, key) -> bool:
        with self._lock:
            return key in self._data

    def peek(self, key):
        with self._lock:
            return self._data.get(key)

    def put(self, key, value) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def get(self, key, make: Callable):
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                return self._data[key]
        value = make()
        self.put(key, value)
        return value


class Layout:
    """Where global rows live: segment `i` holds passage rows [passage_bases[i], passage_bases[i+1]) and sentence
    rows [sentence_bases[i], sentence_bases[i+1])."""

    def __init__(self, segments: list[Segment]) -> None:
        self.segments = segments
        self.passage_bases = np.cumsum([0] + [s.passage_count for s in segments]).tolist()
        self.sentence_bases = np.cumsum([0] + [s.sentence_count for s in segments]).tolist()
        self._docs = LRU(4096)
        self._seen = LRU(16384)  # doc_id -> (segment, row) of the document rows read through doc_meta

    def passage(self, row: int) -> tuple[Segment, int, int]:
        """(segment, its index, local row) of a global passage row."""
        i = bisect.bisect_right(self.passage_bases, row) - 1
        if row < 0 or i >= len(self.segments):
            raise IndexError(row)
        return self.segments[i], i, row - self.passage_bases[i]

    def sentence(self, row: int) -> tuple[Segment, int, int]:
        i = bisect.bisect_right(self.sentence_bases, row) - 1
        if row < 0 or i >= len(self.segments):
            raise IndexError(row)
        return self.segments[i], i, row - self.sentence_bases[i]

    def doc_meta(self, seg_index: int, doc_row: int) -> dict:
        meta = self._docs.get((seg_index, doc_row), lambda: self.segments[seg_index].document_row(doc_row))
        self._seen.put(meta["doc_id"], (seg_index, doc_row))
        return meta

    def seen(self, doc_id: str) -> tuple[int, int] | None:
        """(segment, row) of a document whose row a passage or sentence read (None: not read lately). A document
        replaced in a later segment may be seen at its old row too: the caller checks that the row is live."""
        return self._seen.peek(doc_id)


class _RowView(Sequence):
    """Rows built from the columns on access and kept in a small LRU; `_make(row)` builds one."""

    CACHE = 4096

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._cache = LRU(self.CACHE)

    def __getitem__(self, row):
        if isinstance(row, slice):
            return [self[i] for i in range(*row.indices(len(self)))]
        row = int(row)
        if row < 0:
            row += len(self)
        return self._cache.get(row, lambda: self._make(row))

    def _make(self, row: int):
        raise NotImplementedError


class PassageView(_RowView):
    """`index.passages[row]` -> Passage, built from the columns on access."""

    def __len__(self) -> int:
        return self._layout.passage_bases[-1]

    def _make(self, row: int) -> Passage:
        seg, si, local = self._layout.passage(row)
        r = seg.passages[local]
        meta = self._layout.doc_meta(si, int(r[DOC]))
        heading = seg.headings[int(r[EXTRA])] if r[EXTRA] >= 0 else ""
        return Passage(seg.passage_ids[local].decode("ascii"), meta["doc_id"], seg.text_slice(int(r[DOC]), r[BSTART], r[BEND]),
                       int(r[START]), int(r[END]), heading=heading, title=meta.get("title", ""))

    def id_of(self, row: int) -> str:
        seg, _, local = self._layout.passage(int(row))
        return seg.passage_ids[local].decode("ascii")


class SentenceView(_RowView):
    """`index.sentences[row]` -> Sentence (doc_id, start, end, text, is_heading)."""

    CACHE = 16384

    def __len__(self) -> int:
        return self._layout.sentence_bases[-1]

    def _make(self, row: int) -> Sentence:
        seg, si, local = self._layout.sentence(row)
        r = seg.sentences[local]
        meta = self._layout.doc_meta(si, int(r[DOC]))
        return Sentence(meta["doc_id"], int(r[START]), int(r[END]), seg.text_slice(int(r[DOC]), r[BSTART], r[BEND]),
                        bool(int(r[EXTRA]) & HEADING_FLAG))


class PassageSentencesView(Sequence):
    """`index.passage_sentences[row]` -> the global sentence rows of a passage, in order (a list)."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout

    def __len__(self) -> int:
        return self._layout.passage_bases[-1]

    def __getitem__(self, row):
        seg, si, local = self._layout.passage(int(row))
        base = self._layout.sentence_bases[si]
        return (seg.passage_sentences[local] + base).tolist()


class TokenSetView(Sequence):
    """Per-row frozensets of token strings from stored token ids (what the answer builder compares with queries)."""

    def __init__(self, layout: Layout, column: str, tokens: list[str], kind: str) -> None:
        self._layout = layout
        self._column = column
        self._tokens = tokens
        self._kind = kind
        self._cache = LRU(16384)

    def __len__(self) -> int:
        bases = self._layout.sentence_bases if self._kind == "sentence" else self._layout.passage_bases
        return bases[-1]

    def __getitem__(self, row):
        row = int(row)
        return self._cache.get(row, lambda: self._make(row))

    def _make(self, row: int) -> frozenset[str]:
        seg, _, local = self._layout.sentence(row) if self._kind == "sentence" else self._layout.passage(row)
        tokens = self._tokens
        return frozenset(tokens[i] for i in getattr(seg, self._column)[local].tolist())


class StackedRows:
    """Rows of several memory-mapped 2-D arrays as one (row or row-list indexing, `shape`, `@` via np.asarray)."""

    def __init__(self, arrays: list[np.ndarray]) -> None:
        self._arrays = arrays
        self._bases = np.cumsum([0] + [len(a) for a in arrays]).tolist()
        self.shape = (self._bases[-1], arrays[0].shape[1] if arrays else 0)
        self.dtype = arrays[0].dtype if arrays else np.float32

    def __len__(self) -> int:
        return self.shape[0]

    def _one(self, row: int) -> np.ndarray:
        if row < 0:
            row += len(self)
        i = bisect.bisect_right(self._bases, row) - 1
        if not 0 <= i < len(self._arrays):
            raise IndexError(row)
        return np.asarray(self._arrays[i][row - self._bases[i]])

    def __getitem__(self, rows):
        if isinstance(rows, (int, np.integer)):
            return self._one(int(rows))
        rows = np.asarray(rows, dtype=np.int64)
        rows = np.where(rows < 0, rows + len(self), rows)
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(int(rows.max()))
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        which = np.searchsorted(self._bases, rows, side="right") - 1
        for i in np.unique(which).tolist():  # one fancy index per segment, not one Python call per row
            sel = np.flatnonzero(which == i)
            out[sel] = self._arrays[i][rows[sel] - self._bases[i]]
        return out

    def __array__(self, dtype=None, copy=None):
        out = np.concatenate([np.asarray(a) for a in self._arrays]) if self._arrays else np.zeros(self.shape)
        return out.astype(dtype) if dtype is not None else out


def stack(arrays: list[np.ndarray]):
    """One segment: its own memory map (fastest); several: a StackedRows view."""
    return arrays[0] if len(arrays) == 1 else StackedRows(arrays)


class DocumentMap(Mapping):
    """`index.documents[doc_id]` -> Document with its text; only live documents. The id table (every document row)
    is read only for a document no passage or sentence view has read lately, and for iterating or counting."""

    def __init__(self, layout: Layout, removed: set[tuple[int, int]]) -> None:
        self._layout = layout
        self._removed = removed
        self._where: dict[str, tuple[int, int]] | None = None
        self._lock = threading.Lock()
        self._cache = LRU(256)

    def locations(self) -> dict[str, tuple[int, int]]:
        """doc_id -> (segment, row) of every live document."""
        with self._lock:
            if self._where is None:
                where = {}
                for si, seg in enumerate(self._layout.segments):
                    for row, meta in enumerate(seg.document_rows):
                        if (si, row) not in self._removed:
                            where[meta["doc_id"]] = (si, row)
                self._where = where
            return self._where

    def __getitem__(self, doc_id: str) -> Document:
        loc = self.location(doc_id)
        if loc is None:
            raise KeyError(doc_id)
        return self._cache.get(loc, lambda: self._make(*loc))

    def _make(self, si: int, row: int) -> Document:
        seg = self._layout.segments[si]
        meta = {k: v for k, v in self._layout.doc_meta(si, row).items() if k not in ("text_sha", "content_sha")}
        return Document(**meta, text=seg.texts[row])

    def location(self, doc_id: str) -> tuple[int, int] | None:
        """(segment, row) of a live document, None if there is none. The answer asks for the documents of the
        passages it quotes, whose rows the passage and sentence views have just read: those are found without the
        id table (reading every document row: 1.5 s at 10^6 passages, on the first answer after start-up)."""
        loc = self._layout.seen(doc_id)
        if loc is not None and loc not in self._removed:
            return loc
        return self.locations().get(doc_id)

    def meta(self, doc_id: str) -> dict:
        loc = self.location(doc_id)
        if loc is None:
            raise KeyError(doc_id)
        return self._layout.doc_meta(*loc)

    def __iter__(self) -> Iterator[str]:
        return iter(self.locations())

    def __len__(self) -> int:
        return len(self.locations())

    def __contains__(self, doc_id) -> bool:
        return isinstance(doc_id, str) and self.location(doc_id) is not None
