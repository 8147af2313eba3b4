"""The gold Q&A set (eval/gold.jsonl): loading, splits, and locating each question's evidence in the index."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from rag.text import normalize_text

EVAL_DIR = Path(__file__).resolve().parent
GOLD_PATH = EVAL_DIR / "gold.jsonl"
FROZEN_TUNE_PATH = EVAL_DIR / "frozen" / "tune.jsonl"
SPLITS = ("tune", "report", "all")


@dataclass(frozen=True)
class GoldItem:
    """One gold question; `evidence` is an exact substring of document `doc_id` that answers it."""

    id: str
    question: str
    answerable: bool
    doc_id: str | None
    evidence: str | None
    answer: str
    split: str
    kind: str
    history: tuple[str, ...] = field(default_factory=tuple)


def load_gold(path: Path = GOLD_PATH, split: str = "all") -> list[GoldItem]:
    """Read the gold set, optionally one split ("tune" to fit on, "report" to report on)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    items = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            row["history"] = tuple(row.get("history") or ())
            items.append(GoldItem(**row))
    return [it for it in items if split == "all" or it.split == split]


def load_questions(path: Path) -> list[GoldItem]:
    """A question set in the gold format from anywhere (an independent set, a collection's questions.jsonl):
    every item counts as report data; unknown keys are ignored."""
    names = set(GoldItem.__dataclass_fields__)
    items = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            row = {k: v for k, v in row.items() if k in names}
            row["history"] = tuple(row.get("history") or ())
            row.setdefault("split", "report")
            row.setdefault("answer", "")
            row["doc_id"] = row.get("doc_id") or None
            row["evidence"] = row.get("evidence") or None
            items.append(GoldItem(**row))
    return items


def evidence_span(doc_text: str, evidence: str) -> tuple[int, int] | None:
    """Where the evidence lies in the (normalized) document text, or None when it is not there."""
    needle = normalize_text(evidence)
    at = doc_text.find(needle)
    return (at, at + len(needle)) if at >= 0 else None


def is_relevant(passage_start: int, passage_end: int, span: tuple[int, int], min_overlap: float = 0.5) -> bool:
    """A passage is relevant when it holds the evidence; evidence cut by a passage boundary counts when at least
    `min_overlap` of it lies inside the passage."""
    s, e = span
    overlap = max(0, min(passage_end, e) - max(passage_start, s))
    return overlap >= min_overlap * (e - s)
