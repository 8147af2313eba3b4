"""Swedish sentence splitting (spaCy) and sentence-aware, heading-aware passage chunking with overlap."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from rag.types import Document, Passage

_BULLET = re.compile(r"^[•\-–*]\s+")
MAX_LINE_CHARS = 100_000
"""Lines longer than this are cut at spaces before sentence splitting (spaCy's limit is 1 000 000 characters)."""


@dataclass(frozen=True)
class Sentence:
    """A sentence of a document: `document.text[start:end] == text`."""

    doc_id: str
    start: int
    end: int
    text: str
    is_heading: bool = False


@dataclass
class SplitResult:
    """Passages of a set of documents, the sentences they are made of, and which sentences each passage holds."""

    passages: list[Passage] = field(default_factory=list)
    sentences: list[Sentence] = field(default_factory=list)
    passage_sentences: list[list[int]] = field(default_factory=list)


@lru_cache(maxsize=1)
def _spacy_swedish():
    import spacy

    nlp = spacy.blank("sv")
    nlp.add_pipe("sentencizer")
    return nlp


def split_sentences(text: str) -> list[tuple[int, int]]:
    """Split text into sentence spans with spaCy's Swedish rules; sentences never cross a line break.

    spaCy's Swedish tokenizer knows abbreviations such as "t.ex.", "bl.a.", "dvs.", "kl.", so they do not end a
    sentence; a fragment that starts in lower case (e.g. after "s. 4 ff.") is joined back to the one before it.
    Leading list bullets are not part of a sentence.

    Parameters
    ----------
    text : str
        Normalized text.

    Returns
    -------
    list of (start, end)
        Character spans into `text`, stripped of surrounding whitespace, in order.
    """
    nlp = _spacy_swedish()
    spans: list[tuple[int, int]] = []
    lines, offsets, offset = [], [], 0
    for line in text.split("\n"):
        if line.strip():
            bullet = _BULLET.match(line)
            start = bullet.end() if bullet else 0
            # spaCy refuses texts over nlp.max_length: a very long line (a 2 MB run-on export) goes in pieces
            for s, e in _hard_wrap(start, len(line), line, MAX_LINE_CHARS):
                lines.append(line[s:e])
                offsets.append(offset + s)
        offset += len(line) + 1
    for body, base, parsed in zip(lines, offsets, nlp.pipe(lines, batch_size=256)):
        line_spans: list[tuple[int, int]] = []
        for sent in parsed.sents:
            s, e = sent.start_char, sent.end_char
            chunk = body[s:e]
            s += len(chunk) - len(chunk.lstrip())
            e -= len(chunk) - len(chunk.rstrip())
            if e <= s:
                continue
            if line_spans and (body[s].islower() or not any(ch.isalpha() for ch in body[s:e])):
                line_spans[-1] = (line_spans[-1][0], e)
            else:
                line_spans.append((s, e))
        spans.extend((base + s, base + e) for s, e in line_spans)
    return spans


def _hard_wrap(start: int, end: int, text: str, limit: int) -> list[tuple[int, int]]:
    """Cut an over-long "sentence" (a run-on list or table) at spaces so no piece exceeds `limit` chars."""
    pieces = []
    while end - start > limit:
        cut = text.rfind(" ", start, start + limit)
        cut = cut if cut > start else start + limit
        pieces.append((start, cut))
        start = cut + 1
    pieces.append((start, end))
    return pieces


class PassageSplitter:
    """Chunk documents into passages of whole sentences, never across a heading, with sentence overlap.

    Parameters
    ----------
    max_chars : int
        Target upper size of a passage (a single longer sentence still makes one passage).
    overlap_sentences : int
        Sentences repeated at the start of the next passage, so an answer sentence keeps its context.
    max_sentence_chars : int
        Longer "sentences" (tables, run-on lists) are cut at spaces.

    Example
    -------
    >>> result = PassageSplitter(max_chars=800).run(documents)
    >>> result.passages[0].text == documents[0].text[result.passages[0].start:result.passages[0].end]
    True
    """

    def __init__(self, max_chars: int = 800, overlap_sentences: int = 1, max_sentence_chars: int = 1000) -> None:
        if max_chars < 100:
            raise ValueError(f"max_chars must be >= 100, got {max_chars}")
        if overlap_sentences < 0:
            raise ValueError(f"overlap_sentences must be >= 0, got {overlap_sentences}")
        self.max_chars = max_chars
        self.overlap_sentences = overlap_sentences
        self.max_sentence_chars = max_sentence_chars

    def config(self) -> dict:
        return {"max_chars": self.max_chars, "overlap_sentences": self.overlap_sentences,
                "max_sentence_chars": self.max_sentence_chars}

    def run(self, documents: list[Document]) -> SplitResult:
        result = SplitResult()
        for doc in documents:
            self._split_document(doc, result)
        return result

    def _split_document(self, doc: Document, result: SplitResult) -> None:
        text = doc.text
        headings = set(doc.headings)
        # Sections: (heading text, [sentence indexes into result.sentences], paragraph id per sentence)
        sections: list[tuple[str, list[int], list[int]]] = [("", [], [])]
        line_start = 0
        paragraph = 0
        spans = split_sentences(text)
        span_i = 0
        for line in text.split("\n"):
            line_end = line_start + len(line)
            stripped = line.strip()
            if not stripped:
                paragraph += 1
            if stripped and stripped in headings:
                s = line_start + (len(line) - len(line.lstrip()))
                result.sentences.append(Sentence(doc.doc_id, s, s + len(stripped), stripped, is_heading=True))
                sections.append((stripped, [], []))
                while span_i < len(spans) and spans[span_i][0] < line_end:
                    span_i += 1
            else:
                while span_i < len(spans) and spans[span_i][0] < line_end:
                    s, e = spans[span_i]
                    for ps, pe in _hard_wrap(s, e, text, self.max_sentence_chars):
                        result.sentences.append(Sentence(doc.doc_id, ps, pe, text[ps:pe]))
                        sections[-1][1].append(len(result.sentences) - 1)
                        sections[-1][2].append(paragraph)
                    span_i += 1
                paragraph += 1 if stripped and not stripped.startswith("•") and " | " not in stripped else 0
            line_start = line_end + 1
        seen: dict[str, int] = {}
        for heading, sent_ids, paras in sections:
            for window in self._windows(sent_ids, paras, result.sentences):
                first, last = result.sentences[window[0]], result.sentences[window[-1]]
                passage_text = text[first.start : last.end]
                pid = Passage.make_id(doc.doc_id, passage_text)
                seen[pid] = seen.get(pid, 0) + 1
                if seen[pid] > 1:  # identical text twice in one document: keep both, ids still stable
                    pid = Passage.make_id(doc.doc_id, passage_text + f"\x00{seen[pid]}")
                result.passages.append(
                    Passage(pid, doc.doc_id, passage_text, first.start, last.end, heading=heading, title=doc.title)
                )
                result.passage_sentences.append(list(window))

    def _windows(self, sent_ids: list[int], paras: list[int], sentences: list[Sentence]) -> list[list[int]]:
        windows: list[list[int]] = []
        i = 0
        n = len(sent_ids)
        while i < n:
            j = i + 1
            start = sentences[sent_ids[i]].start
            while j < n:
                size = sentences[sent_ids[j]].end - start
                if size > self.max_chars:
                    break
                # Prefer to end at a paragraph break once the passage is half full.
                if paras[j] != paras[j - 1] and sentences[sent_ids[j - 1]].end - start >= self.max_chars // 2:
                    next_para_end = max(
                        (sentences[sent_ids[k]].end for k in range(j, n) if paras[k] == paras[j]), default=0
                    )
                    if next_para_end - start > self.max_chars:
                        break
                j += 1
            windows.append(sent_ids[i:j])
            if j >= n:
                break
            i = max(j - self.overlap_sentences, i + 1)
        return windows
