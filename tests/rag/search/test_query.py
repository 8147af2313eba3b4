import pytest

from rag.search.analysis import SwedishAnalyzer
from rag.search.query import QueryProcessor, is_followup
from rag.search.spelling import Speller
from rag.search.vocabulary import LayVocabulary

PREVIOUS = ["Vilket psykosocialt stöd finns för vuxna med cancer?"]


@pytest.mark.parametrize("question", ["och för barn då?", "men vem betalar det?", "gäller det även närstående",
                                      "och 2023?", "hur är det med barn", "varför det?", "varför så få?",
                                      "vad kostar det?", "vem betalar?", "nåt om barncancer?",
                                      "och vad ska barncancercentrumen analysera då?"])
def test_elliptic_follow_ups_are_detected(question):
    assert is_followup(question, PREVIOUS)


@pytest.mark.parametrize("question", ["Vad är ett standardiserat vårdförlopp inom cancervården?",
                                      "Hur mycket pengar får regionerna för cancervården 2024?",
                                      "Vad är en kontaktsjuksköterska?", "cellprov?",
                                      # a question that names its own subject is never merged, however it starts
                                      "Vad är HPV-vaccin och vem får det?",
                                      "Hur länge väntar man på strålbehandling?"])
def test_full_questions_stand_alone(question):
    assert not is_followup(question, PREVIOUS)
    assert not is_followup("och för barn då?", [])


@pytest.fixture(scope="module")
def processor():
    texts = ["Psykosocialt stöd till barncancerpatienter och kontaksjuksköterska.", "rehabilitering och screening",
             "screening för livmoderhalscancer med gynekologisk cellprovtagning är avgiftsfri"]
    return QueryProcessor(SwedishAnalyzer.fit(texts), Speller.from_texts(texts), LayVocabulary.load())


def test_follow_up_is_searched_together_with_the_previous_question(processor):
    query = processor.run("och för barn då?", PREVIOUS)
    assert query.followup_of == PREVIOUS[0]
    assert query.search_text == f"{PREVIOUS[0]} och för barn då?"
    assert {"barn", "psykosocialt"} <= {t.word for t in query.terms}


def test_misspelled_words_are_corrected_against_the_corpus(processor):
    query = processor.run("vad är rehabiltering")
    assert ("rehabiltering", "rehabilitering") in query.corrections
    assert "rehabilitering" in query.search_text
    term = next(t for t in query.terms if t.word == "rehabiltering")
    assert term.alternatives and "rehabilitering" in query.lexical_tokens


def test_lay_words_are_expanded_to_official_terms(processor):
    query = processor.run("vad kostar cellprov")
    assert ("cellprov", "screening för livmoderhalscancer") in query.expansions
    cellprov = next(t for t in query.terms if t.word == "cellprov")
    assert ("screening",) in [alt[0][:1] for alt in cellprov.alternatives]
    assert {"screening", "livmoderhalscanc"} <= set(query.lexical_tokens)
    assert query.search_text == "vad kostar cellprov"  # the dense side reads the user's own words
