"""Query spelling correction against the corpus vocabulary (SymSpell), leaving valid Swedish words alone."""

from __future__ import annotations

from collections import Counter
from functools import lru_cache
from typing import Iterable

from rag.search.analysis import stem, words
from rag.text import fold_accents


@lru_cache(maxsize=50_000)
def _zipf(word: str) -> float:
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "sv")


class Speller:
    """Correct misspelled question words to words that occur in the corpus.

    A word is left alone when the corpus has it (also without å/ä/ö) or when it is an everyday Swedish
    word (wordfreq's Swedish list, Zipf >= `valid_zipf`): only unknown words are corrected, to the corpus
    word at the smallest edit distance (SymSpell; ties go to the more frequent word).

    Parameters
    ----------
    counts : mapping of str to int
        Corpus word frequencies (lower case).
    valid_zipf : float
        Words at least this frequent in general Swedish are taken as correctly spelled.
    min_length : int
        Shorter words are never corrected (too many near neighbours).

    Example
    -------
    >>> Speller(Counter({"rehabilitering": 30})).correct("rehabiltering")
    'rehabilitering'
    """

    def __init__(self, counts: dict[str, int], valid_zipf: float = 3.0, min_length: int = 5, splitter=None,
                 min_target_count: int = 2) -> None:
        from symspellpy import SymSpell

        self.valid_zipf = valid_zipf
        self.min_length = min_length
        self.splitter = splitter
        self.min_target_count = min_target_count
        self.counts = {w: c for w, c in counts.items() if w.isalpha()}
        # Inflections the corpus does not happen to use ("psykosociala" when it says "psykosocialt") are not typos.
        self._stems = frozenset(stem(w) for w in self.counts)
        self._folded: dict[str, str] = {}
        for w, c in sorted(self.counts.items(), key=lambda kv: -kv[1]):
            self._folded.setdefault(fold_accents(w), w)
        _zipf("cancer")  # load wordfreq's Swedish table now, not inside the first question
        self._symspell = SymSpell(max_dictionary_edit_distance=2, prefix_length=7)
        for folded, w in self._folded.items():
            self._symspell.create_dictionary_entry(folded, self.counts[w])

    @classmethod
    def from_texts(cls, texts: Iterable[str], **kwargs) -> "Speller":
        return cls(Counter(w for t in texts for w in words(t)), **kwargs)

    @classmethod
    def from_index(cls, index, **kwargs) -> "Speller":
        """From the word counts stored in the index (the same counts as over its documents' texts; an index
        without them counts its documents now)."""
        kwargs.setdefault("splitter", getattr(index.lexical.analyzer, "splitter", None))
        counts = getattr(index.lexical, "word_counts", None)
        if counts:
            return cls(counts, **kwargs)
        return cls.from_texts((d.text for d in index.documents.values()), **kwargs)

    def is_known(self, word: str) -> bool:
        """A corpus word, an everyday Swedish word, an inflection of a corpus word, or a compound of known words
        ("kontaktsjuksköterska" = "kontakt" + "sjuksköterska"): never a typo."""
        return (
            word in self.counts
            or fold_accents(word) in self._folded
            or _zipf(word) >= self.valid_zipf
            or stem(word) in self._stems
            or bool(self.splitter is not None and self.splitter.split(word))
        )

    def _dictionary_word(self, folded: str) -> bool:
        word = self._folded.get(folded, folded)
        return _zipf(word) >= 1.5 or bool(self.splitter is not None and self.splitter.split(word))

    def correct(self, word: str) -> str | None:
        """The corpus word `word` was probably meant to be, or None when it looks fine or nothing is close."""
        from symspellpy import Verbosity

        word = word.lower()
        if len(word) < self.min_length or not word.isalpha() or self.is_known(word):
            return None
        distance = 1 if len(word) < 8 else 2
        suggestions = self._symspell.lookup(fold_accents(word), Verbosity.CLOSEST, max_edit_distance=distance)
        # A word the corpus has once, that no dictionary knows and that is no compound of known words, is as likely
        # the source's own typo ("kontaksjuksköterska") as the right spelling: never correct into it.
        suggestions = [s for s in suggestions if s.count >= self.min_target_count or self._dictionary_word(s.term)]
        if not suggestions:
            return None
        best = max(suggestions, key=lambda s: (-s.distance, s.count))
        return self._folded.get(best.term)
