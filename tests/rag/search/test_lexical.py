"""Our BM25 index against a plain numpy implementation of Lucene's BM25 (the reference formula)."""

import math
from collections import Counter

import numpy as np

from rag.search.analysis import SwedishAnalyzer
from rag.search.lexical import LexicalIndex

TEXTS = [
    "Regeringen avsätter 500 miljoner kronor årligen för en jämlik cancervård.",
    "Kontaktsjuksköterskan ger stöd till patienter och närstående under cancerbehandlingen.",
    "Standardiserade vårdförlopp ska korta väntetiderna i cancervården.",
    "Barncancercentrumen analyserar utvecklingsområden inom barncancervården.",
    "Psykosocialt stöd till barn och deras familjer är viktigt.",
]


def reference_bm25(docs_tokens, query_tokens, k1=1.2, b=0.75):
    """Lucene BM25 (Robertson idf with +1, as in bm25s 'lucene'): per-document score."""
    n = len(docs_tokens)
    avgdl = sum(len(d) for d in docs_tokens) / n
    df = Counter(t for d in docs_tokens for t in set(d))
    scores = np.zeros(n)
    for i, doc in enumerate(docs_tokens):
        tf = Counter(doc)
        for t in query_tokens:
            if t not in tf:
                continue
            idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
            scores[i] += idf * tf[t] / (tf[t] + k1 * (1 - b + b * len(doc) / avgdl))
    return scores


def test_scores_match_the_reference_formula():
    analyzer = SwedishAnalyzer.fit(TEXTS)
    lex = LexicalIndex(analyzer)
    lex.index(TEXTS)
    for question in ("stöd till barn", "cancervård väntetider", "kontaktsjukskoterska", "miljoner kronor"):
        tokens = analyzer.analyze(question)
        expected = reference_bm25([analyzer.analyze(t) for t in TEXTS], tokens)
        assert np.allclose(lex.scores(tokens), expected, atol=1e-5), question


def test_search_ranks_and_survives_save_load(tmp_path):
    lex = LexicalIndex(SwedishAnalyzer.fit(TEXTS))
    lex.index(TEXTS)
    rows, scores = lex.search("psykosocialt stod for barn", k=3)
    assert rows[0] == 4 and list(scores) == sorted(scores, reverse=True)
    lex.save(tmp_path / "lex")
    again = LexicalIndex.load(tmp_path / "lex")
    assert np.allclose(again.scores(lex.analyzer.analyze("väntetider")), lex.scores(lex.analyzer.analyze("väntetider")))


def test_unknown_words_score_nothing_and_k_is_clamped():
    lex = LexicalIndex(SwedishAnalyzer.fit(TEXTS))
    lex.index(TEXTS)
    rows, _ = lex.search("fotbolls-VM", k=100)
    assert len(rows) == 0
    rows, _ = lex.search("cancervården", k=100)
    assert 0 < len(rows) <= len(TEXTS)


def test_idf_is_higher_for_rarer_tokens():
    lex = LexicalIndex(SwedishAnalyzer.fit(TEXTS))
    lex.index(TEXTS)
    idf = lex.idf()
    assert idf["barncancervård"] > idf["stöd"]


def test_same_postings_compares_the_stored_postings_and_follows_updates():
    lex = LexicalIndex(SwedishAnalyzer.fit(TEXTS))
    lex.index(TEXTS)
    # "regering" has no accents: its folded form is held by exactly the same passages with the same frequencies
    assert lex.same_postings("regering", "~regering")
    assert np.array_equal(lex.postings("regering")[1], lex.postings("~regering")[1])
    assert not lex.same_postings("stöd", "canc")  # different postings
    assert lex.frequency("psykosocial") == lex.frequency("familj") == 1
    assert not lex.same_postings("psykosocial", "barncancercentrum")  # the same frequency, other passages
    assert lex.same_postings("no-such-token", "nor-this") and not lex.same_postings("regering", "no-such-token")
    # one passage holding only the word, one only its folded form: the frequencies still agree, the postings do not,
    # and the answer cached for the earlier statistics is not the one given
    lex.append([lex.vocabulary.add(["regering"]), lex.vocabulary.add(["~regering"])])
    assert lex.frequency("regering") == lex.frequency("~regering") == 2
    assert not lex.same_postings("regering", "~regering")
