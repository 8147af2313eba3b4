"""The real server in headless Chromium at phone size: ask, see a cited answer and a source card, no script runs."""

import os
import re
import shutil
import subprocess

import pytest

from eval.load import streamlit_server as eval_streamlit_server
from tests.conftest import PROJECT_ROOT

pytestmark = pytest.mark.browser

ARTIFACTS = PROJECT_ROOT / "artifacts"
PHONE = {"width": 390, "height": 844}
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
QUESTION = "Vad är ett standardiserat vårdförlopp?"


def streamlit_server(tmp_path, **env_overrides):
    """`streamlit run app.py` on a free port of 127.0.0.1 with `env_overrides` (eval.load's server: one way to start
    the app for the load benchmark and the browser tests); always terminated afterwards."""
    return eval_streamlit_server({"RAG_FEEDBACK_DIR": str(tmp_path / "fb"), **env_overrides},
                                 log_path=tmp_path / "streamlit.log", timeout=120)


@pytest.fixture()
def server(tmp_path):
    with streamlit_server(tmp_path) as url:
        yield url


def browser_or_skip():
    """Playwright (from requirements.txt) and Debian's chromium, installed by scripts/install_chromium.sh when
    missing. A machine where that cannot be done fails these tests with the reason (they are never skipped
    silently); RAG_SKIP_BROWSER_TESTS=1 opts out explicitly."""
    if os.environ.get("RAG_SKIP_BROWSER_TESTS") == "1":
        pytest.skip("RAG_SKIP_BROWSER_TESTS=1: the browser tests were switched off explicitly")
    from playwright import sync_api

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        done = subprocess.run(["bash", str(PROJECT_ROOT / "scripts" / "install_chromium.sh")], capture_output=True,
                              text=True, timeout=900)
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if not chromium:
            pytest.fail(f"chromium is missing and could not be installed: {done.stderr.strip()[-500:]}")
    return sync_api, chromium


def ask(page, question: str, n_answers: int):
    """Type a question and wait until the n-th assistant answer (after the welcome) is rendered."""
    box = page.locator('[data-testid="stChatInputTextArea"]')
    box.fill(question)
    box.press("Enter")
    answers = page.locator('[data-testid="stChatMessage"]').filter(
        has=page.locator('[data-testid="stChatMessageAvatarAssistant"]'))
    answer = answers.nth(n_answers - 1)
    answer.locator('[data-testid="stForm"]').wait_for(timeout=120_000)  # the feedback form ends an answer
    return answer


def screenshot_whole_conversation(page, path) -> None:
    """Streamlit scrolls inside its own container, so grow the phone-wide viewport to the content's height."""
    height = page.evaluate("document.querySelector('[data-testid=\"stAppScrollToBottomContainer\"]').scrollHeight")
    page.set_viewport_size({"width": PHONE["width"], "height": min(max(height + 120, PHONE["height"]), 6000)})
    page.wait_for_timeout(500)
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(PHONE)


def test_a_phone_user_gets_a_cited_answer_with_source_cards(server):
    sync_api, chromium = browser_or_skip()
    ARTIFACTS.mkdir(exist_ok=True)
    dialogs = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=PHONE, device_scale_factor=2, is_mobile=True, has_touch=True,
                                    locale="sv-SE")
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(server, wait_until="domcontentloaded")
            page.locator('[data-testid="stChatInputTextArea"]').wait_for(timeout=120_000)
            page.get_by_text("Prova en fråga").wait_for(timeout=120_000)

            answer = ask(page, QUESTION, n_answers=1)
            answer.get_by_text(re.compile(r"\[1\]")).first.wait_for(timeout=30_000)
            card = answer.locator('[data-testid="stExpander"]').filter(has_text="[1]").first
            card.locator("summary").click()
            card.locator("mark").first.wait_for(timeout=30_000)
            answer_text = answer.inner_text()
            card_text = card.inner_text()
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            card_box = card.bounding_box()
            screenshot_whole_conversation(page, ARTIFACTS / "browser-answer.png")

            question = '<script>alert(1)</script><img src=x onerror="alert(2)"> Vad är en kontaktsjuksköterska?'
            ask(page, question, n_answers=2)
            user_texts = page.locator('[data-testid="stChatMessage"]').all_inner_texts()
            injected = page.evaluate(
                "document.querySelectorAll('[data-testid=\"stMainBlockContainer\"] script, img[src=\"x\"]').length")
        finally:
            browser.close()

    assert re.search(r"\[1\]", answer_text) and "Var svaret till hjälp?" in answer_text
    assert "Läs hela texten hos källan" in card_text
    assert overflow <= 0, f"the page scrolls sideways on a phone by {overflow}px"
    assert card_box and card_box["x"] >= 0 and card_box["x"] + card_box["width"] <= PHONE["width"]
    assert (ARTIFACTS / "browser-answer.png").stat().st_size > 10_000
    assert any(question in t for t in user_texts)  # shown as text
    assert injected == 0 and dialogs == []


def test_the_patient_page_requests_nothing_outside_its_own_server(server):
    """Every request the page makes, while loading and while answering, goes to the app's own 127.0.0.1 server."""
    sync_api, chromium = browser_or_skip()
    requests, failed = [], []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport=PHONE, locale="sv-SE")
            page.on("request", lambda r: requests.append(r.url))
            page.on("requestfailed", lambda r: failed.append(r.url))
            page.goto(server, wait_until="networkidle")
            page.locator('[data-testid="stChatInputTextArea"]').wait_for(timeout=120_000)
            ask(page, "jag har ont i bröstet", n_answers=1)  # a notice with its icon, too
            ask(page, QUESTION, n_answers=2)
            page.wait_for_timeout(1000)
        finally:
            browser.close()
    own = re.compile(rf"^(?:{re.escape(server)}/|data:|blob:|about:)")
    assert requests and [u for u in requests if not own.match(u)] == []
    assert failed == []


def test_on_a_new_machine_the_page_says_it_prepares_the_model_then_serves(tmp_path, pipeline, monkeypatch):
    """Empty model cache (the ONNX export happens now, ~1 min) and no index (built from the copied embedding cache):
    the first visitor is told what is happening, then gets the chat."""
    from embeddings import DEFAULT_MODEL, preparation_needed
    from embeddings.e5_convert import e5_st_model_dir
    from rag.search.index import embedding_cache_dir

    sync_api, chromium = browser_or_skip()
    cache, index_dir = tmp_path / "model-cache", tmp_path / "idx"
    st_folder = e5_st_model_dir()
    if st_folder.is_dir():  # the conversion step is tested elsewhere; the export is what a new machine waits for
        shutil.copytree(st_folder, cache / "models" / st_folder.name)
    embeddings = embedding_cache_dir(pipeline.config.index_dir, pipeline.config.model)
    if embeddings.exists():
        shutil.copytree(embeddings, index_dir / "embedding-cache" / embeddings.name)
    monkeypatch.setenv("RAG_CACHE_DIR", str(cache))  # for preparation_needed() here; the server gets it below
    assert preparation_needed(DEFAULT_MODEL), "the test needs a model cache without the export"
    with streamlit_server(tmp_path, RAG_CACHE_DIR=str(cache), RAG_INDEX_DIR=str(index_dir)) as url:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport=PHONE, is_mobile=True, has_touch=True, locale="sv-SE")
                page.goto(url, wait_until="domcontentloaded")
                page.get_by_text("Förbereder språkmodellen första gången").wait_for(timeout=120_000)
                page.locator('[data-testid="stChatInputTextArea"]').wait_for(timeout=600_000)
                page.get_by_text("Prova en fråga").wait_for(timeout=60_000)
            finally:
                browser.close()
    assert preparation_needed(DEFAULT_MODEL) == ""  # the export is now in the new machine's cache
    assert (index_dir / pipeline.config.index_dir.name / "manifest.json").is_file()


def test_staff_pages_refuse_without_login_and_open_after_it(tmp_path):
    """In the real browser: a staff page's address without a login shows the patient chat, never staff content;
    /personal logs in, and then the staff pages are in the menu."""
    from rag.staff import StaffAccounts

    sync_api, chromium = browser_or_skip()
    staff_file = tmp_path / "staff.json"
    StaffAccounts(staff_file).add("anna", "ett långt lösenord 2026", name="Anna Andersson")
    with streamlit_server(tmp_path, RAG_STAFF_FILE=str(staff_file)) as url:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1280, "height": 900}, locale="sv-SE")  # sidebar open
                for path in ("granskning", "aterkoppling", "obesvarade", "kallor"):
                    page.goto(f"{url}/{path}", wait_until="domcontentloaded")
                    page.locator('[data-testid="stChatInputTextArea"]').wait_for(timeout=120_000)
                    body = page.inner_text("body")
                    assert "Granskning" not in body and "Exportera som CSV" not in body and "Logga ut" not in body
                page.goto(f"{url}/personal", wait_until="domcontentloaded")
                page.get_by_label("Användarnamn").fill("anna")
                page.get_by_label("Lösenord").fill("ett långt lösenord 2026")
                page.get_by_role("button", name="Logga in").click()
                page.get_by_text("Inloggad som").wait_for(timeout=60_000)
                nav = page.locator('[data-testid="stSidebarNav"]')
                nav.wait_for(timeout=60_000)
                nav_text = nav.inner_text()
            finally:
                browser.close()
    for title in ("Granskning", "Återkoppling", "Obesvarade frågor", "Källor"):
        assert title in nav_text
