"""Question types and sentence content kinds: the match that keeps "hur många" from being answered with kronor."""

import pytest

from rag.answer.qtypes import counted_word, question_type, sentence_kinds, type_match


@pytest.mark.parametrize("question, qtype", [
    ("Hur många kontaktsjuksköterskor finns i Örebro?", "count"),
    ("hur mycket pengar far regionerna 2024", "money"),
    ("Vad kostar ett besök?", "money"),
    ("Hur stor andel av patienterna får vård inom tiden?", "amount"),
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


def test_a_count_question_wants_a_number_of_what_it_counts_not_kronor():
    q = "hur många kontaktsjuksköterskor finns i region Örebro"
    assert question_type(q) == "count" and counted_word(q) == "kontaktsjuksköterskor"
    for sentence, expected in [
        ("Regionerna ska erbjuda alla patienter en kontaktsjuksköterska.", 0.0),  # no number
        ("Örebro län: 3 270 474 kronor Västmanland: 2 985 342 kronor", 0.0),  # a list of kronor
        ("I dag finns 1 200 kontaktsjuksköterskor i landet.", 1.0),
    ]:
        assert type_match("count", sentence_kinds(sentence), sentence, counted_word(q)) == expected, sentence
    money = "Region Örebro län får 12,3 miljoner kronor."
    assert type_match("money", sentence_kinds(money), money) == 1.0
    assert type_match("money", sentence_kinds("Det finns 12 mottagningar."), "Det finns 12 mottagningar.") == 0.0


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
