"""Run the real pipeline over the gold set and score retrieval, citations, quotes, abstention and latency."""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field

from eval.gold import GoldItem, evidence_span, is_relevant
from eval.metrics import IR_METRICS, abstention_scores, ir_scores, latency_summary
from rag.pipeline import Pipeline
from rag.types import Answer

EVIDENCE = "__evidence__"
DEPTH = 10


@dataclass
class QuestionResult:
    """What happened to one gold question."""

    item: GoldItem
    answer: Answer
    ranking: list[str]  # passage ids, depth 10
    relevant_rank: int | None  # 1-based rank of the first passage holding the evidence
    cited_supported: bool
    quote_on_evidence: bool
    quotes_verbatim: bool
    latency_ms: float


@dataclass
class GoldReport:
    metrics: dict[str, float]
    by_kind: dict[str, dict[str, float]]
    results: list[QuestionResult] = field(default_factory=list)


def evaluate_gold(pipeline: Pipeline, items: list[GoldItem], progress=None) -> GoldReport:
    """Ask every gold question through `pipeline` (the same object the app uses) and score the outcome."""
    pipeline.warm_up()
    docs = pipeline.index.documents
    passages = {p.passage_id: p for p in pipeline.index.passages}
    results: list[QuestionResult] = []
    for i, item in enumerate(items):
        t0 = time.perf_counter()
        answer = pipeline.ask(item.question, history=item.history)
        latency = (time.perf_counter() - t0) * 1e3
        hits = pipeline.retrieve(item.question, history=item.history, k=DEPTH)
        ranking = [h.passage.passage_id for h in hits]
        relevant_rank = None
        cited_supported = quote_on_evidence = False
        span = None
        if item.answerable and item.doc_id in docs:
            span = evidence_span(docs[item.doc_id].text, item.evidence)
        if span is not None:
            for rank, pid in enumerate(ranking, 1):
                p = passages[pid]
                if p.doc_id == item.doc_id and is_relevant(p.start, p.end, span):
                    relevant_rank = rank
                    break
            for c in answer.citations:
                p = passages[c.passage_id]
                if p.doc_id == item.doc_id and is_relevant(p.start, p.end, span):
                    cited_supported = True
                if c.doc_id == item.doc_id and min(c.end, span[1]) > max(c.start, span[0]):
                    quote_on_evidence = True
        verbatim = all(
            docs[c.doc_id].text[c.start : c.end] == c.quote and c.quote in passages[c.passage_id].text
            for c in answer.citations
        )
        results.append(QuestionResult(item, answer, ranking, relevant_rank, cited_supported, quote_on_evidence,
                                      verbatim, latency))
        if progress:
            progress(i + 1, len(items))
    return GoldReport(summarize(results), by_kind(results), results)


def _qrels_run(results: list[QuestionResult]):
    qrels, run = {}, {}
    for r in results:
        if not r.item.answerable:
            continue
        qrels[r.item.id] = {EVIDENCE: 1}
        ranked = {}
        for rank, pid in enumerate(r.ranking, 1):
            key = EVIDENCE if rank == r.relevant_rank else pid
            ranked.setdefault(key, 1.0 / rank)
        run[r.item.id] = ranked
    return qrels, run


def summarize(results: list[QuestionResult]) -> dict[str, float]:
    qrels, run = _qrels_run(results)
    metrics = ir_scores(qrels, run, IR_METRICS) if qrels else {}
    answered = [r for r in results if r.item.answerable and not r.answer.abstained]
    citations = [c for r in results for c in r.answer.citations]
    metrics.update({
        "n_questions": len(results),
        "n_answerable": sum(r.item.answerable for r in results),
        "citation_support": sum(r.cited_supported for r in answered) / len(answered) if answered else float("nan"),
        "quote_on_evidence": sum(r.quote_on_evidence for r in answered) / len(answered) if answered else float("nan"),
        "supported_answer_rate": sum(r.cited_supported for r in answered) / max(1, sum(r.item.answerable for r in results)),
        "quote_fidelity": (sum(r.quotes_verbatim * len(r.answer.citations) for r in results) / len(citations))
        if citations else float("nan"),
        **abstention_scores([r.answer.abstained for r in results], [r.item.answerable for r in results]),
        **latency_summary([r.latency_ms for r in results]),
    })
    return metrics


def by_kind(results: list[QuestionResult]) -> dict[str, dict[str, float]]:
    groups: dict[str, list[QuestionResult]] = defaultdict(list)
    for r in results:
        groups[r.item.kind].append(r)
    out = {}
    for kind, rs in sorted(groups.items()):
        if rs[0].item.answerable:
            qrels, run = _qrels_run(rs)
            m = ir_scores(qrels, run, ("recall@1", "recall@5", "mrr@10"))
            answered = [r for r in rs if not r.answer.abstained]
            m["answered"] = len(answered) / len(rs)
            m["citation_support"] = sum(r.cited_supported for r in answered) / len(answered) if answered else float("nan")
        else:
            m = {"abstained": sum(r.answer.abstained for r in rs) / len(rs)}
        m["n"] = len(rs)
        out[kind] = m
    return out


def failures(results: list[QuestionResult], passages: dict) -> list[dict]:
    """Questions that went wrong, with what was expected and what was retrieved, for a person to read."""
    out = []
    for r in results:
        problem = ""
        if r.item.answerable:
            if r.relevant_rank is None or r.relevant_rank > 5:
                problem = "evidence not in top 5" if r.relevant_rank is None else f"evidence at rank {r.relevant_rank}"
            elif r.answer.abstained:
                problem = "abstained although answerable"
            elif not r.cited_supported:
                problem = "cited passage does not hold the evidence"
        elif not r.answer.abstained:
            problem = "answered an unanswerable question"
        if problem:
            out.append({
                "id": r.item.id, "kind": r.item.kind, "problem": problem, "question": r.item.question,
                "history": list(r.item.history), "expected_doc": r.item.doc_id, "expected_evidence": r.item.evidence,
                "answer": r.answer.text, "p_answerable": r.answer.details.get("p_answerable"),
                "retrieved": [
                    {"rank": i + 1, "doc_id": passages[pid].doc_id, "text": passages[pid].text[:160]}
                    for i, pid in enumerate(r.ranking[:5])
                ],
            })
    return out
