"""`python -m eval.fit_answer`: fit the sentence ranker and the answerability model on data that is not ours.

Supervision (never the gold report split, the independent question sets or the unseen collections):
- SweQUAD-MC *train* over the SweQUAD-MC passages: the sentence holding the gold answer is the positive, the other
  sentences of the retrieved passages are negatives;
- SweFAQ *dev* over the SweFAQ answers: the sentences of the gold answer are positives;
- the gold set's *tune* split over the shipped corpus;
- counterfactual "not covered" questions: every answerable question above asked again with its own document taken
  out of the results (same domain, same wording, no answer), and off-domain questions (SweQUAD-MC questions asked of
  the cancer corpus, cancer questions asked of the SweQUAD-MC passages).

The models are standardized logistic regressions (`rag.answer.model`); the answerability threshold is the one that
balances answered-when-answerable against refused-when-not on the everyday-style training questions, in 5-fold
cross-validation. Output:
`rag/data/answer_model.json` with the data, commit, date and cross-validated figures.

    python -m eval.fit_answer                       # fit and save
    python -m eval.fit_answer --without-gold regeringen --out /tmp/m.json   # leave-one-collection-out variants
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from embeddings import DEFAULT_MODEL
from eval.benchmarks import _read_jsonl, benchmark_dir, benchmark_pipeline, file_key, read_qrels
from eval.gold import evidence_span, load_gold
from eval.provenance import git_commit
from rag.answer.model import ANSWER_FEATURES, DATA_PATH, SENTENCE_FEATURES, AnswerModel, LogisticModel
from rag.pipeline import Pipeline, PipelineConfig
from rag.search.retrieve import Retrieval
from rag.text import normalize_query


LAY_SOURCES = ("swequad-lay", "shipped-lay", "gold-tune")
"""Training sources of everyday-style questions: the answerability threshold is balanced on these."""


@dataclass
class Example:
    """One training question run through retrieval: its query, retrieval, and where the answer is."""

    source: str
    question: str
    history: tuple
    pipeline: Pipeline
    doc_id: str | None  # the gold document (None: nothing answers it here)
    span: tuple[int, int] | None  # the gold evidence in that document's text (None: any sentence of it)
    counterfactual: bool = False
    query: object = None
    retrieval: Retrieval | None = None


def _without_document(pipeline: Pipeline, query, doc_id: str, k: int) -> Retrieval:
    """Retrieval as if `doc_id` were not in the index: ranked deeper, the document's passages dropped, re-ranked."""
    full = pipeline.retriever.run(query, k=k + 25)
    keep = [(h, r) for h, r in zip(full.hits, full.rows) if h.passage.doc_id != doc_id][:k]
    hits = [replace(h, rank=i) for i, (h, _) in enumerate(keep, 1)]
    drop = {r for h, r in zip(full.hits, full.rows) if h.passage.doc_id == doc_id}
    return Retrieval(hits, full.query_vector, {r: s for r, s in full.dense.items() if r not in drop},
                     {r: s for r, s in full.lexical.items() if r not in drop}, [r for _, r in keep])


def prepare(examples: list[Example], k: int) -> None:
    for ex in examples:
        ex.query = ex.pipeline.processor.run(normalize_query(ex.question), ex.history)
        if ex.counterfactual:
            ex.retrieval = _without_document(ex.pipeline, ex.query, ex.doc_id, k)
        else:
            ex.retrieval = ex.pipeline.retriever.run(ex.query, k=k)


def sentence_label(ex: Example, row: int) -> int:
    if ex.counterfactual or ex.doc_id is None:
        return 0
    s = ex.pipeline.index.sentences[row]
    if s.doc_id != ex.doc_id:
        return 0
    if ex.span is None:
        return 1
    return int(min(s.end, ex.span[1]) > max(s.start, ex.span[0]))


def sentence_rows(examples: list[Example]):
    X, y, groups = [], [], []
    for gi, ex in enumerate(examples):
        if ex.counterfactual or ex.doc_id is None:
            continue
        cands = ex.pipeline.builder.candidates(ex.query, ex.retrieval)
        labels = [sentence_label(ex, c.row) for c in cands]
        if not any(labels):
            continue  # the answer was not retrieved: nothing to learn about ranking
        for c, lab in zip(cands, labels):
            X.append([c.features[f] for f in SENTENCE_FEATURES])
            y.append(lab)
            groups.append(gi)
    return np.asarray(X), np.asarray(y), np.asarray(groups)


def answer_rows(examples: list[Example]):
    X, y, groups = [], [], []
    for gi, ex in enumerate(examples):
        b = ex.pipeline.builder
        cands = b.candidates(ex.query, ex.retrieval)
        ev = b.evidence(ex.query, ex.retrieval, cands)
        available = any(sentence_label(ex, c.row) for c in cands)
        X.append(ev.features())
        y.append(int(available))
        groups.append(ex.source)
    return np.asarray(X), np.asarray(y), groups


def fit_logistic(X, y, features, C: float = 1.0, balanced: bool = True) -> LogisticModel:
    from sklearn.linear_model import LogisticRegression

    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-9] = 1.0
    Z = (X - mean) / scale
    clf = LogisticRegression(C=C, max_iter=5000, class_weight="balanced" if balanced else None).fit(Z, y)
    return LogisticModel(tuple(features), tuple(map(float, mean)), tuple(map(float, scale)),
                         tuple(map(float, clf.coef_[0])), float(clf.intercept_[0]))


def cross_validated(X, y, features, folds: int = 5, seed: int = 0, **kw) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    p = np.zeros(len(y))
    for tr, te in StratifiedKFold(folds, shuffle=True, random_state=seed).split(X, y):
        m = fit_logistic(X[tr], y[tr], features, **kw)
        p[te] = [m.probability(list(x)) for x in X[te]]
    return p


def balanced_threshold(p: np.ndarray, y: np.ndarray) -> tuple[float, dict]:
    best = None
    for t in np.linspace(0.05, 0.95, 181):
        tpr = float(np.mean(p[y == 1] >= t))
        tnr = float(np.mean(p[y == 0] < t))
        key = min(tpr, tnr)
        if best is None or key > best[0]:
            best = (key, float(t), {"answered_when_answer_retrieved": tpr, "refused_when_not": tnr})
    return best[1], best[2]


def top1_accuracy(examples_X, y, groups, model: LogisticModel) -> float:
    """Share of questions (with the answer among the candidates) whose top-ranked sentence holds it."""
    scores = np.array([model.probability(list(x)) for x in examples_X])
    good = total = 0
    for g in np.unique(groups):
        idx = np.where(groups == g)[0]
        total += 1
        good += y[idx[np.argmax(scores[idx])]] == 1
    return good / total if total else float("nan")


def build_examples(base: Pipeline, without_gold: str = "", off_domain: int = 150, seed: int = 13) -> list[Example]:
    rng = random.Random(seed)
    examples: list[Example] = []
    # SweQUAD-MC train
    bdir = benchmark_dir("swequad-mc")
    sq = benchmark_pipeline("swequad-mc", base).warm_up(log=lambda m: print(m, file=sys.stderr))
    qrels = read_qrels(bdir / "qrels.tsv")
    train = [q for q in _read_jsonl(bdir / "queries.jsonl") if q.get("split") == "train"]
    for q in train:
        doc = next(iter(qrels.get(q["_id"], {})), None)
        if doc is None:
            continue
        doc_id = file_key(doc)
        text = sq.index.documents[doc_id].text if doc_id in sq.index.documents else ""
        span = evidence_span(text, q.get("answer") or "") if q.get("answer") else None
        if span is None:
            continue
        examples.append(Example("swequad-train", q["text"], (), sq, doc_id, span))
    # SweFAQ dev
    fdir = benchmark_dir("swefaq")
    fq = benchmark_pipeline("swefaq", base).warm_up(log=lambda m: print(m, file=sys.stderr))
    fqrels = read_qrels(fdir / "qrels.tsv")
    for q in _read_jsonl(fdir / "queries.jsonl"):
        if q.get("split") != "dev":
            continue
        doc = next(iter(fqrels.get(q["_id"], {})), None)
        if doc is not None and file_key(doc) in fq.index.documents:
            examples.append(Example("swefaq-dev", q["text"], (), fq, file_key(doc), None))
    # everyday questions written for training by helper sessions (never reported on): over SweQUAD-MC train
    # passages and over the shipped corpus
    train_sets = Path(__file__).resolve().parent / "train_sets"
    for name, pipe, key in (("swequad-lay", sq, file_key), ("shipped-lay", base, lambda d: d)):
        path = train_sets / f"{name.replace('-', '_')}.jsonl"
        if not path.exists():
            continue
        for row in _read_jsonl(path):
            if without_gold and name == "shipped-lay" and row.get("doc_id", "").split("/")[0] == without_gold:
                continue  # leave-one-collection-out: nothing about the left-out collection
            if row.get("answerable"):
                doc_id = key(row["doc_id"])
                doc = pipe.index.documents.get(doc_id)
                span = evidence_span(doc.text, row["evidence"]) if doc else None
                if span is not None:
                    examples.append(Example(name, row["question"], (), pipe, doc_id, span))
            else:
                examples.append(Example(name + "-unanswerable", row["question"], (), pipe, None, None))
    # the gold set's tune split
    for item in load_gold(split="tune"):
        collection = (item.doc_id or "").split("/")[0]
        if without_gold and collection == without_gold:
            continue
        if item.answerable:
            span = evidence_span(base.index.documents[item.doc_id].text, item.evidence)
            examples.append(Example("gold-tune", item.question, item.history, base, item.doc_id, span))
        else:
            examples.append(Example("gold-tune-unanswerable", item.question, item.history, base, None, None))
    # counterfactual: each answerable question without its own document
    answerable = [ex for ex in examples if ex.doc_id is not None]
    examples += [replace(ex, source=ex.source + "-counterfactual", counterfactual=True) for ex in answerable]
    # off-domain
    for q in rng.sample(train, min(off_domain, len(train))):
        examples.append(Example("off-domain-swequad-on-cancer", q["text"], (), base, None, None))
    for item in load_gold(split="tune"):
        if item.answerable:
            examples.append(Example("off-domain-cancer-on-swequad", item.question, (), sq, None, None))
    return examples


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.fit_answer", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--without-gold", default="", choices=("", "seeds", "regeringen"),
                        help="leave the questions about one collection of the shipped corpus out (the gold tune split "
                             "and the shipped-corpus training set): leave-one-collection-out")
    parser.add_argument("--out", type=Path, default=DATA_PATH)
    parser.add_argument("--dump", type=Path, default=None, help="also save the feature rows (npz) for analysis")
    args = parser.parse_args(argv)
    started = time.time()
    base = Pipeline(PipelineConfig(model=args.model)).warm_up(log=lambda m: print(m, file=sys.stderr))
    examples = build_examples(base, args.without_gold)
    k = base.config.k
    prepare(examples, k)
    counts = {}
    for ex in examples:
        counts[ex.source] = counts.get(ex.source, 0) + 1
    print("examples:", json.dumps(counts), file=sys.stderr)

    # 1. the sentence ranker (features do not depend on the model, so one pass)
    Xs, ys, gs = sentence_rows(examples)
    sentence = fit_logistic(Xs, ys, SENTENCE_FEATURES, C=1.0)
    # cross-validated top-1 accuracy, grouped by question
    from sklearn.model_selection import GroupKFold

    top1 = []
    for tr, te in GroupKFold(5).split(Xs, ys, gs):
        m = fit_logistic(Xs[tr], ys[tr], SENTENCE_FEATURES, C=1.0)
        top1.append(top1_accuracy(Xs[te], ys[te], gs[te], m))
    before = AnswerModel.load(args.out) if Path(args.out).exists() else None
    # 2. the answerability model, on the ranker's scores
    model = AnswerModel(sentence, before.answerable if before else sentence, provenance={})
    for p in {id(ex.pipeline): ex.pipeline for ex in examples}.values():
        p.builder.model = model
    Xa, ya, ga = answer_rows(examples)
    if args.dump:
        np.savez(args.dump, Xs=Xs, ys=ys, gs=gs, Xa=Xa, ya=ya, ga=np.asarray(ga))
    p_cv = cross_validated(Xa, ya, ANSWER_FEATURES, C=1.0)
    # The threshold balances answered-when-answerable against refused-when-not on the everyday-style questions
    # (the helper-written lay sets and the gold tune split): they are who the product serves, and document-phrased
    # SweQUAD-MC questions would otherwise set it (they are easier to recognise as answerable).
    lay = np.array([g.startswith(LAY_SOURCES) for g in ga])
    threshold, cv = balanced_threshold(p_cv[lay], ya[lay])
    cv["all_sources_at_threshold"] = {"answered_when_answer_retrieved": float(np.mean(p_cv[ya == 1] >= threshold)),
                                      "refused_when_not": float(np.mean(p_cv[ya == 0] < threshold))}
    answerable = replace(fit_logistic(Xa, ya, ANSWER_FEATURES, C=1.0), threshold=threshold)
    by_source = {}
    for src in sorted(set(ga)):
        idx = [i for i, g in enumerate(ga) if g == src]
        by_source[src] = {"n": len(idx), "answer_available": float(np.mean(ya[idx])),
                          "answered_cv": float(np.mean(p_cv[idx] >= threshold))}
    provenance = {
        "fitted_on": counts,
        "sentence_rows": int(len(ys)), "sentence_positives": int(ys.sum()),
        "sentence_top1_cv": float(np.mean(top1)),
        "answerable_rows": int(len(ya)), "answerable_positives": int(ya.sum()),
        "answerable_cv_at_threshold": cv, "answerable_cv_by_source": by_source,
        "without_gold": args.without_gold or None,
        "embedding_model": args.model,
        "commit": git_commit(), "fitted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
        "never_fitted_on": "gold report split, eval/sets/*, eval/collections/*, SweQUAD-MC dev/test, SweFAQ test",
    }
    final = AnswerModel(sentence, answerable, model.extra_sentence_margin, provenance)
    final.save(args.out)
    print(json.dumps(provenance, ensure_ascii=False, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
