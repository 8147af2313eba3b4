"""Inference cost of the cross-encoder: ONNX export (fp32, int8) and per-question latency / peak RSS on 2 threads.

    nice -n 10 python scripts/rerank/bench.py export --model ce-e5s-sent --epoch 2
    python scripts/rerank/bench.py latency --model ce-e5s-sent --epoch 2          # every engine, each in a fresh process
    python scripts/rerank/bench.py depth                                          # cost of 1..12 layers (ONNX int8)

Export follows embeddings/onnx_export.py: eager attention, torch.onnx.export (TorchScript path, opset 17, dynamic batch
and token axes), int8 = onnxruntime dynamic quantization of the MatMul weights, per channel. The graph takes
input_ids and attention_mask and returns one score per pair (mean pooling and the linear head are in the graph).

Workloads, one question each (SweQUAD-MC test questions, their real first-stage candidates):
- chunks10: the top 10 chunks (title + text), max 256 tokens, one batch;
- sents20: the first 20 quotable sentences of the top 5 chunks (title line + sentence), max 128 tokens, one batch;
- sents_top10: every quotable sentence of the top 10 chunks (what MaxP passage reranking scores; ~48), one batch.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (MAX_LEN_CHUNK, MAX_LEN_SENTENCE, MODELS, ROOT, OnnxScorer, TorchScorer, build_model,  # noqa: E402
                    encode_pairs, load_tokenizer, mined, sentence_input, top_sentences)

RESULTS = ROOT / "results"


def onnx_dir(model: str, epoch: int, variant: str, layers: int | None = None) -> Path:
    tag = f"-L{layers}" if layers else ""
    return MODELS / model / f"onnx-e{epoch}{tag}-{variant}"


def export(model: str | None, epoch: int | None, layers: int | None = None) -> dict:
    import torch

    from embeddings.e5_convert import ensure_e5_st_model

    torch.set_num_threads(1)
    folder = ensure_e5_st_model()
    net = build_model(folder, layers=layers).eval()
    if model:
        net.load_state_dict(torch.load(MODELS / model / f"epoch-{epoch}.pt", map_location="cpu"))
    name = model or "untrained"
    tok = load_tokenizer(folder)
    ids, mask = encode_pairs(tok, ["SVF", "Vad är ett visum?"], ["Regeringen avsätter medel.", "Ett visum är ett tillstånd."], 64)
    fp32 = onnx_dir(name, epoch or 0, "fp32", layers)
    fp32.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.from_numpy(ids), torch.from_numpy(mask)), str(fp32 / "model.onnx"),
                          input_names=["input_ids", "attention_mask"], output_names=["score"], opset_version=17,
                          dynamo=False, dynamic_axes={"input_ids": {0: "batch", 1: "tokens"},
                                                      "attention_mask": {0: "batch", 1: "tokens"}, "score": {0: "batch"}})
    shutil.copyfile(folder / "tokenizer.json", fp32 / "tokenizer.json")
    t_fp32 = time.perf_counter() - t0
    from onnxruntime.quantization import QuantType, quantize_dynamic

    int8 = onnx_dir(name, epoch or 0, "int8", layers)
    int8.mkdir(parents=True, exist_ok=True)
    quantize_dynamic(str(fp32 / "model.onnx"), str(int8 / "model.onnx"), weight_type=QuantType.QInt8, per_channel=True,
                     op_types_to_quantize=["MatMul"])
    shutil.copyfile(folder / "tokenizer.json", int8 / "tokenizer.json")
    t_int8 = time.perf_counter() - t0
    # agreement with torch on real candidates
    rows = [r for r in mined("swequad-mc") if r["split"] == "test"][:10]
    qs, texts = [], []
    for r in rows:
        for _, h, s in top_sentences(r["hits"], 5)[:10]:
            qs.append(r["clean"]); texts.append(sentence_input(h["title"], s["text"]))
    with torch.inference_mode():
        ref = TorchScorer.__new__(TorchScorer)
        ref.torch, ref.model, ref.tok = torch, net, tok
        t = ref.score(qs, texts, MAX_LEN_SENTENCE)
    agree = {}
    for variant, d in (("fp32", fp32), ("int8", int8)):
        o = OnnxScorer(d, threads=1).score(qs, texts, MAX_LEN_SENTENCE)
        agree[variant] = {"max_abs_diff": float(np.max(np.abs(o - t))),
                          "spearman": float(np.corrcoef(np.argsort(np.argsort(o)), np.argsort(np.argsort(t)))[0, 1])}
    info = {"model": name, "epoch": epoch, "layers": layers or 12, "export_seconds_fp32": round(t_fp32, 1),
            "export_seconds_with_int8": round(t_int8, 1), "agreement_with_torch_on_100_pairs": agree,
            "size_mb": {v: round((d / "model.onnx").stat().st_size / 1e6, 1) for v, d in (("fp32", fp32), ("int8", int8))}}
    (fp32.parent / f"export-e{epoch or 0}{'-L' + str(layers) if layers else ''}.json").write_text(json.dumps(info, indent=2))
    print(json.dumps(info), flush=True)
    return info


def workloads(n_questions: int = 20) -> list[dict]:
    rows = [r for r in mined("swequad-mc") if r["split"] == "test"][:n_questions]
    out = []
    for r in rows:
        s5 = top_sentences(r["hits"], 5)[:20]
        s10 = top_sentences(r["hits"], 10)
        out.append({
            "q": r["clean"],
            "chunks10": [h["embed_text"] for h in r["hits"][:10]],
            "sents20": [sentence_input(h["title"], s["text"]) for _, h, s in s5],
            "sents_top10": [sentence_input(h["title"], s["text"]) for _, h, s in s10],
        })
    return out


def run_latency(engine: str, model: str, epoch: int, threads: int, repeats: int, layers: int | None = None) -> dict:
    """Runs inside a fresh process: load one engine, time each workload per question."""
    t0 = time.perf_counter()
    if engine == "ref":
        # calibration under the same load: the project's own query encoder (e5-small-onnx), one question per call
        from embeddings import load_encoder

        enc = load_encoder("e5-small-onnx")
        work = workloads()
        for w in work[:3]:
            enc.encode_queries([w["q"]])
        times = []
        for rep in range(repeats):
            for w in work:
                t = time.perf_counter()
                enc.encode_queries([w["q"]])
                times.append((time.perf_counter() - t) * 1e3)
        return {"engine": "ref e5-small-onnx encode_queries (1 question)", "p50_ms": round(float(np.percentile(times, 50)), 1),
                "p95_ms": round(float(np.percentile(times, 95)), 1), "calls": len(times),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0),
                "loadavg_after": os.getloadavg()}
    if engine == "torch":
        from embeddings.e5_convert import ensure_e5_st_model

        ckpt = MODELS / model / f"epoch-{epoch}.pt" if model != "untrained" else None
        scorer = TorchScorer(ensure_e5_st_model(), ckpt, threads=threads, layers=layers)
    else:
        scorer = OnnxScorer(onnx_dir(model, epoch, engine.split("-")[1], layers), threads=threads)
    load_s = time.perf_counter() - t0
    work = workloads()
    result = {"engine": engine, "threads": threads, "layers": layers or 12, "load_seconds": round(load_s, 2)}
    for name, max_len in (("chunks10", MAX_LEN_CHUNK), ("sents20", MAX_LEN_SENTENCE), ("sents_top10", MAX_LEN_SENTENCE)):
        times, sizes = [], []
        for w in work[:3]:  # warm-up
            scorer.score([w["q"]] * len(w[name]), w[name], max_len, batch=64)
        for rep in range(repeats):
            for w in work:
                texts = w[name]
                t = time.perf_counter()
                scorer.score([w["q"]] * len(texts), texts, max_len, batch=64)
                times.append((time.perf_counter() - t) * 1e3)
                sizes.append(len(texts))
        result[name] = {"p50_ms": round(float(np.percentile(times, 50)), 1),
                        "p95_ms": round(float(np.percentile(times, 95)), 1),
                        "mean_pairs": round(float(np.mean(sizes)), 1), "calls": len(times)}
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 0)
    result["loadavg_after"] = os.getloadavg()
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("export")
    e.add_argument("--model")
    e.add_argument("--epoch", type=int)
    e.add_argument("--layers", type=int)
    lat = sub.add_parser("latency")
    lat.add_argument("--model", required=True)
    lat.add_argument("--epoch", type=int, required=True)
    lat.add_argument("--engines", nargs="+", default=["ref", "onnx-int8", "onnx-fp32", "torch", "ref"])
    lat.add_argument("--threads", type=int, default=2)
    lat.add_argument("--repeats", type=int, default=1)
    lat.add_argument("--layers", type=int)
    one = sub.add_parser("one")  # internal: one engine in this process
    one.add_argument("--engine")
    one.add_argument("--model")
    one.add_argument("--epoch", type=int)
    one.add_argument("--threads", type=int)
    one.add_argument("--repeats", type=int)
    one.add_argument("--layers", type=int)
    args = ap.parse_args()
    if args.cmd == "export":
        export(args.model, args.epoch, args.layers)
    elif args.cmd == "one":
        print("RESULT " + json.dumps(run_latency(args.engine, args.model, args.epoch, args.threads, args.repeats,
                                                 args.layers)), flush=True)
    else:
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = []
        for engine in args.engines:
            cmd = [sys.executable, __file__, "one", "--engine", engine, "--model", args.model, "--epoch", str(args.epoch),
                   "--threads", str(args.threads), "--repeats", str(args.repeats)]
            if args.layers:
                cmd += ["--layers", str(args.layers)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(proc.stderr[-2000:], file=sys.stderr)
                continue
            res = json.loads(line[7:])
            print(json.dumps(res), flush=True)
            out.append(res)
        tag = f"-L{args.layers}" if args.layers else ""
        path = RESULTS / f"latency-{args.model}-e{args.epoch}{tag}-t{args.threads}.json"
        path.write_text(json.dumps(out, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
