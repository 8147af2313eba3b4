"""User feedback on answers: redaction of personal numbers and a crash-safe, append-only JSON-lines store."""

from __future__ import annotations

import json
import os
import re
import threading
import unicodedata
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from rag.types import Answer

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FEEDBACK_FILE = "feedback.jsonl"
MAX_COMMENT_CHARS = 2000
SYSTEM_FIELDS = frozenset({"timestamp", "answer_id", "rating", "helpful", "abstained", "reason", "model",
                           "index_built_at", "citation_passage_ids", "triage_level"})
"""Fields the service itself fills with ids, flags and times; every other text field is redacted on write."""

PERSONNUMMER_TAG = "[personnummer]"
PHONE_TAG = "[telefonnummer]"
EMAIL_TAG = "[e-post]"
NAME_TAG = "[namn]"

_INVISIBLE_OR_DASH = {**dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff\u180e"), None),
                      **dict.fromkeys(map(ord, "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"), "-")}

# Personnummer / samordningsnummer: (YY)YYMMDD, then - or + (or none), then four digits; the groups may be written
# with spaces, dots or slashes between them ("1912 12 12-1212", "12.12.12-1212", "121212 - 1212"). The month and
# day must be plausible (samordningsnummer add 60 to the day), which keeps amounts like "46 759 214" out.
_G = r"[ ./]?"
_PNR = re.compile(
    r"(?<![\d+])"
    rf"(?P<digits>(?:19|20)?\d{{2}}{_G}(?:0[1-9]|1[0-2]){_G}(?:0[1-9]|[12]\d|3[01]|6[1-9]|[78]\d|9[01]))"
    r"(?P<sep>\s*[-+]\s*|\s)?"
    r"(?P<tail>\d{4})"
    r"(?![\d])"
)
# Swedish phone numbers: national (0 + area code + subscriber, 8-10 digits) or international (+46 / 0046,
# optionally "(0)"), with spaces, hyphens, dots, slashes or brackets between digit groups ("070.123.45.67",
# "070/1234567", "08-123 456 78"). Short service numbers (112, 1177, 90101) have too few digits to match.
_SEP = r"(?:\s*[-./]\s*|\s|\)\s*)?"
_PHONE = re.compile(
    r"(?<![\w+])"
    r"(?:"
    rf"(?:\+|00)\s*46{_SEP}(?:\(0\){_SEP})?[1-9](?:{_SEP}\d){{6,8}}"
    r"|"
    rf"\(?0[1-9](?:{_SEP}\d){{6,8}}"
    r")"
    r"(?![\d])"
)
# E-mail, also written to dodge filters: "anna (at) example.se", "anna [at] example dot se", "anna snabel-a ex.se".
_AT = r"(?:\s*@\s*|\s*[\(\[\{]\s*(?:at|snabel-?a)\s*[\)\]\}]\s*|\s+(?:at|snabel-?a)\s+)"
_DOT = r"(?:\.|\s*[\(\[\{]\s*(?:dot|punkt)\s*[\)\]\}]\s*|\s+(?:dot|punkt)\s+)"
_EMAIL = re.compile(rf"(?<![\w.+-])[\w.+-]+{_AT}[\w-]+(?:{_DOT}[\w-]+)+", re.IGNORECASE)
# Names, where they can be told: after "jag heter", "mitt namn är", a greeting sign-off or a title; and a first name
# followed by a surname with a common Swedish surname ending ("Anna Svensson", "Lars Lindqvist").
_CAP = r"[A-ZÅÄÖÉ][a-zåäöéü]+(?:-[A-ZÅÄÖÉ][a-zåäöéü]+)?"
_NAME_AFTER = re.compile(
    r"(?i:\b(?:jag heter|heter jag|mitt namn är|namnet är|jag är|mvh|m\.v\.h\.|hälsningar|med vänlig hälsning|"
    r"vänliga hälsningar|hälsar|dr|doktor|läkaren|sjuksköterskan|kontaktsjuksköterskan|syster|barnmorskan)\b[,:]?\s+)"
    rf"(?P<name>{_CAP}(?:\s+{_CAP}){{0,2}})"
)
# "jag heter anna", "JAG HETER ANNA": after the plainest introducers the next word is a name whatever its case.
_NAME_AFTER_PLAIN = re.compile(
    r"(?i:\b(?:jag heter|heter jag|mitt namn är|mitt namn e|namnet är|jag är)\s+)"
    r"(?P<name>[^\W\d_]{2,}(?:-[^\W\d_]+)?(?:\s+[A-ZÅÄÖ][A-ZÅÄÖa-zåäö]+(?:son|sson|berg|ström|lund|gren|qvist|kvist))?)"
)
_NOT_NAMES = frozenset({"orolig", "rädd", "sjuk", "mamma", "pappa", "anhörig", "närstående", "patient", "trött", "ledsen",
                        "osäker", "inte", "också", "en", "ett", "så", "väldigt", "mycket", "här", "nyfiken",
                        "förälder", "sjuksköterska", "läkare", "undersköterska", "kurator", "gravid", "ensam"})
_SURNAME = re.compile(
    rf"\b{_CAP}\s+[A-ZÅÄÖ][a-zåäö]*(?:ss?on|berg|ström|strom|lund|gren|qvist|kvist|dahl|blad|holm|stedt|ander|"
    r"ell|lin|man|sköld|bäck|fors|gård|ros|hed|sjö|wall|ling)\b"
)


_MOBILE_PREFIXES = ("070", "072", "073", "076", "079")


def normalize_for_redaction(text: str) -> str:
    """What redaction reads: NFKC (fullwidth digits and letters become plain), invisible characters removed
    (a soft hyphen or zero-width space inside a number no longer hides it), every dash a hyphen."""
    return unicodedata.normalize("NFKC", text).translate(_INVISIBLE_OR_DASH)


def _luhn_ok(digits: str) -> bool:
    """The personnummer check digit (Luhn over the last ten digits)."""
    total = 0
    for i, ch in enumerate(digits[-10:]):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _pnr_tag(match: re.Match[str]) -> str:
    """A bare ten-digit mobile number (0701234567) also fits YYMMDDXXXX; the check digit tells them apart."""
    number = re.sub(r"\D", "", match.group("digits")) + match.group("tail")
    if not match.group("sep") and len(number) == 10 and number.startswith(_MOBILE_PREFIXES) and not _luhn_ok(number):
        return PHONE_TAG
    return PERSONNUMMER_TAG


def redact(text: str) -> str:
    """Replace Swedish personal identity numbers, phone numbers and e-mail addresses with placeholders.

    Parameters
    ----------
    text : str
        Free text a user typed (a question or a comment).

    Returns
    -------
    str
        The text with personnummer / samordningsnummer replaced by "[personnummer]", phone numbers by
        "[telefonnummer]" and e-mail addresses by "[e-post]"; years, amounts and other numbers are kept.

    Examples
    --------
    >>> redact("Mitt personnummer är 19850612-1234, ring 070-123 45 67.")
    'Mitt personnummer är [personnummer], ring [telefonnummer].'
    >>> redact("Regionerna får 182,5 miljoner kronor 2024.")
    'Regionerna får 182,5 miljoner kronor 2024.'
    """
    if not text:
        return "" if text is None else text
    for finder in (_find_emails, _find_pnr, _find_phones, _find_names):
        text = _replace_spans(text, finder)
    return text


def _replace_spans(text: str, finder) -> str:
    """Find on the normalized text, replace in the original: what the user wrote is kept except what is redacted."""
    normalized, origin = _normalized_with_origin(text)
    spans = finder(normalized)
    for start, end, tag in sorted(spans, reverse=True):
        a, b = origin[start], origin[end - 1] + 1
        text = text[:a] + tag + text[b:]
    return text


def _normalized_with_origin(text: str) -> tuple[str, list[int]]:
    out, origin = [], []
    for i, ch in enumerate(text):
        for n in normalize_for_redaction(ch):
            out.append(n)
            origin.append(i)
    return "".join(out), origin


def _find_emails(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), EMAIL_TAG) for m in _EMAIL.finditer(text)]


def _find_pnr(text: str) -> list[tuple[int, int, str]]:
    return [(m.start(), m.end(), _pnr_tag(m)) for m in _PNR.finditer(text)]


_TIME_RANGE = re.compile(r"\b[0-2]\d[.:][0-5]\d\s*-\s*[0-2]\d[.:][0-5]\d\b")


def _find_phones(text: str) -> list[tuple[int, int, str]]:
    times = [(m.start(), m.end()) for m in _TIME_RANGE.finditer(text)]  # opening hours "08.00-17.00" are kept
    return [(m.start(), m.end(), PHONE_TAG) for m in _PHONE.finditer(text)
            if not any(a < m.end() and m.start() < b for a, b in times)]


def _find_names(text: str) -> list[tuple[int, int, str]]:
    spans = [(m.start("name"), m.end("name"), NAME_TAG) for m in _NAME_AFTER.finditer(text)]
    spans += [(m.start("name"), m.end("name"), NAME_TAG) for m in _NAME_AFTER_PLAIN.finditer(text)
              if m.group("name").split()[0].lower() not in _NOT_NAMES
              and not any(a <= m.start("name") < b for a, b, _ in spans)]
    taken = [(a, b) for a, b, _ in spans]
    spans += [(m.start(), m.end(), NAME_TAG) for m in _SURNAME.finditer(text)
              if not any(a < m.end() and m.start() < b for a, b in taken)]
    return spans


def redact_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """Every text in a record redacted (nested lists and objects too), except the service's own fields."""
    def clean(value: Any, key: str = "") -> Any:
        if key in SYSTEM_FIELDS:
            return value
        if isinstance(value, str):
            return redact(value)
        if isinstance(value, Mapping):
            return {(redact(k) if isinstance(k, str) else k): clean(v, str(k)) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        return value

    return {k: clean(v, str(k)) for k, v in record.items()}


def default_feedback_dir() -> Path:
    """Where feedback is kept: $RAG_FEEDBACK_DIR, else `feedback/` in the project (git-ignored)."""
    return Path(os.environ.get("RAG_FEEDBACK_DIR") or PROJECT_ROOT / "feedback")


def build_record(
    answer: Answer,
    helpful: bool,
    comment: str = "",
    manifest: Mapping[str, Any] | None = None,
    answer_id: str = "",
) -> dict[str, Any]:
    """The feedback record for one answer (user text redacted).

    Parameters
    ----------
    answer : Answer
        The answer the user rated.
    helpful : bool
        True for "helpful" (thumbs up), False for "not helpful".
    comment : str
        The optional free-text comment; cut to `MAX_COMMENT_CHARS`.
    manifest : mapping, optional
        The index manifest (`pipeline.index.manifest`): gives the model and the index build time.
    answer_id : str
        An id for the answer within the app session, to tell records apart.

    Returns
    -------
    dict
        JSON-serializable: timestamp, question, answer, citation passage ids, rating, comment, model, index
        built_at, and context for review (abstained, reason, follow-up).
    """
    manifest = manifest or {}
    return {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "answer_id": answer_id,
        "question": redact(answer.question or ""),
        "followup_of": redact(str(answer.details.get("followup_of") or "")),
        "answer": answer.text,
        "notice": answer.notice,
        "abstained": answer.abstained,
        "reason": answer.reason,
        "citation_passage_ids": [c.passage_id for c in answer.citations],
        "rating": "helpful" if helpful else "not_helpful",
        "helpful": bool(helpful),
        "comment": redact((comment or "").strip()[:MAX_COMMENT_CHARS]),
        "model": manifest.get("model", ""),
        "index_built_at": manifest.get("built_at", ""),
    }


class FeedbackStore:
    """Append-only JSON lines in one folder; each record is one `write()` on an O_APPEND file, then fsync.

    A crash can at worst leave a partial last line: `read` skips it and the next `append` starts a new line,
    so earlier records are never lost or changed.

    Parameters
    ----------
    directory : str or Path
        The folder for `feedback.jsonl` (created when missing).
    """

    _lock = threading.Lock()  # Streamlit serves sessions from threads of one process

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.path = self.directory / FEEDBACK_FILE

    @classmethod
    def from_env(cls) -> "FeedbackStore":
        """The store in `default_feedback_dir()`."""
        return cls(default_feedback_dir())

    def append(self, record: Mapping[str, Any]) -> Path:
        """Durably add one record; the user-text fields are redacted first.

        Parameters
        ----------
        record : mapping
            A JSON-serializable record (see `build_record`); every text field but the service's own is redacted.

        Returns
        -------
        Path
            The file the record was appended to.
        """
        clean = redact_record(record)
        line = (json.dumps(clean, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8", "replace")
        with self._lock:
            created = not self.path.exists()
            if not self.directory.exists():
                _make_private_dirs(self.directory)
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    line = b"\n" + line  # an earlier write was cut off: never glue a record onto it
                written = os.write(fd, line)
                if written != len(line):
                    raise OSError(f"short write to {self.path}: {written} of {len(line)} bytes")
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_dir(self.directory)
        return self.path

    def read(self) -> list[dict[str, Any]]:
        """All complete records, oldest first (a cut-off or unreadable line is skipped).

        Returns
        -------
        list of dict
        """
        if not self.path.exists():
            return []
        records = []
        with open(self.path, encoding="utf-8", errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                if isinstance(row, dict):
                    records.append(row)
        return records


def _make_private_dirs(directory: Path) -> None:
    """Create the folder and any missing parents with mode 0750, whatever the umask (only folders created here)."""
    missing = []
    path = Path(directory)
    while not path.exists():
        missing.append(path)
        path = path.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o750)
        except FileExistsError:
            continue
        os.chmod(folder, 0o750)


def _fsync_dir(directory: Path) -> None:
    """Make a newly created file's directory entry durable (best effort where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
