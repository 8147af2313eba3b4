"""The learned second line: scikit-learn-compatible n-grams, the shipped weights and what they say on real text."""

import json

import numpy as np
import pytest

from rag.safety.classifier import NGRAMS, SafetyClassifier, char_ngrams
from rag.safety.lexicon import DATA_DIR, normalize_message


@pytest.mark.parametrize("text", [
    "Jag har 38,5 i feber efter kuren!", "ont i brostet", "a", "hej  då", "Vill INTE leva längre…", "x" * 7,
    "kräks ﬂer gånger", "2 av 10",
])
def test_char_ngrams_match_scikit_learns_char_wb_analyzer(text):
    from sklearn.feature_extraction.text import CountVectorizer

    reference = CountVectorizer(analyzer="char_wb", ngram_range=NGRAMS, lowercase=False).build_analyzer()
    assert char_ngrams(text) == reference(normalize_message(text))


def test_shipped_classifier_names_its_training_data_and_never_the_held_out_set():
    clf = SafetyClassifier.load()
    assert clf is not None
    info = json.loads((DATA_DIR / "classifier.json").read_text(encoding="utf-8"))
    fitted = info["provenance"]["fitted_on"]
    assert set(fitted) == {"train", "train2"} and "heldout" not in json.dumps(fitted)
    assert set(clf.thresholds) == {"urgent", "suicide", "advice"}
    assert all(0.0 < t < 1.0 for t in clf.thresholds.values())
    assert clf.emb_coef.shape == (4, 384) and clf.char_coef.shape[1] == len(clf.vocabulary) == clf.idf.size


def test_sparse_tfidf_matches_scikit_learns_vectorizer():
    from sklearn.feature_extraction.text import TfidfVectorizer

    clf = SafetyClassifier.load()
    vec = TfidfVectorizer(analyzer=char_ngrams, sublinear_tf=True, vocabulary=clf.vocabulary)
    vec.fit(["x"])
    vec.idf_ = clf.idf.astype(np.float64)
    text = "pappa har feber 38,9 och fick cellgifter i tisdags"
    dense = vec.transform([text]).toarray()[0]
    cols, values = clf.char_vector(text)
    assert np.allclose(dense[cols], values, atol=1e-5) and np.count_nonzero(dense) == cols.size


@pytest.fixture(scope="module")
def vectors(pipeline):
    def encode(texts):
        return pipeline.encoder.encode_queries(texts)
    return encode


@pytest.mark.parametrize("text, level", [
    ("ingen skulle märka om jag bara slutade finnas till", "suicide"),
    ("min man har lagt fram alla sina morfintabletter och säger att han är klar med livet", "suicide"),
    ("pappas läppar är blåa och han andas knappt", "urgent"),
    ("vad skulle du göra i mitt ställe, operation eller strålning?", "advice"),
])
def test_the_classifier_recognises_phrasings_by_meaning(vectors, text, level):
    clf = SafetyClassifier.load()
    p = clf.probabilities(text, vectors([text])[0])
    assert abs(sum(p.values()) - 1) < 1e-6
    assert max(p, key=p.get) == level


def test_ordinary_questions_are_not_raised(vectors):
    clf = SafetyClassifier.load()
    for text in ("Vad är ett standardiserat vårdförlopp?", "Hur mycket pengar får regionerna 2024?",
                 "Vilket stöd finns för närstående?", "Vad gör Regionala cancercentrum?"):
        raised, _ = clf.run(text, vectors([text])[0])
        assert not raised, text
