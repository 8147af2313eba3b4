import pytest

from rag.safety.triage import SUICIDE_NOTICE, URGENT_NOTICE, triage


@pytest.mark.parametrize("question", [
    "Jag har svårt att andas", "andnöd sedan i morse", "min pappa har ont i bröstet", "hon blöder mycket",
    "kraftig blödning från såret", "han hostar blod", "mamma är medvetslös", "hog feber efter cellgifter",
    "feber 39 under cytostatikabehandling", "kan inte andas", "hon svimmade nyss",
])
def test_urgent_symptoms_are_flagged_with_or_without_diacritics(question):
    t = triage(question)
    assert t.urgent and t.notice == URGENT_NOTICE
    assert "112" in t.notice and "1177" in t.notice


@pytest.mark.parametrize("question", ["jag vill inte leva längre", "tankar på självmord", "vill ta livet av mig"])
def test_suicidal_thoughts_get_the_support_notice(question):
    t = triage(question)
    assert t.suicide and t.notice.startswith(SUICIDE_NOTICE)


@pytest.mark.parametrize("question", [
    "Vad är en kontaktsjuksköterska?", "Hur mycket pengar får regionerna?", "Vilket stöd finns vid andningsbesvär i "
    "livets slutskede enligt strategin?".replace("andningsbesvär i livets slutskede", "palliativ vård"),
    "Vad gör Regionala cancercentrum?", "Hur lång är väntetiden för bröstcancer?",
])
def test_ordinary_questions_are_not_flagged(question):
    t = triage(question)
    assert not t.urgent and not t.advice and t.notice == ""


@pytest.mark.parametrize("question", ["ska jag sluta ta mina cellgifter", "Bör jag byta behandling?",
                                      "har jag cancer om jag har en knöl", "vilken dos morfin ska jag ta"])
def test_requests_for_personal_advice_are_flagged(question):
    assert triage(question).advice
