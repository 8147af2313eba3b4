from rag.text import fold_accents, has_letters, normalize_query, normalize_text


def test_normalize_text_removes_soft_hyphens_nbsp_and_composes():
    raw = "Cancer\u00adrehabilitering\u00a0och  kontakt\u200bsjuksköterska\r\nA\u030agot"  # decomposed "Å"
    text = normalize_text(raw)
    assert text == "Cancerrehabilitering och kontaktsjuksköterska\nÅgot"
    assert "\u00ad" not in text and "\u00a0" not in text


def test_normalize_text_keeps_paragraphs_but_collapses_blank_runs():
    assert normalize_text("  Rubrik \n\n\n\n  Text här.  ") == "Rubrik\n\nText här."


def test_normalize_query_collapses_all_whitespace():
    assert normalize_query("  vad\tkostar \n cellprov ") == "vad kostar cellprov"


def test_fold_accents_is_the_keyboard_without_swedish_letters():
    assert fold_accents("Psykosocialt stöd på sjukhuset, Älvsjö") == "Psykosocialt stod pa sjukhuset, Alvsjo"


def test_has_letters_rejects_emoji_and_punctuation_only():
    assert not has_letters("😀😀 ?!")
    assert has_letters("SVF?")
