"""The answer builder on the real index: features, the ranker's order, selection, the answer decision."""

import math

import pytest

from rag.answer.model import ANSWER_FEATURES, SENTENCE_FEATURES


def _ranked(pipeline, question):
    query = pipeline.processor.run(question, ())
    retrieval = pipeline.retriever.run(query, k=pipeline.config.k)
    ranked = pipeline.builder.candidates(query, retrieval)
    return query, retrieval, ranked


def test_every_candidate_has_every_feature_and_a_probability(pipeline):
    _, _, ranked = _ranked(pipeline, "Vad är ett standardiserat vårdförlopp?")
    assert ranked
    for c in ranked:
        assert set(c.features) == set(SENTENCE_FEATURES)
        assert all(math.isfinite(v) for v in c.features.values())
        assert 0.0 < c.score < 1.0
    assert [c.score for c in ranked] == sorted((c.score for c in ranked), reverse=True)


def test_the_definition_question_is_answered_by_a_defining_sentence(pipeline):
    _, _, ranked = _ranked(pipeline, "Vad är ett standardiserat vårdförlopp?")
    best = pipeline.index.sentences[ranked[0].row].text
    assert "vårdförlopp" in best.lower() and " är " in f" {best} "


def test_an_amount_question_quotes_a_sentence_with_an_amount(pipeline):
    answer = pipeline.ask("Hur mycket pengar får regionerna för cancervården 2024?")
    assert not answer.abstained
    assert any(ch.isdigit() for ch in answer.citations[0].quote)


def test_a_count_the_sources_do_not_give_is_refused_not_answered_with_kronor(pipeline):
    answer = pipeline.ask("hur många kontaktsjuksköterskor finns i region Örebro")
    assert answer.abstained and answer.reason == "not_covered"


def test_selection_keeps_reading_order_and_the_length_budget(pipeline):
    _, _, ranked = _ranked(pipeline, "Vilket stöd finns för barn med cancer och deras familjer?")
    chosen = pipeline.builder.select(ranked)
    assert 1 <= len(chosen) <= pipeline.builder.max_sentences
    keys = [(c.passage_rank, pipeline.index.sentences[c.row].start) for c in chosen]
    assert keys == sorted(keys)
    assert sum(len(pipeline.index.sentences[c.row].text) for c in chosen[1:]) <= pipeline.builder.max_chars


def test_evidence_has_the_answer_features_and_drives_the_decision(pipeline):
    query, retrieval, ranked = _ranked(pipeline, "Vad är ett standardiserat vårdförlopp?")
    evidence = pipeline.builder.evidence(query, retrieval, ranked)
    assert set(evidence.values) == set(ANSWER_FEATURES) and evidence.qtype == "definition"
    p = pipeline.builder.p_answerable(evidence)
    assert pipeline.builder.answerable(evidence) == (p >= pipeline.builder.model.answerable.threshold)


@pytest.mark.parametrize("question", ["Vem vann fotbolls-VM 1958?", "Hur bakar man surdegsbröd?"])
def test_off_topic_questions_are_refused(pipeline, question):
    assert pipeline.ask(question).abstained
