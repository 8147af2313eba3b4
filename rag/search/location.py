"""Where an index lives on disk, and the one rule for touching it: only what this project's manifest says it wrote.

An index folder is ours when its `manifest.json` says so (`"kind": "cancer-rag-index"`, or an older manifest with a
`files` list), or, when the manifest is damaged, when every file in it has a name an index writes. Anything else
(`--index ~/Documents`, a regular file) is refused before any work, with a message. Builds run under a
cross-process lock file beside the folder (plus a thread lock: app sessions are threads of one process), so several
first visitors make one build; the finished build is swapped in by two renames, and an interrupted swap (killed
between them) is recovered at the next start. Leftover temporary folders of killed builds are cleaned, again only
as far as their files are ours.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import threading
import uuid
from pathlib import Path
from typing import Callable, Iterator

INDEX_KIND = "cancer-rag-index"
MANIFEST = "manifest.json"
INDEX_FILE_NAMES = frozenset({
    MANIFEST, "dense.faiss", "sentence_vectors.npy", "documents.jsonl", "passages.jsonl", "sentences.jsonl",
    "analyzer.json", "data.csc.index.npy", "indices.csc.index.npy", "indptr.csc.index.npy", "params.index.json",
    "vocab.index.json", "nonoccurrence_array.index.npy",
    # format 4: columnar segments (the first in the folder, later ones in seg-NNNN/) and lexical/ statistics
    "documents.off.npy", "doc_texts.bin", "doc_texts.bin.off.npy", "passages.npy", "passage_ids.npy",
    "passage_ids.order.npy", "headings.bin", "headings.bin.off.npy", "sentences.npy", "passage_vectors.npy",
    "postings_tf.npy", "passage_lengths.npy", "tokens.json", "stems.json", "df.npy", "live.npy",
    *(f"{name}.{part}.npy" for name in ("passage_sentences", "postings", "passage_tokens", "sentence_tokens",
                                        "context_tokens") for part in ("indptr", "values")),
})
"""Every file name an index build writes (in the folder, its lexical/ subfolder or a seg-NNNN/ segment folder)."""

_THREAD_LOCKS: dict[str, threading.Lock] = {}
_THREAD_LOCKS_GUARD = threading.Lock()


PROJECT_ROOT = Path(__file__).resolve().parents[2]


def default_index_base() -> Path:
    """Where indexes live by default: $RAG_INDEX_DIR, or .rag_index/ in the project (one folder per model)."""
    return Path(os.environ.get("RAG_INDEX_DIR") or PROJECT_ROOT / ".rag_index")


def cache_root() -> Path:
    """$RAG_CACHE_DIR, or ~/.cache/cancer-rag: models and embedding caches that are not one index's own."""
    return Path(os.environ.get("RAG_CACHE_DIR") or Path.home() / ".cache" / "cancer-rag").expanduser()


class IndexLocationError(RuntimeError):
    """The index location is not an index of this project (or not a folder): nothing there is touched."""


def read_manifest(directory: Path) -> dict | None:
    """The manifest as a dict, or None when it is missing, unreadable or not a JSON object."""
    try:
        data = json.loads((Path(directory) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _all_files(directory: Path) -> list[Path]:
    return [p for p in directory.rglob("*") if p.is_file() or p.is_symlink()]


def owned_files(directory: Path, partial: bool = False) -> list[Path] | None:
    """The files in `directory` this project wrote, or None when the folder is not (recognisably) an index of ours.

    Trusted, in order: a manifest of ours lists its files; a damaged manifest beside nothing but index file names
    still marks a damaged index of ours. An empty folder is ours to fill (an empty list). `partial`: the folder is a
    temporary build folder of ours (named `.NAME.tmp-<12 hex>`), which holds no manifest until its last step: files
    that all have index file names are ours.
    """
    directory = Path(directory)
    files = _all_files(directory)
    if not files:
        return []
    manifest = read_manifest(directory)
    if manifest is not None and (manifest.get("kind") == INDEX_KIND or _older_manifest_of_ours(manifest)):
        listed = {directory / name for name in (manifest.get("files") or {}) if isinstance(name, str)}
        listed.add(directory / MANIFEST)
        known = {p for p in files if p.name in INDEX_FILE_NAMES}
        return sorted(p for p in files if p in listed or p in known)
    if all(p.name in INDEX_FILE_NAMES for p in files) and ((directory / MANIFEST).exists() or partial):
        return sorted(files)
    return None


def _older_manifest_of_ours(manifest: dict) -> bool:
    """A manifest from before `kind` was written: a format version and a files table naming only index files
    (someone else's tool may write {"format_version", "files"} too, listing the user's own files)."""
    files = manifest.get("files")
    return ("format_version" in manifest and isinstance(files, dict) and bool(files)
            and all(isinstance(name, str) and Path(name).name in INDEX_FILE_NAMES for name in files))


def check_location(directory: Path) -> None:
    """Refuse an index location that is a file, or a folder holding anything but an index of ours."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise IndexLocationError(
            f"{directory} is a file, not an index folder. Choose a new or empty folder for --index / RAG_INDEX_DIR; "
            "the file was not touched.")
    if directory.is_dir() and owned_files(directory) is None:
        raise IndexLocationError(
            f"{directory} is not an index folder of this project (it holds other files and no manifest.json this "
            "project wrote). Choose a new or empty folder for --index / RAG_INDEX_DIR; nothing in it was touched.")


def remove_owned(directory: Path, log: Callable[[str], None] = lambda _: None, partial: bool = False) -> bool:
    """Delete the files of ours in `directory`, then its empty folders; True when the folder is gone. Files that are
    not ours are never deleted: the folder stays, with a message."""
    directory = Path(directory)
    if not directory.exists():
        return True
    files = owned_files(directory, partial=partial)
    if files is None:
        log(f"left {directory} in place: it holds files this project did not write")
        return False
    for path in files:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    for sub in sorted((p for p in directory.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            sub.rmdir()
    try:
        directory.rmdir()
        return True
    except OSError:
        log(f"left {directory} in place: it still holds files this project did not write")
        return False


def sibling(directory: Path, kind: str) -> Path:
    """A unique temporary or old-index folder beside the index: `.NAME.tmp-<id>` / `.NAME.old-<id>` (unique per
    call, so threads of one process never collide)."""
    return directory.with_name(f".{directory.name}.{kind}-{uuid.uuid4().hex[:12]}")


_SIBLING_ID = re.compile(r"^[0-9a-f]{12}$")


def _siblings(directory: Path, kind: str) -> list[Path]:
    """Folders `sibling` made beside the index (`.NAME.KIND-<12 hex>`): a folder merely named alike is not one."""
    parent = directory.parent
    if not parent.is_dir():
        return []
    prefix = f".{directory.name}.{kind}-"
    return sorted(p for p in parent.glob(f"{prefix}*")
                  if p.is_dir() and not p.is_symlink() and _SIBLING_ID.match(p.name[len(prefix):]))


def has_leftovers(directory: Path) -> bool:
    """Whether killed builds left temporary or old folders beside the index (a cheap look, no lock)."""
    directory = Path(directory)
    return bool(_siblings(directory, "old") or _siblings(directory, "tmp"))


def recover(directory: Path, log: Callable[[str], None] = lambda _: None) -> None:
    """Under the build lock: put back an index left in `.NAME.old-*` by a swap killed between its two renames, and
    clean the leftovers of killed builds (only files of ours)."""
    directory = Path(directory)
    olds = [p for p in _siblings(directory, "old") if owned_files(p)]
    if not directory.exists() and olds:
        newest = max(olds, key=lambda p: p.stat().st_mtime)
        os.replace(newest, directory)
        log(f"Recovered the index from an interrupted swap ({newest.name}).")
        olds.remove(newest)
    for leftover in olds:
        remove_owned(leftover, log)
    for leftover in _siblings(directory, "tmp"):
        remove_owned(leftover, log, partial=True)


def swap_in(built: Path, directory: Path, log: Callable[[str], None] = lambda _: None) -> None:
    """Replace the index at `directory` with the finished build at `built` (two renames), then delete the old one
    (only its files of ours)."""
    old = None
    if directory.exists():
        old = sibling(directory, "old")
        os.replace(directory, old)
    os.replace(built, directory)
    _fsync_dir(directory.parent)
    if old is not None:
        _keep_foreign_files(old, directory, log)
        remove_owned(old, log)


def _keep_foreign_files(old: Path, new: Path, log: Callable[[str], None]) -> None:
    """Files a user put into the index folder go back to their own paths in the new version (never deleted, never
    left in a hidden folder); a path the new index itself uses keeps the index's file, the user's stays in `old`."""
    ours = owned_files(old)
    if ours is None:
        return
    ours_set = set(ours)
    for path in _all_files(old):
        if path in ours_set:
            continue
        target = new / path.relative_to(old)
        if target.exists() or target.is_symlink():
            log(f"left {path} in place: the new index has a file at {target}")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, target)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def build_lock(directory: Path, blocking: bool = True) -> Iterator[bool]:
    """Hold the index's build lock: one build at a time across processes (flock on `.NAME.lock`) and threads.
    With `blocking=False` it yields False at once when someone else holds it (and True when it got it)."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    key = str(directory.resolve())
    with _THREAD_LOCKS_GUARD:
        lock = _THREAD_LOCKS.setdefault(key, threading.Lock())
    if not lock.acquire(blocking):
        yield False
        return
    try:
        path = directory.with_name(f".{directory.name}.lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
    finally:
        lock.release()


def remove_tree_of_ours(directory: Path) -> None:
    """Remove a temporary build folder this process created itself (it holds nothing but its own files)."""
    shutil.rmtree(directory, ignore_errors=True)
