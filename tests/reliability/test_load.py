"""A small CI version of the load benchmark (eval/load.py): the real Streamlit server on 127.0.0.1 and five
concurrent browser sessions (Playwright + Debian's chromium), each asking a question and a follow-up. Every session
gets both answers within the time bound, no page shows "Något gick fel", and the server log has no traceback."""

from __future__ import annotations

import asyncio
import time

import pytest

from eval.load import run_sessions, summarize
from tests.test_browser import CHROMIUM_ARGS, browser_or_skip, streamlit_server

pytestmark = pytest.mark.browser

SESSIONS = 5
QUESTIONS = 2
BOUND_S = 180


def test_five_concurrent_sessions_each_get_both_answers_without_an_error(tmp_path, pipeline):
    """`pipeline` makes sure the default index exists, so the server only loads it."""
    _, chromium = browser_or_skip()
    with streamlit_server(tmp_path) as url:
        t0 = time.monotonic()
        results = asyncio.run(run_sessions(url, SESSIONS, QUESTIONS, timeout_s=BOUND_S, chromium=chromium,
                                           args=CHROMIUM_ARGS))
        wall = time.monotonic() - t0
    summary = summarize(results, QUESTIONS, wall)
    log = (tmp_path / "streamlit.log").read_text(encoding="utf-8", errors="replace")
    assert summary["errors"] == 0, summary["error_details"]
    assert summary["sessions_completed"] == SESSIONS and summary["answers"] == SESSIONS * QUESTIONS, summary
    assert wall < BOUND_S, summary
    assert "Traceback" not in log, log[-3000:]
    feedback = tmp_path / "fb"
    assert not feedback.exists() or all(line for line in (feedback / "feedback.jsonl").read_text().splitlines())
