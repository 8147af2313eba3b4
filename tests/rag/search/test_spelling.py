import pytest

from rag.ingest.loader import CorpusLoader
from rag.search.spelling import Speller
from tests.conftest import CORPUS


@pytest.fixture(scope="module")
def speller():
    return Speller.from_texts(d.text for d in CorpusLoader(CORPUS).run().documents)


@pytest.mark.parametrize("typo, fixed", [("rehabiltering", "rehabilitering"), ("cnacer", "cancer"),
                                         ("palliatv", "palliativ"), ("screning", "screening"),
                                         ("vårdförlop", "vårdförlopp")])
def test_typos_are_corrected_to_corpus_words(speller, typo, fixed):
    assert speller.correct(typo) == fixed


@pytest.mark.parametrize("word", ["psykosociala", "kostar", "stod", "cancervarden", "och", "SVF", "2024", "hej"])
def test_valid_words_inflections_and_folded_spellings_are_left_alone(speller, word):
    assert speller.correct(word) is None


def test_a_correct_compound_is_never_rewritten_into_the_sources_typo():
    """The corpus spells "kontaksjuksköterska" once (sic): a user's correct "kontaktsjuksköterska" stays."""
    from rag.search.analysis import SwedishAnalyzer

    texts = ["Patienten ska ha en kontaksjuksköterska.", "kontakt", "sjuksköterska", "Rehabilitering efter cancer."]
    speller = Speller.from_texts(texts, splitter=SwedishAnalyzer.fit(texts).splitter)
    assert speller.correct("kontaktsjuksköterska") is None
    assert speller.correct("kontaktsjukskoterska") is None
    assert speller.correct("rehabiltering") == "rehabilitering"
