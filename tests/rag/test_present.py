"""The app's pure presentation helpers: escaping, highlights, labels, links and source ages."""

import re
from datetime import date
from html import unescape

import pytest
from markdown_it import MarkdownIt

from rag.present import (
    answer_markdown,
    citation_label,
    code_text,
    escape_markdown,
    highlight_html,
    html_text,
    is_outdated,
    markdown_link,
    max_source_age_from_env,
    parse_source_date,
    quote_span,
    safe_url,
    source_age_years,
    used_citations,
)
from rag.types import Citation, Passage

DOC = "Rubrik\n\nFörsta meningen. Andra meningen om <b>vård</b>. Tredje."


def _passage(start=8, end=len(DOC)):
    return Passage("p1", "d1", DOC[start:end], start, end)


def _citation(quote="Andra meningen om <b>vård</b>.", n=1, passage_id="p1", **kw):
    start = DOC.index(quote)
    return Citation(n, passage_id, "d1", quote, start, start + len(quote), 0.8, **kw)


def _rendered(markdown: str) -> str:
    return MarkdownIt("commonmark").render(markdown)


@pytest.mark.parametrize("text", [
    "<script>alert(1)</script>", "**fet** _kursiv_ `kod`", "[länk](javascript:alert(1))", "# rubrik", "1. lista",
    "- punkt", "$x$ och :red[röd]", "a\\b", "<img src=x onerror=alert(1)>", "&lt;script&gt;",
])
def test_escaped_markdown_renders_as_the_literal_text(text):
    html = _rendered(escape_markdown(text))
    assert "<script" not in html and "<img" not in html and "<a " not in html and "<strong>" not in html
    assert "<h1>" not in html and "<li>" not in html and "<em>" not in html and "<code>" not in html
    # what the reader sees is the original text
    assert unescape(re.sub(r"<[^>]+>", "", html)).strip() == text


def test_html_text_escapes_and_stays_one_block():
    out = html_text("<script>alert('x')</script>\n\nNy rad: $5 *stjärna*")
    assert "<script" not in out and "&lt;script&gt;" in out
    assert "\n" not in out and out.count("<br>") == 2
    assert "$" not in out and "*" not in out and ":" not in out


def test_quote_span_uses_document_offsets():
    passage, citation = _passage(), _citation()
    start, end = quote_span(passage, citation)
    assert passage.text[start:end] == citation.quote
    assert start == citation.start - passage.start


def test_quote_span_falls_back_to_search_and_to_none():
    passage = _passage()
    moved = Citation(1, "p1", "d1", "Tredje.", 0, 7, 0.5)  # wrong offsets
    start, end = quote_span(passage, moved)
    assert passage.text[start:end] == "Tredje."
    assert quote_span(passage, Citation(1, "p1", "d1", "Finns inte.", 0, 11, 0.5)) is None


def test_highlight_marks_the_quote_and_escapes_everything():
    passage, citation = _passage(), _citation()
    start, end = quote_span(passage, citation)
    out = highlight_html(passage.text, [(start, end, "quote")])
    assert out.count("<mark") == 1 and "<b>" not in out and "&lt;b&gt;vård&lt;/b&gt;" in out
    marked = out.split("<mark", 1)[1].split(">", 1)[1].split("</mark>", 1)[0]
    assert marked == html_text(citation.quote)


def test_highlight_nested_spans_prefer_the_quote():
    text = "aaa bbb ccc ddd"
    out = highlight_html(text, [(0, 15, "passage"), (4, 7, "quote"), (100, 200, "quote"), (3, 3, "quote")])
    assert out.count('class="rag-passage"') == 2 and out.count('class="rag-quote"') == 1
    assert ">bbb</mark>" in out


def test_citation_label_and_used_citations():
    c1 = _citation(title="Cancervård", publisher="SKR", date="2023-04-25")
    assert citation_label(c1) == "[1] Cancervård – SKR, 2023-04-25"
    assert citation_label(_citation(n=2, title="T")) == "[2] T"
    c2 = _citation("Tredje.", n=2, passage_id="p2")
    assert used_citations("p2", [c1, c2]) == [c2] and used_citations("p9", [c1, c2]) == []


@pytest.mark.parametrize("url, ok", [
    ("https://www.regeringen.se/a/b/", True), ("http://example.se", True), ("javascript:alert(1)", False),
    ("data:text/html,<script>", False), ("", False), ("www.example.se", False), ("https://", False),
])
def test_only_web_links_are_linked(url, ok):
    assert bool(safe_url(url)) is ok
    link = markdown_link("Källa", url)
    assert link.startswith("[Källa](") is ok


def test_link_characters_that_break_markdown_are_encoded():
    assert safe_url("https://example.se/a (b)") == "https://example.se/a%20%28b%29"
    assert _rendered(markdown_link("Titel [x]", "https://example.se/a)b")).count("<a ") == 1


@pytest.mark.parametrize("value, expected", [
    ("2023-04-25", date(2023, 4, 25)), ("2023-12", date(2023, 12, 1)), ("2019", date(2019, 1, 1)),
    ("", None), ("okänt", None), ("2023-13", None), ("2023-02-30", None),
])
def test_parse_source_date(value, expected):
    assert parse_source_date(value) == expected


def test_source_age_and_outdated():
    today = date(2026, 11, 23)
    assert source_age_years("2021-11-23", today) == pytest.approx(5.0, abs=0.01)
    assert is_outdated("2020-05", 5, today) and not is_outdated("2023-12", 5, today)
    assert not is_outdated("", 5, today) and source_age_years("x", today) is None


@pytest.mark.parametrize("env, expected", [(None, 5.0), ("3", 3.0), ("2.5", 2.5), ("0", 5.0), ("fem", 5.0)])
def test_max_age_from_environment(monkeypatch, env, expected):
    if env is None:
        monkeypatch.delenv("RAG_MAX_SOURCE_AGE_YEARS", raising=False)
    else:
        monkeypatch.setenv("RAG_MAX_SOURCE_AGE_YEARS", env)
    assert max_source_age_from_env() == expected


def test_code_text_cannot_close_its_span():
    assert code_text("a`b\nc") == "a'b c"


def test_dates_can_be_kept_on_one_line():
    c = _citation(title="T", publisher="SKR", date="2016-01-12")
    assert citation_label(c, nobreak=True) == "[1] T – SKR, 2016\u201101\u201112"
    assert "-" not in citation_label(c, nobreak=True).split(", ")[-1]


def test_answer_markdown_keeps_the_words_and_puts_each_cited_sentence_on_its_own():
    text = "Första. [1] Kriterier: • De ska A • De ska B [2] Sista <b>x</b>. [10]"
    md = answer_markdown(text)
    assert md.split("\n\n") == ["Första\\. \\[1\\]", "Kriterier\\:  \n• De ska A  \n• De ska B \\[2\\]",
                                "Sista \\<b\\>x\\</b\\>\\. \\[10\\]"]
    assert " ".join(re.sub(r"\\(.)", r"\1", md).split()) == text
