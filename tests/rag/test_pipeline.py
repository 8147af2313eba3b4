"""End to end on the shipped corpus with the real model and the real FAISS index: the product's promises."""

import pytest

from rag.pipeline import MAX_QUESTION_CHARS
from rag.answer.refusal import refusal_text

# (question, document, a phrase of the sentence that answers it) — questions about all three founding documents.
SEED_QUESTIONS = [
    ("Vilka yrkesgrupper ska medverka i det psykosociala stödet till barn med cancer?",
     "seeds/psykosocialt-stod-vid-cancer", "medverkan av kurator och psykolog betonas"),
    ("Hur mycket pengar avsätter regeringen årligen för en mer jämlik cancervård enligt svaret om psykosocialt stöd?",
     "seeds/psykosocialt-stod-vid-cancer", "500 miljoner kronor årligen"),
    ("Hur mycket kan regionerna söka för patologi och radiologi?",
     "seeds/overenskommelse-cancervard-2024", "120 miljoner kronor som regionerna kommer att kunna ansöka om"),
    ("Hur mycket av de 809 miljonerna går direkt till regionerna för arbetet med standardiserade vårdförlopp?",
     "seeds/overenskommelse-cancervard-2024", "365 miljoner kronor direkt till regionerna"),
    ("Hur mycket avsätter regeringen för cancervården under 2023 enligt SKR?",
     "seeds/skr-cancervard", "600 miljoner kronor under 2023"),
    ("Ska alla cancerpatienter ha tillgång till en kontaktsjuksköterska?",
     "seeds/skr-cancervard", "tillgång till en kontaksjuksköterska"),
]
OUT_OF_SCOPE = ["Vem vann fotbolls-VM 1958?", "Hur bakar man kanelbullar?", "Vilka biverkningar har tamoxifen?",
                "Vad blir det för väder i Göteborg i helgen?"]
URGENT = ["Jag har ont i bröstet och svårt att andas", "min pappa blöder mycket efter operationen",
          "jag har andnöd", "jag vill inte leva längre", "hög feber efter cellgiftsbehandlingen, vad gör jag"]


@pytest.mark.parametrize("question, doc_id, phrase", SEED_QUESTIONS)
def test_the_passage_holding_the_answer_is_retrieved(pipeline, question, doc_id, phrase):
    hits = pipeline.retrieve(question, k=5)
    assert any(h.passage.doc_id == doc_id and phrase in h.passage.text for h in hits), [h.passage.doc_id for h in hits]


@pytest.mark.parametrize("question, doc_id, phrase", SEED_QUESTIONS)
def test_the_answer_quotes_and_cites_the_answering_sentence(pipeline, question, doc_id, phrase):
    answer = pipeline.ask(question)
    assert not answer.abstained, answer.details
    assert any(phrase in c.quote and c.doc_id == doc_id for c in answer.citations), [c.quote for c in answer.citations]
    docs = pipeline.index.documents
    passages = {p.passage_id: p for p in pipeline.index.passages}
    for c in answer.citations:
        assert docs[c.doc_id].text[c.start : c.end] == c.quote  # verbatim, at the stated offsets
        assert c.quote in passages[c.passage_id].text  # the cited passage says it
        assert f"[{c.n}]" in answer.text
        assert c.title and c.url and c.publisher and c.date


@pytest.mark.parametrize("question", OUT_OF_SCOPE)
def test_out_of_scope_questions_abstain_and_point_onwards(pipeline, question):
    answer = pipeline.ask(question)
    assert answer.abstained and not answer.citations
    assert answer.text == refusal_text(pipeline.profile)
    assert "kontaktsjuksköterska" in answer.text and "1177" in answer.text


@pytest.mark.parametrize("question", URGENT)
def test_urgent_symptoms_get_the_112_1177_notice_first(pipeline, question):
    answer = pipeline.ask(question)
    assert "112" in answer.notice and "1177" in answer.notice
    assert answer.to_contract()["answer"].startswith(answer.notice)


def test_suicidal_thoughts_get_support_lines(pipeline):
    answer = pipeline.ask("jag orkar inte leva längre med min cancer")
    assert "112" in answer.notice and "90101" in answer.notice


def test_personal_medical_advice_is_declined(pipeline):
    answer = pipeline.ask("Ska jag sluta med cellgifterna om jag mår illa?")
    assert answer.abstained and answer.reason == "advice"
    assert "personliga medicinska råd" in answer.text and "kontaktsjuksköterska" in answer.text


def test_boilerplate_is_never_retrieved_or_cited(pipeline):
    for question in ("Vi kontrollerar att du är en människa och inte en robot", "Kontaktformulär SKR verifiering",
                     "Kontakta oss informationsansvarig Kjell Ivarsson"):
        answer = pipeline.ask(question)
        for hit in answer.hits:
            assert "människa och inte en robot" not in hit.passage.text
            assert "Kontaktformulär" not in hit.passage.text
    assert not any("robot" in p.text or "Kontaktformulär" in p.text for p in pipeline.index.passages)


def test_follow_up_is_answered_in_the_context_of_the_previous_question(pipeline):
    first = "Vilket psykosocialt stöd finns för vuxna med cancer?"
    answer = pipeline.ask("och för barn då?", history=[first])
    assert answer.details["followup_of"] == first
    assert answer.retrieval_query.startswith(first)
    assert not answer.abstained


def test_a_question_with_its_own_subject_is_not_merged_with_the_previous_one(pipeline):
    answer = pipeline.ask("Vad är HPV-vaccin och vem får det?", history=["What support is there for relatives?"])
    assert answer.details["followup_of"] == "" and answer.retrieval_query.startswith("Vad är HPV-vaccin")


@pytest.mark.parametrize("question, reason", [
    ("", "empty"), ("   \n\t ", "empty"), ("😀😀😀 🙏", "no_text"), ("?!?", "no_text"),
    ("cancer " * (MAX_QUESTION_CHARS // 7 + 10), "too_long"), ("x" * 100_000, "too_long"),
])
def test_bad_input_gets_a_clear_message(pipeline, question, reason):
    answer = pipeline.ask(question)
    assert answer.abstained and answer.reason == reason and not answer.citations
    assert answer.question == question  # nothing is lost: the input comes back as given
    assert len(answer.text) > 20


def test_answers_are_deterministic(pipeline):
    q = "Vad är standardiserade vårdförlopp?"
    assert pipeline.ask(q).to_contract() == pipeline.ask(q).to_contract()


def test_html_in_a_question_is_just_text(pipeline):
    answer = pipeline.ask("<script>alert('x')</script> Vad är SVF?")
    assert answer.question.startswith("<script>")
    assert "<script>" not in answer.text


def test_every_example_question_the_page_offers_is_answered_from_the_sources(pipeline):
    """The corpus profile's examples are what a first visitor clicks: each must get a cited answer whose quote is
    about what was asked (it shares the question's main term)."""
    from rag.search.analysis import content_words, stem

    assert pipeline.profile.examples
    for question in pipeline.profile.examples:
        answer = pipeline.ask(question)
        assert not answer.abstained, question
        quoted = {stem(w) for c in answer.citations for w in content_words(c.quote)}
        main = max(content_words(question), key=len)
        assert stem(main) in quoted or any(stem(main) in q for q in quoted), (question, answer.text)


def test_a_refusal_says_what_the_sources_cover_and_offers_questions_they_answer(pipeline):
    answer = pipeline.ask("Vilka biverkningar har strålbehandling mot prostatan?")
    assert answer.abstained and answer.reason == "not_covered"
    assert pipeline.profile.covers in answer.text and "1177" in answer.text
    assert 1 <= len(answer.suggestions) <= 3
    for suggestion in answer.suggestions:
        assert pipeline.ask(suggestion).citations, suggestion
    assert answer.to_contract()["suggestions"] == list(answer.suggestions)
