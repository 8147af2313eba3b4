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


def test_pruned_bm25_top_k_equals_the_exhaustive_one_on_real_questions(pipeline):
    from eval.gold import load_gold
    from rag.search.retrieve import sparse_term_bm25, top_term_bm25
    from rag.search.dense import top_indices

    lex = pipeline.index.lexical
    questions = [it.question for it in load_gold()]
    pruned = 0
    for question in questions:
        query = pipeline.processor.run(question)
        rows, scores = sparse_term_bm25(query, lex.postings)
        for k in (5, 50):
            best = top_indices(scores, min(k, len(scores)))
            stats: dict = {}
            got_rows, got_scores = top_term_bm25(query, lex, k, prune_from=0, stats=stats)
            assert got_rows.tolist() == rows[best].tolist(), question
            assert np.array_equal(got_scores, scores[best]), question
            pruned += stats["pruned"] and stats["read_whole"] < stats["tokens"]
    assert pruned >= len(questions)  # of 2 x len(questions) runs: mostly the pruned path, not the fallback


def test_scores_at_equals_the_postings(pipeline):
    lex = pipeline.index.lexical
    rng = np.random.default_rng(0)
    seen = 0
    for token in ("canc", "~kontaktsjukskotersk", "stöd", "behandling", "+stå", "no-such-token"):
        fresh = type(lex).__new__(type(lex))
        fresh.__dict__.update({k: v for k, v in lex.__dict__.items() if k != "_postings_cache"})
        rows, scores = lex.postings(token)
        probe = np.unique(np.concatenate([rows[:: 3], rng.integers(0, lex.count(), 50)]))
        expected = np.zeros(len(probe), dtype=np.float32)
        expected[np.isin(probe, rows)] = scores[np.isin(rows, probe)]
        assert np.array_equal(fresh.scores_at(token, probe), expected)  # from the stored postings
        assert np.array_equal(lex.scores_at(token, probe), expected)  # from the cached scored postings
        assert lex.frequency(token) == len(rows)
        assert not len(rows) or scores.max() == lex.bound(token) < fresh.bound(token)  # scored: exact; else idf
        seen += bool(len(rows))
    assert seen >= 4


def test_the_lexical_half_in_its_own_thread_gives_the_same_hits(pipeline, monkeypatch, threads_calling):
    import threading

    from eval.gold import load_gold
    from rag.search import retrieve

    retriever = pipeline.retriever
    queries = [pipeline.processor.run(it.question) for it in load_gold()[:60]]
    vectors = [retriever.encode_query(q.search_text) for q in queries]
    threads = threads_calling(retrieve, "top_term_bm25")
    monkeypatch.setattr(retrieve, "PARALLEL", False)
    serial = [retriever.run(q, k=10, query_vector=v) for q, v in zip(queries, vectors)]
    assert threads == {threading.current_thread().name}
    threads.clear()
    monkeypatch.setattr(retrieve, "PARALLEL", True)
    monkeypatch.setattr(retrieve, "LARGE_INDEX", 0)  # the shipped index is below it: force the thread
    parallel = [retriever.run(q, k=10, query_vector=v) for q, v in zip(queries, vectors)]
    assert len(threads) == 1 and next(iter(threads)).startswith("lexical")
    for a, b in zip(serial, parallel):
        assert a.rows == b.rows and a.lexical == b.lexical and a.dense == b.dense
        assert [h.score for h in a.hits] == [h.score for h in b.hits]


def test_tokens_with_equal_postings_are_read_once_with_the_same_scores(pipeline, monkeypatch):
    from eval.gold import load_gold
    from rag.search import retrieve
    from rag.search.retrieve import merge_equal_tokens, top_term_bm25

    lex = pipeline.index.lexical
    queries = [pipeline.processor.run(q) for q in [it.question for it in load_gold()] + [QUESTION, "vad kostar cellprov"]]
    merged = [merge_equal_tokens(q, lex) for q in queries]
    distinct = [len(set(q.lexical_tokens)) for q in queries]
    fewer = [len(set(m.lexical_tokens)) for m in merged]
    assert sum(fewer) < 0.8 * sum(distinct)  # on the corpus's text about a third of the tokens repeat another's postings
    for query, m in zip(queries, merged):
        assert [t.word for t in m.terms] == [t.word for t in query.terms]
        assert all(len(a.parts) == len(b.parts) for a, b in zip(query.terms, m.terms))  # a mean keeps its count
    with_merge = [top_term_bm25(q, lex, 50) for q in queries]
    monkeypatch.setattr(retrieve, "merge_equal_tokens", lambda query, lexical: query)
    without = [top_term_bm25(q, lex, 50) for q in queries]
    for (rows, scores), (rows2, scores2) in zip(with_merge, without):
        assert rows.tolist() == rows2.tolist() and np.array_equal(scores, scores2)  # bit for bit
