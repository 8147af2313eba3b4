"""Question triage before retrieval: urgent care (112 / 1177 first), suicide risk, requests for personal advice.

Two lines, either of which can raise a notice: the reviewed concept lexicon (`rag.safety.lexicon`) and a learned
classifier over the message (`rag.safety.classifier`). The notice texts and the guidance they come from live in
`rag/data/safety/guidance.json`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from rag.safety.classifier import SafetyClassifier
from rag.safety.lexicon import DATA_DIR, SafetyLexicon, normalize_message

LEVELS = ("suicide", "urgent", "advice", "none")
"""Triage levels, most serious first."""
DEFAULT_CONTACT = "din kontaktsjuksköterska eller läkare"



@dataclass(frozen=True)
class Guidance:
    """One notice: its text and the guidance it comes from."""

    key: str
    level: str
    text: str
    sources: tuple[dict, ...] = ()


@lru_cache(maxsize=2)
def load_guidance(path: Path = DATA_DIR / "guidance.json") -> dict[str, Guidance]:
    """The reviewed notice texts, by key."""
    table = json.loads(path.read_text(encoding="utf-8"))
    return {k: Guidance(k, v["level"], v["text"], tuple(v.get("sources", ())))
            for k, v in table.items() if not k.startswith("_")}


def _guidance_text(key: str, contact: str = DEFAULT_CONTACT) -> str:
    return load_guidance()[key].text.replace("{contact}", contact)


URGENT_NOTICE = _guidance_text("urgent_general") + " " + _guidance_text("urgent_closing")
SUICIDE_NOTICE = _guidance_text("suicide")
ADVICE_NOTICE = _guidance_text("advice")
ADVICE_MESSAGE = ADVICE_NOTICE
"""The reply to a request for personal medical advice (the default contact); see `Triage.advice_message`."""

_THIRD_PERSON = re.compile(
    r"\b(han|hon|hen|honom|henne|sig|sitt|sina|pappa\w*|mamma\w*|sonen|dottern|min (man|fru|son|dotter|bror|syster|"
    r"sambo|partner|kompis|van|vaninna|pojkvan|flickvan)|maken|frun|sambon|brodern|brorsan|systern|kompisen|vannen)\b"
)
_FIRST_PERSON = re.compile(r"\b(jag|mig|mej|mitt liv|mina tabletter)\b")


@dataclass(frozen=True)
class Triage:
    """What a question needs before any answer.

    `level` is the most serious of suicide | urgent | advice | none; `concepts` the lexicon concepts that stand
    (plus "classifier:<level>" when the learned line raised a level on its own); `guidance` the keys of the
    notices shown, most specific first. `urgent` is true whenever a 112 notice is shown (urgent or suicide).
    """

    level: str = "none"
    concepts: tuple[str, ...] = ()
    guidance: tuple[str, ...] = ()
    advice: bool = False
    raised_by: tuple[str, ...] = ()
    set_aside: tuple[tuple[str, str], ...] = ()
    probabilities: dict[str, float] = field(default_factory=dict)
    contact: str = DEFAULT_CONTACT

    @property
    def urgent(self) -> bool:
        return self.level in ("urgent", "suicide")

    @property
    def suicide(self) -> bool:
        return self.level == "suicide"

    @property
    def notice(self) -> str:
        """The notice shown first, above any answer: the urgent / suicide guidance texts (the personal-advice
        text is the answer itself, see `ADVICE_MESSAGE`)."""
        return " ".join(_guidance_text(k, self.contact) for k in self.guidance if load_guidance()[k].level != "advice")

    @property
    def advice_message(self) -> str:
        """The reply to a request for personal advice, pointing to this corpus's contact."""
        return _guidance_text("advice", self.contact)

    def sources(self) -> list[dict]:
        """Where each shown notice comes from (for the staff view and the contract)."""
        table = load_guidance()
        return [{"guidance": k, **s} for k in self.guidance for s in table[k].sources]

    def to_contract(self) -> dict:
        return {"level": self.level, "concepts": list(self.concepts), "guidance": list(self.guidance),
                "advice": self.advice}


class Triager:
    """Triage a message (with the conversation so far) by the lexicon and the classifier.

    Parameters
    ----------
    lexicon : SafetyLexicon, optional
        Defaults to the shipped lexicon.
    classifier : SafetyClassifier or None, optional
        Defaults to the shipped classifier; pass None explicitly (use_classifier=False) for the lexicon alone.
    contact : str
        Who the advice notice points to (from the corpus profile).
    """

    def __init__(self, lexicon: SafetyLexicon | None = None, classifier: SafetyClassifier | None = None,
                 use_classifier: bool = True, contact: str = DEFAULT_CONTACT) -> None:
        self.lexicon = lexicon or SafetyLexicon.load()
        self.classifier = (classifier or SafetyClassifier.load()) if use_classifier else None
        self.contact = contact

    def run(self, message: str, history: Sequence[str] = (), vector: np.ndarray | None = None) -> Triage:
        result = self.lexicon.run(message, tuple(history))
        standing = result.standing
        levels = {h.concept.level for h in standing}
        raised_by = ["lexicon"] if standing else []
        probabilities: dict[str, float] = {}
        concepts = [h.concept.name for h in standing]
        if self.classifier is not None:
            probabilities = self.classifier.probabilities(message, vector)
            raised = classifier_levels(result, probabilities, self.classifier.thresholds,
                                       self.classifier.context_threshold)
            for level in sorted(raised - levels):
                concepts.append(f"classifier:{level}")
            if raised - levels:
                raised_by.append("classifier")
            levels |= raised
        level = next((lv for lv in LEVELS if lv in levels), "none")
        guidance: list[str] = []
        if level == "suicide":
            guidance.append("suicide_relative" if _about_someone_else(message) else "suicide")
        if level == "urgent":
            specific = [h.concept.guidance for h in standing if h.concept.level == "urgent"]
            specific.sort(key=lambda k: k == "urgent_general")  # a specific notice before the general one
            guidance.append(specific[0] if specific else "urgent_general")
            if "1177" not in load_guidance()[guidance[-1]].text:
                guidance.append("urgent_closing")
        if "advice" in levels:
            guidance.append("advice")
        return Triage(
            level=level,
            concepts=tuple(dict.fromkeys(concepts)),
            guidance=tuple(guidance),
            advice="advice" in levels,
            raised_by=tuple(raised_by),
            set_aside=tuple((h.concept.name, h.set_aside) for h in result.hits if h.set_aside),
            probabilities=probabilities,
            contact=self.contact,
        )


def classifier_levels(lexicon_result, probabilities: dict[str, float], thresholds: dict[str, float],
                      context_threshold: float) -> set[str]:
    """The levels the classifier raises on its own: a class whose probability reaches its threshold; when the
    lexicon read the message as general, past and resolved, or negated ("ingen feber"), it must reach
    `context_threshold` instead (suicide only for a general or negated reading, never for a resolved past)."""
    raised = {c for c in thresholds if probabilities[c] >= thresholds[c]}
    if lexicon_result.context or lexicon_result.negated:
        raised = {c for c in raised if probabilities[c] >= context_threshold
                  or c == "suicide" and lexicon_result.context not in ("resolved", "past")}
    return raised


def _about_someone_else(message: str) -> bool:
    text = normalize_message(message)
    return bool(_THIRD_PERSON.search(text)) and not _FIRST_PERSON.search(text)


@lru_cache(maxsize=1)
def _default_triager() -> Triager:
    return Triager()


def triage(question: str, history: Sequence[str] = (), vector: np.ndarray | None = None) -> Triage:
    """Triage one message with the shipped lexicon and classifier (see `Triager`)."""
    return _default_triager().run(question, history, vector)
