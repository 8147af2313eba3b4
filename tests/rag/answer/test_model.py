"""The learned answer model's data file: features, round trip, provenance."""

import json

from rag.answer.model import ANSWER_FEATURES, DATA_PATH, SENTENCE_FEATURES, AnswerModel, LogisticModel


def test_a_logistic_model_round_trips_and_computes_a_standardized_logit(tmp_path):
    m = LogisticModel(("a", "b"), (1.0, 0.0), (2.0, 1.0), (1.0, -1.0), 0.5, 0.3)
    assert m.logit({"a": 3.0, "b": 1.0}) == 0.5 + 1.0 * (3.0 - 1.0) / 2.0 - 1.0 * 1.0
    model = AnswerModel(m, m, 0.1, {"x": 1})
    model.save(tmp_path / "m.json")
    assert AnswerModel.load(tmp_path / "m.json") == model


def test_the_shipped_model_reads_the_builders_features_and_says_what_it_was_fitted_on():
    model = AnswerModel.load()
    assert model.sentence.features == SENTENCE_FEATURES
    assert model.answerable.features == ANSWER_FEATURES
    assert 0.0 < model.answerable.threshold < 1.0
    provenance = json.loads(DATA_PATH.read_text(encoding="utf-8"))["provenance"]
    fitted = provenance["fitted_on"]
    assert "swequad-train" in fitted and "swefaq-dev" in fitted and "gold-tune" in fitted
    assert any(k.endswith("counterfactual") for k in fitted)
    assert not any(("report" in k or "test" in k or "collections" in k) for k in fitted)
    assert provenance["commit"] and provenance["fitted_at"]
