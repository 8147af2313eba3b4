"""Question triage before retrieval: urgent symptoms (call 112 / 1177 first) and requests for personal advice."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rag.text import fold_accents, normalize_query

_DATA = Path(__file__).resolve().parents[1] / "data" / "safety.tsv"

URGENT_NOTICE = (
    "Om du eller någon annan har akuta besvär, till exempel svårt att andas, ont i bröstet, kraftig blödning "
    "eller hög feber under cancerbehandling: ring 112 nu. Är du osäker på hur bråttom det är, ring 1177 "
    "Vårdguiden – där får du sjukvårdsrådgivning dygnet runt."
)
SUICIDE_NOTICE = (
    "Om du har tankar på att ta ditt liv, eller om någon är i akut fara: ring 112 nu. Du kan också ringa 1177 "
    "Vårdguiden dygnet runt, eller Mind Självmordslinjen på 90101. Du behöver inte vara ensam med det här."
)
ADVICE_NOTICE = (
    "Jag kan inte ge personliga medicinska råd. Prata med din kontaktsjuksköterska eller läkare om just din "
    "situation, eller ring 1177 Vårdguiden."
)
ADVICE_MESSAGE = (
    ADVICE_NOTICE + " Allmän information om cancer och cancervård finns på 1177.se, och du kan ringa 1177 Vårdguiden "
    "dygnet runt."
)
ABSTAIN_MESSAGE = (
    "Det kan jag tyvärr inte svara på utifrån de källor jag har. Fråga gärna din kontaktsjuksköterska, "
    "eller ring 1177 Vårdguiden (dygnet runt) eller läs mer på 1177.se."
)


@dataclass(frozen=True)
class Triage:
    """What a question needs before any answer: `notice` is shown first; `advice` marks personal-advice requests."""

    urgent: bool = False
    suicide: bool = False
    advice: bool = False
    matched: tuple[str, ...] = ()

    @property
    def notice(self) -> str:
        parts = []
        if self.suicide:
            parts.append(SUICIDE_NOTICE)
        elif self.urgent:
            parts.append(URGENT_NOTICE)
        if self.advice:
            parts.append(ADVICE_NOTICE)
        return " ".join(parts)


@lru_cache(maxsize=2)
def load_patterns(path: Path = _DATA) -> tuple[tuple[str, re.Pattern[str]], ...]:
    """Read the reviewed pattern table (category, regex)."""
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        lines = [line for line in f if line.strip() and not line.startswith("#")]
    for row in csv.DictReader(lines, delimiter="\t"):
        rows.append((row["category"].strip(), re.compile(row["pattern"].strip())))
    return tuple(rows)


def triage(question: str) -> Triage:
    """Classify a question's safety needs from the pattern table.

    Parameters
    ----------
    question : str
        The user's question as typed (any case, with or without å/ä/ö).

    Returns
    -------
    Triage
    """
    text = fold_accents(normalize_query(question).lower())
    hits: dict[str, list[str]] = {}
    for category, pattern in load_patterns():
        m = pattern.search(text)
        if m:
            hits.setdefault(category, []).append(m.group(0))
    return Triage(
        urgent="urgent" in hits or "suicide" in hits,
        suicide="suicide" in hits,
        advice="advice" in hits,
        matched=tuple(x for v in hits.values() for x in v),
    )
