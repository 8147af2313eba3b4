"""The learned second line of the safety triage: a classifier of messages into urgent / suicide / advice / none.

Two logistic regressions, one over the message's sentence embedding (the bundled multilingual-e5-small query vector,
the same vector retrieval uses) and one over character n-grams of the accent-folded message (robust to typos),
averaged. A class is raised when its probability reaches its threshold. Fitted by `python -m eval.safety fit` on
the training sets in `eval/safety/`, thresholds chosen on the development set (never on the held-out set); weights,
thresholds and provenance are stored in `rag/data/safety/classifier.npz` and `classifier.json`. No pickles: the weights are plain arrays.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from rag.safety.lexicon import DATA_DIR, normalize_message

CLASSES = ("advice", "none", "suicide", "urgent")
NGRAMS = (2, 5)


def char_ngrams(text: str, ngram_range: tuple[int, int] = NGRAMS) -> list[str]:
    """Character n-grams of each word padded with spaces (scikit-learn's "char_wb" analyzer, re-implemented so
    the shipped model needs only numpy at run time; a test checks it against scikit-learn)."""
    lo, hi = ngram_range
    out: list[str] = []
    for word in normalize_message(text).split():
        word = f" {word} "
        for n in range(lo, hi + 1):
            offset = 0
            out.append(word[:n])
            while offset + n < len(word):
                offset += 1
                out.append(word[offset : offset + n])
            if offset == 0:  # a word shorter than n is counted once
                break
    return out


@dataclass
class SafetyClassifier:
    """P(class | message) from an embedding model and a character n-gram model.

    Parameters
    ----------
    emb_coef, emb_intercept : np.ndarray
        Logistic regression over the L2-normalized query embedding: (n_classes, dim), (n_classes,).
    vocabulary : dict
        Character n-gram -> column.
    idf : np.ndarray
        Inverse document frequency per column.
    char_coef, char_intercept : np.ndarray
        Logistic regression over the sublinear, L2-normalized tf-idf vector.
    thresholds : dict
        Class -> the probability at which it is raised.
    """

    emb_coef: np.ndarray
    emb_intercept: np.ndarray
    vocabulary: dict[str, int]
    idf: np.ndarray
    char_coef: np.ndarray
    char_intercept: np.ndarray
    thresholds: dict[str, float]
    classes: tuple[str, ...] = CLASSES
    provenance: dict = field(default_factory=dict)
    context_threshold: float = 1.0
    """The probability needed to raise a class when the lexicon reads the message as general, past or negated."""

    @classmethod
    @lru_cache(maxsize=2)
    def load(cls, directory: Path = DATA_DIR) -> "SafetyClassifier | None":
        """The shipped classifier, or None when it has not been fitted."""
        npz, meta = directory / "classifier.npz", directory / "classifier.json"
        if not npz.exists() or not meta.exists():
            return None
        info = json.loads(meta.read_text(encoding="utf-8"))
        arrays = np.load(npz, allow_pickle=False)
        vocab = {g: i for i, g in enumerate(info["ngrams"])}
        return cls(arrays["emb_coef"], arrays["emb_intercept"], vocab, arrays["idf"], arrays["char_coef"],
                   arrays["char_intercept"], info["thresholds"], tuple(info["classes"]), info.get("provenance", {}),
                   info.get("context_threshold", 1.0))

    def save(self, directory: Path = DATA_DIR) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(directory / "classifier.npz", emb_coef=self.emb_coef.astype(np.float32),
                            emb_intercept=self.emb_intercept.astype(np.float32), idf=self.idf.astype(np.float32),
                            char_coef=self.char_coef.astype(np.float32),
                            char_intercept=self.char_intercept.astype(np.float32))
        ngrams = [g for g, _ in sorted(self.vocabulary.items(), key=lambda kv: kv[1])]
        info = {"classes": list(self.classes), "thresholds": self.thresholds,
                "context_threshold": self.context_threshold, "provenance": self.provenance, "ngrams": ngrams}
        (directory / "classifier.json").write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")

    def char_vector(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """Sparse tf-idf (columns, values) of the message, sublinear tf and L2-normalized like scikit-learn's."""
        counts: dict[int, int] = {}
        for gram in char_ngrams(text):
            col = self.vocabulary.get(gram)
            if col is not None:
                counts[col] = counts.get(col, 0) + 1
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        cols = np.fromiter(counts, dtype=np.int64)
        values = (1.0 + np.log(np.fromiter(counts.values(), dtype=np.float64))) * self.idf[cols]
        values /= np.linalg.norm(values) or 1.0
        return cols, values.astype(np.float32)

    def probabilities(self, text: str, vector: np.ndarray | None = None) -> dict[str, float]:
        """Class probabilities: the mean of both models, or the character model alone without a vector."""
        cols, values = self.char_vector(text)
        char_z = self.char_intercept + (self.char_coef[:, cols] @ values if cols.size else 0.0)
        p = _softmax(char_z)
        if vector is not None:
            p = (p + _softmax(self.emb_intercept + self.emb_coef @ np.asarray(vector, dtype=np.float32))) / 2
        return {c: float(x) for c, x in zip(self.classes, p)}

    def run(self, text: str, vector: np.ndarray | None = None) -> tuple[set[str], dict[str, float]]:
        """(the classes raised on their thresholds alone, the probabilities)."""
        p = self.probabilities(text, vector)
        raised = {c for c in ("suicide", "urgent", "advice") if p[c] >= self.thresholds.get(c, 1.1)}
        return raised, p


def _softmax(z: np.ndarray) -> np.ndarray:
    """Multinomial logistic regression's probabilities."""
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()
