"""Read a folder of .txt, .md, .html and .pdf files into clean, normalized Documents with metadata."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterable

from rag.ingest.formats import PAGE_MARK, guess_txt_headings, read_docx, read_html, read_markdown, read_pdf
from rag.ingest.profile import PROFILE_FILE, CorpusProfile
from rag.ingest.sources import REMOVED_FILE, removed_paths
from rag.inputs import clean_text
from rag.text import normalize_text
from rag.types import Document

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")
DEFAULT_MAX_FILE_MB = 20.0
"""Larger files are skipped with a message (env RAG_MAX_FILE_MB): a patient leaflet or care programme is far
smaller, and a 50 MB text would take many minutes to index."""
METADATA_FIELDS = ("title", "publisher", "date", "url")
MAX_FIELD_CHARS = {"title": 300, "publisher": 200, "date": 40, "url": 2000}
"""Longer metadata is cut: a title goes into every passage's embedding text."""
METADATA_FILE = "metadata.jsonl"
# Bump when ingest or splitting changes what goes into the index: every stored index becomes stale.
INGEST_VERSION = "3"
_DATA = Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True)
class IngestProblem:
    """A file that was skipped or read with a caveat, and why (shown to the maintainer, never silent)."""

    path: str
    message: str
    skipped: bool = True


@dataclass
class CorpusLoad:
    """Result of reading a corpus folder: the documents and every problem met on the way."""

    documents: list[Document] = field(default_factory=list)
    problems: list[IngestProblem] = field(default_factory=list)


class CorpusError(RuntimeError):
    """The corpus folder cannot give any document (missing, empty, nothing readable)."""


# ---------------------------------------------------------------------------------------------------------------------
# Boilerplate
# ---------------------------------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def load_boilerplate_patterns(path: Path = _DATA / "boilerplate.txt") -> tuple[re.Pattern[str], ...]:
    """Read the reviewed list of boilerplate line patterns (one regex per line, `#` comments)."""
    patterns = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append(re.compile(line, re.IGNORECASE))
    return tuple(patterns)


def is_boilerplate_line(line: str, patterns: Iterable[re.Pattern[str]] | None = None) -> bool:
    """True when a whole line is page chrome (contact forms, cookie banners, share links, dates of publication)."""
    line = line.strip().strip("•-*").strip()
    if not line:
        return False
    return any(p.fullmatch(line) for p in (patterns or load_boilerplate_patterns()))


_PROSE_END = re.compile(r"[.!?:…]\"?$")


def strip_boilerplate(text: str, patterns: Iterable[re.Pattern[str]] | None = None) -> str:
    """Remove web boilerplate lines from normalized text.

    Besides lines matching the patterns, a short teaser line directly before a dropped "Läs vidare"-type
    line (a link title) goes too, and a trailing contact block after a dropped "Kontakta oss"/
    "Informationsansvarig" line is cut when nothing after it reads as prose.
    """
    patterns = tuple(patterns or load_boilerplate_patterns())
    lines = text.split("\n")
    keep = [True] * len(lines)
    for i, line in enumerate(lines):
        if is_boilerplate_line(line, patterns):
            keep[i] = False
            # A link teaser ("Regionala cancercentrum, RCC" + "Läs vidare"): the title line goes with it.
            if re.match(r"(?i)läs (vidare|mer)", line.strip()):
                j = i - 1
                while j >= 0 and not lines[j].strip():
                    j -= 1
                if j >= 0 and not _PROSE_END.search(lines[j].strip()) and len(lines[j].split()) <= 8:
                    keep[j] = False
    # Footer cut: after a dropped contact/author line, the rest is a contact block unless prose follows.
    for i, line in enumerate(lines):
        if not keep[i] and re.match(r"(?i)(informationsansvarig|kontakta oss|kontakt\b|kontaktformulär)", line.strip()):
            rest = [l for l in lines[i + 1 :] if l.strip()]
            if not any(len(l.split()) >= 8 and _PROSE_END.search(l) for l in rest if not is_boilerplate_line(l, patterns)):
                for j in range(i, len(lines)):
                    keep[j] = False
                break
    cleaned = "\n".join(l for l, k in zip(lines, keep) if k)
    return normalize_text(cleaned)


# ---------------------------------------------------------------------------------------------------------------------
# The loader
# ---------------------------------------------------------------------------------------------------------------------


def decode_bytes(data: bytes) -> tuple[str, str]:
    """Decode file bytes: UTF-8 (with or without BOM), else the best guess of charset-normalizer.

    Returns
    -------
    (text, encoding) : tuple[str, str]

    Raises
    ------
    ValueError
        When the bytes are binary (NUL bytes) or no text encoding fits.
    """
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
    if b"\x00" in data[:8192]:
        raise ValueError("looks like a binary file (NUL bytes), not text")
    try:
        return data.decode("utf-8-sig"), "utf-8"
    except UnicodeDecodeError:
        pass
    # Older Swedish files are nearly always Windows-1252/Latin-1; statistical guessing gets short Swedish texts
    # wrong (it reads "stöd" as Chinese), so that encoding is tried first.
    try:
        text = data.decode("cp1252")
        if not re.search(r"[\x00-\x08\x0b\x0c\x0e-\x1f]", text):
            return text, "cp1252"
    except UnicodeDecodeError:
        pass
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise ValueError("not valid UTF-8 and no text encoding fits")
    return str(best), best.encoding


def max_file_bytes() -> int:
    """The size limit per corpus file, from RAG_MAX_FILE_MB (default 20 MB)."""
    try:
        mb = float(os.environ.get("RAG_MAX_FILE_MB") or DEFAULT_MAX_FILE_MB)
    except ValueError:
        mb = DEFAULT_MAX_FILE_MB
    if not math.isfinite(mb) or mb <= 0:
        mb = DEFAULT_MAX_FILE_MB
    return int(min(max(0.001, mb), 100_000) * 1024 * 1024)


def _clean_metadata(row: dict, no: int) -> tuple[dict, list[str]]:
    """Keep the metadata fields that have the right type (text; a date may be a number); say what was dropped."""
    out, dropped = {}, []
    for name in METADATA_FIELDS:
        value = row.get(name)
        if value is None or value == "":
            continue
        if name == "date" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            dropped.append(f"{name} is {type(value).__name__}, not text")
            continue
        cleaned = clean_text(value)
        if cleaned != value:
            dropped.append(f"{name} held characters that are not valid text (replaced by \ufffd)")
        if len(cleaned) > MAX_FIELD_CHARS[name]:
            dropped.append(f"{name} is longer than {MAX_FIELD_CHARS[name]} characters (cut)")
        value = cleaned[: MAX_FIELD_CHARS[name]]
        if name == "url" and not re.match(r"(?i)https?://", value.strip()):
            dropped.append(f"url {value[:40]!r} is not an http(s) address")
            continue
        out[name] = value.strip()
    return out, [f"line {no}: {d}" + ("" if d.endswith(")") else ": ignored") for d in dropped]


def load_metadata(root: Path) -> tuple[dict[str, dict], list[IngestProblem]]:
    """Read `metadata.jsonl` (one object per file: path, title, publisher, date, url) if the folder has one.

    A metadata file that cannot be read (not UTF-8, a folder, no permission) or a bad line is reported and the
    documents keep the titles and dates found in the files themselves; fields of the wrong type are dropped.
    """
    path = root / METADATA_FILE
    if not path.exists() and not path.is_symlink():
        return {}, []
    try:
        if not path.is_file():
            raise IsADirectoryError("it is not a regular file")
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [IngestProblem(METADATA_FILE, f"could not be read ({type(exc).__name__}: {exc}); documents get "
                                                 "their titles and dates from the files themselves", skipped=False)]
    rows, problems = {}, []
    for no, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not isinstance(row, dict) or not isinstance(row.get("path"), str):
                raise ValueError("a row must be an object with a text \"path\"")
        except (ValueError, RecursionError) as exc:
            problems.append(IngestProblem(METADATA_FILE, f"line {no} is not a valid metadata row ({exc})", skipped=False))
            continue
        clean, notes = _clean_metadata(row, no)
        problems.extend(IngestProblem(METADATA_FILE, n, skipped=False) for n in notes)
        rows[Path(row["path"]).as_posix()] = clean
    return rows, problems


def _inside(path: Path, root: Path) -> bool:
    """True when the file (after following symlinks) is inside the corpus folder."""
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError, RuntimeError):  # RuntimeError: a symlink loop
        return False


def _valid_name(rel: str) -> bool:
    try:
        rel.encode("utf-8")
        return True
    except UnicodeEncodeError:  # a file name that is not valid UTF-8 (surrogate-escaped by the OS layer)
        return False


def corpus_files(root: Path) -> list[Path]:
    """Supported files under `root`, sorted, hidden files and folders excluded (symlinks out of `root` too)."""
    return sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in SUPPORTED_SUFFIXES
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
        and (p.is_file() or p.is_symlink())
    )


def corpus_fingerprint(root: Path) -> str:
    """A cheap content hash of the corpus folder (file paths, bytes, metadata, ingest version).

    It changes whenever any file the index is built from changes, without parsing anything.
    """
    root = Path(root)
    h = hashlib.sha256(f"ingest-v{INGEST_VERSION}".encode())
    files = corpus_files(root) if root.is_dir() else []
    extra = [root / name for name in (METADATA_FILE, PROFILE_FILE, REMOVED_FILE) if (root / name).is_file()]
    for p in files + extra:
        h.update(os.fsencode(p.relative_to(root).as_posix()) + b"\0")
        try:
            if not _inside(p, root) or p.stat().st_size > max_file_bytes():
                st = p.lstat()  # never read (it will be skipped): its size and time still mark a change
                h.update(f"skipped {st.st_size} {st.st_mtime_ns}".encode())
            else:
                h.update(_file_digest(p))
        except OSError as exc:  # unreadable: skipped by the loader, but a change of it still counts
            h.update(f"unreadable {type(exc).__name__}".encode())
    for name in ("boilerplate.txt",):
        h.update((_DATA / name).read_bytes())
    h.update(str(max_file_bytes()).encode())
    return h.hexdigest()


def _file_digest(path: Path) -> bytes:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def take_page_marks(text: str) -> tuple[str, list[int]]:
    """Remove the PAGE_MARK characters a PDF reader put in; return the text and where each page starts in it."""
    if PAGE_MARK not in text:
        return text, []
    starts, out, at = [], [], 0
    for i, piece in enumerate(text.split(PAGE_MARK)):
        if i:
            starts.append(at)
        out.append(piece)
        at += len(piece)
    return "".join(out), starts


class CorpusLoader:
    """Read every supported file of a folder into Documents; never drops a file silently.

    Example
    -------
    >>> load = CorpusLoader("corpus").run()
    >>> len(load.documents), [p.message for p in load.problems]
    """

    def __init__(self, root: str | Path, progress=None) -> None:
        self.root = Path(root)
        self.progress = progress or (lambda done, total: None)

    def run(self) -> CorpusLoad:
        root = self.root
        if not root.is_dir():
            raise CorpusError(f"Corpus folder {root} does not exist. Point --corpus at a folder of .txt/.md/.html/.pdf files.")
        metadata, problems = load_metadata(root)
        profile = CorpusProfile.load(root)
        problems += [IngestProblem(PROFILE_FILE, p, skipped=False) for p in profile.problems]
        result = CorpusLoad(problems=problems)
        seen_ids: set[str] = set()
        seen_texts: dict[str, str] = {}
        removed = removed_paths(root)
        files = corpus_files(root)
        limit = max_file_bytes()
        for i, path in enumerate(files):
            self.progress(i, len(files))
            rel = path.relative_to(root).as_posix()
            if not _valid_name(rel):
                shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                result.problems.append(IngestProblem(shown, "skipped: the file name is not valid UTF-8; rename it"))
                continue
            if not _inside(path, root):
                result.problems.append(IngestProblem(rel, "skipped: a link to a file outside the corpus folder"))
                continue
            if rel in removed:
                result.problems.append(IngestProblem(rel, f"skipped: taken out of the index by staff ({REMOVED_FILE})"))
                continue
            try:
                size = path.stat().st_size
                if size > limit:
                    result.problems.append(IngestProblem(
                        rel, f"skipped: {size / 1048576:.1f} MB is larger than the {limit / 1048576:.0f} MB limit per "
                             "file (RAG_MAX_FILE_MB)"))
                    continue
                doc, warning = self._read(path, rel, metadata.get(rel, {}))
            except Exception as exc:  # one unreadable file must not stop the rest
                why = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
                result.problems.append(IngestProblem(rel, f"skipped: {why}"))
                continue
            if doc is not None and profile.deduplicate:
                digest = hashlib.sha256(doc.text.encode("utf-8")).hexdigest()
                if digest in seen_texts:
                    result.problems.append(IngestProblem(rel, f"skipped: the same text as {seen_texts[digest]} "
                                                              "(a duplicate is indexed once)"))
                    continue
                seen_texts[digest] = rel
            if warning:
                result.problems.append(IngestProblem(rel, warning, skipped=False))
            if doc is None:
                continue
            if doc.doc_id in seen_ids:  # a.txt and a.md: keep both, the second with its suffix in the id
                doc = Document(**{**doc.to_dict(), "doc_id": rel})
            seen_ids.add(doc.doc_id)
            result.documents.append(doc)
        self.progress(len(files), len(files))
        if not result.documents:
            detail = "; ".join(f"{p.path}: {p.message}" for p in result.problems[:5])
            raise CorpusError(
                f"Corpus folder {root} holds no readable document "
                f"(supported: {', '.join(SUPPORTED_SUFFIXES)}){': ' + detail if detail else ''}."
            )
        return result

    def _read(self, path: Path, rel: str, meta: dict) -> tuple[Document | None, str]:
        data = path.read_bytes()
        if not data.strip():
            raise ValueError("empty file")
        warning = ""
        suffix = path.suffix.lower()
        if suffix == ".pdf":
            text, headings, found = read_pdf(path)
        elif suffix == ".docx":
            text, headings, found = read_docx(path)
        else:
            source, encoding = decode_bytes(data)
            if encoding != "utf-8":
                warning = f"not UTF-8: decoded as {encoding}; please save it as UTF-8"
            if suffix in (".md", ".markdown"):
                text, headings, found = read_markdown(source)
            elif suffix in (".html", ".htm"):
                text, headings, found = read_html(source)
            else:
                text, headings, found = source, [], {}
        text, page_starts = take_page_marks(strip_boilerplate(normalize_text(text)))
        if not text:
            raise ValueError("no text left after extraction and boilerplate removal")
        if suffix not in (".md", ".markdown", ".html", ".htm", ".docx"):
            headings = guess_txt_headings(text)
        title = (meta.get("title") or clean_text(found.get("title") or "") or (headings[0] if headings else "")
                 or path.stem)[: MAX_FIELD_CHARS["title"]]
        doc = Document(
            doc_id=rel.rsplit(".", 1)[0],
            title=normalize_text(title),
            text=text,
            publisher=meta.get("publisher") or found.get("publisher") or "",
            date=str(meta.get("date") or found.get("date") or ""),
            url=meta.get("url") or found.get("url") or "",
            path=rel,
            headings=tuple(normalize_text(h) for h in headings if normalize_text(h) in text),
            page_starts=tuple(page_starts),
        )
        return doc, warning
