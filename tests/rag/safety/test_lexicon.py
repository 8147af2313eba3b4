"""The reviewed concept lexicon: inflections, typos, folding, negation, context, follow-ups, and its data files."""

import json

import pytest

from rag.safety.lexicon import DATA_DIR, SafetyLexicon, normalize_message, tokenize, within_one_edit


@pytest.fixture(scope="module")
def lexicon():
    return SafetyLexicon.load()


def standing(lexicon, message, history=()):
    return {h.concept.name for h in lexicon.run(message, history).standing}


@pytest.mark.parametrize("message, concept", [
    # the issue's own examples, and the forms it lists
    ("jag har blött ur tarmen i tre dagar och känner mig yr", "bleeding"),
    ("min pappa kan plötsligt inte röra benen och har ont i ryggen", "spinal_cord_compression"),
    ("temp 38,3, fick min kur i tisdags", "neutropenic_fever"),
    ("det blöder från stomin och slutar inte", "bleeding"),
    ("hon blödde kraftigt i natt", "bleeding"),
    ("blodig avföring sen igår och jag är så yr", "bleeding"),
    ("han tuppade av i köket", "unconscious_fainting"),
    ("mamma svimmade nyss", "unconscious_fainting"),
    ("mamma svimade nyss", "unconscious_fainting"),  # typo
    ("har kräkts blod två gånger", "bleeding"),
    ("kräks nåt som ser ut som kaffesump", "bleeding"),
    ("får ingen luft", "breathing"),
    ("pappa sluddrar och mungipan hänger", "stroke"),
    ("ont i brostet och kallsvettig", "chest_pain"),  # no å/ä/ö
    ("dottern fick cytostatika i måndags och har 38,6 nu", "neutropenic_fever"),
    ("frossa och skakningar efter immunterapin igår", "neutropenic_fever"),
    ("ryggen värker och benen viker sig", "spinal_cord_compression"),
    ("ont i ryggen och kan inte hålla tätt", "spinal_cord_compression"),
    ("kan inte kissa sen igår kväll", "urinary_retention"),
    ("tungan svullnar efter infusionen", "allergic_reaction"),
    ("ena vaden är svullen, röd och gör ont", "blood_clot"),
    ("värsta huvudvärken i mitt liv kom plötsligt", "headache_sudden_severe"),
    ("han är helt förvirrad och vet inte var han är", "confusion"),
    ("min son fick ett krampanfall", "seizure"),
    ("kan inte behålla något, kräks allt", "dehydration"),
    ("ja vill inte finnas mer", "suicide"),
    ("vill somna och aldrig vakna", "suicide"),
    ("är bara en börda för alla", "suicide"),
    ("har samlat på mig tabletter", "suicide"),
    ("Ska jag välja strålning eller cellgifter för min prostatacancer?", "advice"),
    ("hur många alvedon kan jag ta", "advice"),
    ("mitt PSA är 12, är det farligt?", "advice"),
    ("ska pappa tacka ja till studien", "advice"),
])
def test_everyday_phrasings_reach_their_concept(lexicon, message, concept):
    assert concept in standing(lexicon, message)


@pytest.mark.parametrize("message", [
    "ingen feber efter kuren, bara trött",  # negation
    "hon har inte ont i bröstet längre",  # negation
    "hur vanligt är det att få feber efter cytostatika",  # a general question: no person, no "now"
    "vad är neutropen feber?",
    "vilka symtom ska man ringa 112 för?",
    "förra året fick han feber efter kuren men nu är han frisk",  # past and resolved
    "jag vill inte dö, jag vill leva länge till",  # fear of dying is not a wish to die
    "mamma vill dö hemma och inte på sjukhus, hur ordnar man det",  # where to die: a palliative-care question
    "jag vill inte ha cytostatika, räcker det med operation för mig",  # "racker" is "räcker", not a typo of "rycker"
    "Vad är en kontaktsjuksköterska?",
    "Hur mycket pengar får regionerna för cancervården 2024?",
])
def test_context_keeps_ordinary_messages_quiet(lexicon, message):
    assert not standing(lexicon, message) - {"advice"}


def test_context_is_reported_when_a_concept_is_set_aside(lexicon):
    result = lexicon.run("hur vanligt är det att få feber efter cytostatika")
    assert [(h.concept.name, h.set_aside) for h in result.hits] == [("neutropenic_fever", "general")]
    result = lexicon.run("förra året fick han feber efter kuren men nu är han frisk")
    assert {h.set_aside for h in result.hits} == {"resolved"}


def test_now_overrides_a_resolution_only_in_its_own_clause(lexicon):
    assert "neutropenic_fever" in standing(lexicon, "febern gick över igår, men nu har jag 38,9 igen efter kuren")
    assert not standing(lexicon, "mamma var förvirrad efter operationen, men nu är hon som vanligt igen")


def test_a_follow_up_completes_a_concept_from_the_conversation(lexicon):
    history = ["pappa fick cellgifter i tisdags"]
    assert "neutropenic_fever" in standing(lexicon, "nu har han 38,7", history)
    assert "neutropenic_fever" in standing(lexicon, "och nu frossa", history)
    assert not standing(lexicon, "nu har han ont i halsen", history)  # history completes a rule, never makes one


def test_tokens_fold_accents_keep_decimal_numbers_and_read_chat_spellings():
    tokens = tokenize(normalize_message("Temp 38,5! ja vill int, blöder"))
    assert [t.text for t in tokens] == ["temp", "38,5", "ja", "vill", "inte", "bloder"]
    assert tokens[1].number == 38.5 and tokens[1].clause == tokens[0].clause
    assert tokens[2].clause > tokens[1].clause  # "!" ends a clause


@pytest.mark.parametrize("a, b, expected", [
    ("svimade", "svimmade", True), ("cellgifer", "cellgifter", True), ("bröst", "brsöt", True), ("bröst", "brast", True), ("bröst", "brsta", False),
    ("hostar", "hoatar", True), ("feber", "feber", True), ("blod", "bladet", False), ("abcd", "badc", False),
    ("andas", "adnas", True),
])
def test_within_one_edit(a, b, expected):
    assert within_one_edit(a, b) is expected


def test_data_files_are_consistent_and_every_concept_cites_guidance(lexicon):
    guidance = json.loads((DATA_DIR / "guidance.json").read_text(encoding="utf-8"))
    for concept in lexicon.concepts:
        assert concept.guidance in guidance, concept
        assert concept.context in ("strict", "resolved", "keep")
    for key, entry in guidance.items():
        if key.startswith("_"):
            continue
        assert entry["text"] and entry["level"] in ("urgent", "suicide", "advice")
        assert entry["sources"] and all(s["publisher"] and s["title"] and s["url"].startswith("https://")
                                        for s in entry["sources"])
    required = {"bleeding", "chest_pain", "breathing", "unconscious_fainting", "confusion", "stroke", "seizure",
                "headache_sudden_severe", "allergic_reaction", "blood_clot", "dehydration", "urinary_retention",
                "abdominal_pain_severe", "neutropenic_fever", "spinal_cord_compression", "suicide", "advice"}
    assert required <= {c.name for c in lexicon.concepts}
