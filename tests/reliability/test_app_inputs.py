"""No traceback reaches a user of the app: odd and hostile questions get a Swedish reply and are shown as plain text,
feedback with personal data is stored redacted (every line parses), and a feedback folder that cannot be written
gives a Swedish message while the chat goes on. The real app over the real default pipeline (AppTest)."""

from __future__ import annotations

import json
import re

import pytest

from rag.inputs import MAX_QUESTION_CHARS
from tests.conftest import PROJECT_ROOT
from tests.reliability.conftest import looks_swedish

APP = str(PROJECT_ROOT / "app.py")

QUESTIONS = {
    "5000-characters": "Vad är en kontaktsjuksköterska? " * 160,
    "control-characters": "\x00\x01\x02\x1b[31m Vad är en kontaktsjuksköterska?",
    "line-separators": "Vad är\u2028en\x85kontaktsjuksköterska?\u2029",
    "only-emoji": "\U0001F914\U0001F914",
    "only-spaces": "   \t ",
    "html-script": '<script>alert(1)</script><img src=x onerror="alert(2)"> Vad är en kontaktsjuksköterska?',
    "markdown-javascript-link": "[klicka här](javascript:alert(1)) Vad är en kontaktsjuksköterska?",
    "markdown-external-image": "![bild](http://example.com/spårning.png) Vad är en kontaktsjuksköterska?",
    "latex": "$$\\frac{1}{0}$$ Vad är en kontaktsjuksköterska?",
    "streamlit-icon-shortcode": ":material/warning: :red[röd] Vad är en kontaktsjuksköterska?",
    "json-looking": '{"question": 5, "history": 5}',
    "rtl-override": "\u202eVad är en kontaktsjuksköterska?",
    "follow-up-after-all-that": "Vad är det?",
    "personal-data": "Jag heter Anna Svensson, mitt personnummer är 121212-1212. Vad gäller för mig?",
}


@pytest.fixture(scope="module")
def session(tmp_path_factory, pipeline):
    """One app session that gets every question in turn (the history grows with each one, as for a real user)."""
    from streamlit.testing.v1 import AppTest

    folder = tmp_path_factory.mktemp("app-inputs") / "feedback"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RAG_FEEDBACK_DIR", str(folder))
        at = AppTest.from_file(APP, default_timeout=180)
        at.run()
        assert not at.exception, at.exception
        yield at, folder


def _user_markdown(at) -> list[str]:
    return [child.value for m in at.chat_message if m.name == "user" for child in m.children.values()
            if isinstance(getattr(child, "value", None), str)]


@pytest.mark.parametrize("case", list(QUESTIONS))
def test_an_odd_question_in_the_app_gets_a_swedish_reply_and_is_shown_as_text(session, case):
    at, _ = session
    question = QUESTIONS[case]
    before = len(at.session_state["turns"])
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    errors = [e.value for e in at.error]
    assert not any("Något gick fel" in e for e in errors), errors
    turns = at.session_state["turns"]
    # the chat box takes at most MAX_QUESTION_CHARS characters (AppTest cuts the value as the browser does)
    assert len(turns) == before + 1 and turns[-1]["question"] == question[:MAX_QUESTION_CHARS]
    answer = turns[-1]["answer"]
    assert looks_swedish("\n".join(x for x in (answer.notice, answer.text) if x)), answer.text[:300]
    shown = _user_markdown(at)[-1]
    assert not re.search(r"(?<!\\)!\[|(?<!\\)\[klicka|(?<!\\)<script|(?<!\\)\$\$|(?<!\\):material", shown), shown


def test_feedback_with_personal_data_is_stored_redacted_and_every_line_parses(session):
    at, folder = session
    turns = at.session_state["turns"]
    for turn in turns[-3:]:
        tid = turn["id"]
        at.feedback(key=f"rating-{tid}").set_value(0)
        at.text_input(key=f"comment-{tid}").set_value(
            "Jag heter Anna Svensson, pnr 121212 - 1212, ring 070.123.45.67 eller anna (at) example.se \u2028\x85")
        at.button(key=f"send-{tid}").click().run()
        assert not at.exception, at.exception
    raw = (folder / "feedback.jsonl").read_bytes().decode("utf-8")
    lines = raw.split("\n")
    assert lines[-1] == ""
    rows = [json.loads(line) for line in lines[:-1]]
    assert len(rows) == 3
    for row in rows:
        text = json.dumps(row, ensure_ascii=False)
        assert "1212" not in re.sub(r"[^\d]", "", row["comment"]) and "070" not in row["comment"], row["comment"]
        assert "Anna" not in row["comment"] and "example" not in row["comment"] and "Svensson" not in text, row
        assert "121212" not in re.sub(r"\D", "", row["question"]), row["question"]


def test_a_feedback_folder_that_cannot_be_written_gives_a_swedish_message_and_the_chat_goes_on(tmp_path, monkeypatch,
                                                                                               pipeline):
    from streamlit.testing.v1 import AppTest

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n", encoding="utf-8")
    monkeypatch.setenv("RAG_FEEDBACK_DIR", str(blocker / "feedback"))
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.chat_input[0].set_value("Vad är en kontaktsjuksköterska?").run()
    tid = at.session_state["turns"][-1]["id"]
    at.feedback(key=f"rating-{tid}").set_value(1)
    at.button(key=f"send-{tid}").click().run()
    assert not at.exception, at.exception
    warnings = [w.value for w in at.warning]
    assert any("kunde tyvärr inte sparas" in w for w in warnings), warnings
    at.chat_input[0].set_value("Vad är det?").run()
    assert not at.exception and len(at.session_state["turns"]) == 2
    assert blocker.read_text(encoding="utf-8") == "not a folder\n"
