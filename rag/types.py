"""Typed records that travel through the pipeline: Document, Passage, Hit, Citation, Answer."""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields
from typing import Any


def content_id(*parts: str, length: int = 16) -> str:
    """Return a stable hex id for the given strings (sha256, truncated).

    Parameters
    ----------
    parts : str
        The strings the id depends on, in order.
    length : int
        Number of hex characters kept.

    Returns
    -------
    str
        The same parts give the same id on every machine and build.
    """
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return digest[:length]


class _Record:
    """Mixin: `to_dict` / `from_dict` for flat frozen dataclasses."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass(frozen=True)
class Document(_Record):
    """One source text with the metadata a citation shows.

    `text` is the normalized, boilerplate-free text; every offset elsewhere points into it.
    """

    doc_id: str
    title: str
    text: str
    publisher: str = ""
    date: str = ""
    url: str = ""
    path: str = ""
    headings: tuple[str, ...] = ()
    page_starts: tuple[int, ...] = ()  # for a paged source (PDF): where each page starts in `text`

    def __post_init__(self) -> None:
        object.__setattr__(self, "headings", tuple(self.headings))
        object.__setattr__(self, "page_starts", tuple(self.page_starts))
        if not self.doc_id:
            raise ValueError("Document.doc_id must not be empty")

    def page_of(self, offset: int) -> int:
        """The 1-based page a character offset lies on, or 0 for a source without pages."""
        if not self.page_starts:
            return 0
        import bisect

        return max(1, bisect.bisect_right(self.page_starts, offset))


@dataclass(frozen=True)
class Passage(_Record):
    """A retrievable chunk of a document: `text == document.text[start:end]`."""

    passage_id: str
    doc_id: str
    text: str
    start: int
    end: int
    heading: str = ""
    title: str = ""

    def __post_init__(self) -> None:
        if not 0 <= self.start <= self.end:
            raise ValueError(f"bad passage span {self.start}:{self.end}")
        if self.end - self.start != len(self.text):
            raise ValueError("passage text length does not match its span")

    @staticmethod
    def make_id(doc_id: str, text: str) -> str:
        """Stable id: the same text in the same document gets the same id in every build."""
        return content_id(doc_id, text)


@dataclass(frozen=True)
class Hit:
    """A retrieved passage with its score and 1-based rank, and which retriever produced it."""

    passage: Passage
    score: float
    rank: int
    retriever: str

    def to_dict(self) -> dict[str, Any]:
        return {"passage": self.passage.to_dict(), "score": self.score, "rank": self.rank, "retriever": self.retriever}


@dataclass(frozen=True)
class Citation(_Record):
    """A verbatim quote backing one answer sentence: `document.text[start:end] == quote`."""

    n: int
    passage_id: str
    doc_id: str
    quote: str
    start: int
    end: int
    score: float
    title: str = ""
    url: str = ""
    publisher: str = ""
    date: str = ""
    page: int = 0  # the page of a paged source the quote starts on (0: no pages)


@dataclass(frozen=True)
class Answer:
    """What the pipeline returns for one question.

    `text` holds the answer shown to the user with [n] markers; `notice` is the urgent-care notice
    shown before anything else; `retrieval_query` is what was actually searched (it differs from
    `question` for follow-ups and corrected spellings).
    """

    question: str
    text: str
    citations: tuple[Citation, ...]
    hits: tuple[Hit, ...]
    abstained: bool
    notice: str = ""
    retrieval_query: str = ""
    reason: str = ""
    triage: Any = None  # rag.safety.triage.Triage: level, concepts and the guidance behind the notice
    suggestions: tuple[str, ...] = ()  # with a refusal: questions close to this one that the sources answer
    timings_ms: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def to_contract(self) -> dict[str, Any]:
        """The JSON object of `python -m rag ask --json` (checked by ../shared/tools/check-rag-contract)."""
        return {
            "question": self.question,
            "answer": "\n\n".join(x for x in (self.notice, self.text) if x),
            "abstained": self.abstained,
            "notice": self.notice,
            "reason": self.reason,
            "retrieval_query": self.retrieval_query,
            "triage": self.triage.to_contract() if self.triage is not None else {"level": "none", "concepts": []},
            "suggestions": list(self.suggestions),
            "citations": [
                {
                    "n": c.n,
                    "doc_id": c.doc_id,
                    "title": c.title,
                    "url": c.url,
                    "passage_id": c.passage_id,
                    "quote": c.quote,
                    "score": round(c.score, 6),
                    "start": c.start,
                    "end": c.end,
                    "page": c.page,
                }
                for c in self.citations
            ],
            "passages": [
                {
                    "passage_id": h.passage.passage_id,
                    "doc_id": h.passage.doc_id,
                    "text": h.passage.text,
                    "score": round(h.score, 6),
                    "rank": h.rank,
                }
                for h in self.hits
            ],
        }
