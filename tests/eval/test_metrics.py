import math

import pytest

from eval.metrics import abstention_scores, ir_scores, latency_summary


def test_ir_scores_against_hand_computed_values():
    qrels = {"q1": {"a": 1}, "q2": {"b": 1}, "q3": {"c": 1}}
    run = {"q1": {"a": 0.9, "x": 0.5}, "q2": {"x": 0.9, "y": 0.8, "b": 0.7}, "q3": {"x": 0.9}}
    s = ir_scores(qrels, run, ("recall@1", "recall@3", "mrr@10", "ndcg@10"))
    assert s["recall@1"] == pytest.approx(1 / 3)
    assert s["recall@3"] == pytest.approx(2 / 3)
    assert s["mrr@10"] == pytest.approx((1 + 1 / 3 + 0) / 3)
    assert s["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4) + 0) / 3)


def test_queries_missing_from_the_run_score_zero():
    s = ir_scores({"q1": {"a": 1}, "q2": {"b": 1}}, {"q1": {"a": 1.0}}, ("recall@1",))
    assert s["recall@1"] == pytest.approx(0.5)


def test_abstention_precision_and_recall():
    s = abstention_scores(abstained=[True, True, False, False], answerable=[False, True, False, True])
    assert s["abstain_precision"] == 0.5 and s["abstain_recall"] == 0.5
    assert s["answer_rate_answerable"] == 0.5


def test_latency_percentiles():
    s = latency_summary([float(x) for x in range(1, 101)])
    assert s["latency_p50_ms"] == pytest.approx(50.5) and s["latency_p95_ms"] == pytest.approx(95.05)
