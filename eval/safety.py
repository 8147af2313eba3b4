"""`python -m eval.safety`: fit the safety classifier on the training sets and score the triage on any set.

    python -m eval.safety fit                       # train.jsonl + train2.jsonl -> rag/data/safety/classifier.*
    python -m eval.safety report --set heldout      # recall per category, false alarms, cost per message
    python -m eval.safety report --set heldout --lexicon-only

Sets live in `eval/safety/` (one JSON object per line: text, label in urgent | suicide | advice | none, concept).
`train.jsonl` and `train2.jsonl` were written by two helper sessions that saw only the category definitions; the
lexicon was developed against them and the classifier is fitted on them. `heldout.jsonl` was written by a third
helper session that saw only the categories, never the lexicon: nothing is tuned on it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from eval.provenance import git_commit

SAFETY_DIR = Path(__file__).resolve().parent / "safety"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
TRAINING_SETS = ("train", "train2")
CATEGORIES = ("urgent", "suicide", "advice", "none")
RECALL_TARGETS = {"urgent": 0.98, "suicide": 0.98, "advice": 0.90}
"""Classifier-alone recall each threshold is set to reach in cross-validation on the training sets."""


def load_set(name: str) -> list[dict]:
    path = Path(name) if Path(name).suffix == ".jsonl" else SAFETY_DIR / f"{name}.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def correct(label: str, triage) -> bool:
    """Did the triage give what the message needs? urgent: a 112 notice (urgent or suicide level); suicide: the
    suicide notice; advice: the no-advice notice; none: no notice at all."""
    if label == "urgent":
        return triage.level in ("urgent", "suicide")
    if label == "suicide":
        return triage.level == "suicide"
    if label == "advice":
        return triage.advice
    return triage.level == "none" and not triage.advice


def score(rows: list[dict], triages: list) -> dict:
    """Recall per category, false-alarm rate (any notice on a `none` message), per-concept recall, misses."""
    out: dict = {"n": len(rows), "recall": {}, "per_concept": {}}
    for cat in CATEGORIES[:3]:
        items = [(r, t) for r, t in zip(rows, triages) if r["label"] == cat]
        out["recall"][cat] = sum(correct(cat, t) for _, t in items) / len(items) if items else None
    none = [t for r, t in zip(rows, triages) if r["label"] == "none"]
    out["false_alarm"] = sum(not correct("none", t) for t in none) / len(none) if none else None
    out["false_alarm_112"] = sum(t.level in ("urgent", "suicide") for t in none) / len(none) if none else None
    concepts: dict[str, list[int]] = {}
    for r, t in zip(rows, triages):
        c = concepts.setdefault(f"{r['label']}/{r.get('concept', '')}", [0, 0])
        c[0] += correct(r["label"], t)
        c[1] += 1
    out["per_concept"] = {k: f"{a}/{b}" for k, (a, b) in sorted(concepts.items())}
    out["counts"] = {cat: sum(r["label"] == cat for r in rows) for cat in CATEGORIES}
    return out


def encode(texts: list[str], model: str) -> np.ndarray:
    """Query vectors of the messages, as the pipeline computes them for retrieval."""
    from embeddings import load_encoder

    return np.asarray(load_encoder(model).encode_queries(texts), dtype=np.float32)


# --------------------------------------------------------------------------------------------------------- fit


def _fit_models(texts, vectors, labels, C_emb: float, C_char: float):
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    from rag.safety.classifier import char_ngrams

    emb = LogisticRegression(C=C_emb, max_iter=5000, class_weight="balanced").fit(vectors, labels)
    vec = TfidfVectorizer(analyzer=char_ngrams, sublinear_tf=True, min_df=2)
    X = vec.fit_transform(texts)
    char = LogisticRegression(C=C_char, max_iter=5000, class_weight="balanced").fit(X, labels)
    return emb, vec, char


def _to_classifier(emb, vec, char, thresholds, provenance):
    from rag.safety.classifier import SafetyClassifier

    assert list(emb.classes_) == list(char.classes_)
    return SafetyClassifier(
        emb_coef=emb.coef_, emb_intercept=emb.intercept_, vocabulary=dict(vec.vocabulary_), idf=vec.idf_,
        char_coef=char.coef_, char_intercept=char.intercept_, thresholds=thresholds,
        classes=tuple(emb.classes_), provenance=provenance,
    )


def cross_validated_probabilities(texts, vectors, labels, C_emb, C_char, folds=5, seed=0):
    """Out-of-fold class probabilities of the averaged classifier (as shipped: the mean of both models)."""
    from sklearn.model_selection import StratifiedKFold

    labels = np.asarray(labels)
    probs = np.zeros((len(texts), 4))
    classes = None
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(vectors, labels):
        emb, vec, char = _fit_models([texts[i] for i in train], vectors[train], labels[train], C_emb, C_char)
        clf = _to_classifier(emb, vec, char, {}, {})
        classes = clf.classes
        for i in test:
            p = clf.probabilities(texts[i], vectors[i])
            probs[i] = [p[c] for c in classes]
    return probs, classes


def choose_thresholds(probs, classes, labels, targets=RECALL_TARGETS) -> dict[str, float]:
    """Per class, the highest threshold at which the classifier alone reaches its recall target (out of fold)."""
    labels = np.asarray(labels)
    out = {}
    for cls, target in targets.items():
        p = probs[labels == cls, list(classes).index(cls)]
        # the (1 - target) quantile of the positives' probabilities: that share of positives falls below it
        out[cls] = float(np.quantile(p, 1 - target)) if p.size else 1.0
    return out


def fit(model: str, C_emb: float = 16.0, C_char: float = 16.0) -> dict:
    rows = [r for name in TRAINING_SETS for r in load_set(name)]
    texts = [r["text"] for r in rows]
    labels = [r["label"] for r in rows]
    started = time.time()
    vectors = encode(texts, model)
    probs, classes = cross_validated_probabilities(texts, vectors, labels, C_emb, C_char)
    thresholds = choose_thresholds(probs, classes, labels)
    labels_arr = np.asarray(labels)
    cv = {}
    for cls in ("urgent", "suicide", "advice"):
        j = list(classes).index(cls)
        cv[cls] = float(np.mean(probs[labels_arr == cls, j] >= thresholds[cls]))
    none = probs[labels_arr == "none"]
    cv["false_alarm"] = float(np.mean([any(p[list(classes).index(c)] >= thresholds[c] for c in thresholds)
                                       for p in none]))
    emb, vec, char = _fit_models(texts, vectors, np.asarray(labels), C_emb, C_char)
    provenance = {
        "fitted_on": {name: _sha256(SAFETY_DIR / f"{name}.jsonl") for name in TRAINING_SETS},
        "examples": {c: labels.count(c) for c in CATEGORIES},
        "embedding_model": model,
        "C": {"embedding": C_emb, "char": C_char},
        "thresholds_from": f"5-fold cross-validation on the training sets: classifier-alone recall targets {RECALL_TARGETS}",
        "cross_validated_classifier_alone": cv,
        "commit": git_commit(),
        "fitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
        "not_fitted_on": "eval/safety/heldout.jsonl (the held-out set)",
    }
    clf = _to_classifier(emb, vec, char, thresholds, provenance)
    clf.save()
    return provenance


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


# ------------------------------------------------------------------------------------------------------ report


def report(set_name: str, model: str, lexicon_only: bool = False, save: bool = True) -> dict:
    from rag.safety.triage import Triager

    rows = load_set(set_name)
    triager = Triager(use_classifier=not lexicon_only)
    vectors = None if lexicon_only else encode([r["text"] for r in rows], model)
    triager.run("värmer upp", (), None if vectors is None else vectors[0])  # loads the lexicon and word lists
    started = time.perf_counter()
    triages = [triager.run(r["text"], r.get("history", ()), None if vectors is None else vectors[i])
               for i, r in enumerate(rows)]
    per_message_ms = (time.perf_counter() - started) / max(1, len(rows)) * 1e3
    result = score(rows, triages)
    result.update({
        "set": set_name, "lexicon_only": lexicon_only, "model": model, "commit": git_commit(),
        "triage_ms_per_message": round(per_message_ms, 3),
        "note": "cost excludes the query embedding, which the pipeline computes for retrieval anyway",
        "misses": [{"text": r["text"], "label": r["label"], "concept": r.get("concept"), "level": t.level,
                    "concepts": list(t.concepts)} for r, t in zip(rows, triages) if not correct(r["label"], t)],
    })
    if save:
        RESULTS_DIR.mkdir(exist_ok=True)
        suffix = "-lexicon" if lexicon_only else ""
        (RESULTS_DIR / f"safety-{Path(set_name).stem}{suffix}.json").write_text(
            json.dumps(result, ensure_ascii=False, indent=1), encoding="utf-8")
    return result


def main(argv=None) -> int:
    from embeddings import DEFAULT_MODEL

    parser = argparse.ArgumentParser(prog="python -m eval.safety", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="fit the classifier on the training sets")
    f.add_argument("--model", default=DEFAULT_MODEL)
    r = sub.add_parser("report", help="score the triage on a set")
    r.add_argument("--set", default="heldout", help="a set name in eval/safety/ or a .jsonl path")
    r.add_argument("--model", default=DEFAULT_MODEL)
    r.add_argument("--lexicon-only", action="store_true")
    r.add_argument("--show-misses", action="store_true", help="print the missed messages (never for heldout)")
    args = parser.parse_args(argv)
    if args.command == "fit":
        print(json.dumps(fit(args.model), ensure_ascii=False, indent=1))
        return 0
    result = report(args.set, args.model, args.lexicon_only)
    shown = {k: v for k, v in result.items() if k not in ("misses", "per_concept")}
    print(json.dumps(shown, ensure_ascii=False, indent=1))
    print("per concept:", json.dumps(result["per_concept"], ensure_ascii=False))
    if args.show_misses and "heldout" not in args.set:
        for m in result["misses"]:
            print(m)
    return 0


if __name__ == "__main__":
    sys.exit(main())
