"""Question understanding before retrieval: normalization, follow-up resolution, analyzed query terms."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

from rag.analysis import PART_PREFIX, SwedishAnalyzer, content_words, words
from rag.text import normalize_query

# Openers of an elliptic follow-up ("och för barn då?", "men vem betalar?", "gäller det även ...").
_FOLLOWUP_START = re.compile(
    r"^(och|men|samt|också|även|eller|än|hur är det med|vad gäller|gäller det|gäller detta|vad händer med|"
    r"vad sägs om|hur blir det|vem betalar|vilka fler|fler|mer om|berätta mer)\b",
    re.IGNORECASE,
)
_FOLLOWUP_END = re.compile(r"\b(då|da)\s*\??$", re.IGNORECASE)
_PRONOUNS = {"det", "den", "dem", "dom", "de", "dessa", "detta", "denna", "där", "dit", "hon", "han", "sådant", "dit"}


@dataclass(frozen=True)
class QueryTerm:
    """One content word of the question, with every index token that counts as a match for it."""

    word: str
    tokens: tuple[str, ...]  # the word's own forms: stem and accent-folded stem
    parts: tuple[str, ...] = ()  # stems of its compound parts
    source: str = "question"  # "question", "corrected" or "expansion"

    @classmethod
    def of(cls, word: str, analyzer: SwedishAnalyzer, source: str = "question") -> "QueryTerm":
        own, parts = analyzer.term_tokens(word, query=True)
        return cls(word, tuple(own), tuple(parts), source)


@dataclass(frozen=True)
class Query:
    """A question made ready for retrieval.

    `search_text` is what the dense encoder sees (the previous question prepended for a follow-up,
    misspellings corrected); `terms` drive lexical search and the answer's term-coverage checks.
    """

    question: str
    search_text: str
    terms: tuple[QueryTerm, ...] = ()
    followup_of: str = ""
    corrections: tuple[tuple[str, str], ...] = ()
    expansions: tuple[tuple[str, str], ...] = ()

    @property
    def lexical_tokens(self) -> list[str]:
        return [t for term in self.terms for t in (*term.tokens, *term.parts)]


def is_followup(question: str, history: Sequence[str]) -> bool:
    """Heuristic: does the question lean on the previous one ("och för barn då?", "vem betalar det?")?"""
    if not history:
        return False
    q = normalize_query(question).lower()
    content = content_words(q)
    if _FOLLOWUP_START.match(q) or _FOLLOWUP_END.search(q):
        return True
    if len(content) <= 1:
        return True
    return len(content) <= 3 and any(w in _PRONOUNS for w in words(q))


class QueryProcessor:
    """Turn a raw question (and the conversation so far) into a `Query`.

    Parameters
    ----------
    analyzer : SwedishAnalyzer
        The corpus's analyzer (same tokens as the index).
    speller : object, optional
        Has `correct(word) -> str | None`; misspelled words get their correction added.
    vocabulary : object, optional
        Has `expand(text) -> list[(lay, official)]`; official phrasings are added to the lexical terms.
    """

    def __init__(self, analyzer: SwedishAnalyzer, speller=None, vocabulary=None) -> None:
        self.analyzer = analyzer
        self.speller = speller
        self.vocabulary = vocabulary

    def run(self, question: str, history: Sequence[str] = ()) -> Query:
        question = normalize_query(question)
        followup_of = ""
        search_text = question
        history = [normalize_query(h) for h in history if h and normalize_query(h)]
        if is_followup(question, history):
            followup_of = history[-1]
            search_text = f"{followup_of} {question}"
        terms: list[QueryTerm] = []
        corrections: list[tuple[str, str]] = []
        seen: set[str] = set()
        for w in content_words(search_text):
            if w in seen:
                continue
            seen.add(w)
            terms.append(QueryTerm.of(w, self.analyzer))
            fixed = self.speller.correct(w) if self.speller is not None else None
            if fixed and fixed != w and fixed not in seen:
                seen.add(fixed)
                corrections.append((w, fixed))
                terms.append(QueryTerm.of(fixed, self.analyzer, source="corrected"))
        expansions: list[tuple[str, str]] = []
        if self.vocabulary is not None:
            corrected_text = " ".join([search_text] + [c for _, c in corrections])
            for lay, official in self.vocabulary.expand(corrected_text):
                expansions.append((lay, official))
                for w in content_words(official):
                    if w not in seen:
                        seen.add(w)
                        terms.append(QueryTerm.of(w, self.analyzer, source="expansion"))
        if corrections:  # the dense encoder reads the corrected words too
            search_text = search_text + " (" + " ".join(c for _, c in corrections) + ")"
        return Query(
            question=question,
            search_text=search_text,
            terms=tuple(terms),
            followup_of=followup_of,
            corrections=tuple(corrections),
            expansions=tuple(expansions),
        )
