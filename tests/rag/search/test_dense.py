"""Approximate dense search (IVF, 8-bit codes, exact re-ranking) against exact search, on real sentence vectors."""

import numpy as np
import pytest

from rag.search.dense import DenseIndex, exact_search, recall_at


@pytest.fixture(scope="module")
def real_vectors(pipeline):
    """30 000 vectors made of the shipped corpus's real sentence vectors (normalized means of 1-4 of them)."""
    index = pipeline.index
    rows = [i for i in range(len(index.sentences)) if not index.sentences[i].is_heading]
    base = np.asarray(index.sentence_vectors[np.asarray(rows)])
    rng = np.random.default_rng(5)
    mixes = [base[rng.integers(0, len(base), size=int(rng.integers(1, 5)))].mean(axis=0) for _ in range(30_000)]
    vectors = np.asarray(mixes, dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, base


def test_ivf_reaches_the_recall_it_was_tuned_for_on_other_queries(real_vectors, pipeline, tmp_path):
    vectors, sentences = real_vectors
    dense = DenseIndex(vectors.shape[1], kind="ivf").index(vectors, sample_queries=sentences[::7])
    assert dense.params["type"] == "ivf_sq8" and dense.params["recall_at_10"] >= 0.97
    from eval.gold import load_gold

    queries = pipeline.encoder.encode_queries([it.question for it in load_gold()])  # real questions, not the sample
    _, exact = exact_search(vectors, queries, 10)
    _, approx = dense.search(queries, 10)
    assert recall_at(exact, approx, 10) >= 0.95
    dense.save(tmp_path / "ivf.faiss")
    again = DenseIndex.load(tmp_path / "ivf.faiss", vectors, dense.params)
    assert np.array_equal(again.search(queries, 10)[1], approx)


def test_tombstoned_rows_are_never_returned(real_vectors):
    vectors, sentences = real_vectors
    live = np.ones(len(vectors), dtype=np.uint8)
    for kind, n in (("flat", 2000), ("ivf", len(vectors))):
        dense = DenseIndex(vectors.shape[1], kind=kind).index(vectors[:n], sample_queries=sentences[::7])
        _, top = dense.search(sentences[:20], 5)
        live_n = live[:n].copy()
        live_n[top.ravel()] = 0
        _, again = dense.search(sentences[:20], 5, live=live_n)
        assert not set(again.ravel().tolist()) & set(top.ravel().tolist())
        assert (again >= 0).all()


def test_exact_search_is_chosen_for_small_segments(real_vectors):
    vectors, _ = real_vectors
    small = DenseIndex(vectors.shape[1]).index(vectors[:1000])
    assert small.kind == "flat"
    q = vectors[:3]
    assert np.array_equal(small.search(q, 10)[1], exact_search(vectors[:1000], q, 10)[1])
