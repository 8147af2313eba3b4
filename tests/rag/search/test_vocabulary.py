from rag.search.vocabulary import LayVocabulary


def test_lay_phrases_expand_to_official_phrases_on_whole_words():
    vocab = LayVocabulary.load()
    pairs = vocab.expand("Vad kostar cellprov? Får man cellgifter gratis?")
    assert ("cellprov", "screening för livmoderhalscancer") in pairs
    assert any(lay == "cellgifter" for lay, _ in pairs)
    assert not vocab.expand("provtagningen av celler")  # words of a phrase must come in order
    assert ("snabbspår", "standardiserade vårdförlopp") in vocab.expand("hur funkar snabbspåret")  # any inflection


def test_matching_ignores_missing_diacritics():
    assert LayVocabulary.load().expand("vad ar kontaktskoterska")
