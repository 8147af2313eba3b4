"""Staff changes to a corpus folder: documents uploaded into `uploads/` and documents taken out via `removed.json`.

The project deletes only what it wrote: an uploaded file (listed in `uploads/.uploads.json`) is deleted when it is
removed; any other document is never deleted, it is listed in `removed.json` and left out of the index.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from datetime import datetime, timezone
from pathlib import Path

UPLOADS = "uploads"
UPLOADS_MANIFEST = ".uploads.json"
REMOVED_FILE = "removed.json"
UPLOAD_SUFFIXES = (".pdf", ".docx", ".html", ".htm", ".md", ".markdown", ".txt")


def safe_name(name: str) -> str:
    """A file name safe in any folder: no path parts, ASCII letters, digits, - _ . (the suffix kept)."""
    name = Path(name or "dokument").name
    stem, suffix = os.path.splitext(name)
    stem = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode()
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", stem).strip("-").lower()[:80] or "dokument"
    return stem + suffix.lower()


def _read_json(path: Path, default):
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, type(default)) else default
    except (OSError, ValueError):
        return default


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def removed_paths(corpus_dir: Path) -> set[str]:
    """Corpus-relative paths staff took out of the index."""
    return {p for p in _read_json(Path(corpus_dir) / REMOVED_FILE, {"paths": []}).get("paths", []) if isinstance(p, str)}


def add_upload(corpus_dir: Path, filename: str, data: bytes, user: str = "") -> str:
    """Save an uploaded document into `uploads/` (a new name if one exists) and record it; returns its relative path."""
    corpus_dir = Path(corpus_dir)
    name = safe_name(filename)
    if not name.endswith(UPLOAD_SUFFIXES):
        raise ValueError(f"{filename}: bara {', '.join(UPLOAD_SUFFIXES)} kan läggas till")
    folder = corpus_dir / UPLOADS
    folder.mkdir(parents=True, exist_ok=True)
    target, n = folder / name, 1
    while target.exists():
        n += 1
        target = folder / f"{Path(name).stem}-{n}{Path(name).suffix}"
    target.write_bytes(data)
    manifest = _read_json(folder / UPLOADS_MANIFEST, {})
    rel = target.relative_to(corpus_dir).as_posix()
    manifest[rel] = {"uploaded_by": user, "uploaded_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                     "original_name": Path(filename).name, "bytes": len(data)}
    _write_json(folder / UPLOADS_MANIFEST, manifest)
    include_document(corpus_dir, rel)
    return rel


def include_document(corpus_dir: Path, rel_path: str) -> None:
    """Take a document off the exclusion list (`removed.json`), so the next build indexes it again."""
    removed = removed_paths(corpus_dir)
    if rel_path in removed:
        _write_json(Path(corpus_dir) / REMOVED_FILE, {"paths": sorted(removed - {rel_path})})


def remove_document(corpus_dir: Path, rel_path: str) -> str:
    """Take a document out of the index: delete it if this project uploaded it, else list it in removed.json.
    Returns "deleted" or "excluded"."""
    corpus_dir = Path(corpus_dir)
    manifest_path = corpus_dir / UPLOADS / UPLOADS_MANIFEST
    manifest = _read_json(manifest_path, {})
    if rel_path in manifest:
        (corpus_dir / rel_path).unlink(missing_ok=True)
        manifest.pop(rel_path)
        _write_json(manifest_path, manifest)
        return "deleted"
    removed = removed_paths(corpus_dir) | {rel_path}
    _write_json(corpus_dir / REMOVED_FILE, {"paths": sorted(removed)})
    return "excluded"
