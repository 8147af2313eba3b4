"""The lazy views over an index's segments: a document quoted by an answer is found without reading every
document row (real index of the seed corpus)."""

from rag.search.index import CorpusIndex


def test_a_document_read_through_its_passage_is_found_without_the_id_table(seed_index_dir):
    index = CorpusIndex.load(seed_index_dir[1])
    seg = index.segments[0]
    passage = index.passages[len(index.passages) - 1]
    sentence = index.sentences[0]
    doc = index.documents[passage.doc_id]
    assert doc.text[passage.start : passage.end] == passage.text
    assert index.documents[sentence.doc_id].text[sentence.start : sentence.end] == sentence.text
    assert index.documents.meta(passage.doc_id)["doc_id"] == passage.doc_id
    assert passage.doc_id in index.documents
    assert "document_rows" not in seg.__dict__  # not one full read of documents.jsonl
    # a document no view has read falls back to the id table, and gives what the id table gives
    fresh = CorpusIndex.load(seed_index_dir[1])
    assert fresh.documents[passage.doc_id] == doc and "document_rows" in fresh.segments[0].__dict__
    assert "no/such-document" not in index.documents and 42 not in index.documents
