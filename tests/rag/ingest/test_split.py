import pytest

from rag.ingest.loader import CorpusLoader
from rag.ingest.split import PassageSplitter, split_sentences
from rag.types import Document
from tests.conftest import CORPUS


def _sentences(text):
    return [text[s:e] for s, e in split_sentences(text)]


def test_swedish_abbreviations_do_not_end_sentences():
    text = ("Det gäller t.ex. barn och bl.a. unga vuxna. Ring kl. 8 i morgon, dvs. tidigt. "
            "Se s. 4 ff. i rapporten. Nästa mening m.m. här.")
    assert _sentences(text) == [
        "Det gäller t.ex. barn och bl.a. unga vuxna.",
        "Ring kl. 8 i morgon, dvs. tidigt.",
        "Se s. 4 ff. i rapporten.",
        "Nästa mening m.m. här.",
    ]


def test_sentences_never_cross_lines_and_drop_bullets():
    text = "Fyra områden:\n• Prevention och tidig upptäckt\n• Tillgänglig och god vård m.m., med fokus på patienten"
    assert _sentences(text) == ["Fyra områden:", "Prevention och tidig upptäckt",
                                "Tillgänglig och god vård m.m., med fokus på patienten"]


@pytest.fixture(scope="module")
def shipped_split():
    docs = CorpusLoader(CORPUS).run().documents
    return docs, PassageSplitter().run(docs)


def test_every_passage_is_an_exact_span_of_its_document(shipped_split):
    docs, result = shipped_split
    by_id = {d.doc_id: d for d in docs}
    for p in result.passages:
        assert by_id[p.doc_id].text[p.start : p.end] == p.text
        assert p.title == by_id[p.doc_id].title
    for s in result.sentences:
        assert by_id[s.doc_id].text[s.start : s.end] == s.text


def test_passages_respect_the_size_limit_unless_one_sentence(shipped_split):
    _, result = shipped_split
    for p, sents in zip(result.passages, result.passage_sentences):
        assert len(p.text) <= 800 or len(sents) == 1


def test_passage_ids_are_stable_and_unique(shipped_split):
    docs, result = shipped_split
    again = PassageSplitter().run(CorpusLoader(CORPUS).run().documents)
    assert [p.passage_id for p in again.passages] == [p.passage_id for p in result.passages]
    assert len({p.passage_id for p in result.passages}) == len(result.passages)


def test_passage_id_depends_only_on_document_and_text():
    doc = Document("a", "Titel", "Rubrik\n\nEn mening om stöd. En till om vård.", headings=("Rubrik",))
    moved = Document("a", "Titel", "Annan inledning här som är lång nog.\n\nRubrik\n\nEn mening om stöd. En till om vård.",
                     headings=("Rubrik",))
    ids = {p.text: p.passage_id for p in PassageSplitter().run([doc]).passages}
    ids_moved = {p.text: p.passage_id for p in PassageSplitter().run([moved]).passages}
    assert ids["En mening om stöd. En till om vård."] == ids_moved["En mening om stöd. En till om vård."]


def test_headings_travel_with_their_text_and_are_not_passage_text(shipped_split):
    _, result = shipped_split
    skr = [p for p in result.passages if p.doc_id == "seeds/skr-cancervard"]
    jamlik = [p for p in skr if p.heading == "Jämlik vård"]
    assert jamlik and jamlik[0].text.startswith("SKR arbetar tillsammans med regioner och RCC")
    assert not any(p.text.startswith("Jämlik vård") for p in skr)


def test_consecutive_passages_overlap_by_one_sentence():
    text = " ".join(f"Mening nummer {i} handlar om cancervården och dess utveckling i regionerna." for i in range(30))
    result = PassageSplitter(max_chars=300, overlap_sentences=1).run([Document("d", "T", text)])
    assert len(result.passages) > 3
    for a, b in zip(result.passage_sentences, result.passage_sentences[1:]):
        assert a[-1] == b[0]


def test_bad_configuration_is_rejected():
    with pytest.raises(ValueError):
        PassageSplitter(max_chars=10)
    with pytest.raises(ValueError):
        PassageSplitter(overlap_sentences=-1)
