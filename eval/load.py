"""Load benchmark of the real app: N concurrent browser sessions, each asking a few questions, against the real
Streamlit server (started here on 127.0.0.1, always stopped afterwards) in headless Chromium.

    python -m eval.load --sessions 20            # starts `streamlit run app.py` on a free local port
    python -m eval.load --sessions 5 --url http://127.0.0.1:8501   # an already running server

Prints one JSON object: sessions, sessions_completed, answers, errors, answer latency p50/p95/max in seconds (from
pressing Enter to the finished answer with its feedback form on the page), page-load p50/p95, wall time.
An answer that shows "Något gick fel", or that does not arrive within --timeout, counts as an error.
This is a benchmark, not a test; tests/reliability/test_load.py runs a small version of it in CI.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Iterator, Sequence

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
ERROR_TEXT = "Något gick fel"
CONVERSATIONS = (
    ("Vad är en kontaktsjuksköterska?", "Vad gör hen?"),
    ("Vad är ett standardiserat vårdförlopp?", "Hur lång tid tar det?"),
    ("Vilket stöd finns för närstående?", "Vad innebär det för barn?"),
    ("Hur mycket pengar får regionerna för cancervården 2024?", "Vad ska pengarna användas till?"),
    ("Vad är psykosocialt stöd?", "Vad är det?"),
)
"""Each session has one conversation: a question, then a follow-up (the second turn uses the history)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_chromium() -> str:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise SystemExit("chromium is not installed: run scripts/install_chromium.sh (Debian's chromium package)")
    return chromium


@contextlib.contextmanager
def streamlit_server(env_overrides: dict[str, str] | None = None, log_path: Path | None = None,
                     timeout: float = 180) -> Iterator[str]:
    """`streamlit run app.py` bound to 127.0.0.1 on a free port; yields its URL; terminated (then killed) on exit."""
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="rag-load-"))
    log_path = log_path or workdir / "streamlit.log"
    # usage statistics stay off through .streamlit/config.toml (the browser tests check that no request leaves)
    env = {**os.environ, "RAG_FEEDBACK_DIR": str(workdir / "feedback"), **(env_overrides or {})}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port",
             str(port), "--server.address", "127.0.0.1"], cwd=PROJECT_ROOT, env=env, stdout=log,
            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {proc.returncode}: "
                                   f"{log_path.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not answer on {url} within {timeout} s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


async def _session(browser, url: str, index: int, questions: Sequence[str], timeout_s: float) -> dict:
    """One user: open the page, ask each question after the previous answer has arrived."""
    result = {"session": index, "answers": 0, "errors": [], "latencies": [], "page_load": None}
    context = await browser.new_context(viewport={"width": 390, "height": 844}, locale="sv-SE")
    try:
        page = await context.new_page()
        t0 = time.perf_counter()
        await page.goto(url, wait_until="domcontentloaded", timeout=timeout_s * 1000)
        box = page.locator('[data-testid="stChatInputTextArea"]')
        await box.wait_for(timeout=timeout_s * 1000)
        result["page_load"] = time.perf_counter() - t0
        assistant = page.locator('[data-testid="stChatMessage"]').filter(
            has=page.locator('[data-testid="stChatMessageAvatarAssistant"]'))
        for n, question in enumerate(questions, 1):
            await box.fill(question)
            t1 = time.perf_counter()
            await box.press("Enter")
            answer = assistant.nth(n - 1)
            try:
                # the feedback form ends every answer; the error message has none
                await answer.locator('[data-testid="stForm"]').wait_for(timeout=timeout_s * 1000)
            except Exception as exc:  # noqa: BLE001 - playwright's TimeoutError and page errors alike
                text = await page.locator("body").inner_text()
                why = "error message shown" if ERROR_TEXT in text else f"no answer within {timeout_s:.0f} s"
                result["errors"].append(f"question {n}: {why} ({type(exc).__name__})")
                break
            result["latencies"].append(time.perf_counter() - t1)
            text = await answer.inner_text()
            if ERROR_TEXT in text:
                result["errors"].append(f"question {n}: error message shown")
                break
            result["answers"] += 1
        body = await page.locator("body").inner_text()
        if ERROR_TEXT in body and not result["errors"]:
            result["errors"].append("error message on the page")
    except Exception as exc:  # noqa: BLE001 - a failed session is a result, not a crash of the benchmark
        result["errors"].append(f"{type(exc).__name__}: {exc}"[:300])
    finally:
        await context.close()
    return result


async def run_sessions(url: str, sessions: int, per_session: int = 2, timeout_s: float = 180,
                       chromium: str | None = None, args: Sequence[str] = CHROMIUM_ARGS) -> list[dict]:
    """`sessions` concurrent users (one browser, one context each), each with one conversation of `per_session`
    questions; returns one result per session."""
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium or find_chromium(), args=list(args))
        try:
            conversations = [(list(CONVERSATIONS[i % len(CONVERSATIONS)]) * per_session)[:per_session]
                             for i in range(sessions)]
            return list(await asyncio.gather(*(
                _session(browser, url, i, conversations[i], timeout_s) for i in range(sessions))))
        finally:
            await browser.close()


def _percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 3)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1], 3)


def summarize(results: list[dict], per_session: int, wall_s: float) -> dict:
    latencies = [x for r in results for x in r["latencies"]]
    loads = [r["page_load"] for r in results if r["page_load"] is not None]
    return {
        "sessions": len(results),
        "questions_per_session": per_session,
        "sessions_completed": sum(1 for r in results if r["answers"] == per_session and not r["errors"]),
        "answers": sum(r["answers"] for r in results),
        "errors": sum(len(r["errors"]) for r in results),
        "error_details": [f"session {r['session']}: {e}" for r in results for e in r["errors"]][:20],
        "latency_p50_s": _percentile(latencies, 50),
        "latency_p95_s": _percentile(latencies, 95),
        "latency_max_s": round(max(latencies), 3) if latencies else None,
        "page_load_p50_s": _percentile(loads, 50),
        "page_load_p95_s": _percentile(loads, 95),
        "wall_s": round(wall_s, 2),
    }


def run(sessions: int, per_session: int = 2, url: str | None = None, timeout_s: float = 180,
        env_overrides: dict[str, str] | None = None) -> dict:
    """Start a server (unless `url` is given), run the sessions, return the summary."""
    chromium = find_chromium()
    with contextlib.ExitStack() as stack:
        if url is None:
            url = stack.enter_context(streamlit_server(env_overrides))
        t0 = time.perf_counter()
        results = asyncio.run(run_sessions(url, sessions, per_session, timeout_s, chromium))
        return summarize(results, per_session, time.perf_counter() - t0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m eval.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=20, help="concurrent browser sessions (default 20)")
    parser.add_argument("--questions", type=int, default=2, help="questions per session (default 2)")
    parser.add_argument("--url", help="an already running server (default: start one on 127.0.0.1)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for one answer (default 300)")
    args = parser.parse_args(argv)
    if args.sessions <= 0 or args.questions <= 0:
        parser.error("--sessions and --questions must be positive")
    summary = run(args.sessions, args.questions, args.url, args.timeout)
    print(json.dumps(summary, ensure_ascii=False))
    return 0 if summary["errors"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
