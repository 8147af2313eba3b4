"""The question log for the content-gap report: what patients asked, redacted before it reaches disk, kept for a
limited time. Off unless the operator switches it on (RAG_QUESTION_LOG_DIR); see docs/data-protection.md."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from rag.feedback import FeedbackStore, redact
from rag.types import Answer

LOG_FILE = "questions.jsonl"
DEFAULT_RETENTION_DAYS = 90
PRUNE_EVERY_SECONDS = 3600


def log_record(answer: Answer) -> dict[str, Any]:
    """What is kept of one answered question: the redacted question (and its follow-up reading), the outcome, and
    the nearest passages (ids, documents, headings) so staff can see what the sources hold near it."""
    details = answer.details or {}
    return {
        "timestamp": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "question": redact(answer.question or ""),
        "resolved_question": redact(str(details.get("resolved_question") or "")),
        "abstained": answer.abstained,
        "reason": answer.reason,
        "triage_level": answer.triage.level if answer.triage is not None else "none",
        "p_answerable": round(float(details.get("p_answerable") or 0.0), 4),
        "nearest": [{"passage_id": h.passage.passage_id, "doc_id": h.passage.doc_id, "title": h.passage.title,
                     "heading": h.passage.heading} for h in answer.hits[:3]],
        "citation_passage_ids": [c.passage_id for c in answer.citations],
    }


class QuestionLog:
    """Append-only JSON lines like the feedback store (one write per record, fsync), pruned to the retention.

    Parameters
    ----------
    directory : Path or None
        Where `questions.jsonl` lives; None switches the log off (nothing is written).
    retention_days : float
        Records older than this are removed (checked at most hourly, and on `prune()`).
    """

    _lock = threading.Lock()
    _last_prune: dict[str, float] = {}

    def __init__(self, directory: str | os.PathLike[str] | None, retention_days: float = DEFAULT_RETENTION_DAYS):
        self.directory = Path(directory) if directory else None
        self.retention_days = retention_days
        self._store = FeedbackStore(self.directory) if self.directory else None
        if self._store is not None:
            self._store.path = self.directory / LOG_FILE

    @classmethod
    def from_env(cls) -> "QuestionLog":
        """On when RAG_QUESTION_LOG_DIR names a folder; retention from RAG_QUESTION_LOG_DAYS (default 90)."""
        try:
            days = float(os.environ.get("RAG_QUESTION_LOG_DAYS") or DEFAULT_RETENTION_DAYS)
        except ValueError:
            days = DEFAULT_RETENTION_DAYS
        return cls(os.environ.get("RAG_QUESTION_LOG_DIR") or None, days)

    @property
    def enabled(self) -> bool:
        return self._store is not None

    def append(self, answer: Answer) -> None:
        """Log one answered question (redacted; every text field again by the store)."""
        if self._store is None or answer.reason in ("empty", "no_text", "too_long", "bad_input"):
            return
        self._store.append(log_record(answer))
        key = str(self.directory)
        if time.time() - self._last_prune.get(key, 0.0) > PRUNE_EVERY_SECONDS:
            self.prune()

    def read(self) -> list[dict[str, Any]]:
        return self._store.read() if self._store is not None else []

    def prune(self, now: datetime | None = None) -> int:
        """Remove records older than the retention; returns how many were removed. The file is rewritten to a
        temporary file and renamed over the old one (a crash leaves either the old or the new file)."""
        if self._store is None or not self._store.path.exists():
            return 0
        cutoff = (now or datetime.now(timezone.utc)) - timedelta(days=self.retention_days)
        with self._lock:
            records = self._store.read()
            keep = [r for r in records if _parse(r.get("timestamp")) >= cutoff]
            tmp = self._store.path.with_suffix(".jsonl.tmp")
            with open(tmp, "w", encoding="utf-8") as f:
                for r in keep:
                    f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o640)
            os.replace(tmp, self._store.path)
            self._last_prune[str(self.directory)] = time.time()
        return len(records) - len(keep)


def _parse(value: Any) -> datetime:
    try:
        stamp = datetime.fromisoformat(str(value))
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
    except ValueError:
        return datetime.min.replace(tzinfo=timezone.utc)  # an unreadable time: pruned
