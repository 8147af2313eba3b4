"""The ONNX encoder's session: how its threads wait (spin during a run, stop after it) and the RAG_ORT_SPIN knob."""

import numpy as np
import pytest

from embeddings.onnx_backend import OnnxEncoder


@pytest.fixture(scope="module")
def shipped(pipeline):
    if not isinstance(pipeline.encoder, OnnxEncoder):
        pytest.fail(f"the default engine is expected to be the ONNX encoder, got {type(pipeline.encoder).__name__}")
    return pipeline.encoder


def entry(encoder: OnnxEncoder, key: str) -> str:
    options = encoder._session.get_session_options()
    try:
        return options.get_session_config_entry(key)
    except Exception:  # onnxruntime raises for a key that was never set
        return ""


@pytest.mark.parametrize("setting, stop, spin", [(None, "1", ""), ("on", "", ""), ("off", "", "0")])
def test_threads_stop_spinning_after_a_run_unless_told_otherwise(shipped, monkeypatch, setting, stop, spin):
    if setting is None:
        monkeypatch.delenv("RAG_ORT_SPIN", raising=False)
    else:
        monkeypatch.setenv("RAG_ORT_SPIN", setting)
    encoder = OnnxEncoder(shipped.folder, shipped.name)
    assert entry(encoder, "session.force_spinning_stop") == stop
    assert entry(encoder, "session.intra_op.allow_spinning") == spin
    # however its threads wait, the vectors are the shipped encoder's
    texts = ["Vad gör en kontaktsjuksköterska?", "Hur länge väntar man på besked?"]
    assert np.array_equal(encoder.encode_queries(texts), shipped.encode_queries(texts))
