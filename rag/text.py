"""Pure text helpers: Unicode normalization for ingest and accent folding for matching."""

from __future__ import annotations

import re
import unicodedata

# Characters that carry no text: soft hyphen, zero-width space/joiners, word joiner, BOM.
_INVISIBLE = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"), None)
# Space-like characters that should read as a plain space (NBSP, narrow NBSP, thin/figure spaces, ...).
_SPACES = dict.fromkeys(map(ord, "\u00a0\u202f\u2007\u2009\u200a\u2002\u2003\u2004\u2005\u2006\u2008\u3000\t"), " ")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_FOLD = str.maketrans({"å": "a", "ä": "a", "ö": "o", "Å": "A", "Ä": "A", "Ö": "O", "é": "e", "É": "E", "ü": "u", "Ü": "U"})


def normalize_text(text: str) -> str:
    """Normalize document text: NFC, no soft hyphens or zero-width marks, plain spaces, tidy lines.

    Line structure is kept (it carries headings and paragraphs); runs of spaces collapse, lines are
    stripped, and more than one blank line collapses to one.

    Parameters
    ----------
    text : str
        Raw decoded text.

    Returns
    -------
    str
        The normalized text every offset in the index refers to.
    """
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = text.translate(_INVISIBLE).translate(_SPACES)
    text = _CONTROL.sub("", text)
    lines = [re.sub(r" {2,}", " ", line).strip() for line in text.split("\n")]
    text = "\n".join(lines)
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()


def normalize_query(text: str) -> str:
    """Normalize a user question: NFC, invisible characters removed, whitespace collapsed to single spaces."""
    text = unicodedata.normalize("NFC", text or "").translate(_INVISIBLE).translate(_SPACES)
    text = _CONTROL.sub(" ", text)
    return re.sub(r"\s+", " ", text).strip()


def fold_accents(text: str) -> str:
    """Map å/ä/ö (and é/ü) to a/a/o (e/u): how Swedish is typed on a keyboard without them."""
    return text.translate(_FOLD)


def has_letters(text: str) -> bool:
    """True if the text holds at least one letter or digit (emoji-only or punctuation-only input has none)."""
    return any(ch.isalnum() for ch in text)
