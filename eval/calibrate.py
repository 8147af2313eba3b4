"""`python -m eval.calibrate`: fit the abstention model on the gold set's tuning split and save it for a model."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from embeddings import DEFAULT_MODEL
from eval.provenance import git_commit
from eval.gold import evidence_span, is_relevant, load_gold
from rag.answer.builder import FEATURES
from rag.pipeline import Pipeline, PipelineConfig

ABSTENTION_PATH = Path(__file__).resolve().parents[1] / "rag" / "data" / "abstention.json"
# Answering with a wrong citation is worse than abstaining on a question the sources cover.
WRONG_ANSWER_COST = 2.0


def collect(pipeline: Pipeline, split: str = "tune") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Evidence features per question, labelled 1 when the question is answerable AND its evidence was retrieved
    (answering is right), else 0 (abstaining is right)."""
    docs = pipeline.index.documents
    X, y, ids = [], [], []
    for item in load_gold(split=split):
        query, evidence = pipeline.explain(item.question, item.history)
        label = 0
        if item.answerable and item.doc_id in docs:
            span = evidence_span(docs[item.doc_id].text, item.evidence)
            hits = pipeline.retrieve(item.question, item.history)
            label = int(span is not None and any(
                h.passage.doc_id == item.doc_id and is_relevant(h.passage.start, h.passage.end, span) for h in hits
            ))
        X.append(evidence.features())
        y.append(label)
        ids.append(item.id)
    return np.asarray(X), np.asarray(y), ids


def fit(X: np.ndarray, y: np.ndarray) -> tuple[list[float], float, float]:
    """Logistic regression (balanced classes), then the probability threshold with the lowest cost on the data."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(class_weight="balanced", C=1.0, max_iter=1000).fit(X, y)
    p = model.predict_proba(X)[:, 1]
    best = (float("inf"), 0.5)
    for t in np.linspace(0.05, 0.95, 91):
        answer = p >= t
        cost = WRONG_ANSWER_COST * np.sum(answer & (y == 0)) + np.sum(~answer & (y == 1))
        best = min(best, (cost, -t))  # ties go to the higher (more careful) threshold
    return model.coef_[0].tolist(), float(model.intercept_[0]), float(-best[1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.calibrate", description=__doc__)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--key", help="key in abstention.json (default: the model name, or a local folder's name)")
    args = parser.parse_args(argv)
    pipeline = Pipeline(PipelineConfig(model=args.model)).warm_up(log=lambda m: print(m, file=sys.stderr))
    X, y, _ = collect(pipeline, "tune")
    weights, bias, threshold = fit(X, y)
    table = json.loads(ABSTENTION_PATH.read_text(encoding="utf-8")) if ABSTENTION_PATH.exists() else {}
    # a local model folder is keyed by its name, so the calibration travels with the repo, not with one machine's path
    key = args.key or (Path(args.model).expanduser().name if Path(args.model).expanduser().is_dir() else args.model)
    table[key] = {
        "features": list(FEATURES),
        "weights": [round(w, 5) for w in weights],
        "bias": round(bias, 5),
        "threshold": round(threshold, 3),
        "source": f"eval/gold.jsonl split=tune (n={len(y)}, {int(y.sum())} answer-right), commit {git_commit()}",
        "fitted": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "wrong_answer_cost": WRONG_ANSWER_COST,
    }
    if args.model == DEFAULT_MODEL:
        table["default"] = table[key]
    ABSTENTION_PATH.write_text(json.dumps(table, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(json.dumps(table[key], ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
