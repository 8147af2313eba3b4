"""Staff uploads and removals: an upload is indexed, removing it deletes only the file the project wrote."""

from rag.ingest.loader import CorpusLoader
from rag.ingest.sources import add_upload, remove_document, safe_name


def test_safe_names_never_leave_the_uploads_folder():
    assert safe_name("../../etc/passwd.txt") == "passwd.txt"
    assert safe_name("Vårdplan för Åsa (2).PDF") == "vardplan-for-asa-2.pdf"


def test_an_upload_is_read_and_removing_it_deletes_only_that_file(seed_corpus):
    rel = add_upload(seed_corpus, "Ny rutin.md", "# Ny rutin\n\nAlla patienter får en skriftlig vårdplan.\n".encode(),
                     user="anna")
    assert rel == "uploads/ny-rutin.md"
    docs = {d.path: d for d in CorpusLoader(seed_corpus).run().documents}
    assert rel in docs and "skriftlig vårdplan" in docs[rel].text
    assert remove_document(seed_corpus, rel) == "deleted" and not (seed_corpus / rel).exists()
    assert rel not in {d.path for d in CorpusLoader(seed_corpus).run().documents}


def test_removing_a_source_document_never_deletes_it(seed_corpus):
    rel = "seeds/skr-cancervard.txt"
    before = (seed_corpus / rel).read_bytes()
    assert remove_document(seed_corpus, rel) == "excluded"
    load = CorpusLoader(seed_corpus).run()
    assert rel not in {d.path for d in load.documents} and (seed_corpus / rel).read_bytes() == before
    assert any(p.path == rel and "taken out of the index" in p.message for p in load.problems)
    add_upload(seed_corpus, "x.txt", b"Rehabilitering efter cancer hjalper manga patienter att orka mer.")
    assert rel not in {d.path for d in CorpusLoader(seed_corpus).run().documents}  # still out
