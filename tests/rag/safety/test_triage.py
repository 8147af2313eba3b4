"""The triage as the pipeline uses it: levels, notices from the guidance file, relatives, advice, the contract."""

import pytest

from rag.safety.triage import ADVICE_MESSAGE, Triager, load_guidance, triage


@pytest.fixture(scope="module")
def triager_with_vectors(pipeline):
    """The pipeline's own triager, given the query vector as the pipeline gives it."""
    def run(message, history=()):
        return pipeline.triager.run(message, history, pipeline.retriever.encode_query(message))
    return run


@pytest.mark.parametrize("message, level", [
    ("jag har blött ur tarmen i tre dagar och känner mig yr", "urgent"),
    ("min pappa kan plötsligt inte röra benen och har ont i ryggen", "urgent"),
    ("ja vill inte finnas mer", "suicide"),
    ("Ska jag välja strålning eller cellgifter för min prostatacancer?", "advice"),
    ("hur vanligt är det att få feber efter cytostatika", "none"),
    ("Vad är en kontaktsjuksköterska?", "none"),
    ("förra året fick han feber efter kuren, nu är han frisk", "none"),
])
def test_the_issues_examples_get_the_right_level(triager_with_vectors, message, level):
    assert triager_with_vectors(message).level == level


def test_fever_during_treatment_gets_the_specific_notice_then_1177():
    t = triage("temp 38,3, fick min kur i tisdags")
    assert t.level == "urgent" and t.concepts[0] == "neutropenic_fever"
    assert t.guidance == ("urgent_fever_treatment",)
    assert "behandlande avdelning" in t.notice and "1177" in t.notice and "112" in t.notice


def test_a_general_urgent_notice_ends_with_1177():
    t = triage("Jag har svårt att andas")
    assert t.guidance == ("urgent_breathing", "urgent_closing")
    assert t.notice.index("112") < t.notice.index("1177")


def test_a_worried_relative_gets_the_relatives_notice():
    own = triage("jag vill inte leva längre")
    other = triage("pappa säger att han inte vill leva längre")
    assert own.guidance[0] == "suicide" and other.guidance[0] == "suicide_relative"
    for t in (own, other):
        assert t.suicide and t.urgent and "112" in t.notice and "90101" in t.notice
    assert "1177" in other.notice and "ensam" in other.notice


def test_every_notice_shown_is_traceable_to_its_guidance():
    for message in ("får ingen luft", "hon sluddrar plötsligt", "jag vill dö", "feber 39 efter cellgifterna",
                    "ryggvärk och domningar i benen", "hur mycket morfin ska jag ta"):
        t = triage(message)
        assert t.guidance
        for key in t.guidance:
            g = load_guidance()[key]
            assert g.sources and (g.level == "advice" or g.text.split(".")[0] in t.notice)
        assert t.sources() and all(s["url"].startswith("https://") for s in t.sources())


def test_advice_is_flagged_and_its_message_points_to_the_contact():
    t = triage("hur många alvedon kan jag ta om dagen")
    assert t.advice and t.level == "advice" and t.notice == ""  # the advice text is the reply, not a notice
    assert "personliga medicinska råd" in ADVICE_MESSAGE and "kontaktsjuksköterska" in ADVICE_MESSAGE
    assert t.advice_message == ADVICE_MESSAGE
    dental = Triager(contact="din tandläkare").run("vilken dos ska jag ta")
    assert dental.advice and "din tandläkare" in dental.advice_message and "kontaktsjuksköterska" not in \
        dental.advice_message


def test_the_contract_object():
    t = triage("temp 38,3, fick min kur i tisdags")
    assert t.to_contract() == {"level": "urgent", "concepts": list(t.concepts), "guidance": list(t.guidance),
                               "advice": False}
    assert triage("Vad är HPV?").to_contract()["level"] == "none"
