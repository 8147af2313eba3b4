"""Format readers: Markdown, HTML, PDF, DOCX and plain text into text, headings, found metadata and page starts.

Each reader returns (text, headings, metadata found in the file): the text has paragraphs separated by blank
lines and list items and table rows one per line. A PDF's text carries a PAGE_MARK line where each page starts; the
loader turns those into page offsets after normalisation (so a citation can say "s. 12") and removes them.
Libraries: markdown-it-py, trafilatura, pypdf, python-docx.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import Counter
from pathlib import Path


PAGE_MARK = "\ue000"
"""A private-use character where a PDF page starts (never in real text); the loader records and removes it."""
NO_TEXT_LAYER = "ingen text – skannad PDF? The PDF has no text layer (a scan); run OCR on it first"


# ---------------------------------------------------------------------------------------------------------------------


def markdown_to_blocks(source: str) -> list[tuple[str, str]]:
    """Turn Markdown into (kind, text) blocks with markdown-it: kind is heading, paragraph, item or row.

    Inline markup (emphasis, links) keeps only its text; a paragraph that is nothing but a link is
    navigation and is dropped; table rows become cells joined by " | ".
    """
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(source)
    blocks: list[tuple[str, str]] = []
    list_depth = 0
    row: list[str] | None = None
    pending_kind = "paragraph"
    for tok in tokens:
        if tok.type in ("bullet_list_open", "ordered_list_open"):
            list_depth += 1
        elif tok.type in ("bullet_list_close", "ordered_list_close"):
            list_depth -= 1
        elif tok.type == "heading_open":
            pending_kind = "heading"
        elif tok.type == "paragraph_open":
            pending_kind = "item" if list_depth else "paragraph"
        elif tok.type == "tr_open":
            row = []
        elif tok.type == "tr_close" and row is not None:
            cells = [c for c in row if c]
            if cells:
                blocks.append(("row", " | ".join(cells)))
            row = None
        elif tok.type in ("fence", "code_block"):
            blocks.append(("paragraph", tok.content.strip()))
        elif tok.type == "inline":
            children = tok.children or []
            text = _inline_text(children)
            if row is not None:
                row.append(text)
                continue
            kinds = {c.type for c in children if not (c.type == "text" and not c.content.strip())}
            if pending_kind != "heading" and kinds and kinds <= {"link_open", "link_close", "text", "softbreak"} and (
                "link_open" in kinds and _is_link_only(children)
            ):
                continue
            if text:
                blocks.append((pending_kind, text))
            pending_kind = "paragraph"
    return blocks


def _inline_text(children) -> str:
    parts = []
    for child in children:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type == "softbreak":
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
        elif child.type == "image":
            parts.append(child.content or "")
    return re.sub(r"[ \t]+", " ", "".join(parts)).strip()


def _is_link_only(children) -> bool:
    depth, outside = 0, []
    for child in children:
        if child.type == "link_open":
            depth += 1
        elif child.type == "link_close":
            depth -= 1
        elif depth == 0 and child.type == "text":
            outside.append(child.content)
    return not "".join(outside).strip()


def blocks_to_text(blocks: list[tuple[str, str]]) -> tuple[str, list[str]]:
    """Join blocks into text (blank line between blocks, list items and table rows one per line)."""
    out: list[str] = []
    headings: list[str] = []
    prev_kind = None
    for kind, text in blocks:
        if kind == "item":
            text = "• " + text
        if out:
            out.append("\n" if kind in ("item", "row") and prev_kind == kind else "\n\n")
        out.append(text)
        if kind == "heading":
            headings.append(text)
        prev_kind = kind
    return "".join(out), headings


def read_markdown(source: str) -> tuple[str, list[str], dict]:
    text, headings = blocks_to_text(markdown_to_blocks(source))
    return text, headings, {"title": headings[0] if headings else ""}


def read_html(source: str) -> tuple[str, list[str], dict]:
    """Main text of a web page with trafilatura (drops navigation, cookie banners, footers), as Markdown blocks."""
    import trafilatura

    markdown = trafilatura.extract(
        source, output_format="markdown", include_formatting=True, include_tables=True, include_links=False,
        include_comments=False, favor_recall=True,
    )
    if not markdown or len(markdown) < 1500:
        # trafilatura gives up on (or flattens) small pages: read their structure with lxml instead
        blocks = html_blocks(source)
        if not markdown or len(blocks) > len(markdown_to_blocks(markdown)):
            text, headings = blocks_to_text(blocks)
            markdown = None
    meta_obj = trafilatura.extract_metadata(source)
    meta = {}
    if meta_obj is not None:
        m = meta_obj.as_dict()
        meta = {"title": m.get("title") or "", "date": m.get("date") or "", "publisher": m.get("sitename") or "",
                "url": m.get("url") or ""}
    if markdown is not None:
        text, headings = blocks_to_text(markdown_to_blocks(markdown))
    if not meta.get("title") and headings:
        meta["title"] = headings[0]
    return text, headings, meta


_CHROME_TAGS = ("nav", "header", "footer", "aside", "form", "script", "style", "noscript", "button", "svg", "iframe")


def html_blocks(source: str) -> list[tuple[str, str]]:
    """Blocks of a page trafilatura will not read (too small): page chrome (nav, header, footer, forms, scripts)
    dropped with lxml, then headings, paragraphs, list items and table rows in document order."""
    import lxml.html

    try:
        root = lxml.html.fromstring(source)
    except (ValueError, lxml.etree.ParserError):
        return []
    for tag in _CHROME_TAGS:
        for el in root.iter(tag):
            el.drop_tree()
    blocks: list[tuple[str, str]] = []
    for el in root.iter("h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "tr", "dd", "dt", "blockquote"):
        if el.tag == "tr":
            cells = [re.sub(r"\s+", " ", c.text_content()).strip() for c in el if c.tag in ("td", "th")]
            if any(cells):
                blocks.append(("row", " | ".join(c for c in cells if c)))
            continue
        if el.tag == "p" and el.getparent() is not None and el.getparent().tag in ("li", "td", "th", "blockquote"):
            continue
        text = re.sub(r"\s+", " ", el.text_content()).strip()
        if text:
            kind = "heading" if el.tag[0] == "h" and el.tag[1:].isdigit() else "item" if el.tag == "li" else "paragraph"
            blocks.append((kind, text))
    return blocks


def read_pdf(path: Path) -> tuple[str, list[str], dict]:
    """Text of every page with pypdf: compatibility forms folded (NFKC: the ligatures "ﬂ", "ﬁ" become "fl", "fi"),
    lines that repeat on most pages (running headers, footers) and page numbers removed, words hyphenated at a line
    end joined, wrapped lines joined; a PAGE_MARK line starts each page. Title and date from the PDF metadata.

    Raises
    ------
    ValueError
        For an encrypted PDF without an empty password, or one with no text layer (a scan).
    """
    from pypdf import PdfReader

    reader = PdfReader(str(path))
    if reader.is_encrypted:
        try:
            reader.decrypt("")
        except Exception as exc:  # pypdf raises several types for bad passwords
            raise ValueError(f"encrypted PDF ({exc})") from exc
    pages = [unicodedata.normalize("NFKC", page.extract_text() or "") for page in reader.pages]
    if not any(p.strip() for p in pages):
        raise ValueError(NO_TEXT_LAYER)
    pages = [_unwrap_pdf_lines(p.strip()) for p in drop_running_lines(pages)]
    text = ""
    for page in pages:
        if text and not re.search(r"[.!?:]\W*$", text) and page[:1].islower():
            text += " " + PAGE_MARK + page  # a sentence that goes on over the page break stays one sentence
        else:
            text += ("\n\n" if text else "") + PAGE_MARK + page
    meta = {}
    info = reader.metadata
    if info is not None:
        meta["title"] = (info.title or "").strip()
        created = info.get("/CreationDate")
        if isinstance(created, str) and re.match(r"D:\d{8}", created):
            meta["date"] = f"{created[2:6]}-{created[6:8]}-{created[8:10]}"
    return text, [], meta


_PAGE_NUMBER = re.compile(r"(?i)^\W*(sida|sid|s\.|page|p\.)?\s*\d{1,4}(\s*(av|/|of|\(|-)\s*\d{1,4}\)?)?\W*$")


def drop_running_lines(pages: list[str], edge: int = 2, share: float = 0.6, max_chars: int = 90) -> list[str]:
    """Remove page numbers and the short lines that repeat at the top (or at the bottom) of at least `share` of
    the pages (digits ignored, so "Sida 3 av 10" repeats): running headers and footers are never indexed or
    quoted. Long lines (prose) are never taken for a header."""
    def key(line: str) -> str:
        return re.sub(r"\d+", "#", re.sub(r"\s+", " ", line.strip().lower()))

    split = [p.split("\n") for p in pages]
    tops: Counter[str] = Counter()
    bottoms: Counter[str] = Counter()
    for lines in split:
        filled = [l for l in lines if l.strip() and len(l.strip()) <= max_chars]
        tops.update({key(l) for l in filled[:edge]})
        bottoms.update({key(l) for l in filled[-edge:]})
    need = max(2, math.ceil(share * len(pages)))
    running_top = {k for k, c in tops.items() if len(pages) >= 2 and c >= need}
    running_bottom = {k for k, c in bottoms.items() if len(pages) >= 2 and c >= need}
    out = []
    for lines in split:
        filled = [i for i, l in enumerate(lines) if l.strip()]
        top, bottom = set(filled[:edge]), set(filled[-edge:])

        def running(i: int, line: str) -> bool:
            k = key(line)
            return (i in top and k in running_top) or (i in bottom and k in running_bottom) or (
                (i in top or i in bottom) and bool(_PAGE_NUMBER.match(line.strip())))

        out.append("\n".join(l for i, l in enumerate(lines) if not (len(l.strip()) <= max_chars and running(i, l))))
    return out


def _unwrap_pdf_lines(page: str) -> str:
    # a word hyphenated at a line end is joined ("cancer-\nvården"), a compound with an acronym keeps its hyphen
    # ("HPV-\nvaccin" -> "HPV-vaccin")
    page = re.sub(r"(\b[A-ZÅÄÖ0-9]{2,})-\n(\w)", r"\1-\2", page)
    page = re.sub(r"([a-zåäöé])-\n([a-zåäö])", r"\1\2", page)
    page = re.sub(r"(?<![.!?:])\n(?=[a-zåäö0-9(])", " ", page)  # a wrapped sentence continues in lower case
    # a line that fills the width and ends mid-sentence wraps, whatever the next line starts with ("I Region\n
    # Exempelland kostar ...")
    lines = page.split("\n")
    width = max((len(l) for l in lines), default=0)
    out: list[str] = []
    for line in lines:
        prev = out[-1] if out else ""
        if (prev and line.strip() and len(prev) >= 0.6 * width and not re.search(r"[.!?:;]\W*$", prev)
                and not prev.lstrip().startswith(("•", "-", "–")) and "|" not in prev):
            out[-1] = prev.rstrip() + " " + line.lstrip()
        else:
            out.append(line)
    return "\n".join(out)


def read_docx(path: Path) -> tuple[str, list[str], dict]:
    """A Word document with python-docx: headings by their style ("Heading 1", "Rubrik 1"), list paragraphs as
    items, tables as rows of cells joined by " | ", in document order; title and date from its properties."""
    import docx
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = docx.Document(str(path))
    blocks: list[tuple[str, str]] = []
    for child in document.element.body.iterchildren():
        tag = child.tag.rsplit("}", 1)[-1]
        if tag == "p":
            para = Paragraph(child, document)
            text = re.sub(r"\s+", " ", para.text).strip()
            if not text:
                continue
            style = (para.style.name if para.style is not None else "") or ""
            numbered = child.pPr is not None and child.pPr.numPr is not None
            if re.match(r"(?i)(heading|rubrik|title|titel)\b", style):
                kind = "heading"
            elif numbered or re.match(r"(?i)list", style):
                kind = "item"
            else:
                kind = "paragraph"
            blocks.append((kind, text))
        elif tag == "tbl":
            for row in Table(child, document).rows:
                cells = []
                for cell in row.cells:
                    value = re.sub(r"\s+", " ", cell.text).strip()
                    if value and (not cells or cells[-1] != value):  # merged cells repeat their text
                        cells.append(value)
                if cells:
                    blocks.append(("row", " | ".join(cells)))
    text, headings = blocks_to_text(blocks)
    props = document.core_properties
    meta = {"title": (props.title or "").strip() or (headings[0] if headings else "")}
    if props.created is not None:
        meta["date"] = props.created.date().isoformat()
    return text, headings, meta


_HEADING_TXT = re.compile(r"^[A-ZÅÄÖ0-9][^\n]{0,100}$")


def guess_txt_headings(text: str) -> list[str]:
    """Headings of plain text: short single lines without sentence punctuation, followed by more text."""
    lines = text.split("\n")
    headings = []
    for i, line in enumerate(lines):
        s = line.strip()
        if (
            s
            and _HEADING_TXT.match(s)
            and len(s.split()) <= 12
            and not re.search(r"[.,;:!]$", s)
            and not s.startswith("•")
            and _next_line_is_prose(lines, i)
        ):
            headings.append(s)
    return headings


def _next_line_is_prose(lines: list[str], i: int) -> bool:
    following = next((l.strip() for l in lines[i + 1 :] if l.strip()), "")
    return len(following.split()) >= 6 or following.startswith("•")


