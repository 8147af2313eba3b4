"""Public Swedish benchmarks (SweFAQ v2, SweQUAD-MC) run through the same Pipeline over their own corpora."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

from eval.metrics import ir_scores
from rag.pipeline import PROJECT_ROOT, Pipeline, PipelineConfig, default_index_dir
from rag.text import normalize_query

SHARED = Path(__file__).resolve().parents[2] / "shared"
BENCHMARKS = SHARED / "benchmarks"
SEB_MODELS = {
    "intfloat/multilingual-e5-small": "multilingual-e5-small",
    "intfloat/multilingual-e5-base": "multilingual-e5-base",
    "intfloat/multilingual-e5-large": "multilingual-e5-large",
    "KBLab/sentence-bert-swedish-cased": "KBLab sentence-bert-swedish-cased",
    "BAAI/bge-m3": "bge-m3",
}


class BenchmarkMissing(RuntimeError):
    """The shared benchmark data is not on this machine."""


def benchmark_dir(name: str) -> Path:
    path = BENCHMARKS / name / "derived_beir"
    if not (path / "corpus.jsonl").exists():
        raise BenchmarkMissing(f"benchmark data not found at {path} (the ../shared folder is absent); skipped")
    return path


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    return qrels


def file_key(doc_key: str) -> str:
    """The file stem (= doc_id in the index) a benchmark document is written under."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", doc_key)


def materialize_corpus(name: str, dest: Path) -> Path:
    """Write a BEIR corpus as one .txt file per entry plus metadata.jsonl, so the normal ingest reads it.

    Written once; a later call with the same data leaves the files (and so the index) untouched.
    """
    src = benchmark_dir(name) / "corpus.jsonl"
    dest.mkdir(parents=True, exist_ok=True)
    stamp = dest / ".source"
    signature = f"{src}:{src.stat().st_size}:{src.stat().st_mtime_ns}"
    if stamp.exists() and stamp.read_text() == signature and (dest / "profile.json").exists():
        return dest
    rows = []
    for doc in _read_jsonl(src):
        fname = file_key(doc["_id"]) + ".txt"
        (dest / fname).write_text(doc["text"], encoding="utf-8")
        rows.append({"path": fname, "title": (doc.get("title") or "").strip(), "doc_key": doc["_id"]})
    with open(dest / "metadata.jsonl", "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    # the benchmarks' qrels name duplicate answers separately: every entry is indexed
    (dest / "profile.json").write_text(json.dumps({"deduplicate": False}), encoding="utf-8")
    stamp.write_text(signature)
    return dest


def _file_keyed(qrels: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {q: {file_key(d): g for d, g in rel.items()} for q, rel in qrels.items()}


def benchmark_pipeline(name: str, base: Pipeline) -> Pipeline:
    """A Pipeline like `base` (same model, mode, fusion, query processing) over a benchmark's corpus."""
    corpus = materialize_corpus(name, PROJECT_ROOT / ".rag_index" / "bench-corpora" / name)
    cfg = base.config
    index_dir = default_index_dir(f"bench-{name}-{cfg.model}")
    return Pipeline(PipelineConfig(**{**cfg.to_dict(), "corpus_dir": corpus, "index_dir": index_dir}))


def doc_ranking(pipeline: Pipeline, question: str, depth: int = 10) -> dict[str, float]:
    """Documents ranked by their best passage (a benchmark's unit of relevance is the document)."""
    hits = pipeline.retrieve(question, k=max(depth * 5, 50))
    ranked: dict[str, float] = {}
    for hit in hits:
        key = hit.passage.doc_id
        if key not in ranked and len(ranked) < depth:
            ranked[key] = 1.0 / hit.rank
    return ranked


def run_swefaq(base: Pipeline, log=print) -> dict:
    """SweFAQ v2 retrieval over all 233 answers (MTEB/SEB "SweFaqRetrieval" setting), overall and Vårdguiden."""
    bdir = benchmark_dir("swefaq")
    pipeline = benchmark_pipeline("swefaq", base).warm_up(log=log)
    queries = _read_jsonl(bdir / "queries.jsonl")
    qrels = _file_keyed(read_qrels(bdir / "qrels.tsv"))
    run = {q["_id"]: doc_ranking(pipeline, q["text"]) for q in queries}
    metrics = ("ndcg@10", "recall@1", "recall@10", "mrr@10")
    vg = {q["_id"] for q in queries if q.get("source") == "Vårdguiden"}
    test = {q["_id"] for q in queries if q.get("split") == "test"}
    return {
        "all": ir_scores(qrels, run, metrics) | {"n": len(queries)},
        "vardguiden": ir_scores({q: r for q, r in qrels.items() if q in vg}, run, metrics) | {"n": len(vg)},
        # the answer model is fitted on SweFAQ dev questions: the test split is the clean figure
        "test": ir_scores({q: r for q, r in qrels.items() if q in test}, run, metrics) | {"n": len(test)},
        "test_vardguiden": ir_scores({q: r for q, r in qrels.items() if q in test and q in vg}, run, metrics)
        | {"n": len(test & vg)},
        "published_seb_v1_ndcg@10": published_seb("SweFAQ"),
    }


def run_swequad(base: Pipeline, split: str = "test", log=print) -> dict:
    """SweQUAD-MC: passage retrieval for the split's questions, and whether the quoted answer sentence
    holds the gold answer string."""
    bdir = benchmark_dir("swequad-mc")
    pipeline = benchmark_pipeline("swequad-mc", base).warm_up(log=log)
    queries = [q for q in _read_jsonl(bdir / "queries.jsonl") if q.get("split") == split]
    wanted = {x["_id"] for x in queries}
    qrels = {q: r for q, r in _file_keyed(read_qrels(bdir / "qrels.tsv")).items() if q in wanted}
    run = {q["_id"]: doc_ranking(pipeline, q["text"]) for q in queries}
    retrieval = ir_scores(qrels, run, ("recall@1", "recall@5", "mrr@10"))
    answered = span_hits = span_hits_all = 0
    for q in queries:
        answer = pipeline.ask(q["text"])
        quoted = normalize_query(" ".join(c.quote for c in answer.citations)).lower()
        hit = bool(q.get("answer")) and normalize_query(q["answer"]).lower() in quoted
        if not answer.abstained:
            answered += 1
            span_hits += hit
        span_hits_all += hit
    return {
        "retrieval": retrieval | {"n": len(queries)},
        "answer_span": {
            "answered_rate": answered / len(queries) if queries else float("nan"),
            "span_in_quote_when_answered": span_hits / answered if answered else float("nan"),
            "span_in_quote_all": span_hits_all / len(queries) if queries else float("nan"),
        },
    }


def published_seb(task: str) -> dict[str, float]:
    """Published SEB nDCG@10 of the reference models (SweFAQ v1: compare as a ranking, not as equal data)."""
    path = BENCHMARKS / "seb-reference" / "seb_0.13.11_swedish_retrieval_scores.csv"
    if not path.exists():
        return {}
    out = {}
    with open(path, encoding="utf-8") as f:
        for row in csv.DictReader(f):
            if row["task"] == task and row["model"] in SEB_MODELS:
                out[SEB_MODELS[row["model"]]] = float(row["ndcg_at_10"])
    return out
