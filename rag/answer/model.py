"""The learned answer decisions: which sentence to quote (a sentence ranker) and whether to answer at all.

Both are logistic regressions over features that carry across collections (cosines, idf-weighted coverage, ranks,
agreement of the retrievers, margins, the question type's match, lengths), fitted by `python -m eval.fit_answer` on
SweQUAD-MC train, SweFAQ dev, the gold tune split and counterfactual "not covered" questions (each answerable
question asked again with its own document taken out). They are stored with their provenance in
`rag/data/answer_model.json`; nothing is refitted when a user brings their own documents.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

DATA_PATH = Path(__file__).resolve().parents[1] / "data" / "answer_model.json"

SENTENCE_FEATURES = (
    "dense", "dense_gap", "passage_dense", "inv_rank", "fused_rel", "coverage", "coverage_plain", "passage_coverage",
    "local", "both_retrievers", "len_log", "first", "position", "fragment", "question_mark", "type_match",
    "has_number", "list_intro", "defines_target", "dense_x_coverage", "type_x_number",
)
"""Features of one candidate sentence (see `AnswerBuilder.candidates`)."""

ANSWER_FEATURES = (
    "top_score", "margin", "best_dense", "passage_dense", "best_coverage", "passage_coverage", "known_terms",
    "type_match_top", "n_terms_log", "both_retrievers_top", "mean_top3", "coverage_plain_top",
)
"""Features of a question's evidence as a whole (see `AnswerBuilder.evidence`)."""


@dataclass(frozen=True)
class LogisticModel:
    """A standardized logistic regression: p = sigmoid(bias + w . (x - mean) / scale)."""

    features: tuple[str, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    weights: tuple[float, ...]
    bias: float
    threshold: float = 0.5

    def logit(self, x: dict[str, float] | tuple[float, ...] | list[float]) -> float:
        values = [x[f] for f in self.features] if isinstance(x, dict) else x
        return self.bias + sum(w * (v - m) / s for w, v, m, s in zip(self.weights, values, self.mean, self.scale))

    def probability(self, x) -> float:
        z = self.logit(x)
        return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, z))))

    @classmethod
    def from_dict(cls, d: dict) -> "LogisticModel":
        return cls(tuple(d["features"]), tuple(d["mean"]), tuple(d["scale"]), tuple(d["weights"]), float(d["bias"]),
                   float(d.get("threshold", 0.5)))

    def to_dict(self) -> dict:
        return {"features": list(self.features), "mean": list(self.mean), "scale": list(self.scale),
                "weights": list(self.weights), "bias": self.bias, "threshold": self.threshold}


@dataclass(frozen=True)
class AnswerModel:
    """The sentence ranker and the answerability model, with where they came from."""

    sentence: LogisticModel
    answerable: LogisticModel
    extra_sentence_margin: float = 0.15
    """A further sentence is quoted when its probability is within this of the best one's."""
    provenance: dict = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None = None) -> "AnswerModel":
        """The shipped model, or the file RAG_ANSWER_MODEL names (to measure another fit, e.g. leave-one-out)."""
        return cls._load(Path(path or os.environ.get("RAG_ANSWER_MODEL") or DATA_PATH))

    @classmethod
    @lru_cache(maxsize=4)
    def _load(cls, path: Path) -> "AnswerModel":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return cls(LogisticModel.from_dict(data["sentence"]), LogisticModel.from_dict(data["answerable"]),
                   float(data.get("extra_sentence_margin", 0.15)), data.get("provenance", {}))

    def save(self, path: Path = DATA_PATH) -> None:
        Path(path).write_text(json.dumps({
            "sentence": self.sentence.to_dict(), "answerable": self.answerable.to_dict(),
            "extra_sentence_margin": self.extra_sentence_margin, "provenance": self.provenance,
        }, ensure_ascii=False, indent=1), encoding="utf-8")
