"""The reviewed lay <-> official Swedish vocabulary (rag/data/lay_terms.tsv) used to expand lexical queries."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path

from rag.text import fold_accents

_DATA = Path(__file__).parent / "data" / "lay_terms.tsv"


@dataclass(frozen=True)
class LayTerm:
    lay: str
    official: tuple[str, ...]
    note: str = ""


class LayVocabulary:
    """Find lay phrases in a question and return the official phrasings to add to the lexical query.

    Matching is on whole words, case-insensitive and accent-insensitive ("cellgifter", "kontaktskoterska").

    Example
    -------
    >>> LayVocabulary.load().expand("vad kostar cellprov")
    [('cellprov', 'gynekologisk cellprovtagning'), ...]
    """

    def __init__(self, terms: list[LayTerm]) -> None:
        self.terms = terms
        self._patterns = [
            (re.compile(r"(?<!\w)" + re.escape(fold_accents(t.lay)) + r"(?!\w)"), t) for t in terms
        ]

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
        """(lay phrase, official phrase) pairs for every lay phrase found in `text`."""
        folded = fold_accents(text.lower())
        out = []
        for pattern, term in self._patterns:
            if pattern.search(folded):
                out.extend((term.lay, official) for official in term.official)
        return out
