"""Evaluate the cross-encoder rerankers against the project's first stage, on held-out data only.

    nice -n 10 python scripts/rerank/evaluate.py score --model ce-e5s-sent --epoch 1 --split dev
    nice -n 10 python scripts/rerank/evaluate.py report          # picks epoch / N / alpha on SweQUAD-MC dev,
                                                                 # then reports SweQUAD-MC test and SweFAQ test

Selection uses SweQUAD-MC *dev* only. SweQUAD-MC test and SweFAQ test are scored but never looked at for a choice.

Units, as eval/benchmarks.py: a benchmark's unit of relevance is the document; a ranked list of chunks becomes a list
of documents by first appearance (doc_ranking). Reranking reorders the first stage's top N chunks; chunks N+1..50
keep their order behind them.
- sentence model ("sent"): a chunk's score is its best sentence's score (MaxP over its quotable sentences, title line
  first); SweFAQ answers are scored whole (title + text), as in training.
- chunk model ("chunk"): (question, title + chunk text) scored directly.
Combined score: alpha * minmax(reranker) + (1 - alpha) * minmax(first-stage fused score) over the N candidates;
alpha = 1 is the reranker alone, alpha = 0 the first stage.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (MAX_LEN_CHUNK, MAX_LEN_SENTENCE, MODELS, ROOT, TorchScorer, holds_answer, mined,  # noqa: E402
                    qrels_file_keyed, sentence_input, top_sentences)

from eval.metrics import ir_scores  # noqa: E402

SCORES = ROOT / "scores"
RESULTS = ROOT / "results"
SENT_POOL = 10  # the sentence model scores every quotable sentence of the top 10 chunks
CHUNK_POOL = 20
MAX_LEN_FAQ = {"sent": 192, "chunk": MAX_LEN_CHUNK}
ALPHAS = [round(a, 2) for a in np.arange(0, 1.01, 0.1)]


def kind_of(model: str) -> str:
    return "chunk" if "chunk" in model else "sent"


def score_file(model: str, epoch: int, bench: str, split: str) -> Path:
    return SCORES / f"{model}-e{epoch}-{bench}-{split}.json"


def score(model: str, epoch: int, split: str, scorer=None, benches=("swequad-mc", "swefaq")) -> None:
    """Reranker scores for every candidate of the split's questions, cached as JSON."""
    from embeddings.e5_convert import ensure_e5_st_model

    kind = kind_of(model)
    SCORES.mkdir(parents=True, exist_ok=True)
    ckpt = MODELS / model / f"epoch-{epoch}.pt"
    for bench in benches:
        if bench == "swefaq" and split != "test":
            continue  # SweFAQ dev is training data
        out = score_file(model, epoch, bench, split)
        if out.exists():
            continue
        scorer = scorer or TorchScorer(ensure_e5_st_model(), ckpt, threads=1)  # 1 thread: cores are shared
        rows = [r for r in mined(bench) if r["split"] == split]
        t0 = time.perf_counter()
        qs, texts, keys, lens = [], [], [], []
        for r in rows:
            if bench == "swequad-mc" and kind == "sent":
                for _, h, s in top_sentences(r["hits"], SENT_POOL):
                    qs.append(r["clean"]); texts.append(sentence_input(h["title"], s["text"]))
                    keys.append((r["qid"], f"s{s['row']}")); lens.append(MAX_LEN_SENTENCE)
            else:
                for i, h in enumerate(r["hits"][:CHUNK_POOL]):
                    qs.append(r["clean"]); texts.append(h["embed_text"])
                    keys.append((r["qid"], f"h{i}"))
                    lens.append(MAX_LEN_CHUNK if bench == "swequad-mc" else MAX_LEN_FAQ[kind])
        values = np.zeros(len(texts), dtype=np.float32)
        for max_len in sorted(set(lens)):
            idx = [i for i, m in enumerate(lens) if m == max_len]
            values[idx] = scorer.score([qs[i] for i in idx], [texts[i] for i in idx], max_len)
        result: dict[str, dict[str, float]] = {}
        for (qid, key), v in zip(keys, values):
            result.setdefault(qid, {})[key] = float(v)
        out.write_text(json.dumps(result), encoding="utf-8")
        print(f"scored {model} e{epoch} {bench}/{split}: {len(texts)} pairs in {time.perf_counter() - t0:.0f} s", flush=True)


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------


def minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def doc_run(hits: list[dict], order: list[int], depth: int = 10) -> dict[str, float]:
    ranked: dict[str, float] = {}
    for i in order:
        d = hits[i]["doc_id"]
        if d not in ranked and len(ranked) < depth:
            ranked[d] = 1.0 / (len(ranked) + 1)
    return ranked


def chunk_scores(r: dict, sc: dict[str, float], kind: str, bench: str, n: int) -> np.ndarray:
    """Reranker score of each of the first n chunks."""
    hits = r["hits"][:n]
    if bench == "swefaq" or kind == "chunk":
        return np.array([sc[f"h{i}"] for i in range(len(hits))], dtype=np.float64)
    floor = min(sc.values()) if sc else 0.0
    out = []
    for h in hits:
        vals = [sc[f"s{s['row']}"] for s in h["sentences"] if f"s{s['row']}" in sc]
        out.append(max(vals) if vals else floor)
    return np.array(out, dtype=np.float64)


def reranked_order(r: dict, sc: dict | None, kind: str, bench: str, n: int, alpha: float) -> list[int]:
    total = len(r["hits"])
    if sc is None or alpha == 0 or n == 0:
        return list(range(total))
    n = min(n, total)
    ce = chunk_scores(r, sc, kind, bench, n)
    fs = np.array([h["score"] for h in r["hits"][:n]], dtype=np.float64)
    mixed = alpha * minmax(ce) + (1 - alpha) * minmax(fs)
    top = sorted(range(n), key=lambda i: (-mixed[i], i))
    return top + list(range(n, total))


def passage_metrics(rows, scores, kind, bench, n, alpha, qrels, metrics) -> dict[str, float]:
    run = {r["qid"]: doc_run(r["hits"], reranked_order(r, scores.get(r["qid"]) if scores else None, kind, bench, n, alpha))
           for r in rows}
    return ir_scores({r["qid"]: {d: 1 for d in qrels[r["qid"]]} for r in rows}, run, metrics)


def sentence_choice(rows, scores, beta: float | None, passages: str = "first", alpha: float = 1.0,
                    per_question: bool = False, base: str = "cosine"):
    """Share of questions whose top-ranked sentence among the quotable sentences of the top 5 chunks holds the gold
    answer string. passages="first": the first stage's top 5; "reranked": the top 5 after passage reranking
    (alpha). beta=None: best cosine (first stage); "builder": the pipeline's AnswerBuilder ranking; else
    beta * minmax(reranker) + (1 - beta) * minmax(base), base = "cosine" (the sentence's e5 cosine) or "builder" (the
    AnswerBuilder's sentence probability, which itself uses cosine, term coverage, passage rank...)."""
    hits_ = []
    for r in rows:
        sc = scores.get(r["qid"], {}) if scores else {}
        hits = r["hits"]
        if passages == "reranked":
            order = reranked_order(r, sc, "sent", "swequad-mc", SENT_POOL, alpha)
            hits = [r["hits"][i] for i in order]
        cands = top_sentences(hits, 5)
        if not cands:
            hits_.append(False)
            continue
        if beta == "builder":
            rows_ok = {s["row"] for _, _, s in cands}
            best = next((b["row"] for b in r["builder"] if b["row"] in rows_ok), None)
            text = next(s["text"] for _, _, s in cands if s["row"] == best) if best is not None else ""
        else:
            if base == "builder":
                bs = {b["row"]: b["score"] for b in r["builder"]}
                cos = np.array([bs.get(s["row"], 0.0) for _, _, s in cands])
            else:
                cos = np.array([s["cos"] for _, _, s in cands])
            if beta is None:
                mixed = cos
            else:
                ce = np.array([sc.get(f"s{s['row']}", -1e9) for _, _, s in cands])
                mixed = beta * minmax(ce) + (1 - beta) * minmax(cos)
            text = cands[int(np.argmax(mixed))][2]["text"]
        hits_.append(holds_answer(text, r["answer"]))
    if per_question:
        return hits_
    return {"answer_in_top_sentence": float(np.mean(hits_)), "n": len(rows)}


def gold_ranks(rows, scores, kind, bench, n, alpha, qrels) -> np.ndarray:
    """Per question: 1-based rank of the first relevant document in the top-10 document list (11 = not there)."""
    out = []
    for r in rows:
        run = doc_run(r["hits"], reranked_order(r, scores.get(r["qid"]) if scores else None, kind, bench, n, alpha))
        out.append(next((i + 1 for i, d in enumerate(run) if d in qrels[r["qid"]]), 11))
    return np.array(out)


def paired(ranks_a: np.ndarray, ranks_b: np.ndarray, seed: int = 0) -> dict:
    """b vs a on the same questions: R@1 wins/losses with an exact sign test, and 95 % paired-bootstrap intervals
    of the change in MRR@10 and nDCG@10 (one relevant document per question, so both are rank functions)."""
    from math import comb

    r1a, r1b = ranks_a == 1, ranks_b == 1
    wins, losses = int(np.sum(r1b & ~r1a)), int(np.sum(r1a & ~r1b))
    k, m = min(wins, losses), wins + losses
    p = min(1.0, 2 * sum(comb(m, i) for i in range(k + 1)) / 2 ** m) if m else 1.0
    mrr = lambda r: np.where(r <= 10, 1.0 / r, 0.0)
    ndcg = lambda r: np.where(r <= 10, 1.0 / np.log2(r + 1), 0.0)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(ranks_a), size=(2000, len(ranks_a)))
    out = {"r1_wins": wins, "r1_losses": losses, "r1_sign_test_p": round(p, 3)}
    for name, f in (("mrr@10", mrr), ("ndcg@10", ndcg)):
        d = f(ranks_b) - f(ranks_a)
        boot = d[idx].mean(1)
        out[f"delta_{name}"] = round(float(d.mean()), 4)
        out[f"delta_{name}_ci95"] = [round(float(np.percentile(boot, 2.5)), 4), round(float(np.percentile(boot, 97.5)), 4)]
    return out


def sign_test(a: list[bool], b: list[bool]) -> dict:
    from math import comb

    a, b = np.array(a), np.array(b)
    wins, losses = int(np.sum(b & ~a)), int(np.sum(a & ~b))
    k, m = min(wins, losses), wins + losses
    p = min(1.0, 2 * sum(comb(m, i) for i in range(k + 1)) / 2 ** m) if m else 1.0
    return {"wins": wins, "losses": losses, "sign_test_p": round(p, 3)}


def load_scores(model: str, epoch: int, bench: str, split: str) -> dict | None:
    path = score_file(model, epoch, bench, split)
    return json.loads(path.read_text()) if path.exists() else None


def report(models: list[str], max_epoch: int = 5) -> dict:
    sq, fq = mined("swequad-mc"), mined("swefaq")
    sq_qrels, fq_qrels = qrels_file_keyed("swequad-mc"), qrels_file_keyed("swefaq")
    dev = [r for r in sq if r["split"] == "dev"]
    test = [r for r in sq if r["split"] == "test"]
    ftest = [r for r in fq if r["split"] == "test"]
    fvg = [r for r in ftest if r["source"] == "Vårdguiden"]
    pm = ("recall@1", "recall@5", "mrr@10")
    fm = ("ndcg@10", "recall@1", "recall@10", "mrr@10")
    out = {"first_stage": {
        "swequad_dev": passage_metrics(dev, None, "sent", "swequad-mc", 0, 0, sq_qrels, pm),
        "swequad_test": passage_metrics(test, None, "sent", "swequad-mc", 0, 0, sq_qrels, pm) | {"n": len(test)},
        "swefaq_test": passage_metrics(ftest, None, "sent", "swefaq", 0, 0, fq_qrels, fm) | {"n": len(ftest)},
        "swefaq_test_vardguiden": passage_metrics(fvg, None, "sent", "swefaq", 0, 0, fq_qrels, fm) | {"n": len(fvg)},
        "sentence_dev_cosine": sentence_choice(dev, None, None),
        "sentence_dev_builder": sentence_choice(dev, None, "builder"),
        "sentence_test_cosine": sentence_choice(test, None, None),
        "sentence_test_builder": sentence_choice(test, None, "builder"),
    }, "models": {}}
    for model in models:
        kind = kind_of(model)
        ns = [SENT_POOL] if kind == "sent" else [10, 20]
        # ---- selection on SweQUAD-MC dev
        grid = []
        for epoch in range(1, max_epoch + 1):
            sdev = load_scores(model, epoch, "swequad-mc", "dev")
            if sdev is None:
                continue
            for n in ns:
                for a in ALPHAS:
                    m = passage_metrics(dev, sdev, kind, "swequad-mc", n, a, sq_qrels, pm)
                    grid.append({"epoch": epoch, "n": n, "alpha": a, **m})
        if not grid:
            continue
        best = max(grid, key=lambda g: (round(g["mrr@10"], 6), g["recall@1"], -g["epoch"]))
        res = {"kind": kind, "dev_grid": grid, "chosen_passage": {k: best[k] for k in ("epoch", "n", "alpha")},
               "dev_at_choice": {k: best[k] for k in pm}}
        pure_dev = {e: max((g for g in grid if g["epoch"] == e and g["alpha"] == 1.0), key=lambda g: g["mrr@10"])
                    for e in {g["epoch"] for g in grid}}
        res["dev_pure_reranker_by_epoch"] = pure_dev
        e, n, a = best["epoch"], best["n"], best["alpha"]
        stest, ftest_s = load_scores(model, e, "swequad-mc", "test"), load_scores(model, e, "swefaq", "test")
        res["test"] = {}
        if stest is not None:
            res["test"]["swequad_test_chosen"] = passage_metrics(test, stest, kind, "swequad-mc", n, a, sq_qrels, pm)
            res["test"]["swequad_test_pure"] = passage_metrics(test, stest, kind, "swequad-mc", n, 1.0, sq_qrels, pm)
        sig = {}
        if stest is not None:
            sig["swequad_test_chosen_vs_first_stage"] = paired(gold_ranks(test, None, kind, "swequad-mc", 0, 0, sq_qrels),
                                                                gold_ranks(test, stest, kind, "swequad-mc", n, a, sq_qrels))
        if ftest_s is not None:
            nf = min(n, 20)
            for label, rows_ in (("swefaq_test", ftest), ("swefaq_test_vardguiden", fvg)):
                sig[f"{label}_n{nf}_chosen_vs_first_stage"] = paired(
                    gold_ranks(rows_, None, kind, "swefaq", 0, 0, fq_qrels), gold_ranks(rows_, ftest_s, kind, "swefaq", nf, a, fq_qrels))
        res["significance"] = sig
        if ftest_s is not None:
            for nf in (10, 20):
                for label, al in (("chosen", a), ("pure", 1.0)):
                    res["test"][f"swefaq_test_n{nf}_{label}"] = passage_metrics(ftest, ftest_s, kind, "swefaq", nf, al, fq_qrels, fm)
                    res["test"][f"swefaq_test_vardguiden_n{nf}_{label}"] = passage_metrics(fvg, ftest_s, kind, "swefaq", nf, al, fq_qrels, fm)
        if kind == "sent":
            sgrid = []
            for epoch in sorted({g["epoch"] for g in grid}):
                sdev = load_scores(model, epoch, "swequad-mc", "dev")
                for base in ("cosine", "builder"):
                    for b in ALPHAS:
                        sgrid.append({"epoch": epoch, "base": base, "beta": b,
                                      **sentence_choice(dev, sdev, b, base=base)})
            res["sentence_dev_grid"] = sgrid
            for base in ("cosine", "builder"):
                cand = [g for g in sgrid if g["base"] == base and g["beta"] > 0]
                sbest = max(cand, key=lambda g: (g["answer_in_top_sentence"], g["beta"], -g["epoch"]))
                res[f"chosen_sentence_{base}_mix"] = {"epoch": sbest["epoch"], "beta": sbest["beta"],
                                                      "dev": sbest["answer_in_top_sentence"]}
                st = load_scores(model, sbest["epoch"], "swequad-mc", "test")
                if st is None:
                    continue
                res["test"][f"sentence_test_{base}_mix_chosen"] = sentence_choice(test, st, sbest["beta"], base=base)
                res["test"][f"sentence_test_{base}_mix_chosen_on_reranked_passages"] = sentence_choice(
                    test, st, sbest["beta"], passages="reranked", alpha=a, base=base)
                mine_ = sentence_choice(test, st, sbest["beta"], per_question=True, base=base)
                res["significance"][f"sentence_test_{base}_mix_chosen_vs_cosine"] = sign_test(
                    sentence_choice(test, None, None, per_question=True), mine_)
                res["significance"][f"sentence_test_{base}_mix_chosen_vs_builder"] = sign_test(
                    sentence_choice(test, None, "builder", per_question=True), mine_)
            pure_epoch = max({g["epoch"] for g in sgrid}, key=lambda e: next(
                g["answer_in_top_sentence"] for g in sgrid if g["epoch"] == e and g["base"] == "cosine" and g["beta"] == 1.0))
            st = load_scores(model, pure_epoch, "swequad-mc", "test")
            if st is not None:
                res["test"]["sentence_test_pure"] = sentence_choice(test, st, 1.0) | {"epoch": pure_epoch}
        out["models"][model] = res
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quality.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("score")
    s.add_argument("--model", required=True)
    s.add_argument("--epoch", type=int, required=True)
    s.add_argument("--split", choices=("dev", "test"), required=True)
    r = sub.add_parser("report")
    r.add_argument("--models", nargs="+", default=["ce-e5s-sent", "ce-e5s-chunk"])
    args = ap.parse_args()
    if args.cmd == "score":
        score(args.model, args.epoch, args.split)
    else:
        out = report(args.models)
        fs = out["first_stage"]
        print(json.dumps(fs, indent=1))
        for m, res in out["models"].items():
            print(m, json.dumps({k: v for k, v in res.items() if "grid" not in k}, indent=1))


if __name__ == "__main__":
    main()
