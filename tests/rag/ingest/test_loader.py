import pytest

from rag.ingest.loader import CorpusError, CorpusLoader, corpus_fingerprint, decode_bytes, strip_boilerplate
from tests.conftest import CORPUS


@pytest.fixture(scope="module")
def shipped():
    return CorpusLoader(CORPUS).run()


def test_shipped_corpus_loads_every_document_with_metadata(shipped):
    assert len(shipped.documents) == 131
    assert shipped.problems == []
    docs = {d.doc_id: d for d in shipped.documents}
    skr = docs["seeds/skr-cancervard"]
    assert skr.publisher == "Sveriges Kommuner och Regioner (SKR)"
    assert skr.date == "2023-04-25"
    assert skr.url.startswith("https://")
    page = docs["regeringen/artiklar/2016/01/alla-ska-fa-lika-god-cancervard"]
    assert page.title == "Alla ska få lika god cancervård"
    assert page.publisher == "Regeringskansliet / regeringen.se"
    assert page.url == "https://www.regeringen.se/artiklar/2016/01/alla-ska-fa-lika-god-cancervard/"
    assert all(d.title and d.url and d.date for d in shipped.documents)


def test_skr_footer_boilerplate_is_removed_but_content_kept(shipped):
    skr = next(d for d in shipped.documents if d.doc_id == "seeds/skr-cancervard")
    for chrome in ("Vi kontrollerar att du är en människa", "Kontaktformulär", "Verifiering", "Kontakta oss",
                   "Informationsansvarig", "Läs vidare", "Publicerad 25 april"):
        assert chrome not in skr.text
    # the real content, including the source's own spelling, survives
    assert "tillgång till en kontaksjuksköterska" in skr.text
    assert skr.text.rstrip().endswith("multidisciplinär konferens innan behandling.")


def test_markdown_is_read_as_text_without_markup(shipped):
    page = next(d for d in shipped.documents if "regeringen-betalar-ut-1825" in d.doc_id)
    assert "**" not in page.text and "](" not in page.text and "| --- |" not in page.text
    assert "Vad är SVF?" in page.headings
    assert "1 | Stockholm | 2 485 275 | 25,62% | 46 759 214" in page.text


def test_text_is_normalized(shipped):
    for doc in shipped.documents:
        assert "\u00ad" not in doc.text and "\u00a0" not in doc.text and "\r" not in doc.text


def test_strip_boilerplate_cookie_banner_and_share_links():
    text = "Rubrik\n\nVi använder kakor (cookies) för att webbplatsen ska fungera. Läs mer om kakor.\nDela sidan\n" \
           "Regeringen avsätter 500 miljoner kronor årligen.\nSkriv ut"
    assert strip_boilerplate(text) == "Rubrik\n\nRegeringen avsätter 500 miljoner kronor årligen."


def test_html_page_main_text_without_navigation_and_cookies(tmp_path):
    (tmp_path / "sida.html").write_text(
        "<html><head><title>Cancervård | SKR</title></head><body>"
        "<nav><a href='/'>Hem</a> <a href='/om'>Om oss</a></nav>"
        "<div class='cookie'>Vi använder kakor (cookies) för att förbättra webbplatsen. <button>Godkänn</button></div>"
        "<main><h1>Cancervård</h1><p>SKR arbetar tillsammans med regioner och Regionala cancercentrum för att göra "
        "cancervården mer tillgänglig och jämlik, t.ex. genom standardiserade vårdförlopp.</p>"
        "<h2>Jämlik vård</h2><p>Målsättningen är att alla patienter ska ha tillgång till en kontaktsjuksköterska "
        "och att fler ska bedömas i en multidisciplinär konferens.</p></main>"
        "<footer>Kontakta oss. Vi kontrollerar att du är en människa och inte en robot.</footer></body></html>",
        encoding="utf-8",
    )
    doc = CorpusLoader(tmp_path).run().documents[0]
    assert doc.doc_id == "sida"
    assert "tillgång till en kontaktsjuksköterska" in doc.text
    assert "Jämlik vård" in doc.headings
    for chrome in ("Hem", "kakor", "Godkänn", "människa", "Kontakta oss"):
        assert chrome not in doc.text


def test_pdf_text_is_extracted(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure()
    fig.text(0.05, 0.8, "Rehabilitering efter cancer ska erbjudas alla patienter.")
    fig.text(0.05, 0.6, "Kontaktsjuksköterskan samordnar vården.")
    fig.savefig(tmp_path / "rapport.pdf")
    plt.close(fig)
    doc = CorpusLoader(tmp_path).run().documents[0]
    assert "Rehabilitering efter cancer ska erbjudas alla patienter." in doc.text
    assert "Kontaktsjuksköterskan samordnar vården." in doc.text


def test_bad_files_are_reported_and_the_rest_is_kept(tmp_path):
    (tmp_path / "bra.txt").write_text("Regeringen avsätter 500 miljoner kronor årligen till cancervården.", "utf-8")
    (tmp_path / "tom.txt").write_text("", "utf-8")
    (tmp_path / "blanksteg.md").write_text("   \n\n  ", "utf-8")
    (tmp_path / "binar.txt").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    (tmp_path / "latin1.txt").write_bytes("Psykosocialt stöd till närstående är viktigt för många.".encode("cp1252"))
    (tmp_path / "trasig.pdf").write_bytes(b"%PDF-1.4 this is not really a pdf")
    load = CorpusLoader(tmp_path).run()
    by_path = {p.path: p for p in load.problems}
    assert {d.doc_id for d in load.documents} == {"bra", "latin1"}
    assert next(d for d in load.documents if d.doc_id == "latin1").text.startswith("Psykosocialt stöd till närstående")
    assert "not UTF-8" in by_path["latin1.txt"].message and not by_path["latin1.txt"].skipped
    assert "empty" in by_path["tom.txt"].message and by_path["tom.txt"].skipped
    assert "empty" in by_path["blanksteg.md"].message
    assert "binary" in by_path["binar.txt"].message
    assert by_path["trasig.pdf"].skipped


def test_empty_or_missing_corpus_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CorpusError, match="no readable document"):
        CorpusLoader(tmp_path).run()
    (tmp_path / "tom.txt").write_text("", "utf-8")
    with pytest.raises(CorpusError, match="tom.txt: skipped: empty file"):
        CorpusLoader(tmp_path).run()
    with pytest.raises(CorpusError, match="does not exist"):
        CorpusLoader(tmp_path / "saknas").run()


def test_decode_bytes_handles_bom():
    assert decode_bytes("\ufeffStöd".encode("utf-8")) == ("Stöd", "utf-8")


def test_fingerprint_changes_with_any_file(seed_corpus):
    before = corpus_fingerprint(seed_corpus)
    assert corpus_fingerprint(seed_corpus) == before
    path = seed_corpus / "seeds" / "skr-cancervard.txt"
    path.write_text(path.read_text("utf-8") + "\nEn ny mening om cancervården.", "utf-8")
    assert corpus_fingerprint(seed_corpus) != before
