"""Retrievers on the shipped corpus: each mode alone and fused, and the query-vector cache."""

import numpy as np
import pytest

from rag.search.retrieve import MODES, Retriever, term_bm25

QUESTION = "Hur mycket kan regionerna söka för patologi och radiologi?"
PHRASE = "120 miljoner kronor som regionerna kommer att kunna ansöka om"


@pytest.mark.parametrize("mode", MODES)
def test_every_mode_alone_finds_a_document_phrased_question(pipeline, mode):
    retriever = Retriever(pipeline.index, pipeline.encoder, mode=mode)
    hits = retriever.run(pipeline.processor.run(QUESTION), k=5).hits
    assert any(PHRASE in h.passage.text for h in hits)
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_hybrid_finds_a_lay_question_that_needs_the_lay_vocabulary(pipeline):
    query = pipeline.processor.run("vad kostar cellprov")
    hits = Retriever(pipeline.index, pipeline.encoder, mode="hybrid", fusion="convex",
                     weights={"dense": 0.5, "lexical": 0.5}).run(query, k=5).hits
    assert any("avgiftsfri" in h.passage.text and "cellprovtagning" in h.passage.text for h in hits)


def test_term_bm25_counts_a_word_once_whatever_form_matches(pipeline):
    lex = pipeline.index.lexical
    with_diacritics = term_bm25(pipeline.processor.run("psykosocialt stöd"), lex.token_scores, lex.count())
    without = term_bm25(pipeline.processor.run("psykosocialt stod"), lex.token_scores, lex.count())
    assert np.argmax(with_diacritics) == np.argmax(without)


def test_query_vectors_are_cached_and_the_cache_is_bounded(pipeline):
    retriever = Retriever(pipeline.index, pipeline.encoder)
    retriever.query_cache_size = 2
    first = retriever.encode_query("Vad är SVF?")
    assert retriever.encode_query("Vad är SVF?") is first
    retriever.encode_query("fråga två")
    retriever.encode_query("fråga tre")
    assert len(retriever._query_cache) == 2 and "Vad är SVF?" not in retriever._query_cache


def test_bad_settings_are_rejected(pipeline):
    with pytest.raises(ValueError):
        Retriever(pipeline.index, pipeline.encoder, mode="magic")
    with pytest.raises(ValueError):
        Retriever(pipeline.index, pipeline.encoder, fusion="max")
    with pytest.raises(ValueError):
        Retriever(pipeline.index, pipeline.encoder).run(pipeline.processor.run(QUESTION), k=0)
