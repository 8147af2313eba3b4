"""A helpful refusal: say plainly that the sources do not answer, what they do cover, where to turn, and offer up to
three nearby questions that the sources can answer."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

from rag.ingest.profile import CorpusProfile
from rag.types import Hit


@dataclass(frozen=True)
class Refusal:
    text: str
    suggestions: tuple[str, ...] = field(default_factory=tuple)


def refusal_text(profile: CorpusProfile) -> str:
    """The refusal in plain Swedish, from the corpus profile (what the sources cover, where to turn)."""
    from rag.ingest.profile import DEFAULT_COVERS

    elsewhere = profile.elsewhere.rstrip(".")
    elsewhere = elsewhere[:1].upper() + elsewhere[1:]
    covers = "" if profile.covers == DEFAULT_COVERS else f" De handlar om {profile.covers.rstrip('.')}."
    return f"Det kan jag tyvärr inte svara på utifrån källorna.{covers} {elsewhere}."


def suggestion_for(hit: Hit) -> str:
    """A question about the topic of a retrieved passage: its section heading, else its document title."""
    topic = (hit.passage.heading or hit.passage.title or "").strip().rstrip(".:?!")
    topic = re.sub(r"\s+", " ", topic)
    if not topic or len(topic) > 90 or len(topic.split()) < 2 and not topic.isupper():
        return ""
    if not (topic[:2].isupper() or re.match(r"^[A-ZÅÄÖ]{2,}", topic)):  # keep acronyms ("SVF", "RCC") as they are
        topic = topic[:1].lower() + topic[1:]
    return f"Berätta om {topic}"


class SuggestionFinder:
    """Up to `limit` questions, made from the headings of the passages nearest to a refused question, each checked
    to be answered by the pipeline itself.

    Parameters
    ----------
    check : callable
        `check(questions) -> list[bool]`: True where the pipeline answers the question (a cited answer, not a
        refusal); called once with all candidates, so their query vectors are computed in one batch.
    limit : int
    tries : int
        Candidate questions checked at most.
    """

    def __init__(self, check: Callable[[list[str]], list[bool]], limit: int = 3, tries: int = 5) -> None:
        self.check = check
        self.limit = limit
        self.tries = tries

    def run(self, hits: list[Hit], asked: str) -> tuple[str, ...]:
        seen = {asked.strip().lower()}
        candidates: list[str] = []
        for hit in hits:
            question = suggestion_for(hit)
            if question and question.lower() not in seen:
                seen.add(question.lower())
                candidates.append(question)
            if len(candidates) >= self.tries:
                break
        if not candidates:
            return ()
        return tuple(q for q, ok in zip(candidates, self.check(candidates)) if ok)[: self.limit]
