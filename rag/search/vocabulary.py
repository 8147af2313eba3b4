"""The reviewed lay <-> official Swedish vocabulary (rag/data/lay_terms.tsv) used to expand lexical queries."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from rag.search.analysis import stem, words
from rag.text import fold_accents

_DATA = Path(__file__).resolve().parents[1] / "data" / "lay_terms.tsv"


@dataclass(frozen=True)
class LayTerm:
    lay: str
    official: tuple[str, ...]
    note: str = ""


class LayVocabulary:
    """Find lay phrases in a question and return the official phrasings to add to the lexical query.

    Matching is on whole words in any inflection, case- and accent-insensitive ("cellgifterna", "kontaktskoterska").

    Example
    -------
    >>> LayVocabulary.load().expand("vad kostar cellprov")
    [('cellprov', 'gynekologisk cellprovtagning'), ...]
    """

    def __init__(self, terms: list[LayTerm]) -> None:
        self.terms = terms
        # Lay phrases are matched as sequences of stems, so "snabbspåret" finds "snabbspår", "kosta" "kostar".
        self._phrases = [(tuple(_stems(t.lay)), t) for t in terms]

    @classmethod
    def load(cls, path: Path = _DATA) -> "LayVocabulary":
        with open(path, encoding="utf-8", newline="") as f:
            lines = [line for line in f if line.strip() and not line.startswith("#")]
        terms = [
            LayTerm(row["lay"].strip().lower(), tuple(p.strip() for p in row["official"].split(";") if p.strip()),
                    row.get("note", "") or "")
            for row in csv.DictReader(lines, delimiter="\t")
        ]
        return cls(terms)

    def expand(self, text: str) -> list[tuple[str, str]]:
        """(lay phrase, official phrase) pairs for every lay phrase found in `text` (whole words, any inflection)."""
        seq = _stems(text)
        out = []
        for phrase, term in self._phrases:
            n = len(phrase)
            if n and any(tuple(seq[i : i + n]) == phrase for i in range(len(seq) - n + 1)):
                out.extend((term.lay, official) for official in term.official)
        return out


def _stems(text: str) -> list[str]:
    """Accent-folded stems of every word, stop words included (lay phrases such as "sista tiden i livet")."""
    return [fold_accents(stem(w)) for w in words(text)]
