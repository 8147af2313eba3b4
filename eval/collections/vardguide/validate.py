#!/usr/bin/env python3
"""Validate the vardguide collection: metadata, question set and evidence spans.

Usage: python3 validate.py [--verbose]

Checks
  * every metadata path exists, paths and URLs unique, dates valid and 2021-2026,
    every document file under docs/ is listed in metadata.jsonl;
  * question ids unique and sequential, keys and kinds as specified, sizes per kind;
  * for answerable questions: doc_id names a document, the evidence is 5-40 words,
    has no markup, and occurs verbatim inside ONE block (paragraph, list item,
    table cell or heading) of the document's visible text:
      - Markdown: the text with the markup removed,
      - HTML: the text of the page (script/style excluded),
      - PDF: the text of its source HTML in ../vardguide-src/<name>.html;
  * PDFs additionally: if pypdf is installed, report how many evidence strings
    pypdf's extraction contains verbatim (raw text), and how many after
    whitespace/ligature normalisation. These are reported, not enforced.
  * every document is the target of at least one question.
Exit status is 0 when all enforced checks pass.
"""
import datetime
import html.parser
import json
import re
import sys
import unicodedata
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent
DOCS = ROOT / "docs"
PDFSRC = ROOT.parent / "vardguide-src"
VERBOSE = "--verbose" in sys.argv

EXPECTED_KINDS = {"lay": 70, "no-diacritics": 15, "typo": 15, "follow-up": 15,
                  "uncovered": 35, "off-topic": 10}
KEYS = ["id", "question", "answerable", "doc_id", "evidence", "answer", "kind", "history"]

errors = []


def err(msg):
    errors.append(msg)
    print("ERROR:", msg)


def norm_ws(s):
    return re.sub(r"\s+", " ", s).strip()


# ---------- visible text ----------

def md_blocks(text):
    """Blocks of visible text of a Markdown file (paragraphs, list items, table cells, headings)."""
    def strip_inline(s):
        s = re.sub(r"!\[([^\]]*)\]\([^)]*\)", r"\1", s)
        s = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", s)
        s = re.sub(r"(\*\*|__|\*|`)", "", s)
        return s.strip()

    blocks, para = [], []

    def flush():
        if para:
            blocks.append(strip_inline(" ".join(para)))
            para.clear()

    for line in text.splitlines():
        s = line.strip()
        if not s:
            flush()
        elif s.startswith("#"):
            flush()
            blocks.append(strip_inline(s.lstrip("#")))
        elif re.match(r"^([-*+]|\d+\.)\s+", s):
            flush()
            blocks.append(strip_inline(re.sub(r"^([-*+]|\d+\.)\s+", "", s)))
        elif s.startswith("|"):
            flush()
            cells = [c.strip() for c in s.strip("|").split("|")]
            if all(set(c) <= set("-: ") for c in cells):
                continue
            blocks.extend(strip_inline(c) for c in cells if c)
        else:
            para.append(s)
    flush()
    return [norm_ws(b) for b in blocks if b.strip()]


class TextBlocks(html.parser.HTMLParser):
    BLOCK = {"p", "li", "td", "th", "h1", "h2", "h3", "h4", "h5", "h6", "div", "section",
             "article", "aside", "nav", "header", "footer", "main", "ul", "ol", "table",
             "tr", "form", "label", "button", "br", "title", "body", "html", "blockquote"}
    SKIP = {"script", "style", "noscript", "template"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.blocks, self.cur, self.skip = [], [], 0

    def _flush(self):
        t = norm_ws("".join(self.cur))
        if t:
            self.blocks.append(t)
        self.cur = []

    def handle_starttag(self, tag, attrs):
        if tag in self.SKIP:
            self.skip += 1
        elif tag in self.BLOCK:
            self._flush()

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCK:
            self._flush()

    def handle_data(self, data):
        if not self.skip:
            self.cur.append(data)

    def close(self):
        super().close()
        self._flush()


def html_blocks(text):
    p = TextBlocks()
    p.feed(text)
    p.close()
    return p.blocks


def pdf_text(path):
    try:
        import pypdf
    except ImportError:
        return None
    reader = pypdf.PdfReader(str(path))
    return "\n".join(page.extract_text() or "" for page in reader.pages)


def pdf_norm(s):
    s = unicodedata.normalize("NFKC", s)          # ﬁ -> fi, ﬂ -> fl
    s = re.sub(r"-\n(?=[a-zåäö])", "", s)          # soft line-end hyphenation
    return norm_ws(s)


# ---------- metadata ----------

meta_path = DOCS / "metadata.jsonl"
metas = [json.loads(l) for l in meta_path.read_text(encoding="utf-8").splitlines() if l.strip()]
docs = {}
for m in metas:
    for k in ("path", "title", "publisher", "date", "url"):
        if not m.get(k):
            err(f"metadata line lacks {k}: {m}")
    p = DOCS / m["path"]
    if not p.is_file():
        err(f"metadata path does not exist: {m['path']}")
        continue
    try:
        d = datetime.date.fromisoformat(m["date"])
        if not (2021 <= d.year <= 2026):
            err(f"date out of range: {m}")
    except ValueError:
        err(f"bad date: {m}")
    if not m["url"].startswith("https://"):
        err(f"url not https: {m}")
    doc_id = m["path"].rsplit(".", 1)[0]
    if doc_id in docs:
        err(f"duplicate doc id {doc_id}")
    docs[doc_id] = m
if len({m["path"] for m in metas}) != len(metas):
    err("duplicate metadata paths")
if len({m["url"] for m in metas}) != len(metas):
    err("duplicate metadata urls")
on_disk = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*") if p.is_file() and p.name != "metadata.jsonl"}
listed = {m["path"] for m in metas}
for extra in sorted(on_disk - listed):
    err(f"file in docs/ not listed in metadata: {extra}")

fmt_counts = Counter(m["path"].rsplit(".", 1)[1] for m in metas)

# visible text blocks per document
blocks, words = {}, {}
pdf_raw = {}
for doc_id, m in docs.items():
    p = DOCS / m["path"]
    ext = p.suffix.lower()
    if ext == ".md":
        b = md_blocks(p.read_text(encoding="utf-8"))
    elif ext in (".html", ".htm"):
        b = html_blocks(p.read_text(encoding="utf-8"))
    elif ext == ".pdf":
        src = PDFSRC / (p.stem + ".html")
        if not src.is_file():
            err(f"no source HTML for {m['path']} at {src}")
            b = []
        else:
            b = html_blocks(src.read_text(encoding="utf-8"))
        pdf_raw[doc_id] = pdf_text(p)
    else:
        err(f"unknown format {m['path']}")
        b = []
    blocks[doc_id] = b

# article word counts (the Markdown text, the <main><article> of HTML, the PDF source body)
ART = re.compile(r"<article>(.*?)</article>", re.S)
for doc_id, m in docs.items():
    p = DOCS / m["path"]
    if p.suffix == ".md":
        n = sum(len(b.split()) for b in blocks[doc_id])
    elif p.suffix == ".html":
        a = ART.search(p.read_text(encoding="utf-8"))
        n = sum(len(b.split()) for b in html_blocks(a.group(1))) if a else 0
    else:
        n = sum(len(b.split()) for b in blocks[doc_id])
    words[doc_id] = n
    if not (300 <= n <= 900 + 60):   # PDF counts include a short colophon
        err(f"{doc_id}: {n} words, outside 300-900")

# ---------- questions ----------

qs = [json.loads(l) for l in (ROOT / "questions.jsonl").read_text(encoding="utf-8").splitlines() if l.strip()]
ids = [q.get("id") for q in qs]
if len(set(ids)) != len(ids):
    err("duplicate question ids")
for n, i in enumerate(ids, 1):
    if i != f"vg{n:03d}":
        err(f"id out of sequence at line {n}: {i}")
        break
kinds = Counter(q.get("kind") for q in qs)
for k, n in EXPECTED_KINDS.items():
    if kinds.get(k, 0) != n:
        err(f"kind {k}: {kinds.get(k, 0)} questions, expected {n}")
for k in kinds:
    if k not in EXPECTED_KINDS:
        err(f"unknown kind {k}")
if len({q["question"] for q in qs}) != len(qs):
    err("duplicate question texts")

covered = Counter()
pdf_total = pdf_raw_hits = pdf_norm_hits = 0
pdf_misses = []
for q in qs:
    if list(q.keys()) != KEYS:
        err(f"{q.get('id')}: keys {list(q.keys())}")
    if not isinstance(q["history"], list):
        err(f"{q['id']}: history not a list")
    if q["kind"] == "follow-up":
        if not q["history"]:
            err(f"{q['id']}: follow-up without history")
    elif q["history"]:
        err(f"{q['id']}: history on a non-follow-up")
    if not q["answer"]:
        err(f"{q['id']}: empty answer")
    if q["kind"] in ("uncovered", "off-topic"):
        if q["answerable"] or q["doc_id"] or q["evidence"]:
            err(f"{q['id']}: unanswerable kind with answerable/doc_id/evidence")
        continue
    if q["answerable"] is not True:
        err(f"{q['id']}: kind {q['kind']} must be answerable")
        continue
    if q["kind"] == "no-diacritics" and re.search(r"[åäöéÅÄÖÉ]", q["question"]):
        err(f"{q['id']}: no-diacritics question contains diacritics")
    doc_id, ev = q["doc_id"], q["evidence"]
    if doc_id not in docs:
        err(f"{q['id']}: unknown doc_id {doc_id}")
        continue
    covered[doc_id] += 1
    nw = len(ev.split())
    if not (5 <= nw <= 40):
        err(f"{q['id']}: evidence has {nw} words")
    if re.search(r"[<>*#|`\[\]]", ev) or "\n" in ev:
        err(f"{q['id']}: evidence contains markup")
    if not any(ev in b for b in blocks[doc_id]):
        full = " ".join(blocks[doc_id])
        where = "spans blocks" if ev in full else "not found"
        err(f"{q['id']}: evidence {where} in {doc_id}: {ev!r}")
    if doc_id in pdf_raw and pdf_raw[doc_id] is not None:
        pdf_total += 1
        raw = pdf_raw[doc_id]
        if ev in raw:
            pdf_raw_hits += 1
        if norm_ws(unicodedata.normalize("NFKC", ev)) in pdf_norm(raw):
            pdf_norm_hits += 1
        else:
            pdf_misses.append((q["id"], doc_id, ev))

for doc_id in docs:
    if covered[doc_id] == 0:
        err(f"document without any question: {doc_id}")

# ---------- report ----------

print(f"documents: {len(docs)}  by format: {dict(fmt_counts)}")
print(f"article words: min {min(words.values())}, max {max(words.values())}, "
      f"total {sum(words.values())}")
print(f"questions: {len(qs)}  by kind: {dict(kinds)}")
print(f"answerable: {sum(1 for q in qs if q['answerable'])}, documents covered: "
      f"{sum(1 for d in docs if covered[d])}/{len(docs)}")
if any(v is None for v in pdf_raw.values()):
    print("pypdf not installed: PDF extraction not checked")
else:
    print(f"PDF evidence strings: {pdf_total}; found verbatim in raw pypdf text: {pdf_raw_hits}; "
          f"after whitespace/ligature normalisation: {pdf_norm_hits}")
    lig = sum(1 for t in pdf_raw.values() if re.search("[\ufb00-\ufb06]", t))
    print(f"PDFs whose pypdf text contains ligature characters (U+FB00-FB06): {lig}/{len(pdf_raw)}")
    if VERBOSE:
        for i, d, e in pdf_misses:
            print("  pypdf miss:", i, d, repr(e))
print("OK" if not errors else f"{len(errors)} error(s)")
sys.exit(1 if errors else 0)
