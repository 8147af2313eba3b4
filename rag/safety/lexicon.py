"""The reviewed safety lexicon: concepts (urgent situations, suicide risk, advice requests) matched in a message.

A concept is a rule over term groups ("FEVER + TREATMENT"); a group is a list of word patterns. Matching works on
the message lower-cased with å/ä/ö folded, so "blöder", "bloder" and "blodde" meet the same patterns; prefix
patterns ("svimm*") cover inflections ("svimmade", "svimmat"), substring patterns ("*blodning*") compounds
("näsblödning"), and a word one edit away from a pattern counts too ("svimade", "cellgifer"). Context decides
whether a matched concept stands: a negated word ("ingen feber") never counts, and an urgent concept is set aside
when the message is a general question with no person in it ("hur vanligt är feber efter cytostatika?") or tells
of something clearly past and resolved ("förra året, nu är han frisk").

The data live in `rag/data/safety/terms.tsv` and `rag/data/safety/concepts.tsv`; each concept cites the guidance
it comes from (`rag/data/safety/guidance.json`).
"""

from __future__ import annotations

import csv
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from rag.text import fold_accents

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "safety"
LEVELS = ("suicide", "urgent", "advice")
"""Concept levels, most serious first."""

CONTEXT_GROUPS = ("NEGATOR", "GENERIC", "HYPOTHETICAL", "PERSONAL", "NOW", "RESOLVED", "PAST", "FILLER", "STOPNEG")
_TOKEN = re.compile(r"\d+(?:[.,]\d+)?|[a-z]+")
_BOUNDARY = re.compile(r"(?:(?<!\d)[.,]|[.,](?!\d)|[!?;:()\n])+|\s(?:men|fast)\s")
CHAT_SPELLINGS = {"int": "inte", "inte": "inte", "nt": "inte", "ente": "inte", "nåt": "något", "nat": "något",
                  "nått": "något", "natt": "natt", "nån": "någon", "ngt": "något", "ngn": "någon", "mkt": "mycket",
                  "o": "och", "å": "och", "e": "är", "ä": "är", "mej": "mig", "dej": "dig", "sej": "sig",
                  "huvet": "huvudet", "ggr": "gånger", "pga": "på grund av", "iaf": "i alla fall"}
"""Chat and phone spellings read as the standard word (after folding)."""
_CHAT = {fold_accents(k): fold_accents(v) for k, v in CHAT_SPELLINGS.items()}
_GREETINGS = frozenset({"hej", "hejsan", "hallo", "halla", "tja", "hej!", "god", "morgon", "dag", "kvall", "hi", "hello"})
MAX_GAP = 2
"""Words a phrase pattern may skip between its own words ("kräks (lite) blod", "ont (väldigt) i bröstet")."""


# --------------------------------------------------------------------------------------------------- tokens


def normalize_message(text: str) -> str:
    """Lower case, compatibility forms (NFKC: fullwidth letters, ligatures), å/ä/ö folded, quotes unified."""
    text = unicodedata.normalize("NFKC", text or "").lower()
    return fold_accents(text).replace("’", "'").replace("´", "'")


@dataclass(frozen=True)
class Token:
    text: str
    clause: int  # tokens of one clause share the number; negation and phrases never cross a clause boundary
    number: float | None = None


def tokenize(text: str) -> list[Token]:
    """Word and number tokens of a normalized message, each with the number of its clause."""
    out: list[Token] = []
    clause = 0
    pos = 0
    for piece in _BOUNDARY.split(text):
        for m in _TOKEN.finditer(piece):
            word = m.group(0)
            for part in _CHAT.get(word, word).split():
                if part != word:
                    out.append(Token(part, clause, None))
            if _CHAT.get(word, word) != word:
                continue
            number = None
            if word[0].isdigit():
                try:
                    number = float(word.replace(",", "."))
                except ValueError:
                    number = None
            out.append(Token(word, clause, number))
        clause += 1
        pos += 1
    return out


# ------------------------------------------------------------------------------------------------- patterns


def _deletes(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def within_one_edit(a: str, b: str) -> bool:
    """True when a and b differ by at most one insertion, deletion, substitution or adjacent transposition."""
    if a == b:
        return True
    if abs(len(a) - len(b)) > 1:
        return False
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        if len(diff) == 1:
            return True
        return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
    short, long_ = (a, b) if len(a) < len(b) else (b, a)
    return any(long_[:i] + long_[i + 1 :] == short for i in range(len(long_)))


@dataclass(frozen=True)
class WordPattern:
    """One word of a term: exact ("feber"), prefix ("svimm*"), substring ("*blodning*"), suffix ("*varken"),
    or a number class ("#fever": a body temperature of 38 or more)."""

    text: str
    kind: str  # exact | prefix | substring | suffix | number

    @classmethod
    def parse(cls, raw: str) -> "WordPattern":
        raw = normalize_message(raw.strip())
        if raw.startswith("#"):
            return cls(raw[1:], "number")
        if raw.startswith("*") and raw.endswith("*") and len(raw) > 2:
            return cls(raw[1:-1], "substring")
        if raw.startswith("*"):
            return cls(raw[1:], "suffix")
        if raw.endswith("*"):
            return cls(raw[:-1], "prefix")
        return cls(raw, "exact")

    def matches(self, token: Token, fuzzy: bool) -> bool:
        word = token.text
        if self.kind == "number":
            return token.number is not None and _number_class(self.text, token)
        if self.kind == "exact":
            return word == self.text or (fuzzy and len(self.text) >= 5 and within_one_edit(word, self.text))
        if self.kind == "prefix":
            if word.startswith(self.text):
                return True
            n = len(self.text)
            return fuzzy and n >= 5 and any(within_one_edit(word[:m], self.text) for m in (n - 1, n, n + 1) if m <= len(word))
        if self.kind == "suffix":
            return word.endswith(self.text) and len(word) > len(self.text)
        return self.text in word


def _number_class(name: str, token: Token) -> bool:
    value = token.number
    if name == "fever":  # 38.0-42.9 written with a decimal ("38,3", "39.1"): a body temperature
        return ("," in token.text or "." in token.text) and 38.0 <= value < 43.0
    if name == "feverint":  # a whole number that is a fever temperature when the words around it say so
        return token.text.isdigit() and 38 <= value <= 42
    if name == "painhigh":  # 8, 9 or 10 on a pain scale of ten
        return token.text.isdigit() and 8 <= value <= 10
    if name == "lowsat":  # an oxygen saturation low enough to need care now
        return token.text.isdigit() and 50 <= value <= 91
    if name == "any":
        return True
    return False


@dataclass(frozen=True)
class Term:
    """A sequence of word patterns (a phrase), matched in order within one clause, with up to MAX_GAP filler
    words between them."""

    words: tuple[WordPattern, ...]
    source: str

    @classmethod
    def parse(cls, raw: str) -> "Term":
        return cls(tuple(WordPattern.parse(w) for w in raw.split()), raw.strip())


@dataclass(frozen=True)
class Match:
    group: str
    start: int
    end: int  # token positions, end exclusive
    text: str


# ------------------------------------------------------------------------------------------------ the lexicon


@dataclass(frozen=True)
class Concept:
    """A rule: all `groups` present (and none of `absent`), at the given level, citing a guidance entry."""

    name: str
    level: str
    groups: tuple[str, ...]
    absent: tuple[str, ...]
    guidance: str
    context: str  # "strict": general questions and resolved past events set it aside; "keep": never set aside
    scope: str = "message"  # "clause": all groups must be found in one clause


@dataclass
class ConceptHit:
    concept: Concept
    evidence: tuple[str, ...]
    set_aside: str = ""  # why context set the concept aside ("" when it stands)


@dataclass
class LexiconResult:
    hits: list[ConceptHit] = field(default_factory=list)
    context: str = ""  # general | resolved | past | "" (see `SafetyLexicon._context`)
    negated: tuple[str, ...] = ()  # symptom groups that were found only in negated form ("ingen feber")

    @property
    def standing(self) -> list[ConceptHit]:
        return [h for h in self.hits if not h.set_aside]


class SafetyLexicon:
    """Match the reviewed concepts of `terms.tsv` / `concepts.tsv` in a message.

    Parameters
    ----------
    terms : dict
        Group name -> list of Terms.
    concepts : list of Concept

    Example
    -------
    >>> lexicon = SafetyLexicon.load()
    >>> [h.concept.name for h in lexicon.run("temp 38,3, fick min kur i tisdags").standing]
    ['neutropenic_fever']
    """

    def __init__(self, terms: dict[str, list[Term]], concepts: list[Concept]) -> None:
        self.terms = terms
        self.concepts = concepts
        unknown = {g for c in concepts for g in (*c.groups, *c.absent)} - set(terms)
        if unknown:
            raise ValueError(f"concepts use undefined term groups: {sorted(unknown)}")
        missing = set(CONTEXT_GROUPS) - set(terms)
        if missing:
            raise ValueError(f"terms.tsv lacks the context groups {sorted(missing)}")
        self._negators = {w.text for t in terms["NEGATOR"] for w in t.words if len(t.words) == 1}
        self._common = {w.text for g in ("NEGATOR", "FILLER") for t in terms[g] for w in t.words}
        # Every distinct word pattern gets an id; a token is looked up once and gets the set of ids it matches.
        self._patterns: list[WordPattern] = []
        ids: dict[WordPattern, int] = {}
        self._term_ids: list[tuple[str, Term, tuple[int, ...]]] = []
        for group, group_terms in terms.items():
            for term in group_terms:
                wids = []
                for w in term.words:
                    if w not in ids:
                        ids[w] = len(self._patterns)
                        self._patterns.append(w)
                    wids.append(ids[w])
                self._term_ids.append((group, term, tuple(wids)))
        self._exact: dict[str, set[int]] = {}
        self._prefix: dict[str, set[int]] = {}
        self._scan: list[int] = []  # substring, suffix and number patterns: checked one by one
        self._fuzzy: dict[str, set[int]] = {}
        self._fuzzy_lengths: set[int] = set()
        for pid, w in enumerate(self._patterns):
            if w.kind == "exact":
                self._exact.setdefault(w.text, set()).add(pid)
            elif w.kind == "prefix":
                self._prefix.setdefault(w.text, set()).add(pid)
            else:
                self._scan.append(pid)
            if w.kind in ("exact", "prefix") and len(w.text) >= 5:
                for key in _deletes(w.text) | {w.text}:
                    self._fuzzy.setdefault(key, set()).add(pid)
                if w.kind == "prefix":
                    self._fuzzy_lengths.add(len(w.text))
        self._first: dict[int, list[int]] = {}
        for i, (_, _, wids) in enumerate(self._term_ids):
            self._first.setdefault(wids[0], []).append(i)
        self._word_cache: dict[str, frozenset[int]] = {}

    @classmethod
    @lru_cache(maxsize=2)
    def load(cls, directory: Path = DATA_DIR) -> "SafetyLexicon":
        """Read `terms.tsv` (group, patterns separated by " | ") and `concepts.tsv`."""
        terms: dict[str, list[Term]] = {}
        for row in _read_tsv(directory / "terms.tsv"):
            for raw in row["patterns"].split("|"):
                if raw.strip():
                    terms.setdefault(row["group"].strip(), []).append(Term.parse(raw))
        concepts = []
        for row in _read_tsv(directory / "concepts.tsv"):
            parts = [p.strip() for p in row["rule"].split("+") if p.strip()]
            level = row["level"].strip()
            if level not in LEVELS:
                raise ValueError(f"concept {row['concept']}: unknown level {level!r}")
            concepts.append(Concept(
                name=row["concept"].strip(), level=level,
                groups=tuple(p for p in parts if not p.startswith("-")),
                absent=tuple(p[1:] for p in parts if p.startswith("-")),
                guidance=row["guidance"].strip(), context=(row.get("context") or "strict").strip(),
                scope=(row.get("scope") or "message").strip(),
            ))
        return cls(terms, concepts)

    # ---------------------------------------------------------------------------------------------- matching

    def word_matches(self, token: Token) -> frozenset[int]:
        """Ids of the word patterns a token matches (cached per distinct word; numbers are not cached)."""
        if token.number is None and token.text in self._word_cache:
            return self._word_cache[token.text]
        word = token.text
        found: set[int] = set(self._exact.get(word, ()))
        for n in range(1, len(word) + 1):
            found |= self._prefix.get(word[:n], set())
        for pid in self._scan:
            if self._patterns[pid].matches(token, fuzzy=False):
                found.add(pid)
        if self._fuzzy_ok(token):
            keys = {word} | _deletes(word)
            for n in self._fuzzy_lengths:
                for m in (n - 1, n, n + 1):
                    if m <= len(word):
                        keys |= {word[:m]} | _deletes(word[:m])
            for key in keys:
                for pid in self._fuzzy.get(key, ()):
                    if pid not in found and self._patterns[pid].matches(token, fuzzy=True):
                        found.add(pid)
        out = frozenset(found)
        if token.number is None and len(self._word_cache) < 100_000:
            self._word_cache[word] = out
        return out

    def _fuzzy_ok(self, token: Token) -> bool:
        """Only words that are not themselves common Swedish words may be read as a typo of a pattern."""
        word = token.text
        if len(word) < 5 or token.number is not None or word in self._common:
            return False
        return word not in _common_folded_words()

    def match_all(self, tokens: list[Token], negated: set[str] | None = None) -> dict[str, list[Match]]:
        """Every match of every group's terms, negated ones left out (context groups are never negated); the
        groups only found negated are added to `negated` when given."""
        per_token = [self.word_matches(t) for t in tokens]
        found: dict[str, list[Match]] = {}
        for i, pids in enumerate(per_token):
            for pid in pids:
                for ti in self._first.get(pid, ()):
                    group, term, wids = self._term_ids[ti]
                    end = self._extend(tokens, per_token, i, wids, 0 if group in CONTEXT_GROUPS else MAX_GAP)
                    if end is None:
                        continue
                    if (group not in CONTEXT_GROUPS or group == "RESOLVED") and self._negated(tokens, i, term):
                        if negated is not None and group not in CONTEXT_GROUPS:
                            negated.add(group)
                        continue
                    found.setdefault(group, []).append(
                        Match(group, i, end, " ".join(t.text for t in tokens[i:end])))
        return found

    def _extend(self, tokens, per_token, i, wids, gap: int = MAX_GAP) -> int | None:
        """End of the phrase whose first word is at i: later words in order, in the clause, few words between,
        never across a negator ("vill inte dö" is not "vill dö")."""
        j = i
        clause = tokens[i].clause
        for wid in wids[1:]:
            found = None
            for k in range(j + 1, min(len(tokens), j + 2 + gap)):
                if tokens[k].clause != clause:
                    break
                if wid in per_token[k]:
                    found = k
                    break
                if tokens[k].text in self._negators:
                    break
            if found is None:
                return None
            j = found
        return j + 1

    def _negated(self, tokens: list[Token], start: int, term: Term) -> bool:
        """A negator among the three words before the match, in its clause, with no "sluta" or "och" between
        ("ingen feber", "inte haft några kramper"; but "kan inte sluta blöda", "inte ätit och blöder" are not
        negated)."""
        if any(w.text in self._negators for w in term.words if w.kind == "exact"):
            return False  # the term carries its own negation ("kan inte andas")
        clause = tokens[start].clause
        for k in range(start - 1, max(-1, start - 4), -1):
            tok = tokens[k]
            if tok.clause != clause or tok.text.startswith("slut") or tok.text in ("och", "samt", "plus"):
                return False
            if tok.text in self._negators:
                return True
        return False

    def run(self, message: str, history: tuple[str, ...] | list[str] = ()) -> LexiconResult:
        """Concepts found in the message; a rule may take a missing group from the last history messages
        (the treatment named one turn earlier, the fever now), but one group must come from the message itself."""
        tokens = tokenize(normalize_message(message))
        negated: set[str] = set()
        found = self.match_all(tokens, negated)
        earlier: dict[str, list[Match]] = {}
        for past in list(history)[-3:]:
            for g, m in self.match_all(tokenize(normalize_message(past))).items():
                if g not in CONTEXT_GROUPS:
                    earlier.setdefault(g, []).extend(m)
        result = LexiconResult(context=self._context(found, tokens, None),
                               negated=tuple(sorted(negated - set(found))))
        for concept in self.concepts:
            if any(g in found for g in concept.absent):
                continue
            if not all(g in found or g in earlier for g in concept.groups):
                continue
            if not any(g in found for g in concept.groups):
                continue
            clauses = None
            if concept.scope == "clause":
                shared = set.intersection(*({tokens[m.start].clause for m in found.get(g, [])} for g in concept.groups))
                if not shared:
                    continue
                clauses = shared
            evidence = tuple(m.text for g in concept.groups for m in (found.get(g) or earlier.get(g) or [])[:1])
            if clauses is None:
                clauses = {tokens[m.start].clause for g in concept.groups for m in found.get(g, [])}
            context = self._context(found, tokens, clauses)
            reason = ""
            if concept.context == "strict":
                reason = context
            elif concept.context == "resolved" and context in ("resolved", "past"):
                reason = context
            result.hits.append(ConceptHit(concept, evidence, reason))
        return result

    @staticmethod
    def _context(found: dict[str, list[Match]], tokens: list[Token], clauses: set[int] | None) -> str:
        """Why a concept found in `clauses` would not need a notice ("" when it does).

        A "now" marker in one of the concept's clauses (and not in a clause that tells of a resolution) keeps it;
        otherwise a resolution anywhere ("men nu är hon som vanligt igen") or a past time in its clauses ("för ett
        halvår sen") sets it aside, and so does a general question: one that opens with a general frame ("hur
        vanligt är ...", "vad är ...") and names no person, or asks hypothetically ("vad gör man om någon ...").
        """
        def in_scope(m: Match) -> bool:
            return clauses is None or tokens[m.start].clause in clauses

        resolved = found.get("RESOLVED", [])
        resolved_clauses = {tokens[m.start].clause for m in resolved}
        if any(in_scope(m) and tokens[m.start].clause not in resolved_clauses for m in found.get("NOW", [])):
            return ""
        if resolved:
            return "resolved"
        if any(in_scope(m) for m in found.get("PAST", [])):
            return "past"
        opening = next((i for i, t in enumerate(tokens) if t.text not in _GREETINGS), 0)
        if any(m.start == opening for m in found.get("GENERIC", [])) and (
                not found.get("PERSONAL") or found.get("HYPOTHETICAL")):
            return "general"
        return ""


@lru_cache(maxsize=1)
def _common_folded_words(n: int = 60_000) -> frozenset[str]:
    """The most frequent Swedish words (wordfreq), folded: a word typed without å/ä/ö ("racker" for "räcker")
    is a real word, not a typo of a pattern ("rycker")."""
    from wordfreq import top_n_list

    return frozenset(fold_accents(w) for w in top_n_list("sv", n))


def _read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        lines = [line for line in f if line.strip() and not line.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))
