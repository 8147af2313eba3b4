from rag.search.analysis import FOLDED_PREFIX, PART_PREFIX, CompoundSplitter, SwedishAnalyzer, content_words, stem


def test_stop_words_and_question_words_are_dropped():
    assert content_words("Vad får man för stöd som anhörig?") == ["stöd", "anhörig"]


def test_definite_forms_share_a_stem():
    assert stem("kontaktsjuksköterskan") == stem("kontaktsjuksköterska")
    assert stem("regionerna") == stem("regioner") == stem("region")


def test_folded_form_is_extra_not_a_replacement():
    analyzer = SwedishAnalyzer()
    tokens = analyzer.analyze("psykosocialt stöd")
    assert "stöd" in tokens  # the accented form stays
    folded = [t for t in tokens if t.startswith(FOLDED_PREFIX)]
    assert folded and set(folded) <= set(analyzer.analyze("psykosocialt stod"))  # and is also reachable without å/ä/ö


def test_compounds_split_into_known_parts():
    splitter = CompoundSplitter(["kontakt", "sjuksköterska", "cancer", "rehabilitering", "barn", "centrum"])
    assert splitter.split("kontaktsjuksköterska") == ("kontakt", "sjuksköterska")
    assert splitter.split("cancerrehabiliteringen") == ("cancer", "rehabiliteringen")
    assert splitter.split("barncancercentrum") == ("barn", "cancer", "centrum")
    assert splitter.split("ansvar") == ()


def test_query_word_matches_a_compound_in_the_text():
    analyzer = SwedishAnalyzer(["kontakt", "sjuksköterska"])
    doc_tokens = set(analyzer.analyze("Alla ska ha en kontaktsjuksköterska."))
    own, _ = analyzer.term_tokens("sjuksköterska", query=True)
    assert PART_PREFIX + "sjukskotersk" in own and set(own) & doc_tokens
