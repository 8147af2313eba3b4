"""`python -m eval`: score the pipeline on the gold set (and the public benchmarks) and save the results."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

from embeddings import DEFAULT_MODEL
from eval.benchmarks import BenchmarkMissing, run_swefaq, run_swequad
from eval.gold import EVAL_DIR, SPLITS, load_gold, load_questions
from eval.provenance import git_commit
from eval.report import failures_markdown, format_table, plot
from eval.run_gold import evaluate_gold, failures
from rag.pipeline import PROJECT_ROOT, Pipeline, PipelineConfig
from rag.search.retrieve import MODES

RESULTS_DIR = EVAL_DIR / "results"


def _clean(obj):
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    return obj


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval", description=__doc__)
    parser.add_argument("--split", choices=SPLITS, default="report", help="gold split to score (default report)")
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--mode", choices=MODES, default="hybrid")
    parser.add_argument("--fusion", choices=("rrf", "convex"), default="convex")
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--sentence-weight", type=float, default=None,
                        help="weight of the best sentence in the dense passage score (default: the pipeline's)")
    parser.add_argument("--no-spelling", action="store_true", help="turn query spelling correction off")
    parser.add_argument("--no-expansion", action="store_true", help="turn lay-vocabulary expansion off")
    parser.add_argument("--benchmarks", default="", help="comma list: swefaq,swequad (default: none)")
    parser.add_argument("--only-benchmarks", action="store_true", help="skip the gold set")
    parser.add_argument("--tag", default="", help="label added to the results file name")
    parser.add_argument("--questions", type=Path, default=None,
                        help="score this question set (gold format) instead of the gold set; with --corpus for a "
                             "collection other than the shipped one")
    parser.add_argument("--corpus", type=Path, default=None, help="corpus folder the --questions are about")
    parser.add_argument("--store", choices=("faiss", "pgvector"), default=None,
                        help="backend (default $RAG_STORE or faiss); pgvector without $RAG_STORE_URL starts the "
                             "project's embedded PostgreSQL for the run")
    args = parser.parse_args(argv)
    if args.store:
        extra_store = {"store": args.store}
        if args.store == "pgvector" and not os.environ.get("RAG_STORE_URL"):
            import atexit
            import contextlib

            from rag.search.stores import embedded_postgres

            stack = contextlib.ExitStack()
            atexit.register(stack.close)
            extra_store["store_url"] = stack.enter_context(embedded_postgres())
    else:
        extra_store = {}

    extra = {} if args.sentence_weight is None else {"sentence_weight": args.sentence_weight}
    if args.corpus:
        extra["corpus_dir"] = args.corpus
        extra["index_dir"] = PROJECT_ROOT / ".rag_index" / "collections" / (
            f"{args.corpus.resolve().parent.name}-{args.corpus.name}-{args.model.replace('/', '_')}")
    config = PipelineConfig(model=args.model, mode=args.mode, k=args.k, fusion=args.fusion,
                            spelling=not args.no_spelling, expansion=not args.no_expansion, **extra, **extra_store)
    pipeline = Pipeline(config).warm_up(log=lambda m: print(m, file=sys.stderr))
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    commit = git_commit()
    name = f"{stamp}-{commit}-{args.model.replace('/', '_')}-{args.mode}{'-' + args.tag if args.tag else ''}"
    name += "-pgvector" if config.store == "pgvector" else ""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out: dict = {"commit": commit, "model": args.model, "config": config.to_dict(), "split": args.split,
                 "manifest": {k: v for k, v in pipeline.index.manifest.items() if k != "files"}, "created": stamp}

    if not args.only_benchmarks:
        items = load_questions(args.questions) if args.questions else load_gold(split=args.split)
        out["questions"] = str(args.questions or "eval/gold.jsonl")
        report = evaluate_gold(pipeline, items)
        print(format_table(report.metrics, f"Gold set, split={args.split}, model={args.model}, mode={args.mode}"))
        print("  by kind:")
        for kind, m in report.by_kind.items():
            print("    " + kind.ljust(14) + "  ".join(f"{k}={v:.2f}" if isinstance(v, float) else f"{k}={v}"
                                                    for k, v in m.items()))
        passages = {p.passage_id: p for p in pipeline.index.passages}
        fails = failures(report.results, passages)
        out["gold"] = {"metrics": report.metrics, "by_kind": report.by_kind, "failures": fails}
        png = plot(report.results, RESULTS_DIR / f"{name}.png")
        md = RESULTS_DIR / f"{name}-failures.md"
        md.write_text(failures_markdown(fails, f"Failures: split={args.split}, model={args.model}, mode={args.mode}, "
                                              f"commit {commit}"), encoding="utf-8")
        print(f"  {len(fails)} failures: {md}; plot: {png}")

    for bench in [b.strip() for b in args.benchmarks.split(",") if b.strip()]:
        try:
            if bench == "swefaq":
                res = run_swefaq(pipeline, log=lambda m: print(m, file=sys.stderr))
                print(format_table(res["all"], "SweFAQ v2, all 233 answers"))
                print(format_table(res["vardguiden"], "SweFAQ v2, Vårdguiden (1177) questions"))
                print(format_table(res["published_seb_v1_ndcg@10"],
                                   "Published SEB nDCG@10 on SweFAQ v1 (other data version: compare as a ranking)"))
            elif bench == "swequad":
                res = run_swequad(pipeline, log=lambda m: print(m, file=sys.stderr))
                print(format_table(res["retrieval"], "SweQUAD-MC test, passage retrieval"))
                print(format_table(res["answer_span"], "SweQUAD-MC test, gold answer inside the quoted sentence"))
            else:
                print(f"unknown benchmark {bench!r} (choose swefaq, swequad)", file=sys.stderr)
                continue
            out[bench] = res
        except BenchmarkMissing as exc:
            print(f"{bench}: {exc}")
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(_clean(out), ensure_ascii=False, indent=1), encoding="utf-8")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
