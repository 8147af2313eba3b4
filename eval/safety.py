"""`python -m eval.safety`: fit the safety classifier on the training sets and score the triage on any set.

    python -m eval.safety fit                       # train.jsonl + train2.jsonl -> rag/data/safety/classifier.*
    python -m eval.safety report --set heldout      # recall per category, false alarms, cost per message
    python -m eval.safety report --set heldout --lexicon-only

Sets live in `eval/safety/` (one JSON object per line: text, label in urgent | suicide | advice | none, concept).
`train.jsonl` and `train2.jsonl` were written by two helper sessions that saw only the category definitions; the
lexicon was developed against them and the classifier is fitted on them. `dev.jsonl` (a third helper session) chooses
the classifier's thresholds and served to check the lexicon's context rules. `heldout.jsonl` was written by a fourth
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
DEV_SET = "dev"
RECALL_TARGETS = {"urgent": 0.99, "suicide": 0.97, "advice": 0.90}
"""Recall the combined triage (lexicon or classifier) must reach on the development set; among the threshold settings
that reach it, the one with the fewest false alarms is kept ("first no misses, then cut false alarms")."""
GRID = {"urgent": (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6), "suicide": (0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5),
        "advice": (0.3, 0.4, 0.5, 0.6, 0.7), "context": (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)}


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


def choose_thresholds(clf, rows: list[dict], vectors: np.ndarray) -> tuple[dict[str, float], float, dict]:
    """Thresholds (per class, and the context threshold) for the combined triage on the development set: the
    setting with the fewest false alarms among those that reach RECALL_TARGETS (else the best urgent recall)."""
    import itertools

    from rag.safety.lexicon import SafetyLexicon
    from rag.safety.triage import classifier_levels

    lexicon = SafetyLexicon.load()
    lex = [lexicon.run(r["text"], r.get("history", ())) for r in rows]
    probs = [clf.probabilities(r["text"], vectors[i]) for i, r in enumerate(rows)]
    best = None
    for tu, ts, ta, tc in itertools.product(GRID["urgent"], GRID["suicide"], GRID["advice"], GRID["context"]):
        th = {"urgent": tu, "suicide": ts, "advice": ta}
        hits: dict[str, list[bool]] = {"urgent": [], "suicide": [], "advice": []}
        false_alarms = []
        for r, res, p in zip(rows, lex, probs):
            levels = {h.concept.level for h in res.standing} | classifier_levels(res, p, th, tc)
            if r["label"] == "urgent":
                hits["urgent"].append(bool(levels & {"urgent", "suicide"}))
            elif r["label"] in hits:
                hits[r["label"]].append(r["label"] in levels)
            else:
                false_alarms.append(bool(levels))
        recall = {c: float(np.mean(v)) for c, v in hits.items()}
        fa = float(np.mean(false_alarms))
        meets = all(recall[c] >= RECALL_TARGETS[c] for c in RECALL_TARGETS)
        key = (meets, -fa if meets else recall["urgent"], recall["urgent"], recall["suicide"], -fa)
        if best is None or key > best[0]:
            best = (key, th, tc, {"recall": recall, "false_alarm": fa, "meets_targets": meets})
    return best[1], best[2], best[3]


def fit(model: str, C_emb: float = 16.0, C_char: float = 16.0) -> dict:
    """Fit both models on the training sets, choose the thresholds on the development set, save the classifier."""
    rows = [r for name in TRAINING_SETS for r in load_set(name)]
    texts = [r["text"] for r in rows]
    labels = [r["label"] for r in rows]
    started = time.time()
    vectors = encode(texts, model)
    emb, vec, char = _fit_models(texts, vectors, np.asarray(labels), C_emb, C_char)
    dev = load_set(DEV_SET)
    clf = _to_classifier(emb, vec, char, {}, {})
    thresholds, context_threshold, dev_figures = choose_thresholds(clf, dev, encode([r["text"] for r in dev], model))
    provenance = {
        "fitted_on": {name: _sha256(SAFETY_DIR / f"{name}.jsonl") for name in TRAINING_SETS},
        "examples": {c: labels.count(c) for c in CATEGORIES},
        "embedding_model": model,
        "C": {"embedding": C_emb, "char": C_char},
        "thresholds_chosen_on": {DEV_SET: _sha256(SAFETY_DIR / f"{DEV_SET}.jsonl")},
        "threshold_policy": f"fewest false alarms on {DEV_SET} with the lexicon, given recall targets {RECALL_TARGETS}",
        "dev_figures_with_lexicon": dev_figures,
        "commit": git_commit(),
        "fitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
        "not_fitted_on": "eval/safety/heldout.jsonl (the held-out set)",
    }
    clf.thresholds, clf.context_threshold, clf.provenance = thresholds, context_threshold, provenance
    clf.save()
    return {"thresholds": thresholds, "context_threshold": context_threshold, **provenance}


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
