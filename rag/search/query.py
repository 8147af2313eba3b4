"""Question understanding before retrieval: normalization, follow-up resolution, analyzed query terms."""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Sequence

from rag.search.analysis import SwedishAnalyzer, content_words, definition_target, definition_token, words
from rag.text import fold_accents, normalize_query

# Openers of an elliptic follow-up ("och för barn då?", "men vem betalar?", "gäller det även ...").
_FOLLOWUP_START = re.compile(
    r"^(och|men|samt|också|även|eller|än|hur är det med|vad gäller|gäller det|gäller detta|vad händer med|"
    r"vad sägs om|hur blir det|vem betalar|vilka fler|fler|mer om|berätta mer|(nåt|något|nån|någon) om|"
    r"hur (var|blir|är) det|vad (var|blir|är) det|samma för|likadant)\b",
    re.IGNORECASE,
)
_FOLLOWUP_END = re.compile(r"\b(då|da)\s*\??$", re.IGNORECASE)
_PRONOUNS = {"det", "den", "dem", "dom", "de", "dessa", "detta", "denna", "där", "dit", "hon", "han", "sådant"}


@dataclass(frozen=True)
class QueryTerm:
    """One content word of the question and every index token that counts as finding it.

    `tokens` are the word's own forms (stem, accent-folded stem, as-a-compound-part form); `parts` the stems of its
    own compound parts; `alternatives` other ways the sources say it: a spelling correction or the official
    phrasings of a lay word, each a tuple of words given as token tuples.
    """

    word: str
    tokens: tuple[str, ...]
    parts: tuple[str, ...] = ()
    alternatives: tuple[tuple[tuple[str, ...], ...], ...] = ()
    weight: float = 1.0  # terms that only come from the previous question (a follow-up's context) weigh less

    @classmethod
    def of(cls, word: str, analyzer: SwedishAnalyzer, weight: float = 1.0) -> "QueryTerm":
        own, parts = analyzer.term_tokens(word, query=True)
        return cls(word, tuple(own), tuple(parts), weight=weight)

    def with_alternative(self, phrase: str, analyzer: SwedishAnalyzer) -> "QueryTerm":
        alt = tuple(tuple(analyzer.term_tokens(w, query=False)[0]) for w in content_words(phrase))
        if not alt or alt in self.alternatives:
            return self
        return replace(self, alternatives=self.alternatives + (alt,))

    def all_tokens(self) -> list[str]:
        return [*self.tokens, *self.parts, *(t for alt in self.alternatives for word in alt for t in word)]


@dataclass(frozen=True)
class Query:
    """A question made ready for retrieval.

    `search_text` is what the dense encoder sees (the previous question prepended for a follow-up, misspellings
    corrected); `terms` drive lexical search and the answer's term-coverage checks.
    """

    question: str
    search_text: str
    terms: tuple[QueryTerm, ...] = ()
    resolved: str = ""  # the question with a follow-up's context, as a person would read it
    followup_of: str = ""
    corrections: tuple[tuple[str, str], ...] = ()
    expansions: tuple[tuple[str, str], ...] = ()

    @property
    def lexical_tokens(self) -> list[str]:
        return [t for term in self.terms for t in term.all_tokens()]


def _common_word(word: str) -> bool:
    """An everyday word ("få", "mer", "barn") rather than a topic ("kontaktsjuksköterska", "cellprov")."""
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "sv") >= 4.5


def _topic_positions(q: str) -> list[int]:
    content = set(content_words(q))
    return [i for i, w in enumerate(words(q)) if w in content and not w.isdigit() and not _common_word(w)]


def names_own_subject(question: str) -> bool:
    """True when the question names a topic of its own and does not point back before naming it: "Vad är
    HPV-vaccin och vem får det?" and "Hur länge väntar man på strålbehandling?" do; "gäller det även
    närstående?" points back ("det") before its topic."""
    q = normalize_query(question).lower()
    topics = _topic_positions(q)
    if not topics:
        return False
    pronouns = [i for i, w in enumerate(words(q)) if w in _PRONOUNS]
    return not (pronouns and pronouns[0] < topics[0] and _FOLLOWUP_START.match(q))


def is_followup(question: str, history: Sequence[str]) -> bool:
    """Does the question lean on the previous one ("och för barn då?", "vem betalar det?")? A question that opens
    like a follow-up ("och ...", "men ...", "gäller det ...") or ends in "då?" does; otherwise a question that names
    its own subject never does."""
    if not history:
        return False
    q = normalize_query(question).lower()
    content = content_words(q)
    if _FOLLOWUP_START.match(q) or _FOLLOWUP_END.search(q):
        return True  # "och för barn då?", "och vad ska barncancercentrumen göra då?": elliptic by its very form
    if names_own_subject(q):
        return False  # "Vad är HPV-vaccin och vem får det?" stands alone
    if not content or (len(content) == 1 and _common_word(content[0])):
        return True  # "varför det?", "varför så få?": no topic of its own
    # A short question that points back ("vem betalar det?", "finns det för dem?"); a short question with its own
    # topic ("Vad är en kontaktsjuksköterska?") stands alone.
    return len(content) <= 3 and any(w in _PRONOUNS for w in words(q))


_YEAR = re.compile(r"\b(19|20)\d\d\b")


def _drop_replaced_years(previous: str, question: str) -> str:
    """"Hur mycket 2017?" then "och 2018 då?": the new year replaces the old one in the follow-up's context."""
    if _YEAR.search(question):
        previous = re.sub(r"\s+", " ", _YEAR.sub("", previous)).strip()
    return previous


class QueryProcessor:
    """Turn a raw question (and the conversation so far) into a `Query`.

    Parameters
    ----------
    analyzer : SwedishAnalyzer
        The corpus's analyzer (same tokens as the index).
    speller : object, optional
        Has `correct(word) -> str | None`; a misspelled word gets its correction as an alternative.
    vocabulary : object, optional
        Has `expand(text) -> list[(lay, official)]`; the words of a lay phrase get the official phrasings
        as alternatives.
    """

    def __init__(self, analyzer: SwedishAnalyzer, speller=None, vocabulary=None, context_weight: float = 0.5) -> None:
        self.analyzer = analyzer
        self.speller = speller
        self.vocabulary = vocabulary
        self.context_weight = context_weight

    def run(self, question: str, history: Sequence[str] = ()) -> Query:
        question = normalize_query(question)
        followup_of = ""
        search_text = question
        history = [normalize_query(h) for h in history if h and normalize_query(h)]
        context = ""
        if is_followup(question, history):
            followup_of = history[-1]
            context = _drop_replaced_years(followup_of, question)
            search_text = f"{context} {question}"
        terms: dict[str, QueryTerm] = {}
        for w in content_words(question):
            terms.setdefault(w, QueryTerm.of(w, self.analyzer))
        for w in content_words(context):
            terms.setdefault(w, QueryTerm.of(w, self.analyzer, weight=self.context_weight))
        for w in definition_target(question):  # "Vad är X?": prefer sentences that say what X is
            terms.setdefault(f"={w}", QueryTerm(f"={w}", (definition_token(w),)))
        corrections: list[tuple[str, str]] = []
        if self.speller is not None:
            for w in [w for w in terms if not w.startswith("=")]:
                fixed = self.speller.correct(w)
                if fixed and fixed != w:
                    corrections.append((w, fixed))
                    terms[w] = terms[w].with_alternative(fixed, self.analyzer)
        expansions: list[tuple[str, str]] = []
        if self.vocabulary is not None:
            text = " ".join([search_text] + [c for _, c in corrections])
            for lay, official in self.vocabulary.expand(text):
                expansions.append((lay, official))
                lay_words = {fold_accents(w) for w in content_words(lay)}
                for w in terms:
                    fixed = dict(corrections).get(w, w)
                    if fold_accents(w) in lay_words or fold_accents(fixed) in lay_words:
                        terms[w] = terms[w].with_alternative(official, self.analyzer)
        resolved = search_text
        if corrections:  # the dense encoder reads the corrected words too
            search_text = search_text + " (" + " ".join(c for _, c in corrections) + ")"
        return Query(
            question=question,
            search_text=search_text,
            resolved=resolved,
            terms=tuple(terms.values()),
            followup_of=followup_of,
            corrections=tuple(corrections),
            expansions=tuple(expansions),
        )
