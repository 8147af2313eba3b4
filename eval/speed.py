"""`python -m eval.speed`: build time, start-up time, query latency (end to end and per stage) and peak memory.

Figures are printed, never asserted in unit tests: they depend on the machine. Run it on an otherwise idle
machine (2 cores here); `--build` also times a from-scratch index build in a temporary folder.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from embeddings import DEFAULT_MODEL, load_encoder
from eval.gold import load_gold
from eval.machine import describe
from rag.search.index import CorpusIndex
from rag.pipeline import PROJECT_ROOT, Pipeline, PipelineConfig
from rag.search.retrieve import Retriever


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: list[float]) -> str:
    a = np.asarray(values)
    return f"p50 {np.percentile(a, 50):6.1f} ms   p95 {np.percentile(a, 95):6.1f} ms   max {a.max():6.1f} ms"


def dir_size_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()) / 2**20


def time_replies(pipeline, questions, repeat: int = 1) -> dict:
    """Time `ask()` as the app does it: the reply (answer, refusal or notice) first, then for a refusal the suggested
    questions (each checked by the pipeline); `ask --json` does both in one call. The query-vector cache and the
    suggestion cache are emptied before every question, so each is encoded and checked as if never seen.

    Returns
    -------
    dict
        "reply", "both", "suggestions", "cpu" (ms lists) and "stages" (stage -> ms list, from `Answer.timings_ms`).
    """
    out = {"reply": [], "both": [], "suggestions": [], "cpu": [], "stages": {}}
    for _ in range(repeat):
        for q, h in questions:
            pipeline.forget()
            t, c = time.perf_counter(), time.process_time()
            answer = pipeline.ask(q, history=h, suggest=False)
            reply = (time.perf_counter() - t) * 1e3
            out["cpu"].append((time.process_time() - c) * 1e3)
            out["reply"].append(reply)
            for k, v in answer.timings_ms.items():
                out["stages"].setdefault(k, []).append(v)
            extra = 0.0
            if answer.reason == "not_covered":
                t = time.perf_counter()
                pipeline.suggest(answer)
                extra = (time.perf_counter() - t) * 1e3
                out["suggestions"].append(extra)
            out["both"].append(reply + extra)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.speed", description=__doc__)
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--build", action="store_true", help="also time a from-scratch build (no embedding cache)")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the gold questions")
    args = parser.parse_args(argv)

    if args.build:
        tmp = Path(tempfile.mkdtemp(prefix="rag-speed-"))
        try:
            t0 = time.perf_counter()
            encoder = load_encoder(args.model, cache=False)
            t1 = time.perf_counter()
            index = CorpusIndex.build(PROJECT_ROOT / "corpus", encoder)
            t2 = time.perf_counter()
            index.save(tmp / "index")
            m = index.manifest
            print(f"index build (from scratch, model {args.model}): {t2 - t1:.1f} s for {m['document_count']} documents,"
                  f" {m['passage_count']} passages, {m['sentence_count']} sentences; model load {t1 - t0:.1f} s;"
                  f" on disk {dir_size_mb(tmp / 'index'):.1f} MB")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    t0 = time.perf_counter()
    pipeline = Pipeline(PipelineConfig(model=args.model)).warm_up(log=lambda m: print(m, file=sys.stderr))
    print(f"start-up (load model + index, warm caches): {time.perf_counter() - t0:.2f} s; RSS after start-up "
          f"{peak_rss_mb():.0f} MB")

    # The encoder runs for every question: the query-vector cache is emptied before each one (it stays on, so the
    # vector the triage computes is the one retrieval uses, as in the app).
    items = load_gold()
    questions = [(it.question, it.history) for it in items]
    timed = time_replies(pipeline, questions, args.repeat)
    total, both, suggest, stages = timed["reply"], timed["both"], timed["suggestions"], timed["stages"]
    print(f"ask() end to end over {len(total)} questions (the reply): {pct(total)}")
    for k in ("query", "triage", "retrieve", "answer"):
        print(f"  {k:<9} {pct(stages.get(k, [0.0]))}")
    if suggest:
        print(f"suggestions after a refusal ({len(suggest)} refusals): {pct(suggest)}")
    print(f"reply + suggestions (as ask --json): {pct(both)}")

    # The lexical part's cost: hybrid minus dense-only retrieval for the same query vectors.
    queries = [pipeline.processor.run(q, h) for q, h in questions]
    vectors = [pipeline.encoder.encode_queries([qq.search_text])[0] for qq in queries]
    times = {}
    for mode in ("dense", "lexical", "hybrid"):
        r = Retriever(pipeline.index, pipeline.encoder, mode=mode, fusion=pipeline.config.fusion,
                      weights=pipeline.config.weights, candidates=pipeline.config.candidates,
                      sentence_weight=pipeline.config.sentence_weight)
        ts = []
        for _ in range(args.repeat):
            for qq, v in zip(queries, vectors):
                t = time.perf_counter()
                r.run(qq, k=pipeline.config.k, query_vector=v)
                ts.append((time.perf_counter() - t) * 1e3)
        times[mode] = ts
        print(f"retrieval only, {mode:<7} (query already encoded): {pct(ts)}")
    enc = []
    for qq in queries:
        t = time.perf_counter()
        pipeline.encoder.encode_queries([qq.search_text])
        enc.append((time.perf_counter() - t) * 1e3)
    print(f"query encoding ({args.model}): {pct(enc)}")
    extra = np.percentile(times["hybrid"], 95) - np.percentile(times["dense"], 95)
    print(f"lexical part adds {extra:.2f} ms at p95 (hybrid vs dense retrieval)")
    print(f"peak RSS: {peak_rss_mb():.0f} MB")
    m = describe()
    print(f"machine: {m['cpu']}, {m['cores']} cores, load {m['loadavg'][0]}, calibration {m['calibration_ms']} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
