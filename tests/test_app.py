"""The Streamlit app run headless with the real pipeline: answers, sources, safety, follow-ups, feedback, audit."""

import re

import pytest
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.element_tree import Widget

from embeddings import DEFAULT_MODEL
from rag.feedback import PERSONNUMMER_TAG, PHONE_TAG, FeedbackStore
from rag.present import NOBREAK_HYPHEN, is_outdated
from tests.conftest import PROJECT_ROOT

APP = str(PROJECT_ROOT / "app.py")


@pytest.fixture()
def feedback_dir(tmp_path, monkeypatch):
    """Every app test writes feedback to its own temporary folder, never into the project."""
    folder = tmp_path / "feedback"
    monkeypatch.setenv("RAG_FEEDBACK_DIR", str(folder))
    monkeypatch.delenv("RAG_MAX_SOURCE_AGE_YEARS", raising=False)
    return folder


@pytest.fixture()
def app(feedback_dir):
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    assert not at.exception
    return at


def ask(at: AppTest, question: str) -> AppTest:
    at.chat_input[0].set_value(question).run()
    assert not at.exception, at.exception
    return at


def plain(markdown: str) -> str:
    """What a reader sees of escaped Markdown (backslash escapes removed, non-breaking hyphens as hyphens)."""
    return re.sub(r"\\(.)", r"\1", markdown).replace(NOBREAK_HYPHEN, "-")


def assistant_messages(at: AppTest):
    return [m for m in at.chat_message if m.name == "assistant"]


def children(block) -> list:
    return list(block.children.values())


def last_answer(at: AppTest):
    return at.session_state["turns"][-1]["answer"]


def rendered_text(node) -> list[str]:
    """Every Markdown body, alert, caption, expander label and HTML fragment in the app (input widgets excluded)."""
    out = []
    for attr in ("value", "label", "body"):
        value = None if isinstance(node, Widget) else getattr(node, attr, None)
        if isinstance(value, str):
            out.append(value)
    for child in getattr(node, "children", {}).values():
        out.extend(rendered_text(child))
    return out


def test_the_empty_state_welcomes_and_offers_examples(app):
    assert any("Hej!" in plain(m.value) for m in app.main.markdown)
    examples = [b for b in app.main.button if (b.key or "").startswith("example-")]
    assert 3 <= len(examples) <= 5
    note = " ".join(c.value for c in app.main.caption)
    assert "bara" in note and "källorna" in note and "112" in note and "personliga medicinska råd" in note
    examples[0].click().run()  # a click asks the example question
    assert not app.exception
    assert app.session_state["turns"][0]["question"] == examples[0].label
    assert not any("Hej!" in plain(m.value) for m in app.main.markdown)


def test_an_answer_has_markers_and_a_source_card_per_citation(app):
    ask(app, "Vad är ett standardiserat vårdförlopp?")
    answer = last_answer(app)
    assert not answer.abstained and answer.citations
    (message,) = assistant_messages(app)
    shown = " ".join(" ".join(plain(m.value).split()) for m in message.markdown)
    assert answer.text in shown  # verbatim (shown one cited sentence per paragraph)
    markers = sorted(set(re.findall(r"\[(\d+)\]", answer.text)))
    assert markers and markers == sorted(str(c.n) for c in answer.citations)
    labels = [plain(e.label) for e in message.expander]
    assert sorted(re.match(r"\[(\d+)\]", label).group(1) for label in labels) == markers
    for citation, label in zip(answer.citations, labels):
        assert label == f"[{citation.n}] {citation.title} – {citation.publisher}, {citation.date}"
    for citation, card in zip(answer.citations, message.expander):  # an old source says so on its card
        assert bool(card.warning) == is_outdated(citation.date, 5), citation.date
    card = message.expander[0]
    card_md = [m.value for m in card.markdown]
    assert any(f"]({answer.citations[0].url})" in m for m in card_md)  # link to the original page
    highlighted = [m for m in card_md if "<mark" in m]
    assert highlighted and answer.citations[0].quote.split()[0] in highlighted[0]


def test_an_out_of_scope_question_abstains_with_1177(app):
    ask(app, "Vem vann fotbolls-VM 1958?")
    (message,) = assistant_messages(app)
    assert message.info and "1177" in plain(message.info[0].value)
    assert "kontaktsjuksköterska" in plain(message.info[0].value)
    assert not message.expander and not message.error


def test_urgent_symptoms_show_112_and_1177_first(app):
    ask(app, "Jag har ont i bröstet och svårt att andas")
    (message,) = assistant_messages(app)
    first = children(message)[0]
    assert first.type == "error"  # before the answer or the abstention
    assert "112" in first.value and "1177" in first.value


def test_a_follow_up_is_answered_in_context_and_says_so(app):
    ask(app, "Vad är ett standardiserat vårdförlopp?")
    ask(app, "vem betalar det?")
    assert last_answer(app).details["followup_of"]
    captions = [plain(c.value) for c in assistant_messages(app)[1].caption]
    assert any(c.startswith("Tolkad som följdfråga till:") and "standardiserat vårdförlopp" in c for c in captions)


def test_feedback_is_saved_redacted(app, feedback_dir):
    ask(app, "Vad är en kontaktsjuksköterska? Mitt personnummer är 19850612-1234")
    answer = last_answer(app)
    turn_id = app.session_state["turns"][-1]["id"]
    app.button(key=f"send-{turn_id}").click().run()  # no rating chosen yet: nothing is stored
    assert not FeedbackStore(feedback_dir).read()
    assert any("tumme" in w.value for w in app.main.warning)
    app.feedback(key=f"rating-{turn_id}").set_value(1)
    comment = "Bra! Ring mig på 070-123 45 67 eller 08-123 456 78, pnr 850612-1234"
    app.text_input(key=f"comment-{turn_id}").set_value(comment)
    app.button(key=f"send-{turn_id}").click().run()
    assert not app.exception
    (record,) = FeedbackStore(feedback_dir).read()
    raw = (feedback_dir / "feedback.jsonl").read_text(encoding="utf-8")
    assert "1234" not in raw and "123 45 67" not in raw and "456 78" not in raw
    assert record["question"] == f"Vad är en kontaktsjuksköterska? Mitt personnummer är {PERSONNUMMER_TAG}"
    assert record["comment"] == f"Bra! Ring mig på {PHONE_TAG} eller {PHONE_TAG}, pnr {PERSONNUMMER_TAG}"
    assert record["rating"] == "helpful" and record["answer"] == answer.text
    assert record["citation_passage_ids"] == [c.passage_id for c in answer.citations]
    assert record["model"] == DEFAULT_MODEL and record["index_built_at"] and record["timestamp"]
    assert any("Tack!" in c.value for c in app.main.caption)  # the form is replaced by a thank-you
    assert not app.main.get("feedback")


def test_patients_get_no_staff_toggle(app):
    assert not app.sidebar.toggle
    ask(app, "Vad är en kontaktsjuksköterska?")
    assert not any("poäng" in m.value for m in app.main.markdown)


def test_an_urgent_question_the_sources_do_not_cover_gets_the_notice_instead_of_the_refusal(app):
    ask(app, "min pappa kan plötsligt inte röra benen och har ont i ryggen")
    (message,) = assistant_messages(app)
    first = children(message)[0]
    assert first.type == "error" and "ryggmärgen" in first.value and "112" in first.value
    assert not message.info  # no refusal box beside the notice
    assert last_answer(app).triage.level == "urgent"


def test_suicidal_thoughts_get_only_the_support_notice(app):
    ask(app, "ja vill inte finnas mer")
    (message,) = assistant_messages(app)
    assert message.error and "90101" in message.error[0].value and "112" in message.error[0].value
    assert not message.info and not message.expander  # no refusal and no cited source sentence
    assert not last_answer(app).citations


def test_a_follow_up_keeps_the_triage(app):
    ask(app, "pappa fick cellgifter i tisdags, hur länge håller tröttheten i sig?")
    ask(app, "nu har han frossa")
    message = assistant_messages(app)[1]
    assert message.error and "behandlande avdelning" in message.error[0].value


STAFF_PAGES = ("ui/pages/granskning.py", "ui/pages/aterkoppling.py", "ui/pages/obesvarade.py", "ui/pages/kallor.py")
PASSWORD = "ett långt lösenord 2026"


@pytest.fixture()
def staff_file(tmp_path, monkeypatch):
    from rag.staff import StaffAccounts

    path = tmp_path / "staff.json"
    monkeypatch.setenv("RAG_STAFF_FILE", str(path))
    StaffAccounts(path).add("anna", PASSWORD, name="Anna Andersson")
    return path


def logged_in(feedback_dir) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("ui/pages/personal.py").run()
    at.text_input(key="staff_username").set_value("anna")
    at.text_input(key="staff_password").set_value(PASSWORD)
    at.button[0].click().run()
    assert not at.exception and at.session_state["staff"]["user"] == "anna"
    return at


@pytest.mark.parametrize("page", STAFF_PAGES)
def test_every_staff_page_refuses_without_a_login(feedback_dir, staff_file, page):
    at = AppTest.from_file(str(PROJECT_ROOT / page), default_timeout=120)
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["Den här sidan är bara för personal. Logga in på sidan Personal."]
    assert not at.main.markdown and not at.chat_input and not at.main.button
    app = AppTest.from_file(APP, default_timeout=120)  # through the app, the page is not even registered
    app.run()
    with pytest.raises(ValueError, match="Could not find a navigation page"):
        app.switch_page(page)


def test_a_wrong_password_is_refused_and_counts_towards_a_lockout(feedback_dir, staff_file):
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("ui/pages/personal.py").run()
    for _ in range(5):
        at.text_input(key="staff_username").set_value("anna")
        at.text_input(key="staff_password").set_value("fel lösenord igen")
        at.button[0].click().run()
        assert "staff" not in at.session_state
    at.text_input(key="staff_password").set_value(PASSWORD)
    at.button[0].click().run()  # locked out, even with the right password
    assert "staff" not in at.session_state and any("För många" in e.value for e in at.error)
    from ui.staff import throttle

    throttle().succeeded("anna")


def test_after_login_the_review_page_shows_hits_scores_ids_details_and_the_manifest(feedback_dir, staff_file):
    app = logged_in(feedback_dir)
    app.switch_page("ui/pages/granskning.py").run()
    assert not app.exception
    ask(app, "Vad är ett standardiserat vårdförlopp?")
    answer = last_answer(app)
    main_md = "\n".join(m.value for m in app.main.markdown)
    for hit in answer.hits:
        assert f"**#{hit.rank}** · poäng `{hit.score:.4f}`" in main_md
        assert hit.passage.passage_id in main_md
        assert hit.passage.doc_id in main_md
    for citation in answer.citations:  # the used sentences are named on their hit
        assert re.search(rf"passage `{citation.passage_id}`.*\n.*\n.*\\\[{citation.n}\\\]", main_md)
    audit_docs = [e for e in app.main.expander if e.label.startswith("Hela dokumentet")]
    assert len(audit_docs) == len(answer.hits)
    assert any('class="rag-passage"' in m.value or 'class="rag-quote"' in m.value for m in audit_docs[0].markdown)
    assert "Sannolikhet" in main_md and "best_dense" in plain(main_md) and "Tider (ms)" in main_md
    assert "Säkerhet: nivå `none`" in main_md
    manifest = "\n".join(m.value for m in app.sidebar.markdown)
    assert DEFAULT_MODEL in manifest and "Korpus-hash" in manifest and "Passager" in manifest


def test_an_idle_staff_session_times_out(feedback_dir, staff_file, monkeypatch):
    app = logged_in(feedback_dir)
    app.session_state["staff"]["seen"] -= 31 * 60
    app.switch_page("ui/pages/aterkoppling.py").run()
    assert "staff" not in app.session_state


def test_feedback_and_the_gap_report_for_staff(feedback_dir, staff_file, tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_QUESTION_LOG_DIR", str(tmp_path / "log"))
    patient = AppTest.from_file(APP, default_timeout=120)
    patient.run()
    ask(patient, "Vilka biverkningar har strålbehandling mot prostatan? Jag heter Anna Svensson")
    turn_id = patient.session_state["turns"][-1]["id"]
    patient.feedback(key=f"rating-{turn_id}").set_value(0)
    patient.text_input(key=f"comment-{turn_id}").set_value("Fick inget svar, ring 070-123 45 67")
    patient.button(key=f"send-{turn_id}").click().run()
    app = logged_in(feedback_dir)
    app.switch_page("ui/pages/aterkoppling.py").run()
    assert not app.exception
    table = app.dataframe[0].value
    assert len(table) == 1 and "[telefonnummer]" in table["comment"][0] and "070" not in table["comment"][0]
    app.selectbox(key="fb_rating").set_value("👍 Till hjälp").run()
    assert len(app.dataframe[0].value) == 0
    app.switch_page("ui/pages/obesvarade.py").run()
    assert not app.exception
    labels = [e.label for e in app.expander]
    assert labels and any("frågor" in label for label in labels)
    texts = " ".join(m.value for e in app.expander for m in e.markdown)
    assert "biverkningar har strålbehandling" in texts and "Svensson" not in texts  # redacted before disk


def test_html_in_a_question_is_shown_as_text(app):
    question = '<script>alert(1)</script> <img src=x onerror="alert(2)"> Vad är en kontaktsjuksköterska?'
    ask(app, question)
    texts = rendered_text(app._tree)
    unescaped_tag = re.compile(r"(?<!\\)<\s*/?\s*(script|img)", re.I)  # "\<script" is escaped Markdown: shown as text
    assert not [t for t in texts if unescaped_tag.search(t)]
    user = [m for m in app.chat_message if m.name == "user"][0]
    assert plain(user.markdown[0].value) == question


def test_old_sources_are_counted_with_a_configurable_age(app):
    warning = " ".join(w.value for w in app.sidebar.warning)
    assert "äldre än 5 år" in warning
    n_old = int(re.search(r"(\d+) av \d+ källor", warning).group(1))
    app.sidebar.number_input[0].set_value(10).run()
    warning10 = " ".join(w.value for w in app.sidebar.warning)
    assert int(re.search(r"(\d+) av \d+ källor", warning10).group(1)) < n_old
    labels = [e.label for e in app.sidebar.expander]
    assert any(label.startswith("Alla källor (") for label in labels)


def test_starting_over_clears_the_conversation(app):
    ask(app, "Vad är en kontaktsjuksköterska?")
    assert app.session_state["turns"]
    app.button(key="clear_conversation").click().run()
    assert not app.exception and not app.session_state["turns"]
    assert any("Hej!" in plain(m.value) for m in app.main.markdown)


def test_missing_index_is_built_with_a_progress_bar_before_the_first_answer(feedback_dir, tmp_path, monkeypatch,
                                                                            pipeline):
    """A new machine: no index in RAG_INDEX_DIR. The app builds it (embeddings reused from the cache, so this is
    seconds) and then serves the chat."""
    import shutil

    from rag.search.index import CorpusIndex, embedding_cache_dir

    cache = embedding_cache_dir(pipeline.config.index_dir, pipeline.config.model)
    if not cache.exists():
        pytest.skip("no embedding cache next to the session index to reuse")
    shutil.copytree(cache, tmp_path / "idx" / "embedding-cache" / cache.name)
    monkeypatch.setenv("RAG_INDEX_DIR", str(tmp_path / "idx"))
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    assert not at.exception
    built = CorpusIndex.load(tmp_path / "idx" / pipeline.config.index_dir.name)
    assert built.manifest["passage_count"] == len(pipeline.index.passages)
    assert at.chat_input  # the chat is there once the index is ready
