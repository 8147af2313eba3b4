"""Checks for rag/data/lay_terms.tsv, the lay <-> official term list used for BM25 query expansion.

The file must stay tied to the corpus: every official phrase has to occur in the corpus text
(case-insensitive, as whole words), so an expansion can never add a term the retriever cannot match.
"""

from __future__ import annotations

import csv
import re
import unicodedata
from collections import Counter
from functools import lru_cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
TSV_PATH = ROOT / "rag" / "data" / "lay_terms.tsv"
CORPUS_DIR = ROOT / "corpus"
HEADER = ["lay", "official", "note"]
OFFICIAL_SEP = ";"
MIN_ENTRIES = 80


def _normalize(text: str) -> str:
    """Lowercase and NFC-normalize, drop soft hyphens, turn NBSP into spaces, collapse whitespace."""
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\u00ad", "").replace("\u00a0", " ")
    return re.sub(r"\s+", " ", text).lower()


def _corpus_files() -> list[Path]:
    files = sorted(CORPUS_DIR.glob("seeds/*.txt"))
    files += sorted(CORPUS_DIR.glob("regeringen/**/*.md"))
    return files


@lru_cache(maxsize=1)
def _corpus_text() -> str:
    parts = [p.read_text(encoding="utf-8") for p in _corpus_files()]
    return _normalize("\n".join(parts))


def _occurs(phrase: str, text: str) -> bool:
    """True if `phrase` occurs in `text` as whole words (not inside a longer word)."""
    pattern = r"(?<!\w)" + re.escape(_normalize(phrase)) + r"(?!\w)"
    return re.search(pattern, text) is not None


@lru_cache(maxsize=1)
def _load() -> tuple[list[str], list[list[str]]]:
    """Return (header, data rows); lines starting with '#' are comments and skipped."""
    raw = TSV_PATH.read_bytes()
    assert not raw.startswith(b"\xef\xbb\xbf"), "lay_terms.tsv must be UTF-8 without BOM"
    text = raw.decode("utf-8")  # strict: fails on invalid UTF-8
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    rows = list(csv.reader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
    assert rows, "lay_terms.tsv has no header line"
    return rows[0], rows[1:]


def _officials(field: str) -> list[str]:
    return [part.strip() for part in field.split(OFFICIAL_SEP)]


def test_file_exists():
    assert TSV_PATH.is_file(), f"missing {TSV_PATH}"


def test_header():
    header, _ = _load()
    assert header == HEADER


def test_rows_have_three_nonempty_fields():
    _, rows = _load()
    bad = [row for row in rows if len(row) != 3 or not all(field.strip() for field in row)]
    assert not bad, f"rows must have exactly 3 non-empty tab-separated fields: {bad[:5]}"


def test_no_stray_whitespace_or_quotes():
    _, rows = _load()
    bad = [row for row in rows if any(f != f.strip() or '"' in f for f in row)]
    assert not bad, f"fields must not have leading/trailing whitespace or double quotes: {bad[:5]}"


def test_enough_entries():
    _, rows = _load()
    assert len(rows) >= MIN_ENTRIES, f"only {len(rows)} entries, want >= {MIN_ENTRIES}"


def test_lay_is_lowercase():
    _, rows = _load()
    bad = [row[0] for row in rows if row[0] != row[0].lower()]
    assert not bad, f"lay side must be lowercase: {bad}"


def test_no_duplicate_lay_entries():
    _, rows = _load()
    counts = Counter(re.sub(r"\s+", " ", row[0].strip().lower()) for row in rows)
    dups = sorted(lay for lay, n in counts.items() if n > 1)
    assert not dups, f"duplicate lay entries: {dups}"


def test_official_phrases_nonempty_and_distinct():
    _, rows = _load()
    problems = []
    for lay, official, _note in rows:
        phrases = _officials(official)
        if not phrases or any(not p for p in phrases):
            problems.append((lay, official, "empty official phrase"))
            continue
        lowered = [p.lower() for p in phrases]
        if len(set(lowered)) != len(lowered):
            problems.append((lay, official, "repeated official phrase"))
        if lay.strip().lower() in lowered:
            problems.append((lay, official, "maps to itself"))
    assert not problems, f"bad official fields: {problems}"


def test_corpus_is_present():
    files = _corpus_files()
    assert files, f"no corpus files under {CORPUS_DIR}"
    assert len(_corpus_text()) > 10_000


def test_every_official_phrase_occurs_in_corpus():
    _, rows = _load()
    text = _corpus_text()
    missing = [
        (lay, phrase)
        for lay, official, _note in rows
        for phrase in _officials(official)
        if phrase and not _occurs(phrase, text)
    ]
    assert not missing, (
        "official phrases not found (as whole words) in corpus/seeds/*.txt + corpus/regeringen/**/*.md: "
        f"{missing}"
    )
