"""Extractive answers: pick the best-supported source sentences, cite each verbatim, or abstain."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from rag.search.index import CorpusIndex
from rag.search.query import Query, QueryTerm
from rag.search.retrieve import Retrieval
from rag.types import Citation

_DATA = Path(__file__).resolve().parents[1] / "data"


@dataclass(frozen=True)
class SentenceCandidate:
    """A sentence from a retrieved passage with the signals used to rank it."""

    row: int  # index into CorpusIndex.sentences
    passage_rank: int
    passage_row: int
    dense: float
    coverage: float
    score: float


@dataclass(frozen=True)
class Evidence:
    """Signals the abstention decision is made from (also shown in the staff audit view)."""

    best_dense: float = 0.0  # cosine of the best sentence to the question
    best_coverage: float = 0.0  # idf-weighted share of question terms in the best sentence (+ its heading)
    passage_coverage: float = 0.0  # same, in the best passage with its title and heading
    passage_dense: float = 0.0  # cosine of the top passage
    known_terms: float = 0.0  # idf-weighted share of question terms the corpus knows at all
    n_terms: int = 0

    def features(self) -> list[float]:
        return [self.best_dense, self.best_coverage, self.passage_coverage, self.passage_dense, self.known_terms]


FEATURES = ("best_dense", "best_coverage", "passage_coverage", "passage_dense", "known_terms")


@dataclass
class AbstentionModel:
    """Logistic model P(answerable | evidence), fitted on the gold set's tuning split (`eval/calibrate.py`)."""

    weights: list[float]
    bias: float
    threshold: float = 0.5
    source: str = "default"
    extra: dict = field(default_factory=dict)

    def probability(self, evidence: Evidence) -> float:
        z = self.bias + sum(w * x for w, x in zip(self.weights, evidence.features()))
        return 1.0 / (1.0 + math.exp(-z))

    def answerable(self, evidence: Evidence) -> bool:
        if evidence.n_terms == 0:
            return False
        return self.probability(evidence) >= self.threshold

    @classmethod
    def load(cls, model: str, path: Path = _DATA / "abstention.json") -> "AbstentionModel":
        """The calibration for `model` (by name, or by folder name for a local path such as
        `~/models/embeddinggemma-300m`) if one was fitted, else the one fitted for the default model."""
        table = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        row = table.get(model) or table.get(Path(model).name) or table.get("default")
        if row is None:
            # Uncalibrated fallback: answer only when the best sentence holds most of the question's terms.
            return cls(weights=[0.0, 8.0, 2.0, 0.0, 2.0], bias=-5.0, source="uncalibrated")
        return cls(weights=row["weights"], bias=row["bias"], threshold=row.get("threshold", 0.5),
                   source=row.get("source", "file"), extra=row)


class AnswerBuilder:
    """Compose an answer from verbatim source sentences with [n] citations, or decide to abstain.

    Parameters
    ----------
    index : CorpusIndex
    abstention : AbstentionModel
    max_sentences : int
        At most this many quoted sentences in one answer.
    max_chars : int
        Soft length budget of the quoted text.
    coverage_weight, local_weight, rank_weight, relative_margin : float
        See `candidates` and `select`; defaults from `python -m eval.tune --stage answer` on the tuning split
        (quote on the evidence sentence 0.80 with 0.6 extra sentences per answer).
    min_words : int
        Shorter sentences (fragments, headings) are never quoted.
    """

    def __init__(
        self,
        index: CorpusIndex,
        abstention: AbstentionModel,
        max_sentences: int = 3,
        max_chars: int = 700,
        coverage_weight: float = 0.2,
        rank_weight: float = 0.05,
        relative_margin: float = 0.06,
        min_words: int = 4,
        parts_credit: float = 0.8,
        local_weight: float = 0.3,
        fragment_penalty: float = 0.03,
        alternative_credit: float = 0.9,
    ) -> None:
        self.index = index
        self.abstention = abstention
        self.max_sentences = max_sentences
        self.max_chars = max_chars
        self.coverage_weight = coverage_weight
        self.rank_weight = rank_weight
        self.relative_margin = relative_margin
        self.min_words = min_words
        self.parts_credit = parts_credit
        self.local_weight = local_weight
        self.fragment_penalty = fragment_penalty
        self.alternative_credit = alternative_credit

    def warm_up(self) -> "AnswerBuilder":
        """Analyze every sentence once now, so the first question is as fast as the rest."""
        _ = self._sentence_tokens, self._passage_context_tokens, self._idf
        return self

    @cached_property
    def _idf(self) -> dict[str, float]:
        return self.index.lexical.idf()

    @cached_property
    def _max_idf(self) -> float:
        return max(self._idf.values(), default=1.0)

    @cached_property
    def _sentence_tokens(self) -> list[frozenset[str]]:
        analyze = self.index.lexical.analyzer.analyze
        return [frozenset(analyze(s.text)) for s in self.index.sentences]

    @cached_property
    def _passage_context_tokens(self) -> list[frozenset[str]]:
        analyze = self.index.lexical.analyzer.analyze
        return [frozenset(analyze(f"{p.title} {p.heading}")) for p in self.index.passages]

    def term_weight(self, term: QueryTerm) -> float:
        """idf of the term's rarest known form (its alternatives' forms included); a term the corpus does not know
        in any form weighs as the rarest word, so it counts against covering the question."""
        known = [self._idf[t] for t in term.all_tokens() if t in self._idf]
        return max(known) if known else self._max_idf

    def known(self, term: QueryTerm) -> bool:
        return any(t in self._idf for t in term.all_tokens())

    def coverage(self, terms: tuple[QueryTerm, ...], tokens: frozenset[str]) -> float:
        """idf-weighted share of the question's terms found in `tokens` (see `_matches` for partial credit)."""
        total = covered = 0.0
        for term in terms:
            w = self.term_weight(term) * term.weight
            total += w
            covered += w * self._matches(term, tokens)
        return covered / total if total else 0.0

    def candidates(self, query: Query, retrieval: Retrieval) -> list[SentenceCandidate]:
        """Every quotable sentence of the retrieved passages, scored; one entry per sentence.

        score = cosine(question, sentence)
                + coverage_weight * idf-weighted share of the question's terms in the sentence (+ its heading)
                + local_weight * share of the terms that tell the candidate sentences apart (idf among them)
                + rank_weight / rank of the passage
                - fragment_penalty for a sentence that starts in lower case (a list item cut from its lead-in)
        """
        rows: list[tuple[int, int, int]] = []  # (sentence row, passage rank, passage row)
        seen: set[int] = set()
        for hit, prow in zip(retrieval.hits, retrieval.rows):
            for srow in self.index.passage_sentences[prow]:
                sentence = self.index.sentences[srow]
                if srow in seen or sentence.is_heading or len(sentence.text.split()) < self.min_words:
                    continue
                seen.add(srow)
                rows.append((srow, hit.rank, prow))
        if not rows:
            return []
        qv = retrieval.query_vector
        own = list(query.terms)
        matches = [[self._matches(t, self._sentence_tokens[s] | self._passage_context_tokens[p]) for t in own]
                   for s, _, p in rows]
        n = len(rows)
        local_idf = [t.weight * math.log(1 + n / df) if df else 0.0
                     for t, df in zip(own, (sum(m[j] > 0 for m in matches) for j in range(len(own))))]
        local_total = sum(local_idf) or 1.0
        out: list[SentenceCandidate] = []
        for (srow, rank, prow), m in zip(rows, matches):
            dense = float(self.index.sentence_vectors[srow] @ qv)
            cov = self.coverage(query.terms, self._sentence_tokens[srow] | self._passage_context_tokens[prow])
            local = sum(w * x for w, x in zip(local_idf, m)) / local_total
            text = self.index.sentences[srow].text
            score = dense + self.coverage_weight * cov + self.local_weight * local + self.rank_weight / rank
            if text[:1].islower():
                score -= self.fragment_penalty
            out.append(SentenceCandidate(srow, rank, prow, dense, cov, score))
        out.sort(key=lambda c: (-c.score, c.row))
        return out

    def _matches(self, term: QueryTerm, tokens: frozenset[str]) -> float:
        """1 when the word itself is found; `parts_credit` when all its compound parts are ("kontakt sjuksköterska"
        for "kontaktsjuksköterska"); `alternative_credit` times the share of an alternative phrasing found
        (a correction, or the official words for a lay word: "cellprov" -> "screening för livmoderhalscancer")."""
        if any(tok in tokens for tok in term.tokens):
            return 1.0
        best = self.parts_credit if term.parts and all(tok in tokens for tok in term.parts) else 0.0
        for alt in term.alternatives:
            found = sum(any(tok in tokens for tok in word) for word in alt) / len(alt)
            best = max(best, self.alternative_credit * found)
        return best

    def evidence(self, query: Query, retrieval: Retrieval, ranked: list[SentenceCandidate]) -> Evidence:
        if not ranked or not retrieval.hits:
            return Evidence(n_terms=len(query.terms))
        best = ranked[0]
        top_row = retrieval.rows[0]
        passage_tokens = frozenset(
            tok for s in self.index.passage_sentences[top_row] for tok in self._sentence_tokens[s]
        ) | self._passage_context_tokens[top_row]
        own = list(query.terms)
        total = sum(self.term_weight(t) * t.weight for t in own)
        known = sum(self.term_weight(t) * t.weight for t in own if self.known(t))
        passage_dense = float(self.index.dense.reconstruct_row(top_row) @ retrieval.query_vector)
        return Evidence(
            best_dense=max(c.dense for c in ranked[:3]),
            best_coverage=best.coverage,
            passage_coverage=self.coverage(query.terms, passage_tokens),
            passage_dense=passage_dense,
            known_terms=known / total if total else 0.0,
            n_terms=len(own),
        )

    def select(self, ranked: list[SentenceCandidate]) -> list[SentenceCandidate]:
        """The best sentence, plus up to `max_sentences - 1` more that score within the margin, are not
        near-duplicates and fit the length budget; returned in reading order (passage rank, position)."""
        if not ranked:
            return []
        chosen = [ranked[0]]
        budget = len(self.index.sentences[ranked[0].row].text)
        best = ranked[0].score
        for cand in ranked[1:]:
            if len(chosen) >= self.max_sentences:
                break
            if cand.score < best - self.relative_margin * abs(best):
                break
            text = self.index.sentences[cand.row].text
            if budget + len(text) > self.max_chars:
                continue
            if any(_near_duplicate(self._sentence_tokens[cand.row], self._sentence_tokens[c.row]) for c in chosen):
                continue
            chosen.append(cand)
            budget += len(text)
        return sorted(chosen, key=lambda c: (c.passage_rank, self.index.sentences[c.row].start))

    def _with_list_items(self, cand: SentenceCandidate, max_items: int = 8):
        """The last sentence of a quote; a sentence that introduces a list ("... fyra områden:") brings the list
        items that follow it in the same passage, so the quote is not cut off at the colon."""
        sents = self.index.sentences
        last = sents[cand.row]
        if not last.text.rstrip().endswith(":"):
            return last
        doc_text = self.index.documents[last.doc_id].text
        passage_rows = self.index.passage_sentences[cand.passage_row]
        row = cand.row
        for _ in range(max_items):
            nxt = row + 1
            if nxt not in passage_rows or not _is_list_item(doc_text, sents[nxt].start):
                break
            row = nxt
        return sents[row]

    def citations(self, chosen: list[SentenceCandidate]) -> list[Citation]:
        """One citation per run of adjacent chosen sentences of the same passage (the quote spans them)."""
        groups: list[list[SentenceCandidate]] = []
        for cand in chosen:
            prev = groups[-1][-1] if groups else None
            sents = self.index.sentences
            if (
                prev is not None
                and prev.passage_row == cand.passage_row
                and cand.row == prev.row + 1
                and "\n" not in self.index.documents[sents[cand.row].doc_id].text[sents[prev.row].end : sents[cand.row].start]
            ):
                groups[-1].append(cand)
            else:
                groups.append([cand])
        out = []
        for n, group in enumerate(groups, 1):
            first = self.index.sentences[group[0].row]
            last = self._with_list_items(group[-1])
            doc = self.index.documents[first.doc_id]
            passage = self.index.passages[group[0].passage_row]
            out.append(Citation(
                n=n, passage_id=passage.passage_id, doc_id=doc.doc_id, quote=doc.text[first.start : last.end],
                start=first.start, end=last.end, score=max(c.score for c in group),
                title=doc.title, url=doc.url, publisher=doc.publisher, date=doc.date,
            ))
        return out


def _is_list_item(doc_text: str, sentence_start: int) -> bool:
    line_start = doc_text.rfind("\n", 0, sentence_start) + 1
    return doc_text[line_start:sentence_start].strip() in ("•", "-", "*", "–")


def _near_duplicate(a: frozenset[str], b: frozenset[str], threshold: float = 0.7) -> bool:
    if not a or not b:
        return False
    return len(a & b) / len(a | b) >= threshold


def compose_text(citations: list[Citation]) -> str:
    """The answer text: each quote followed by its marker, e.g. "Quote one. [1] Quote two. [2]"."""
    return " ".join(f"{' '.join(c.quote.split())} [{c.n}]" for c in citations)
