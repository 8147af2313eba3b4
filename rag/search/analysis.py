"""Swedish text analysis for lexical search: tokens, stop words, Snowball stems, accent folding, compound parts."""

from __future__ import annotations

import os
import re
from collections import Counter
from functools import lru_cache
from typing import Callable, Iterable

from rag.text import fold_accents

_WORD = re.compile(r"[^\W_]+(?:[-'][^\W_]+)*", re.UNICODE)
# Bump when tokens change (stop words, stemming, compounds): stored lexical indexes become stale and are rebuilt.
ANALYZER_VERSION = "3"
FOLDED_PREFIX = "~"
"""Accent-folded forms are indexed as extra tokens with this prefix, so "stod" finds "stöd" without "år" == "ar"."""
PART_PREFIX = "+"
DEFINITION_PREFIX = "="
"""Words a sentence defines ("Standardiserade vårdförlopp (SVF) är en metod ...") are extra tokens with this
prefix, so "Vad är ett standardiserat vårdförlopp?" prefers the sentence that says what it is."""

_DEFINITION = re.compile(
    r"(?:^|(?<=[.!?]\s))(?P<head>[A-ZÅÄÖ0-9][^.!?:;\n]{1,80}?)\s+(?:är|innebär|betyder|avser|kallas)\s+"
    r"(?:en|ett|att|när|den|det|de|ungefär|ett samlingsnamn)\b"
)
_DEFINITION_QUESTION = re.compile(
    r"^\s*vad\s+(?:är|var|innebär|betyder|menas med|kallas)\s+(?:en\s+|ett\s+|de\s+|det\s+)?"
    r"(?P<x>.+?)\s*(?:för något|för nåt|egentligen|för någonting)?\s*[?!.]*$|"
    r"^\s*vad\s+står\s+(?P<y>.+?)\s+för\s*[?!.]*$",
    re.IGNORECASE,
)


def definition_heads(text: str) -> list[str]:
    """Content words of what the sentences of `text` define (the words before "är en", "innebär", ...)."""
    return [w for m in _DEFINITION.finditer(text) for w in content_words(m.group("head"))]


def definition_target(question: str) -> list[str]:
    """Content words of what a "Vad är X?" / "Vad innebär X?" / "Vad står X för?" question asks to define."""
    m = _DEFINITION_QUESTION.match(question)
    if not m or "," in question:
        return []
    target = content_words(m.group("x") or m.group("y") or "")
    if not target or len(target) > 3 or target[0] in ("skillnaden", "skillnad", "målet", "syftet"):
        return []  # "Vad är det?" names nothing; "Vad är X?" names a thing in a word or three
    return target


def definition_token(word: str) -> str:
    return DEFINITION_PREFIX + fold_accents(stem(word))
"""Compound parts are extra tokens with this prefix, weighted like any other token."""

# Question and chat words that carry no topic (on top of the Snowball/bm25s Swedish list).
_EXTRA_STOPWORDS = {
    "finns", "får", "fa", "ska", "skall", "kommer", "gäller", "gör", "göra", "fick", "också", "även", "bara", "något",
    "någon", "hej", "tack", "snälla", "undrar", "vill", "veta", "berätta", "fråga", "dom", "dem", "mej", "dej", "sej",
    "typ", "liksom", "alltså", "då", "nå", "eller", "ens", "kanske", "ju", "väl", "vilka", "vilken", "vilket", "hur",
    "mycket", "många", "mer", "mest", "nåt", "nån", "nåra", "sånna", "såna", "sånt", "ngt", "ngn", "iaf", "asså",
}


@lru_cache(maxsize=1)
def swedish_stopwords() -> frozenset[str]:
    """Swedish stop words: bm25s's Snowball list plus chat words, in both accented and folded spelling.

    bm25s's list is kept in the cache folder per bm25s version: importing bm25s pulls in numba and scipy (0.6 s
    of every start) for a list of 114 words."""

    def snowball() -> list[str]:
        from bm25s.stopwords import STOPWORDS_SWEDISH

        return list(STOPWORDS_SWEDISH)

    words = set(cached_marshal("stopwords", f"sv-bm25s-{_version('bm25s')}", snowball)) | _EXTRA_STOPWORDS
    return frozenset(words | {fold_accents(w) for w in words})


def _version(package: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return "none"


@lru_cache(maxsize=1)
def _stemmer():
    import Stemmer

    return Stemmer.Stemmer("swedish")


@lru_cache(maxsize=1)
def _lemmatizer():
    """simplemma's Swedish lemmatizer; its dictionary (964k forms) is decoded from the shipped archive once (1.5 s)
    and kept as a marshal file in the cache folder, which loads in 0.5 s at every later start."""
    import simplemma
    from simplemma.strategies import DefaultStrategy
    from simplemma.strategies.dictionaries.dictionary_factory import (CachingDictionaryFactory,
                                                                      MappingStrToByteString,
                                                                      _load_dictionary_from_disk)

    class CachedDictionaries(CachingDictionaryFactory):
        def _get_dictionary_uncached(self, lang: str):
            return MappingStrToByteString(_cached_dictionary(lang, simplemma.__version__, _load_dictionary_from_disk))

    lemmatizer = simplemma.Lemmatizer(lemmatization_strategy=DefaultStrategy(dictionary_factory=CachedDictionaries()))
    lemmatizer.lemmatize("cancer", lang="sv")  # loads the Swedish table once
    return lemmatizer.lemmatize


def _cached_dictionary(lang: str, version: str, load: Callable[[str], dict]) -> dict:
    """simplemma's bytes -> bytes dictionary for `lang` (see `cached_marshal`)."""
    return cached_marshal("simplemma", f"{lang}-{version}", lambda: load(lang))


def cached_marshal(folder: str, key: str, make: Callable[[], object]):
    """`make()`'s value (plain data: dicts, lists, strings, bytes), from a marshal file under the cache root when
    one is there (written atomically after the first `make`); any problem with the file means calling `make`
    again. What it holds must be derived from installed packages only, `key` naming their versions."""
    import marshal
    import tempfile

    from rag.search.location import cache_root

    path = cache_root() / folder / f"{key}.marshal"
    try:
        data = marshal.loads(path.read_bytes())
        if isinstance(data, (dict, list, tuple)) and data:
            return data
    except (OSError, ValueError, EOFError, TypeError):
        pass
    data = make()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", delete=False) as f:
            f.write(marshal.dumps(data))
        os.replace(f.name, path)
    except (OSError, ValueError):  # a read-only cache: make it at every start
        try:
            os.unlink(f.name)
        except (OSError, NameError):
            pass
    return data


def warm_analysis() -> None:
    """Load the Snowball stemmer and decode simplemma's Swedish dictionary now (~2 s), not at the first question."""
    _stemmer()
    _lemmatizer()


@lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """Lemma (simplemma's Swedish dictionary) then Snowball Swedish stem, plus the definite "-an" ending Snowball
    leaves on ("sköterskan" -> "skötersk").

    Snowball alone splits inflections of one word ("psykosocialt" vs "psykosociala"); the lemma joins them first.
    """
    lemma = _lemmatizer()(word, lang="sv").lower() if word.isalpha() else word
    s = _stemmer().stemWord(lemma)
    if len(s) >= 7 and s.endswith("an") and not s.endswith(("aan", "ian")):
        s = s[:-2]
    return s


def words(text: str) -> list[str]:
    """Lower-cased word tokens (letters and digits, inner hyphens kept), no stop-word removal."""
    return [w.lower() for w in _WORD.findall(text)]


def content_words(text: str) -> list[str]:
    """Lower-cased word tokens without stop words and one-letter tokens."""
    stop = swedish_stopwords()
    return [w for w in words(text) if w not in stop and len(w) > 1]


# Inflection endings that also happen to be words or names ("region|erna"): never a compound's tail.
_INFLECTIONS = frozenset({"erna", "arna", "orna", "ande", "ende", "heten", "heterna", "ning", "ningen", "else", "elsen"})


@lru_cache(maxsize=1)
def general_swedish_words(n: int = 50_000) -> tuple[str, ...]:
    """The `n` most frequent Swedish words (wordfreq's data ships in its wheel): known parts for compounds; kept in
    the cache folder per wordfreq version (decoding wordfreq's table takes 0.5 s)."""

    def top() -> list[str]:
        from wordfreq import top_n_list

        return list(top_n_list("sv", n))

    return tuple(cached_marshal("wordfreq", f"sv-top{n}-{_version('wordfreq')}", top))


def _zipf(word: str) -> float:
    from wordfreq import zipf_frequency

    return zipf_frequency(word, "sv")


class CompoundSplitter:
    """Split Swedish compounds into parts that are themselves known words (with an optional linking "s").

    The known words come from a vocabulary (the corpus's own words); "kontaktsjuksköterska" becomes
    ["kontakt", "sjuksköterska"] and then "sjuk" + "sköterska" if those are known.

    Parameters
    ----------
    vocabulary : Iterable[str]
        Known words (lower case).
    min_part : int
        Shortest part accepted, so "ansvar" does not split into "an" + "svar".
    """

    def __init__(self, vocabulary: Iterable[str], min_part: int = 4, lexicalized_zipf: float = 3.5,
                 known_stems: Iterable[str] | None = None) -> None:
        self.min_part = min_part
        self.lexicalized_zipf = lexicalized_zipf
        self.known = frozenset(w for w in vocabulary if len(w) >= min_part and w.isalpha())
        # A compound's last part is inflected ("cancer|rehabiliteringen"): accept it by its stem. Stemming ~50k
        # words takes seconds, so an index stores them (`known_stems`) and a loaded analyzer reads them back.
        self.known_stems = frozenset(known_stems) if known_stems is not None else frozenset(stem(w) for w in self.known)

    def _known_tail(self, tail: str) -> bool:
        if tail in _INFLECTIONS:
            return False
        return tail in self.known or (len(tail) >= self.min_part + 1 and stem(tail) in self.known_stems)

    @lru_cache(maxsize=50_000)
    def split(self, word: str) -> tuple[str, ...]:
        """Parts of `word` (recursively split, longest head first); () when it is not a compound of known words."""
        n = len(word)
        if n < 2 * self.min_part or _zipf(word) >= self.lexicalized_zipf:
            return ()  # too short, or an everyday word ("överenskommelse") whose parts mislead
        for i in range(n - self.min_part, self.min_part - 1, -1):
            head, tail = word[:i], word[i:]
            for h in (head, head[:-1] if head.endswith("s") and len(head) > self.min_part else None):
                if h and h in self.known and (self._known_tail(tail) or self.split(tail)):
                    tail_parts = (tail,) if self._known_tail(tail) else self.split(tail)
                    head_parts = self.split(h) or (h,)
                    return tuple(head_parts) + tuple(tail_parts) if len(tail_parts) > 1 or len(head_parts) > 1 else (h, tail)
        return ()

    def __hash__(self) -> int:  # lru_cache on a method needs a hashable self
        return id(self)


class SwedishAnalyzer:
    """Turn Swedish text into BM25 tokens: stems, accent-folded stems and compound-part stems.

    Example
    -------
    >>> analyzer = SwedishAnalyzer.fit(["Kontaktsjuksköterskan ger psykosocialt stöd.", "kontakt", "sjuksköterska"])
    >>> analyzer.analyze("psykosocialt stod")
    ['psykosocial', '~psykosocial', 'stod', '~stod']
    """

    def __init__(self, vocabulary: Iterable[str] = (), fold: bool = True, compounds: bool = True,
                 known_stems: Iterable[str] | None = None) -> None:
        self.vocabulary = sorted(set(vocabulary))
        self.fold = fold
        self.compounds = compounds
        self.splitter = CompoundSplitter([*self.vocabulary, *general_swedish_words()],
                                         known_stems=known_stems) if compounds else None

    @classmethod
    def fit(cls, texts: Iterable[str], min_count: int = 1, **kwargs) -> "SwedishAnalyzer":
        """Learn the vocabulary of known words (for compound splitting) from the corpus texts."""
        counts = Counter(w for t in texts for w in words(t))
        return cls([w for w, c in counts.items() if c >= min_count], **kwargs)

    def config(self) -> dict:
        return {"fold": self.fold, "compounds": self.compounds, "version": ANALYZER_VERSION}

    def analyze(self, text: str) -> list[str]:
        """Index/query tokens of `text`: for each content word its stem, its folded stem (prefixed `~`) when folding
        changes it or the word has no diacritics, and the stems of its compound parts (prefixed `+`)."""
        out: list[str] = []
        for w in content_words(text):
            out.extend(self.word_tokens(w))
        out.extend(definition_token(w) for w in definition_heads(text))
        return out

    def word_tokens(self, w: str, query: bool = False) -> list[str]:
        """Tokens of one lower-case content word (see `analyze` and `term_tokens`)."""
        own, parts = self.term_tokens(w, query=query)
        return own + parts

    def term_tokens(self, w: str, query: bool = False) -> tuple[list[str], list[str]]:
        """(the word's own forms, its compound parts). A query word's own forms include its as-a-part form, so
        "kontakt" also finds "kontaktsjuksköterska" in the text."""
        own = [stem(w)]
        if self.fold:
            own.append(FOLDED_PREFIX + stem(fold_accents(w)))
        if query and self.compounds:
            own.append(PART_PREFIX + stem(fold_accents(w)))
        parts = [PART_PREFIX + stem(fold_accents(p)) for p in self.splitter.split(w)] if self.splitter else []
        return own, parts
