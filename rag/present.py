"""Pure-Python presentation helpers for the app: safe Markdown/HTML, quote highlights, labels and source ages."""

from __future__ import annotations

import html
import os
import re
from datetime import date
from typing import Iterable, Sequence
from urllib.parse import quote, urlsplit

from rag.types import Citation, Passage

DEFAULT_MAX_SOURCE_AGE_YEARS = 5.0

# Every ASCII punctuation character may be backslash-escaped in CommonMark; these are the ones that can start
# Markdown, HTML or Streamlit syntax (:emoji:, :red[...], $math$).
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=^])")
# Inside raw HTML nothing is parsed as Markdown, but entities keep it so even if a renderer tries.
_HTML_EXTRA = {"$": "&#36;", "*": "&#42;", "_": "&#95;", "`": "&#96;", "[": "&#91;", "]": "&#93;", ":": "&#58;",
               "~": "&#126;", "\\": "&#92;", "#": "&#35;", "|": "&#124;"}

# Highlight styles: readable in the light and the dark theme (explicit text colour on a light background).
MARK_STYLES = {
    "quote": "background:#ffd84d;color:#1a1a1a;padding:0 .1em;border-radius:.2em;",
    "passage": "background:rgba(255,216,77,.28);color:inherit;",
}
_KIND_ORDER = {"quote": 2, "passage": 1}


def escape_markdown(text: str) -> str:
    """Escape text for `st.markdown` so it shows literally (no links, HTML, lists, emoji or math).

    Parameters
    ----------
    text : str
        Any text: a user's question, a source title.

    Returns
    -------
    str
        Markdown that renders as exactly `text`; "<script>" becomes "\\<script\\>".
    """
    return _MD_SPECIAL.sub(r"\\\1", text or "")


def html_text(text: str) -> str:
    """Escape text for an HTML fragment: `html.escape`, Markdown characters as entities, newlines as <br>.

    Parameters
    ----------
    text : str

    Returns
    -------
    str
        One line of HTML (no blank lines, so Markdown never ends the HTML block) that shows `text` literally.
    """
    escaped = html.escape(text or "", quote=True)
    escaped = "".join(_HTML_EXTRA.get(ch, ch) for ch in escaped)
    return escaped.replace("\r\n", "\n").replace("\n", "<br>")


def highlight_html(text: str, spans: Iterable[tuple[int, int, str]]) -> str:
    """Escaped HTML of `text` with the given spans wrapped in <mark>.

    Parameters
    ----------
    text : str
        The text to show (a passage or a whole document).
    spans : iterable of (start, end, kind)
        Offsets into `text`; kind is "quote" (a cited sentence) or "passage" (a retrieved passage). Spans may
        overlap or nest: a character covered by both is shown as "quote". Out-of-range parts are clipped.

    Returns
    -------
    str
        HTML safe for `st.markdown(..., unsafe_allow_html=True)`.
    """
    n = len(text)
    clean = [(max(0, s), min(n, e), k) for s, e, k in spans if k in MARK_STYLES and max(0, s) < min(n, e)]
    cuts = sorted({0, n, *(s for s, _, _ in clean), *(e for _, e, _ in clean)})
    out = []
    for a, b in zip(cuts, cuts[1:]):
        kinds = [k for s, e, k in clean if s <= a and b <= e]
        piece = html_text(text[a:b])
        if kinds:
            kind = max(kinds, key=_KIND_ORDER.__getitem__)
            out.append(f'<mark class="rag-{kind}" style="{MARK_STYLES[kind]}">{piece}</mark>')
        else:
            out.append(piece)
    return "".join(out)


def passage_block(inner_html: str, max_height: str = "") -> str:
    """Wrap highlighted HTML in a quiet, phone-friendly box (long words wrap; optional scroll height)."""
    scroll = f"max-height:{max_height};overflow-y:auto;" if max_height else ""
    return (
        '<div class="rag-source-text" style="border-left:3px solid rgba(128,128,128,.45);padding:.1rem 0 .1rem .75rem;'
        f'line-height:1.55;overflow-wrap:anywhere;{scroll}">{inner_html}</div>'
    )


def quote_span(passage: Passage, citation: Citation) -> tuple[int, int] | None:
    """Where a citation's quote lies inside its passage's text (offsets into `passage.text`).

    Both carry document offsets, so the quote is at `[c.start - p.start, c.end - p.start]`; if that does not
    hold the quote (an index built differently), the quote is searched for instead.

    Returns
    -------
    tuple of int, or None
        (start, end) within `passage.text`, or None when the passage does not contain the quote.
    """
    start, end = citation.start - passage.start, citation.end - passage.start
    if 0 <= start <= end <= len(passage.text) and passage.text[start:end] == citation.quote:
        return start, end
    if citation.quote:
        found = passage.text.find(citation.quote)
        if found >= 0:
            return found, found + len(citation.quote)
    return None


NOBREAK_HYPHEN = "\u2011"


def source_meta(publisher: str, day: str, nobreak: bool = False) -> str:
    """Join publisher and date as "publisher, date", leaving out empty parts.

    With `nobreak`, the date's hyphens are non-breaking, so a narrow screen never splits "2016-01-12".
    """
    day = day.replace("-", NOBREAK_HYPHEN) if nobreak and day else day
    return ", ".join(x for x in (publisher, day) if x)


def citation_label(citation: Citation, nobreak: bool = False) -> str:
    """The source card's title: "[1] <title> – <publisher>, <date>" (plain text, not yet Markdown-escaped)."""
    meta = source_meta(citation.publisher, citation.date, nobreak)
    title = citation.title or citation.doc_id
    return f"[{citation.n}] {title} – {meta}" if meta else f"[{citation.n}] {title}"


def safe_url(url: str) -> str:
    """The URL if it is an http(s) link with a host, percent-encoding characters that break Markdown links; else ""."""
    url = (url or "").strip()
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        return ""
    return quote(url, safe="/:?#&=%+@,;~!$'*-._")


def markdown_link(label: str, url: str) -> str:
    """A Markdown link with an escaped label, or just the escaped label when the URL is not a safe web link."""
    link = safe_url(url)
    return f"[{escape_markdown(label)}]({link})" if link else escape_markdown(label)


def parse_source_date(value: str) -> date | None:
    """Read a source date given as "YYYY-MM-DD", "YYYY-MM" or "YYYY" (the first day of the period).

    Returns
    -------
    date or None
        None when the value is missing or not such a date.
    """
    m = re.fullmatch(r"\s*(\d{4})(?:-(\d{1,2})(?:-(\d{1,2}))?)?\s*", value or "")
    if not m:
        return None
    try:
        return date(int(m.group(1)), int(m.group(2) or 1), int(m.group(3) or 1))
    except ValueError:
        return None


def source_age_years(value: str, today: date | None = None) -> float | None:
    """How many years old a source is (fractional), or None when its date cannot be read."""
    day = parse_source_date(value)
    if day is None:
        return None
    return ((today or date.today()) - day).days / 365.25


def is_outdated(value: str, max_years: float, today: date | None = None) -> bool:
    """True when the source's date is more than `max_years` ago (unknown dates are not flagged)."""
    age = source_age_years(value, today)
    return age is not None and age > max_years


def max_source_age_from_env(default: float = DEFAULT_MAX_SOURCE_AGE_YEARS) -> float:
    """$RAG_MAX_SOURCE_AGE_YEARS as a positive number of years, else `default`."""
    try:
        years = float(os.environ.get("RAG_MAX_SOURCE_AGE_YEARS", ""))
    except ValueError:
        return default
    return years if years > 0 else default


def used_citations(passage_id: str, citations: Sequence[Citation]) -> list[Citation]:
    """The citations quoting from one passage (same passage id), in answer order."""
    return [c for c in citations if c.passage_id == passage_id]


def code_text(text: str) -> str:
    """Text for a Markdown code span: backticks and line breaks removed, so the span cannot be closed early."""
    return " ".join((text or "").replace("`", "'").split())


def answer_markdown(text: str) -> str:
    """Answer text as escaped Markdown, one paragraph per cited sentence, keeping the sources' line breaks.

    The words are unchanged: a paragraph break is put after each [n] marker, and list bullets ("•") and line
    breaks inside a quote start a new line instead of running together.
    """
    parts = [p.strip() for p in re.split(r"(?<=\[\d\])\s+|(?<=\[\d\d\])\s+", text or "") if p.strip()]
    paragraphs = []
    for part in parts:
        part = re.sub(r"\s+(?=• )", "\n", part)
        lines = [escape_markdown(line.strip()) for line in re.split(r"\n+", part) if line.strip()]
        paragraphs.append("  \n".join(lines))
    return "\n\n".join(paragraphs)
