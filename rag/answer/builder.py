"""Extractive answers: pick the best-supported source sentences, cite each verbatim, or abstain."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from rag.answer.model import ANSWER_FEATURES, AnswerModel
from rag.answer.qtypes import counted_word, question_type, sentence_kinds, type_match
from rag.search.index import CorpusIndex
from rag.search.query import Query, QueryTerm
from rag.search.retrieve import Retrieval
from rag.types import Citation


NUMBER_TYPES = ("count", "money")
"""Question types answered only by a sentence holding the number asked for: quoting a list of kronor to "hur många
kontaktsjuksköterskor" reads as an answer and is none; the learned model weighs this as one feature among many and
was seen to answer such questions (tests/rag/answer/test_builder.py), so it is a rule on top of it: such a question
is refused when none of the NUMBER_DEPTH best sentences gives a number of the kind asked for (or "gratis")."""
NUMBER_DEPTH = 5


@dataclass(frozen=True)
class SentenceCandidate:
    """A sentence from a retrieved passage with the signals used to rank it and its score."""

    row: int  # index into CorpusIndex.sentences
    passage_rank: int
    passage_row: int
    dense: float
    coverage: float
    score: float  # the ranker's probability that this sentence answers the question
    features: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Evidence:
    """What the answer decision is made from (also shown in the staff audit view): ANSWER_FEATURES by name."""

    values: dict = field(default_factory=dict)
    n_terms: int = 0
    qtype: str = "other"
    number_found: bool = True  # for NUMBER_TYPES: a top sentence gives the kind of number asked for

    def features(self) -> list[float]:
        return [self.values.get(f, 0.0) for f in ANSWER_FEATURES]


class AnswerBuilder:
    """Compose an answer from verbatim source sentences with [n] citations, or decide to abstain.

    Parameters
    ----------
    index : CorpusIndex
    model : AnswerModel, optional
        The sentence ranker and answerability model (default: the shipped `rag/data/answer_model.json`).
    max_sentences : int
        At most this many quoted sentences in one answer.
    max_chars : int
        Soft length budget of the quoted text.
    min_words : int
        Shorter sentences (fragments, headings) are never quoted.
    """

    def __init__(
        self,
        index: CorpusIndex,
        model: AnswerModel | None = None,
        max_sentences: int = 3,
        max_chars: int = 700,
        min_words: int = 4,
        parts_credit: float = 0.8,
        alternative_credit: float = 0.9,
    ) -> None:
        self.index = index
        self.model = model or AnswerModel.load()
        self.max_sentences = max_sentences
        self.max_chars = max_chars
        self.min_words = min_words
        self.parts_credit = parts_credit
        self.alternative_credit = alternative_credit
        self._term_weights: dict[tuple[str, ...], float] = {}  # idf of a term's rarest form, by its forms

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
        tokens = tuple(term.all_tokens())
        weight = self._term_weights.get(tokens)
        if weight is None:
            known = [self._idf[t] for t in tokens if t in self._idf]
            weight = max(known) if known else self._max_idf
            if len(self._term_weights) > 100_000:
                self._term_weights.clear()
            self._term_weights[tokens] = weight
        return weight

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
        """Every quotable sentence of the retrieved passages, with its features and the ranker's probability that
        it answers the question, best first; one entry per sentence."""
        rows: list[tuple[int, int, int, float]] = []  # (sentence row, passage rank, passage row, passage score)
        seen: set[int] = set()
        for hit, prow in zip(retrieval.hits, retrieval.rows):
            for srow in self.index.passage_sentences[prow]:
                sentence = self.index.sentences[srow]
                if srow in seen or sentence.is_heading or len(sentence.text.split()) < self.min_words:
                    continue
                seen.add(srow)
                rows.append((srow, hit.rank, prow, hit.score))
        if not rows:
            return []
        qv = retrieval.query_vector
        own = list(query.terms)
        qtype = question_type(query.question)
        counted = counted_word(query.question)
        matches = [[self._matches(t, self._sentence_tokens[s] | self._passage_context_tokens[p]) for t in own]
                   for s, _, p, _ in rows]
        n = len(rows)
        local_idf = [t.weight * math.log(1 + n / df) if df else 0.0
                     for t, df in zip(own, (sum(m[j] > 0 for m in matches) for j in range(len(own))))]
        local_total = sum(local_idf) or 1.0
        dense = [float(self.index.sentence_vectors[srow] @ qv) for srow, _, _, _ in rows]
        best_dense = max(dense)
        top_score = retrieval.hits[0].score if retrieval.hits and retrieval.hits[0].score > 0 else 1.0
        passage_dense: dict[int, float] = {}
        passage_cov: dict[int, float] = {}
        targets = {t.tokens[0] for t in own if t.word.startswith("=")}
        out: list[SentenceCandidate] = []
        for (srow, rank, prow, pscore), m, d in zip(rows, matches, dense):
            sentence = self.index.sentences[srow]
            text = sentence.text
            tokens = self._sentence_tokens[srow]
            if prow not in passage_dense:
                passage_dense[prow] = float(self.index.passage_vectors[prow] @ qv)
                passage_cov[prow] = self.coverage(query.terms, self._passage_tokens(prow))
            cov = self.coverage(query.terms, tokens | self._passage_context_tokens[prow])
            plain = [w for w in own if not w.word.startswith("=")]
            cov_plain = (sum(self._matches(t, tokens) > 0 for t in plain) / len(plain)) if plain else 0.0
            kinds = sentence_kinds(text)
            tm = type_match(qtype, kinds, text, counted)
            prows = self.index.passage_sentences[prow]
            position = prows.index(srow) / max(1, len(prows) - 1) if srow in prows else 0.0
            f = {
                "dense": d, "dense_gap": d - best_dense, "passage_dense": passage_dense[prow], "inv_rank": 1.0 / rank,
                "fused_rel": pscore / top_score, "coverage": cov, "coverage_plain": cov_plain,
                "passage_coverage": passage_cov[prow],
                "local": sum(w * x for w, x in zip(local_idf, m)) / local_total,
                "both_retrievers": float(prow in retrieval.dense and prow in retrieval.lexical),
                "len_log": min(1.5, math.log(1 + len(text)) / math.log(300)), "first": float(position == 0.0),
                "position": position, "fragment": float(text[:1].islower()),
                "question_mark": float(text.rstrip().endswith("?")), "type_match": tm,
                "has_number": float(kinds.number), "list_intro": float(text.rstrip().endswith(":")),
                "defines_target": float(bool(targets & tokens)),
            }
            f["dense_x_coverage"] = d * cov
            f["type_x_number"] = tm * f["has_number"]
            score = self.model.sentence.probability(f)
            out.append(SentenceCandidate(srow, rank, prow, d, cov, score, f))
        out.sort(key=lambda c: (-c.score, c.row))
        return out

    def _passage_tokens(self, prow: int) -> frozenset[str]:
        return frozenset(
            tok for s in self.index.passage_sentences[prow] for tok in self._sentence_tokens[s]
        ) | self._passage_context_tokens[prow]

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
        """The question-level features the answer decision reads (ANSWER_FEATURES)."""
        own = list(query.terms)
        qtype = question_type(query.question)
        if not ranked or not retrieval.hits:
            return Evidence({f: 0.0 for f in ANSWER_FEATURES}, n_terms=len(own), qtype=qtype)
        best = ranked[0]
        top_row = retrieval.rows[0]
        total = sum(self.term_weight(t) * t.weight for t in own)
        known = sum(self.term_weight(t) * t.weight for t in own if self.known(t))
        values = {
            "top_score": best.score,
            "margin": best.score - (ranked[1].score if len(ranked) > 1 else 0.0),
            "best_dense": max(c.dense for c in ranked[:3]),
            "passage_dense": float(self.index.passage_vectors[top_row] @ retrieval.query_vector),
            "best_coverage": best.coverage,
            "passage_coverage": self.coverage(query.terms, self._passage_tokens(top_row)),
            "known_terms": known / total if total else 0.0,
            "type_match_top": best.features.get("type_match", 0.5),
            "n_terms_log": math.log(1 + len(own)),
            "both_retrievers_top": float(top_row in retrieval.dense and top_row in retrieval.lexical),
            "mean_top3": float(np.mean([c.score for c in ranked[:3]])),
            "coverage_plain_top": best.features.get("coverage_plain", 0.0),
        }
        number_found = any(c.features.get("type_match", 0.5) >= 1.0 for c in ranked[:NUMBER_DEPTH])
        return Evidence(values, n_terms=len(own), qtype=qtype, number_found=number_found)

    def p_answerable(self, evidence: Evidence) -> float:
        return self.model.answerable.probability(evidence.values) if evidence.n_terms else 0.0

    def answerable(self, evidence: Evidence) -> bool:
        """Whether the sources answer the question: the answerability model's probability against its threshold;
        a question that asks for a number ("hur många X", "vad kostar") only when the best sentence gives one."""
        if evidence.qtype in NUMBER_TYPES and not evidence.number_found:
            return False
        return evidence.n_terms > 0 and self.p_answerable(evidence) >= self.model.answerable.threshold

    def select(self, ranked: list[SentenceCandidate]) -> list[SentenceCandidate]:
        """The best sentence, plus up to `max_sentences - 1` more whose probability is close to it, that are not
        near-duplicates and fit the length budget; returned in reading order (passage rank, position)."""
        if not ranked:
            return []
        chosen = [ranked[0]]
        budget = len(self.index.sentences[ranked[0].row].text)
        floor = max(0.5, ranked[0].score - self.model.extra_sentence_margin)
        for cand in ranked[1:]:
            if len(chosen) >= self.max_sentences or cand.score < floor:
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
            page = doc.page_of(first.start)
            url = f"{doc.url}#page={page}" if page and doc.url and "#" not in doc.url else doc.url
            out.append(Citation(
                n=n, passage_id=passage.passage_id, doc_id=doc.doc_id, quote=doc.text[first.start : last.end],
                start=first.start, end=last.end, score=max(c.score for c in group),
                title=doc.title, url=url, publisher=doc.publisher, date=doc.date, page=page,
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
