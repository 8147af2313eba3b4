"""Documents in and out one at a time: `add` ingests only the given files, `remove` tombstones one document; both
under the build lock, swapped in atomically, the corpus folder kept in step so the index never looks stale."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from embeddings import Encoder
from embeddings.cache import CachedEncoder
from rag.ingest.loader import (CorpusLoader, SUPPORTED_SUFFIXES, corpus_fingerprint, load_metadata,
                               max_file_bytes)
from rag.ingest.sources import (REMOVED_FILE, UPLOADS, UPLOADS_MANIFEST, add_upload, include_document,
                                remove_document, safe_name)
from rag.search.index import CorpusIndex, embedding_cache_dir, locked_index
from rag.search.segment import text_sha


@dataclass
class ChangeReport:
    """What an add or remove did, for the command line (and a staff page)."""

    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # duplicates, unreadable files, unknown ids
    seconds: float = 0.0

    def lines(self) -> list[str]:
        out = [f"added {d}" for d in self.added] + [f"replaced {d}" for d in self.replaced]
        out += [f"removed {d}" for d in self.removed] + [f"not indexed: {p}" for p in self.problems]
        return out


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except ValueError:
        return False


class _CorpusChanges:
    """The corpus-folder side of an add or remove, undone as a whole if the index cannot be saved: uploads this
    project wrote (and may delete again) and the `removed.json` exclusion list; a user's own file is never moved
    or deleted."""

    def __init__(self, corpus_dir: Path) -> None:
        self.corpus_dir = corpus_dir
        self._saved = {p: (p.read_bytes() if p.is_file() else None) for p in (
            corpus_dir / REMOVED_FILE, corpus_dir / UPLOADS / UPLOADS_MANIFEST)}
        self._written: list[Path] = []
        self._deleted: dict[Path, bytes] = {}

    def upload(self, path: Path, user: str) -> str:
        """Copy a file into `uploads/`; a file this project uploaded earlier under the same name is replaced."""
        rel = f"{UPLOADS}/{safe_name(path.name)}"
        target = self.corpus_dir / rel
        ours = json.loads(self._saved[self.corpus_dir / UPLOADS / UPLOADS_MANIFEST] or b"{}")
        if target.is_file() and rel in ours:
            self._deleted.setdefault(target, target.read_bytes())
            target.write_bytes(path.read_bytes())
            return rel
        rel = add_upload(self.corpus_dir, path.name, path.read_bytes(), user=user)
        self._written.append(self.corpus_dir / rel)
        return rel

    def include(self, rel: str) -> None:
        """A file inside the corpus that staff had taken out is indexed again."""
        include_document(self.corpus_dir, rel)

    def exclude(self, rel: str) -> str:
        path = self.corpus_dir / rel
        if path.is_file():
            self._deleted.setdefault(path, path.read_bytes())
        how = remove_document(self.corpus_dir, rel)
        if how != "deleted":
            self._deleted.pop(path, None)
        return how

    def undo(self) -> None:
        for path in self._written:
            path.unlink(missing_ok=True)
        for path, data in self._deleted.items():
            path.write_bytes(data)
        for path, data in self._saved.items():
            if data is None:
                path.unlink(missing_ok=True)
            else:
                path.write_bytes(data)


def add_paths(corpus_dir: Path, index_dir: Path, paths: Sequence[Path], encoder_factory: Callable[[], Encoder],
              model: str, log: Callable[[str], None] = lambda _: None, user: str = "command line") -> ChangeReport:
    """Index the given files; only they are read and embedded. A file outside the corpus folder is copied into its
    `uploads/` (recorded there as written by this project); a file inside it is indexed where it is. A file whose
    text is already indexed (under any name) is reported and not indexed again; a file with the id of an indexed
    document replaces it.
    """
    started = time.time()
    corpus_dir, index_dir = Path(corpus_dir), Path(index_dir)
    report = ChangeReport()
    metadata, _ = load_metadata(corpus_dir)
    reader = CorpusLoader(corpus_dir)
    changes = _CorpusChanges(corpus_dir)
    with locked_index(index_dir, log) as index:
        texts = {meta.get("text_sha"): doc_id for doc_id, meta in index.document_meta().items()}
        docs = []
        try:
            for path in map(Path, paths):
                if not path.is_file() or path.suffix.lower() not in SUPPORTED_SUFFIXES:
                    report.problems.append(f"{path}: not a {'/'.join(SUPPORTED_SUFFIXES)} file")
                    continue
                if path.stat().st_size > max_file_bytes():
                    report.problems.append(f"{path}: larger than the {max_file_bytes() / 1048576:.0f} MB limit per file")
                    continue
                inside = _inside(path, corpus_dir)
                try:
                    if inside:
                        rel = path.resolve().relative_to(corpus_dir.resolve()).as_posix()
                        doc, warning = reader._read(path, rel, metadata.get(rel, {}))
                    else:
                        doc, warning = reader._read(path, path.name, {})
                except Exception as exc:  # one unreadable file must not stop the rest
                    report.problems.append(f"{path}: {exc if isinstance(exc, ValueError) else type(exc).__name__ + ': ' + str(exc)}")
                    continue
                same = texts.get(text_sha(doc.text))
                if same is not None:
                    report.problems.append(f"{path}: the same text as {same}, which is indexed (a duplicate is indexed once)")
                    continue
                if inside:
                    changes.include(rel)
                else:
                    rel = changes.upload(path, user)
                    doc, warning = reader._read(corpus_dir / rel, rel, metadata.get(rel, {}))
                if warning:
                    log(f"note: {rel}: {warning}")
                texts[text_sha(doc.text)] = doc.doc_id
                (report.replaced if doc.doc_id in index.documents else report.added).append(doc.doc_id)
                docs.append(doc)
            if not docs:
                report.seconds = round(time.time() - started, 2)
                return report
            encoder = CachedEncoder(encoder_factory(), embedding_cache_dir(index_dir, model))
            new = index.updated(docs, [], encoder)  # a document whose id is indexed replaces it
            _save(new, corpus_dir, index_dir, log)
        except BaseException:
            changes.undo()  # the index did not change: neither does the corpus
            raise
    report.seconds = round(time.time() - started, 2)
    return report


def remove_documents(corpus_dir: Path, index_dir: Path, doc_ids: Sequence[str],
                     log: Callable[[str], None] = lambda _: None) -> ChangeReport:
    """Take documents out of the index (tombstoned: nothing is re-embedded). A file this project uploaded is deleted;
    any other file stays where it is and is listed in the corpus's `removed.json` (delete its line and run `build`
    to index it again)."""
    started = time.time()
    corpus_dir, index_dir = Path(corpus_dir), Path(index_dir)
    report = ChangeReport()
    changes = _CorpusChanges(corpus_dir)
    with locked_index(index_dir, log) as index:
        found = []
        for doc_id in doc_ids:
            if doc_id in index.documents:
                found.append(doc_id)
            else:
                report.problems.append(f"{doc_id}: no such document in the index")
        if not found:
            return report
        try:
            for doc_id in found:
                rel = index.documents.meta(doc_id).get("path", "")
                if rel:
                    changes.exclude(rel)
            new = index.updated([], found, encoder=None)
            _save(new, corpus_dir, index_dir, log)
        except BaseException:
            changes.undo()
            raise
        report.removed = found
    report.seconds = round(time.time() - started, 2)
    return report


def _save(index: CorpusIndex, corpus_dir: Path, index_dir: Path, log: Callable[[str], None]) -> None:
    """Record the corpus as it now is (so the index is not stale) and swap the new version in."""
    index.manifest = {**index.manifest, "corpus_hash": corpus_fingerprint(corpus_dir),
                      "corpus_dir": str(corpus_dir.resolve())}
    index.save(index_dir, log)
