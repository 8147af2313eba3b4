"""The `python -m rag` contract other tools rely on, run as a real subprocess."""

import json
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT, SHARED


def run_cli(*args, stdin="", env=None):
    return subprocess.run([sys.executable, "-m", "rag", *args], input=stdin, capture_output=True, text=True,
                          cwd=PROJECT_ROOT, timeout=900, env=env)


@pytest.fixture(scope="module")
def built(pipeline):
    """The default index exists (built by the session pipeline), so the CLI only loads it."""
    return pipeline


def test_json_mode_answers_line_by_line_in_order(built):
    questions = ["Vad är en kontaktsjuksköterska?", "", "Vem vann fotbolls-VM 1958?",
                 json.dumps({"question": "och för barn då?", "history": ["Vilket psykosocialt stöd finns?"]})]
    out = run_cli("ask", "--json", "--k", "4", stdin="\n".join(questions) + "\n")
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["question"] for r in rows] == [questions[0], "", questions[2], "och för barn då?"]
    first = rows[0]
    assert set(first) >= {"question", "answer", "abstained", "citations", "passages"}
    assert len(first["passages"]) == 4
    assert [p["score"] for p in first["passages"]] == sorted((p["score"] for p in first["passages"]), reverse=True)
    for c in first["citations"]:
        assert set(c) >= {"n", "doc_id", "title", "url", "passage_id", "quote", "score"}
        assert f"[{c['n']}]" in first["answer"]
    assert rows[1]["abstained"] and rows[1]["reason"] == "empty"
    assert rows[2]["abstained"] and rows[2]["citations"] == []
    assert rows[3]["retrieval_query"].startswith("Vilket psykosocialt stöd finns?")


def test_plain_mode_prints_answer_and_numbered_sources(built):
    out = run_cli("ask", "Hur mycket kan regionerna söka för patologi och radiologi?")
    assert out.returncode == 0, out.stderr
    assert "Källor:" in out.stdout and "[1]" in out.stdout and "120 miljoner kronor" in out.stdout


def test_unknown_model_fails_with_a_clear_message(built, tmp_path):
    out = run_cli("build", "--model", str(tmp_path / "no-such-model"), "--index", str(tmp_path / "idx"))
    assert out.returncode == 2
    assert "no-such-model" in out.stderr and "Fix:" in out.stderr
    assert "Traceback" not in out.stderr


def test_empty_corpus_folder_fails_with_a_clear_message(built, tmp_path):
    (tmp_path / "corpus").mkdir()
    out = run_cli("build", "--corpus", str(tmp_path / "corpus"), "--index", str(tmp_path / "idx"))
    assert out.returncode == 2 and "no readable document" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.skipif(not (SHARED / "tools" / "check-rag-contract").exists(), reason="../shared/tools is absent")
def test_shared_contract_checker_passes(built):
    out = subprocess.run([sys.executable, str(SHARED / "tools" / "check-rag-contract"), sys.executable],
                         capture_output=True, text=True, cwd=PROJECT_ROOT, timeout=900)
    assert out.returncode == 0 and "contract ok" in out.stdout, out.stdout + out.stderr
