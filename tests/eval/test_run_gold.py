"""The eval runs the very pipeline the app uses, and its scores react to what the pipeline does."""

from eval.gold import load_gold
from eval.run_gold import evaluate_gold, failures


def test_eval_scores_a_slice_of_the_gold_set(pipeline):
    items = [it for it in load_gold(split="tune") if it.kind in ("document", "off-topic")][:12]
    report = evaluate_gold(pipeline, items)
    m = report.metrics
    assert m["n_questions"] == len(items)
    assert 0 <= m["recall@1"] <= m["recall@5"] <= m["recall@10"] <= 1
    assert m["recall@5"] >= 0.8  # questions phrased like the documents are found
    assert m["quote_fidelity"] == 1.0  # every quote is verbatim at its offsets
    assert m["latency_p50_ms"] > 0
    passages = {p.passage_id: p for p in pipeline.index.passages}
    for f in failures(report.results, passages):
        assert f["problem"] and f["question"]


def test_a_wrong_evidence_is_counted_as_a_miss(pipeline):
    item = next(it for it in load_gold(split="tune") if it.kind == "document")
    wrong = item.__class__(**{**item.__dict__, "evidence": "Denna mening finns inte i någon källa alls."})
    report = evaluate_gold(pipeline, [wrong])
    assert report.results[0].relevant_rank is None and report.metrics["recall@10"] == 0.0
