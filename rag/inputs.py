"""One validation layer for what users send: a question and its conversation history, from the app, CLI or JSON.

Everything that reaches the pipeline passes through here: text is made valid Unicode (lone surrogates and
undecodable bytes become U+FFFD), a history must be a list of strings (a single string is one earlier question;
anything else is refused with a message), it is cut to its last few turns and each turn to the question limit.
Nothing here raises on user input: problems are returned as Swedish messages.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from typing import Any

MAX_QUESTION_CHARS = 2000
MAX_HISTORY_TURNS = 10
"""Earlier questions kept for follow-ups (only the last few matter; a 10 MB history is cut, not read)."""
MAX_LINE_BYTES = 1_000_000
"""An `ask --json` input line longer than this is refused without parsing it."""

BAD_LINE_MESSAGE = "Raden kunde inte läsas ({why}). Skriv frågan som vanlig text eller som JSON: {{\"question\": \"...\"}}."
BAD_HISTORY_MESSAGE = "Tidigare frågor (history) måste vara en lista med text; de användes inte."


@dataclass(frozen=True)
class UserInput:
    """A question and history ready for `Pipeline.ask`, plus what was wrong with the input (if anything)."""

    question: str
    history: tuple[str, ...] = ()
    problems: tuple[str, ...] = field(default_factory=tuple)
    error: str = ""  # set when there is no question to answer at all: the message to show instead


_SURROGATE = re.compile("[\ud800-\udfff]")


def clean_text(value: str) -> str:
    """Valid Unicode: each lone surrogate (from JSON "\\ud800" or an undecodable file name) becomes one U+FFFD."""
    return _SURROGATE.sub("\ufffd", value) if _has_surrogates(value) else value


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
        return False
    except UnicodeEncodeError:
        return True


def clean_history(history: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(the usable earlier questions, problems). A string is one earlier question; a list keeps its strings."""
    if history is None:
        return (), ()
    if isinstance(history, str):
        history = [history]
    if not isinstance(history, (list, tuple)):
        return (), (BAD_HISTORY_MESSAGE,)
    kept = [clean_text(h)[:MAX_QUESTION_CHARS] for h in list(history)[-MAX_HISTORY_TURNS:] if isinstance(h, str)]
    problems = (BAD_HISTORY_MESSAGE,) if len(kept) < min(len(history), MAX_HISTORY_TURNS) else ()
    return tuple(h for h in kept if h.strip()), problems


def from_values(question: Any, history: Any = ()) -> UserInput:
    """Validate a question and history given as Python values (the app, `Pipeline.ask`)."""
    if not isinstance(question, str):
        question = "" if question is None else str(question)
    turns, problems = clean_history(history)
    return UserInput(clean_text(question), turns, problems)


def from_json_line(raw: bytes) -> UserInput:
    """One `ask --json` input line: plain text, or a JSON object {"question": ..., "history": [...]}.

    Never raises: invalid UTF-8, invalid or too deeply nested JSON, a missing question or a history of the wrong
    type give a `UserInput` whose `error` (or `problems`) says what was wrong, so the batch goes on.
    """
    if len(raw) > MAX_LINE_BYTES:
        return UserInput("", error=BAD_LINE_MESSAGE.format(why=f"raden är längre än {MAX_LINE_BYTES:,} byte"))
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError:
        parsed = from_json_line(raw.decode("utf-8", "replace").encode("utf-8"))
        return replace(parsed, problems=parsed.problems + ("raden var inte giltig UTF-8; ogiltiga tecken ersattes",))
    line = line.rstrip("\r")
    if not line.lstrip().startswith("{"):
        return from_values(line, ())
    try:
        obj = json.loads(line)
    except RecursionError:
        return UserInput("", error=BAD_LINE_MESSAGE.format(why="JSON-objektet är för djupt nästlat"))
    except ValueError:
        return from_values(line, ())  # not JSON after all: a question that starts with "{"
    if not isinstance(obj, dict):
        return UserInput("", error=BAD_LINE_MESSAGE.format(why="JSON-raden är inte ett objekt"))
    question = obj.get("question")
    if not isinstance(question, str):
        return UserInput("", error=BAD_LINE_MESSAGE.format(why="fältet \"question\" saknas eller är inte text"))
    return from_values(question, obj.get("history"))


def split_lines(data: bytes) -> list[bytes]:
    """Input lines split at "\\n" only (U+2028, \\x0b, \\x1c ... stay inside their line, unlike str.splitlines);
    a final empty line is dropped, blank lines are kept so output lines stay aligned with input lines."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines
