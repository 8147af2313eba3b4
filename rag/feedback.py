"""User feedback on answers: redaction of personal numbers and a crash-safe, append-only JSON-lines store."""

from __future__ import annotations

import json
import os
import re
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Mapping

from rag.types import Answer

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FEEDBACK_FILE = "feedback.jsonl"
MAX_COMMENT_CHARS = 2000
REDACTED_FIELDS = ("question", "comment", "followup_of")
"""Fields holding text a user typed: always redacted by `FeedbackStore.append`, whatever the caller did."""

PERSONNUMMER_TAG = "[personnummer]"
PHONE_TAG = "[telefonnummer]"
EMAIL_TAG = "[e-post]"

# Personnummer / samordningsnummer: (YY)YYMMDD, separator - + – or space (or none), four digits. The month and
# day must be plausible (samordningsnummer add 60 to the day), which keeps ordinary numbers like "46 759 214" out.
_PNR = re.compile(
    r"(?<![\d+])"
    r"(?P<digits>(?:19|20)?\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01]|6[1-9]|[78]\d|9[01]))"
    r"(?P<sep>[-+\u2013 ]?)"
    r"(?P<tail>\d{4})"
    r"(?![\d])"
)
# Swedish phone numbers: national (0 + area code + subscriber, 8-10 digits) or international (+46 / 0046,
# optionally with "(0)"), with a space or a hyphen (spaced or not) between digit groups. Short service numbers
# (112, 1177, 90101) have too few digits to match.
_SEP = r"(?:[ \u00a0]?[-\u2013][ \u00a0]?|[ \u00a0])?"
_PHONE = re.compile(
    r"(?<![\w+])"
    r"(?:"
    rf"(?:\+|00)46{_SEP}(?:\(0\){_SEP})?[1-9](?:{_SEP}\d){{6,8}}"
    r"|"
    rf"\(?0[1-9](?:{_SEP}\)?{_SEP}\d){{6,8}}"
    r")"
    r"(?![\d])"
)
_EMAIL = re.compile(r"(?<![\w.+-])[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_MOBILE_PREFIXES = ("070", "072", "073", "076", "079")


def _luhn_ok(digits: str) -> bool:
    """The personnummer check digit (Luhn over the last ten digits)."""
    total = 0
    for i, ch in enumerate(digits[-10:]):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return total % 10 == 0


def _pnr_tag(match: re.Match[str]) -> str:
    """A bare ten-digit mobile number (0701234567) also fits YYMMDDXXXX; the check digit tells them apart."""
    number = match.group("digits") + match.group("tail")
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
    text = _EMAIL.sub(EMAIL_TAG, text)
    text = _PNR.sub(_pnr_tag, text)
    return _PHONE.sub(PHONE_TAG, text)


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
            A JSON-serializable record (see `build_record`).

        Returns
        -------
        Path
            The file the record was appended to.
        """
        clean = dict(record)
        for name in REDACTED_FIELDS:
            if isinstance(clean.get(name), str):
                clean[name] = redact(clean[name])
        line = (json.dumps(clean, ensure_ascii=False, separators=(",", ":")) + "\n").encode("utf-8")
        with self._lock:
            created = not self.path.exists()
            self.directory.mkdir(parents=True, exist_ok=True)
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
