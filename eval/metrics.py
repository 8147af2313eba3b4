"""Metrics: IR scores with ranx, plus citation support, quote fidelity, abstention and latency summaries."""

from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

IR_METRICS = ("recall@1", "recall@3", "recall@5", "recall@10", "mrr@10", "ndcg@10")


def ir_scores(
    qrels: Mapping[str, Mapping[str, int]], run: Mapping[str, Mapping[str, float]], metrics: Iterable[str] = IR_METRICS
) -> dict[str, float]:
    """Mean IR metrics over queries with ranx (queries absent from `run` score 0).

    Parameters
    ----------
    qrels : mapping
        Query id -> {relevant doc/passage id: grade}.
    run : mapping
        Query id -> {retrieved id: score}; ranx ranks by score.
    """
    from ranx import Qrels, Run, evaluate

    qrels = {q: dict(d) for q, d in qrels.items() if d}
    if not qrels:
        return {m: float("nan") for m in metrics}
    run = {q: dict(run.get(q) or {"__none__": 0.0}) for q in qrels}
    scores = evaluate(Qrels(qrels), Run(run), list(metrics), make_comparable=True)
    if isinstance(scores, float):
        scores = {list(metrics)[0]: scores}
    return {m: float(v) for m, v in scores.items()}


def per_query_scores(qrels, run, metric: str) -> dict[str, float]:
    """One metric per query (for failure reports)."""
    from ranx import Qrels, Run, evaluate

    qrels = {q: dict(d) for q, d in qrels.items() if d}
    run = {q: dict(run.get(q) or {"__none__": 0.0}) for q in qrels}
    r = Run(run)
    evaluate(Qrels(qrels), r, [metric], make_comparable=True)
    return {q: float(v) for q, v in r.scores[metric].items()}


def abstention_scores(abstained: list[bool], answerable: list[bool]) -> dict[str, float]:
    """Precision and recall of abstaining, where abstaining on an unanswerable question is a true positive."""
    tp = sum(a and not ans for a, ans in zip(abstained, answerable))
    fp = sum(a and ans for a, ans in zip(abstained, answerable))
    fn = sum((not a) and (not ans) for a, ans in zip(abstained, answerable))
    precision = tp / (tp + fp) if tp + fp else float("nan")
    recall = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
    answered_answerable = sum((not a) and ans for a, ans in zip(abstained, answerable))
    return {
        "abstain_precision": precision,
        "abstain_recall": recall,
        "abstain_f1": f1,
        "answer_rate_answerable": answered_answerable / max(1, sum(answerable)),
    }


def latency_summary(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"latency_p50_ms": float("nan"), "latency_p95_ms": float("nan")}
    arr = np.asarray(ms)
    return {"latency_p50_ms": float(np.percentile(arr, 50)), "latency_p95_ms": float(np.percentile(arr, 95)),
            "latency_mean_ms": float(arr.mean())}
