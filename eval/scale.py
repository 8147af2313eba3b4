"""`python -m eval.scale --passages N [--store S] [--json]`: build a synthetic index of N passages from the corpus's
own sentences and measure build time, start-up, memory, ask() latency and approximate-search recall.

The synthetic corpus: documents of 8 passages, each passage 3-5 real sentences of the shipped corpus (mostly from
one source document, some from anywhere: mixed), each sentence with its real embedding; a passage's vector is the
normalized mean of its sentences' real vectors (the "embeddings of the mix": nothing is encoded, so 10^6 passages
build on 2 cores). Tokens are the project's own analysis of those sentences. Start-up, memory and latency are
measured in a fresh process running the real `Pipeline` over the synthetic index with the gold questions; recall@10
compares the index's dense search with exact search for the gold questions' real query vectors.

`--add-one` also times adding one real document (encoded by the real model) to the synthetic index;
`--shipped-add` times adding one document to the shipped corpus's index against a full rebuild from scratch.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np

from eval.machine import describe
from rag.pipeline import PROJECT_ROOT

ADD_DOC = PROJECT_ROOT / "eval" / "collections" / "vardguide" / "docs" / "md" / "lymfodem.md"
"""A real document outside the shipped corpus (one of the held-out collection's), added by `--add-one`."""


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_now() -> dict:
    """Resident memory now: all of it, and the private part (RSS less the pages shared with the page cache, i.e. the
    memory-mapped index files the kernel can drop and re-read)."""
    import psutil

    info = psutil.Process().memory_info()
    return {"rss_now_mb": round(info.rss / 2**20), "private_mb": round((info.rss - info.shared) / 2**20)}


def base_material(model: str):
    """The shipped index's sentences: texts, real vectors, analysed tokens, and their source documents' titles."""
    from rag.pipeline import Pipeline, PipelineConfig

    pipeline = Pipeline(PipelineConfig(model=model))
    from rag.search.index import open_index
    from embeddings import load_encoder

    cfg = pipeline.config
    index = open_index(cfg.corpus_dir, cfg.index_dir, lambda: load_encoder(model), model, log=lambda m: None)
    rows = [i for i in range(len(index.sentences)) if not index.sentences[i].is_heading
            and len(index.sentences[i].text.split()) >= 4]
    sentences = [index.sentences[i] for i in rows]
    vectors = np.asarray(index.sentence_vectors[np.asarray(rows)], dtype=np.float32)
    docs = sorted({s.doc_id for s in sentences})
    by_doc = {d: [j for j, s in enumerate(sentences) if s.doc_id == d] for d in docs}
    titles = {d: index.documents[d].title for d in docs}
    return index, sentences, vectors, docs, by_doc, titles


def synthesize(n_passages: int, model: str, seed: int = 7, log=print):
    """A synthetic CorpusIndex of `n_passages` passages (in memory) made of the shipped corpus's sentences."""
    from rag.search.columns import RaggedColumn
    from rag.search.lexical import Vocabulary
    from rag.search.analysis import words
    from rag.search.segment import SegmentParts, invert, text_sha

    base, sentences, vectors, docs, by_doc, titles = base_material(model)
    rng = np.random.default_rng(seed)
    analyzer = base.lexical.analyzer
    vocab = Vocabulary()
    s_tokens = [vocab.add(analyzer.analyze(s.text)) for s in sentences]
    s_unique = [sorted(set(t)) for t in s_tokens]
    t_tokens = {d: vocab.add(analyzer.analyze(f"{titles[d]} ")) for d in docs}
    s_text = [s.text for s in sentences]
    s_chars = np.array([len(t) for t in s_text])
    s_bytes = np.array([len(t.encode("utf-8")) for t in s_text])
    per_doc = 8
    n_docs = -(-n_passages // per_doc)
    topic = rng.integers(0, len(docs), size=n_docs)
    counts = rng.integers(3, 6, size=n_passages)
    total = int(counts.sum())
    local = rng.random(total) < 0.7
    any_sentence = rng.integers(0, len(sentences), size=total)
    passage_doc = np.minimum(np.arange(n_passages) // per_doc, n_docs - 1)
    sent_topic = np.repeat(topic[passage_doc], counts)
    doc_lists = [np.asarray(by_doc[d]) for d in docs]
    pick = rng.random(total)
    sent_ids = any_sentence.copy()
    for t in np.unique(sent_topic[local]):
        mask = local & (sent_topic == t)
        lst = doc_lists[t]
        sent_ids[mask] = lst[(pick[mask] * len(lst)).astype(np.int64)]
    log(f"  {n_passages} passages, {total} sentences, {n_docs} documents: texts and offsets")
    # character and byte offsets: sentences joined by " " inside a passage, passages by "\n\n" inside a document
    indptr = np.concatenate([[0], np.cumsum(counts)])
    first_of_passage = np.zeros(total, dtype=bool)
    first_of_passage[indptr[:-1]] = True
    first_of_doc = np.zeros(n_passages, dtype=bool)
    first_of_doc[::per_doc] = True
    sep = np.where(first_of_passage, 2, 1)
    sep[indptr[:-1][first_of_doc]] = 0
    sent_doc = np.repeat(passage_doc, counts)
    cs, bs = s_chars[sent_ids], s_bytes[sent_ids]

    def starts(lengths):
        step = lengths + sep
        cum = np.cumsum(step)
        doc_first = np.flatnonzero(np.concatenate([[True], sent_doc[1:] != sent_doc[:-1]]))
        offset = np.repeat(cum[doc_first] - step[doc_first], np.diff(np.concatenate([doc_first, [total]])))
        return cum - lengths - offset

    c_start, b_start = starts(cs), starts(bs)
    sentences_tab = np.stack([sent_doc, c_start, c_start + cs, b_start, b_start + bs, np.zeros(total, np.int64)], 1)
    p_first, p_last = indptr[:-1], indptr[1:] - 1
    passages_tab = np.stack([passage_doc, c_start[p_first], c_start[p_last] + cs[p_last], b_start[p_first],
                             b_start[p_last] + bs[p_last], np.full(n_passages, -1)], 1).astype(np.int64)
    texts = []
    for d in range(n_docs):
        lo, hi = d * per_doc, min(n_passages, (d + 1) * per_doc)
        texts.append("\n\n".join(" ".join(s_text[j] for j in sent_ids[indptr[p]:indptr[p + 1]]) for p in range(lo, hi)))
    log("  vectors (normalized means of the sentences' real vectors)")
    passage_vectors = np.zeros((n_passages, vectors.shape[1]), dtype=np.float32)
    if total > 1_000_000:  # 10^6 passages: 6 GB of sentence vectors, filled in pieces into a file, not in memory
        sentence_vectors = np.lib.format.open_memmap(Path(tempfile.mkdtemp(prefix="rag-scale-sv-")) / "sv.npy", "w+",
                                                     np.float32, (total, vectors.shape[1]))
    else:
        sentence_vectors = np.zeros((total, vectors.shape[1]), dtype=np.float32)
    step = 100_000
    for lo in range(0, n_passages, step):
        hi = min(n_passages, lo + step)
        a, b = indptr[lo], indptr[hi]
        chunk = vectors[sent_ids[a:b]]
        sentence_vectors[a:b] = chunk
        sums = np.add.reduceat(chunk, indptr[lo:hi] - a, axis=0)
        passage_vectors[lo:hi] = sums / np.linalg.norm(sums, axis=1, keepdims=True)
    log("  tokens and postings")
    passage_tokens = [list(t_tokens[docs[topic[passage_doc[p]]]]) + [t for j in sent_ids[indptr[p]:indptr[p + 1]]
                                                                      for t in s_tokens[j]] for p in range(n_passages)]
    postings, tf, lengths = invert(passage_tokens, len(vocab))
    unique = RaggedColumn.from_rows(sorted(set(t)) for t in passage_tokens)
    del passage_tokens
    s_ptr = np.concatenate([[0], np.cumsum([len(u) for u in s_unique])])
    s_vals = np.concatenate([np.asarray(u, dtype=np.int32) for u in s_unique])
    sent_lens = np.diff(s_ptr)[sent_ids]
    sentence_tokens = RaggedColumn(np.concatenate([[0], np.cumsum(sent_lens)]).astype(np.int64),
                                   np.concatenate([s_vals[s_ptr[j]:s_ptr[j + 1]] for j in sent_ids]) if total else s_vals[:0])
    context = RaggedColumn.from_rows(sorted(set(t_tokens[docs[topic[passage_doc[p]]]])) for p in range(n_passages))
    word_counts: Counter = Counter()
    uses = np.bincount(sent_ids, minlength=len(sentences))
    for j, u in enumerate(uses):
        if u:
            for w, c in Counter(words(s_text[j])).items():
                word_counts[w] += c * int(u)
    documents = [{"doc_id": f"syn/{d:07d}", "title": titles[docs[topic[d]]], "text": "", "publisher": "synthetic",
                  "date": "", "url": "", "path": "", "headings": [], "text_sha": text_sha(texts[d]),
                  "content_sha": text_sha(texts[d])} for d in range(n_docs)]
    for row in documents:
        row.pop("text")
    ids = np.array([f"{p:016x}".encode("ascii") for p in range(n_passages)], dtype="S16")
    parts = SegmentParts(documents, texts, passages_tab, ids, [], sentences_tab,
                         RaggedColumn(indptr.astype(np.int64), np.arange(total, dtype=np.int32)), passage_vectors,
                         sentence_vectors, postings, tf, lengths, unique, sentence_tokens, context)
    return parts, vocab, dict(word_counts), analyzer, base


def build_synthetic(n_passages: int, model: str, index_dir: Path, corpus_dir: Path, log=print) -> dict:
    """Synthesize, index (dense type chosen by size) and save; returns build figures."""
    from rag.search.dense import DenseIndex
    from rag.search.index import CorpusIndex, FORMAT_VERSION, SegmentedDense
    from rag.search.lexical import LexicalIndex, PostingPart
    from rag.search.segment import Segment
    from rag.ingest.loader import corpus_fingerprint
    from embeddings import model_fingerprint, load_encoder
    from datetime import datetime, timezone

    t0 = time.perf_counter()
    parts, vocab, word_counts, analyzer, base = synthesize(n_passages, model, log=log)
    t1 = time.perf_counter()
    log(f"  synthesized in {t1 - t0:.1f} s; dense index")
    from eval.gold import load_gold

    # nprobe is tuned on real questions (the gold set's tune split); recall is then measured on the report split
    sample = load_encoder(model).encode_queries([it.question for it in load_gold(split="tune")])
    dense = DenseIndex(parts.passage_vectors.shape[1]).index(parts.passage_vectors, sample_queries=sample)
    t2 = time.perf_counter()
    lexical = LexicalIndex(analyzer)
    lexical.vocabulary = vocab
    lexical.word_counts = word_counts
    lexical.append([], PostingPart(parts.postings, parts.postings_tf, parts.passage_lengths, 0))
    corpus_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        "format_version": FORMAT_VERSION, "store": "faiss", "model": model, "model_id": base.manifest.get("model_id"),
        "model_fingerprint": model_fingerprint(model), "dim": int(parts.passage_vectors.shape[1]),
        "corpus_dir": str(corpus_dir.resolve()), "corpus_hash": corpus_fingerprint(corpus_dir),
        "splitter": base.manifest.get("splitter", {}), "analyzer": analyzer.config(),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "build_seconds": 0.0,
        "versions": base.manifest.get("versions", {}), "problems": [], "synthetic": True,
        "segments": [{"dir": ".", "dense": dense.params}], "removed_documents": [],
    }
    index = CorpusIndex([Segment.from_parts(parts)], SegmentedDense([dense], [0], lexical.live), lexical, manifest)
    index._update_counts()
    log("  saving")
    index.save(index_dir)
    t3 = time.perf_counter()
    return {"synthesize_s": round(t1 - t0, 1), "dense_index_s": round(t2 - t1, 1), "save_s": round(t3 - t2, 1),
            "build_s": round(t3 - t1, 1), "dense": dense.params}


def measure(index_dir: Path, corpus_dir: Path, model: str, store: str, repeat: int, add_one: bool) -> dict:
    """In this (fresh) process: start the real pipeline on the index, ask the gold questions, measure."""
    from eval.gold import load_gold
    from rag.pipeline import Pipeline, PipelineConfig
    from rag.search.dense import exact_search, recall_at

    t0 = time.perf_counter()
    pipeline = Pipeline(PipelineConfig(model=model, corpus_dir=corpus_dir, index_dir=index_dir, store=store))
    pipeline.warm_up(log=lambda m: print(m, file=sys.stderr))
    items = load_gold()  # the report split: the questions nothing was tuned on
    first = pipeline.ask(items[0].question)
    startup = time.perf_counter() - t0
    from eval.speed import time_replies

    # the next questions come at once, while the compiled BM25 loads in the background (a person's second question
    # comes seconds later): timed on their own, then the steady state once loading has finished
    early = time_replies(pipeline, [(it.question, it.history) for it in items[1:11]])["reply"]
    settle = pipeline.settle()
    timed = time_replies(pipeline, [(it.question, it.history) for it in items], repeat)
    times, cpu, both, suggest, stages = (timed["reply"], timed["cpu"], timed["both"], timed["suggestions"],
                                         timed["stages"])

    def pct(values, q):
        return round(float(np.percentile(values, q)), 1)

    out = {"startup_s": round(startup, 2), "ask_p50_ms": pct(times, 50), "ask_p95_ms": pct(times, 95),
           "ask_cpu_p50_ms": pct(cpu, 50), "ask_cpu_p95_ms": pct(cpu, 95), "asks": len(times),
           "retrieve_p50_ms": pct(stages.get("retrieve", [0.0]), 50), "retrieve_p95_ms": pct(stages.get("retrieve", [0.0]), 95),
           "answer_p95_ms": pct(stages.get("answer", [0.0]), 95), "first_answer_cited": bool(first.citations),
           "suggestions_p50_ms": pct(suggest, 50) if suggest else None,
           "suggestions_p95_ms": pct(suggest, 95) if suggest else None,
           "with_suggestions_p95_ms": pct(both, 95),
           "early_reply_p50_ms": pct(early, 50), "early_reply_max_ms": pct(early, 100),
           "settle_s": round(settle, 2), "rss_mb": round(rss_mb()), **memory_now()}
    index = pipeline.index
    if hasattr(index, "segments"):
        vectors = np.concatenate([pipeline.encoder.encode_queries([it.question for it in items[i : i + 8]])
                                  for i in range(0, len(items), 8)])
        _, approx = index.dense.search(vectors, 10)
        if len(index.segments) == 1:
            exact_rows = exact_search(np.asarray(index.passage_vectors), vectors, 10)[1]
        else:  # several segments: exact over all their vectors, tombstoned rows left out
            scores = np.asarray(index.passage_vectors) @ vectors.T
            scores[~np.asarray(index.live, dtype=bool)] = -np.inf
            exact_rows = np.argsort(-scores, axis=0, kind="stable")[:10].T
        out["recall_at_10"] = round(recall_at(np.asarray(exact_rows), approx, 10), 4)
        out["index_type"] = index.manifest.get("index_type")
        out["dense"] = {k: v for k, v in index.manifest["segments"][0]["dense"].items() if k != "tuning"}
    if add_one:
        from rag.search.updates import add_paths

        from embeddings import load_encoder

        doc_copy = Path(tempfile.mkdtemp()) / ADD_DOC.name
        shutil.copyfile(ADD_DOC, doc_copy)
        with fresh_embedding_cache(index_dir):
            t = time.perf_counter()
            report = add_paths(corpus_dir, index_dir, [doc_copy], lambda: load_encoder(model), model)
            out["add_one_s"] = round(time.perf_counter() - t, 2)
        out["add_one"] = report.lines()
    return out


@contextlib.contextmanager
def fresh_embedding_cache(index_dir: Path):
    """Time an add with nothing cached for it: the index's embedding cache is moved aside, then put back."""
    from rag.search.index import embedding_cache_dir

    cache = embedding_cache_dir(index_dir, json.loads((Path(index_dir) / "manifest.json").read_text())["model"])
    aside = cache.with_name(cache.name + ".aside")
    if cache.exists():
        cache.rename(aside)
    try:
        yield
    finally:
        shutil.rmtree(cache, ignore_errors=True)
        if aside.exists():
            aside.rename(cache)


def shipped_add(model: str) -> dict:
    """Adding one document to the shipped corpus's index (model loaded, nothing cached for it) against building the
    whole index from scratch (no embedding cache), both in this process."""
    from embeddings import load_encoder
    from rag.search.index import CorpusIndex, open_index
    from rag.search.updates import add_paths
    from rag.pipeline import Pipeline, PipelineConfig

    cfg = Pipeline(PipelineConfig(model=model)).config
    tmp = Path(tempfile.mkdtemp(prefix="rag-add-"))
    try:
        shutil.copytree(cfg.corpus_dir, tmp / "corpus")
        encoder = load_encoder(model)
        open_index(tmp / "corpus", tmp / "index", lambda: encoder, model, log=lambda m: None)  # embeds (cache) once
        with fresh_embedding_cache(tmp / "index"):
            t = time.perf_counter()
            report = add_paths(tmp / "corpus", tmp / "index", [ADD_DOC], lambda: encoder, model)
            add_s = time.perf_counter() - t
        t = time.perf_counter()
        fresh = load_encoder(model, cache=False)
        CorpusIndex.build(tmp / "corpus", fresh).save(tmp / "full")
        full_s = time.perf_counter() - t
        return {"add_one_s": round(add_s, 2), "full_rebuild_s": round(full_s, 1),
                "speedup": round(full_s / add_s, 1), "add": report.lines()}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def threads_probe(index_dir: Path, corpus_dir: Path, model: str) -> dict:
    """In this process (its environment sets RAG_SEARCH_THREADS / OMP_WAIT_POLICY): retrieval latency only."""
    from eval.gold import load_gold
    from rag.pipeline import Pipeline, PipelineConfig

    pipeline = Pipeline(PipelineConfig(model=model, corpus_dir=corpus_dir, index_dir=index_dir)).warm_up(
        log=lambda m: None)
    queries = [pipeline.processor.run(it.question) for it in load_gold()]
    vectors = pipeline.encoder.encode_queries([q.search_text for q in queries])
    times = []
    for _ in range(3):
        for q, v in zip(queries, vectors):
            t = time.perf_counter()
            pipeline.retriever.run(q, k=5, query_vector=v)
            times.append((time.perf_counter() - t) * 1e3)
    return {"retrieve_p50_ms": round(float(np.percentile(times, 50)), 2),
            "retrieve_p95_ms": round(float(np.percentile(times, 95)), 2)}


def threads_benchmark(work: Path, model: str, busy: int) -> list[dict]:
    """Retrieval latency with 1 or 2 FAISS threads and OpenMP threads sleeping or spinning, with `busy` extra
    processes spinning on the cores (bounded: they end with the measurement)."""
    out = []
    for threads in ("1", "2"):
        for policy in ("PASSIVE", "ACTIVE"):
            burners = [subprocess.Popen([sys.executable, "-c", "import time\nt=time.time()\nwhile time.time()-t<600: pass"])
                       for _ in range(busy)]
            try:
                env = dict(os.environ, RAG_SEARCH_THREADS=threads, OMP_WAIT_POLICY=policy)
                run = subprocess.run([sys.executable, "-m", "eval.scale", "--threads-probe", str(work), "--model",
                                      model], capture_output=True, text=True, env=env, cwd=PROJECT_ROOT)
                row = json.loads(run.stdout.strip().splitlines()[-1])
            finally:
                for b in burners:
                    b.kill()
                    b.wait()
            out.append({"search_threads": int(threads), "omp_wait_policy": policy, "busy_processes": busy,
                        "loadavg": round(os.getloadavg()[0], 1), **row})
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.scale", description=__doc__)
    parser.add_argument("--passages", type=int, default=10_000)
    parser.add_argument("--store", default=os.environ.get("RAG_STORE", "faiss"), choices=("faiss", "pgvector"))
    parser.add_argument("--model", default=None)
    parser.add_argument("--json", action="store_true", help="print only the JSON object")
    parser.add_argument("--repeat", type=int, default=2, help="passes over the gold questions")
    parser.add_argument("--add-one", action="store_true", help="also time adding one real document")
    parser.add_argument("--shipped-add", action="store_true", help="add-one vs full rebuild on the shipped corpus")
    parser.add_argument("--keep", type=Path, default=None, help="build into this folder and keep it")
    parser.add_argument("--reuse", action="store_true", help="with --keep: measure the index already there")
    parser.add_argument("--build-only", action="store_true", help="with --keep: build, do not measure (run the "
                        "build under `nice`, then measure with --reuse at normal priority: the measurement is light)")
    parser.add_argument("--threads", type=int, default=None, metavar="BUSY",
                        help="with --keep --reuse: retrieval latency by FAISS threads and OpenMP wait policy, with BUSY "
                             "extra spinning processes")
    parser.add_argument("--threads-probe", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--measure", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    from embeddings import DEFAULT_MODEL

    model = args.model or DEFAULT_MODEL
    log = (lambda m: print(m, file=sys.stderr)) if args.json else print
    if args.shipped_add:
        print(json.dumps(shipped_add(model)))
        return 0
    if args.threads_probe:
        print(json.dumps(threads_probe(args.threads_probe / "index", args.threads_probe / "corpus", model)))
        return 0
    if args.threads is not None and args.keep:
        for row in threads_benchmark(args.keep, model, args.threads):
            print(json.dumps(row))
        return 0
    if args.measure:
        print(json.dumps(measure(args.measure / "index", args.measure / "corpus", model, args.store, args.repeat,
                                 args.add_one)))
        return 0
    if args.store == "pgvector" and not os.environ.get("RAG_STORE_URL"):
        from rag.search.stores import embedded_postgres

        with embedded_postgres() as url:  # the project's own server (unix socket), stopped at the end
            os.environ["RAG_STORE_URL"] = url
            try:
                return _run(args, model, log)
            finally:
                os.environ.pop("RAG_STORE_URL", None)
    return _run(args, model, log)


def _run(args, model: str, log) -> int:
    """Build (or reuse) the synthetic index and measure it in a fresh process."""
    work = args.keep or Path(tempfile.mkdtemp(prefix="rag-scale-"))
    try:
        built: dict = {}
        if not (args.reuse and (work / "index" / "manifest.json").exists()):
            log(f"Synthesizing and indexing {args.passages} passages in {work}")
            built = build_synthetic(args.passages, model, work / "index", work / "corpus", log=log)
            if args.store == "pgvector":
                from rag.search.stores.pgvector import PgVectorStore

                t = time.perf_counter()
                PgVectorStore.from_index_dir(work / "index").close()
                built["pg_load_s"] = round(time.perf_counter() - t, 1)
            if args.build_only:
                (work / "build.json").write_text(json.dumps(built), encoding="utf-8")
                print(json.dumps({"passages": args.passages, **built}))
                return 0
        if not built and (work / "build.json").exists():
            built = json.loads((work / "build.json").read_text(encoding="utf-8"))
        log("Measuring in a fresh process")
        cmd = [sys.executable, "-m", "eval.scale", "--measure", str(work), "--store", args.store, "--model", model,
               "--repeat", str(args.repeat)] + (["--add-one"] if args.add_one else [])
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=PROJECT_ROOT)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            return out.returncode
        measured = json.loads(out.stdout.strip().splitlines()[-1])
        result = {"passages": args.passages, "store": args.store, "build_s": built.get("build_s"),
                  **{k: measured.get(k) for k in ("startup_s", "rss_mb", "private_mb", "ask_p50_ms", "ask_p95_ms", "ask_cpu_p50_ms",
                                                   "ask_cpu_p95_ms", "recall_at_10", "index_type")},
                  "details": {**{k: v for k, v in built.items() if k != "dense"}, **measured,
                              "loadavg": os.getloadavg(), "machine": describe()}}
        print(json.dumps(result))
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
