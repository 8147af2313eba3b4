"""`python -m eval.tune`: grid-search fusion parameters on the gold set's tuning split (answer decisions are
learned: `python -m eval.fit_answer`).

It prints the best settings; they are set as defaults in code by hand (with the figures in the commit), so a
tuning run never silently changes the product. Never tune on the report split.
"""

from __future__ import annotations

import argparse
import sys

from embeddings import DEFAULT_MODEL
from eval.gold import evidence_span, is_relevant, load_gold
from rag.pipeline import Pipeline, PipelineConfig
from rag.search.retrieve import Retriever


def _prepare(pipeline: Pipeline, split: str):
    docs = pipeline.index.documents
    rows = []
    for item in load_gold(split=split):
        if not item.answerable:
            continue
        query = pipeline.processor.run(item.question, item.history)
        vector = pipeline.encoder.encode_queries([query.search_text])[0]
        span = evidence_span(docs[item.doc_id].text, item.evidence)
        rows.append((item, query, vector, span))
    return rows


def _rank_of_evidence(hits, item, span) -> int | None:
    for h in hits:
        if h.passage.doc_id == item.doc_id and is_relevant(h.passage.start, h.passage.end, span):
            return h.rank
    return None


def tune_retrieval(pipeline: Pipeline, rows) -> list[tuple]:
    results = []
    grid = [("rrf", {"rrf_k": k, "weights": {"dense": 1.0, "lexical": w}}) for k in (5, 10, 20, 60) for w in (0.5, 0.75, 1.0, 1.5)]
    grid += [("convex", {"weights": {"dense": 1 - a, "lexical": a}}) for a in (0.2, 0.3, 0.4, 0.5, 0.6)]
    for fusion, params in grid:
        retriever = Retriever(pipeline.index, pipeline.encoder, mode="hybrid", fusion=fusion,
                              candidates=pipeline.config.candidates, sentence_weight=pipeline.config.sentence_weight,
                              **params)
        ranks = [_rank_of_evidence(retriever.run(q, k=10, query_vector=v).hits, it, sp) for it, q, v, sp in rows]
        r1 = sum(1 for r in ranks if r == 1) / len(ranks)
        r5 = sum(1 for r in ranks if r and r <= 5) / len(ranks)
        mrr = sum(1 / r for r in ranks if r) / len(ranks)
        results.append((mrr, r5, r1, fusion, params))
    for mode in ("dense", "lexical"):
        retriever = Retriever(pipeline.index, pipeline.encoder, mode=mode, candidates=pipeline.config.candidates,
                              sentence_weight=pipeline.config.sentence_weight)
        ranks = [_rank_of_evidence(retriever.run(q, k=10, query_vector=v).hits, it, sp) for it, q, v, sp in rows]
        results.append((sum(1 / r for r in ranks if r) / len(ranks),
                        sum(1 for r in ranks if r and r <= 5) / len(ranks),
                        sum(1 for r in ranks if r == 1) / len(ranks), mode, {}))
    return sorted(results, key=lambda r: (-r[0], -r[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.tune", description=__doc__)
    parser.add_argument("--model", default=DEFAULT_MODEL)

    args = parser.parse_args(argv)
    pipeline = Pipeline(PipelineConfig(model=args.model)).warm_up(log=lambda m: print(m, file=sys.stderr))
    rows = _prepare(pipeline, "tune")
    print(f"tuning split: {len(rows)} answerable questions")
    print("retrieval (MRR@10, R@5, R@1, fusion, params):")
    for r in tune_retrieval(pipeline, rows)[:12]:
        print(f"  {r[0]:.3f} {r[1]:.3f} {r[2]:.3f} {r[3]} {r[4]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
