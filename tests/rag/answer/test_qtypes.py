"""Question types and sentence content kinds: the match that keeps "hur många" from being answered with kronor."""

import pytest

from rag.answer.qtypes import question_type, sentence_kinds, type_match


@pytest.mark.parametrize("question, qtype", [
    ("Hur många kontaktsjuksköterskor finns i Örebro?", "amount"),
    ("hur mycket pengar far regionerna 2024", "amount"),
    ("Vad kostar ett besök?", "amount"),
    ("Hur länge får man vänta på strålbehandling?", "duration"),
    ("När infördes standardiserade vårdförlopp?", "date"),
    ("Vilket år kom cancerstrategin?", "date"),
    ("Vem ansvarar för cancervården?", "who"),
    ("Var kan jag få stöd som närstående?", "place"),
    ("Vad är ett standardiserat vårdförlopp?", "definition"),
    ("vad betyder palliativ", "definition"),
    ("Varför behövs en nationell strategi?", "reason"),
    ("Får jag ta med mig någon till läkaren?", "rule"),
    ("Hur gör jag för att byta vårdcentral?", "procedure"),
    ("Vilka cancerformer omfattas?", "which"),
    ("Berätta om rehabilitering", "other"),
])
def test_question_types(question, qtype):
    assert question_type(question) == qtype


def test_a_count_question_is_not_matched_by_a_sentence_without_a_number():
    kinds = sentence_kinds("Regionerna ska erbjuda alla patienter en kontaktsjuksköterska.")
    assert type_match("amount", kinds) == 0.0
    assert type_match("amount", sentence_kinds("Region Örebro län får 12,3 miljoner kronor.")) == 1.0


@pytest.mark.parametrize("sentence, kind", [
    ("Satsningen omfattar 500 miljoner kronor per år.", "amount"),
    ("Väntetiden ska vara högst 14 dagar.", "duration"),
    ("Reformen trädde i kraft den 1 januari 2019.", "date"),
    ("Socialstyrelsen ansvarar för de nationella riktlinjerna.", "who"),
    ("Standardiserade vårdförlopp är en metod för att minska väntetiderna.", "definition"),
    ("Det behövs eftersom väntetiderna är långa.", "reason"),
    ("Du har rätt till en fast vårdkontakt.", "rule"),
    ("Du kan boka tid genom att logga in på 1177.se.", "procedure"),
])
def test_sentence_kinds(sentence, kind):
    assert getattr(sentence_kinds(sentence), kind)


def test_questions_without_a_wanted_kind_are_neutral():
    assert type_match("which", sentence_kinds("Vad som helst.")) == 0.5
    assert type_match("other", sentence_kinds("12 kronor")) == 0.5
