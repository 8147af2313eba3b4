"""Documents in and out one at a time: `add` ingests only the given files, `remove` tombstones one document; both
under the build lock, swapped in atomically, the corpus folder kept in step so the index never looks stale."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from embeddings import Encoder
from embeddings.cache import CachedEncoder
from rag.ingest.loader import (CorpusLoader, SUPPORTED_SUFFIXES, corpus_fingerprint, load_metadata,
                               max_file_bytes)
from rag.search.index import CorpusIndex, embedding_cache_dir, locked_index
from rag.search.segment import text_sha

REMOVED_DIR = ".removed"
"""Where `remove` moves a document's file inside the corpus folder (hidden: never indexed; move it back to restore)."""


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


def add_paths(corpus_dir: Path, index_dir: Path, paths: Sequence[Path], encoder_factory: Callable[[], Encoder],
              model: str, log: Callable[[str], None] = lambda _: None) -> ChangeReport:
    """Index the given files (copied into the corpus folder when they are outside it); only they are read and
    embedded. A file whose text is already indexed (under any name) is reported and not indexed again; a file with
    the id of an indexed document replaces it.
    """
    started = time.time()
    corpus_dir, index_dir = Path(corpus_dir), Path(index_dir)
    report = ChangeReport()
    metadata, _ = load_metadata(corpus_dir)
    reader = CorpusLoader(corpus_dir)
    with locked_index(index_dir, log) as index:
        texts = {meta.get("text_sha"): doc_id for doc_id, meta in index.document_meta().items()}
        docs, copies = [], []
        for path in map(Path, paths):
            if not path.is_file() or path.suffix.lower() not in SUPPORTED_SUFFIXES:
                report.problems.append(f"{path}: not a {'/'.join(SUPPORTED_SUFFIXES)} file")
                continue
            if path.stat().st_size > max_file_bytes():
                report.problems.append(f"{path}: larger than the {max_file_bytes() / 1048576:.0f} MB limit per file")
                continue
            inside = _inside(path, corpus_dir)
            rel = path.resolve().relative_to(corpus_dir.resolve()).as_posix() if inside else path.name
            target = corpus_dir / rel
            try:
                doc, warning = reader._read(path, rel, metadata.get(rel, {}))
            except Exception as exc:  # one unreadable file must not stop the rest
                report.problems.append(f"{path}: {exc if isinstance(exc, ValueError) else type(exc).__name__ + ': ' + str(exc)}")
                continue
            if warning:
                log(f"note: {rel}: {warning}")
            same = texts.get(text_sha(doc.text))
            if same is not None:
                report.problems.append(f"{path}: the same text as {same}, which is indexed (a duplicate is indexed once)")
                continue
            if not inside and target.exists():
                report.problems.append(f"{path}: the corpus already has a different file named {rel}")
                continue
            texts[text_sha(doc.text)] = doc.doc_id
            (report.replaced if doc.doc_id in index.documents else report.added).append(doc.doc_id)
            docs.append(doc)
            if not inside:
                copies.append((path, target))
        if not docs:
            report.seconds = round(time.time() - started, 2)
            return report
        for source, target in copies:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        try:
            encoder = CachedEncoder(encoder_factory(), embedding_cache_dir(index_dir, model))
            new = index.updated(docs, [d.doc_id for d in docs if d.doc_id in index.documents], encoder)
            _save(new, corpus_dir, index_dir, log)
        except BaseException:
            for _, target in copies:  # the index did not change: neither does the corpus
                target.unlink(missing_ok=True)
            raise
    report.seconds = round(time.time() - started, 2)
    return report


def remove_documents(corpus_dir: Path, index_dir: Path, doc_ids: Sequence[str],
                     log: Callable[[str], None] = lambda _: None) -> ChangeReport:
    """Take documents out of the index (tombstoned: nothing is re-embedded) and move their files into the corpus
    folder's `.removed/` (never deleted; move a file back and run `build` to restore it)."""
    started = time.time()
    corpus_dir, index_dir = Path(corpus_dir), Path(index_dir)
    report = ChangeReport()
    with locked_index(index_dir, log) as index:
        found = []
        for doc_id in doc_ids:
            if doc_id in index.documents:
                found.append(doc_id)
            else:
                report.problems.append(f"{doc_id}: no such document in the index")
        if not found:
            return report
        paths = {d: index.documents.meta(d).get("path", "") for d in found}
        moved = []
        for doc_id, rel in paths.items():
            source = corpus_dir / rel
            if rel and source.is_file():
                target = corpus_dir / REMOVED_DIR / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(str(source), str(target))
                moved.append((target, source))
        try:
            new = index.updated([], found, encoder=None)
            _save(new, corpus_dir, index_dir, log)
        except BaseException:
            for target, source in moved:
                shutil.move(str(target), str(source))
            raise
        report.removed = found
    report.seconds = round(time.time() - started, 2)
    return report


def _save(index: CorpusIndex, corpus_dir: Path, index_dir: Path, log: Callable[[str], None]) -> None:
    """Record the corpus as it now is (so the index is not stale) and swap the new version in."""
    index.manifest = {**index.manifest, "corpus_hash": corpus_fingerprint(corpus_dir),
                      "corpus_dir": str(corpus_dir.resolve())}
    index.save(index_dir, log)
