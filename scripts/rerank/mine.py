"""Run the project's own first stage (default Pipeline, hybrid, e5-small-onnx) over SweQUAD-MC and SweFAQ once and save
what a reranker needs: for every question its top-50 chunks (hit.passage, fused score, rank), the sentences of
each chunk with their cosine to the question, and the AnswerBuilder's own sentence ranking over the top 5.

    nice -n 10 python scripts/rerank/mine.py      # -> ~/.cache/cancer-rag/rerank/data/{swequad-mc,swefaq}.jsonl

Nothing here is trained; labels are attached later (train.py / evaluate.py) from qrels and gold answer strings.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[2]
if str(PROJECT) not in sys.path:
    sys.path.insert(0, str(PROJECT))

from eval.benchmarks import benchmark_dir, benchmark_pipeline  # noqa: E402
from rag.pipeline import Pipeline, PipelineConfig  # noqa: E402
from rag.search.index import passage_embedding_text  # noqa: E402
from rag.text import normalize_query  # noqa: E402

OUT = Path.home() / ".cache" / "cancer-rag" / "rerank" / "data"
DEPTH = 50  # what eval.benchmarks.doc_ranking retrieves to rank 10 documents


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def mine(name: str, base: Pipeline) -> Path:
    p = benchmark_pipeline(name, base).warm_up()
    index = p.index
    queries = _read_jsonl(benchmark_dir(name) / "queries.jsonl")
    OUT.mkdir(parents=True, exist_ok=True)
    out = OUT / f"{name}.jsonl"
    t0 = time.perf_counter()
    with open(out, "w", encoding="utf-8") as f:
        for i, q in enumerate(queries):
            clean = normalize_query(q["text"])
            query = p.processor.run(clean, [])
            retrieval = p.retriever.run(query, k=DEPTH)
            qv = retrieval.query_vector
            hits = []
            for hit, prow in zip(retrieval.hits, retrieval.rows):
                sents = []
                for srow in index.passage_sentences[prow]:
                    s = index.sentences[srow]
                    sents.append({"row": int(srow), "text": s.text, "is_heading": bool(s.is_heading),
                                  "cos": float(index.sentence_vectors[srow] @ qv)})
                hits.append({
                    "rank": hit.rank, "row": int(prow), "passage_id": hit.passage.passage_id,
                    "doc_id": hit.passage.doc_id, "score": hit.score, "title": hit.passage.title,
                    "heading": hit.passage.heading, "text": hit.passage.text,
                    "embed_text": passage_embedding_text(hit.passage),
                    "cos": float(index.passage_vectors[prow] @ qv), "sentences": sents,
                })
            # the pipeline's own answer-sentence ranking (rag.answer.builder, logistic model) over its top 5
            top5 = p.retriever.run(query, k=5, query_vector=qv)
            ranked = p.builder.candidates(query, top5)
            builder = [{"row": c.row, "score": c.score, "dense": c.dense} for c in ranked]
            f.write(json.dumps({"qid": q["_id"], "text": q["text"], "clean": clean, "search_text": query.search_text,
                                "split": q.get("split"), "answer": q.get("answer"), "source": q.get("source"),
                                "hits": hits, "builder": builder}, ensure_ascii=False) + "\n")
            if (i + 1) % 100 == 0:
                print(f"{name}: {i + 1}/{len(queries)} ({time.perf_counter() - t0:.0f} s)", flush=True)
    print(f"{name}: {len(queries)} questions -> {out}", flush=True)
    return out


def main() -> None:
    base = Pipeline(PipelineConfig())
    for name in ("swequad-mc", "swefaq"):
        mine(name, base)


if __name__ == "__main__":
    main()
