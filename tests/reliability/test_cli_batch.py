"""One bad line must not end an `ask --json` batch: N lines in, N JSON objects out, in order, no traceback.

All inputs go through ONE real `python -m rag ask --json` process over a small prebuilt index (a process start
costs seconds). After every bad line comes a marker line (no letters, so it costs nothing to answer), so a lost, split or merged line shows up as a marker
in the wrong place. Each input is its own test case, checked against its own output line.
"""

from __future__ import annotations

import json
import re
import resource
import time

import pytest

from tests.reliability.conftest import (MODEL, TINY_QUESTION, TINY_TOPIC, copy_small_index, has_traceback, json_lines,
                                        looks_swedish, rag_env, run_rag)

Q = TINY_QUESTION
H = TINY_TOPIC


def j(obj) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def s(text: str) -> bytes:
    return text.encode("utf-8")


# (id, input line as bytes, kind, expected "question" field or None)
#   kind "answer":  a real question: answered or declined from the sources, never an error
#   kind "message": nothing to answer: a Swedish message, abstained, no citations
#   kind "any":     either, but never the internal-error reply
CASES: list[tuple[str, bytes, str, str | None]] = [
    ("plain-question", s(Q), "answer", Q),
    # 1. the follow-ups that crashed, without and with history
    ("followup-vad-ar-det", s("Vad är det?"), "any", "Vad är det?"),
    ("followup-vad-betyder-det", s("Vad betyder det?"), "any", "Vad betyder det?"),
    ("followup-vad-innebar-det-for-mig", s("Vad innebär det för mig?"), "any", "Vad innebär det för mig?"),
    ("followup-vad-ar-en", s("vad är en"), "any", "vad är en"),
    ("followup-vad-ar-det+history", j({"question": "Vad är det?", "history": [H]}), "any", "Vad är det?"),
    ("followup-vad-betyder-det+history", j({"question": "Vad betyder det?", "history": [H]}), "any", "Vad betyder det?"),
    ("followup-innebar-for-mig+history", j({"question": "Vad innebär det för mig?", "history": [H]}), "any",
     "Vad innebär det för mig?"),
    ("followup-vad-ar-en+history", j({"question": "vad är en", "history": [H]}), "any", "vad är en"),
    ("followup-chain+history", j({"question": "Vad är det?", "history": [H, "Vad betyder det?", "vad är en"]}), "any",
     "Vad är det?"),
    # invalid UTF-8
    ("invalid-utf8-plain", b"Vem samordnar v\xe5rden?", "answer", "Vem samordnar v\ufffdrden?"),
    ("invalid-utf8-in-json", b'{"question": "Vem samordnar v\xe5rden?"}', "answer", "Vem samordnar v\ufffdrden?"),
    ("cesu8-surrogate-bytes", b"Vem \xed\xa0\x80 samordnar v\xc3\xa5rden?", "answer", None),
    ("overlong-utf8", b"\xc0\xaf\xc0\xaf Vem samordnar v\xc3\xa5rden?", "answer", None),
    ("truncated-utf8-at-end", b"Vem samordnar v\xc3", "any", None),
    ("only-invalid-bytes", b"\xff\xfe\xfd\xfc", "message", None),
    ("utf8-bom-at-line-start", b"\xef\xbb\xbf" + s(Q), "answer", None),
    ("utf16-encoded-line", Q.encode("utf-16-le"), "any", None),
    # lone surrogates in JSON
    ("json-lone-high-surrogate", s('{"question": "\\ud800 ' + Q + '"}'), "answer", "\ufffd " + Q),
    ("json-lone-low-surrogate", s('{"question": "' + Q + ' \\udfff"}'), "answer", Q + " \ufffd"),
    ("json-only-surrogates", s('{"question": "\\ud800\\udbff"}'), "message", None),
    ("json-surrogate-in-history", s('{"question": "Vad är det?", "history": ["\\ud800", "' + H + '"]}'), "any",
     "Vad är det?"),
    ("json-valid-surrogate-pair", s('{"question": "\\ud83d\\ude00 ' + Q + '"}'), "answer", "\U0001F600 " + Q),
    # history of the wrong type or size
    ("history-number-5", j({"question": Q, "history": 5}), "answer", Q),
    ("history-is-a-string", j({"question": "Vad är det?", "history": H}), "any", "Vad är det?"),
    ("history-is-a-dict", j({"question": Q, "history": {"0": H}}), "answer", Q),
    ("history-is-true", j({"question": Q, "history": True}), "answer", Q),
    ("history-is-null", j({"question": Q, "history": None}), "answer", Q),
    ("history-mixed-types", j({"question": "Vad är det?", "history": [1, None, {"q": H}, [H], 2.5, H]}), "any",
     "Vad är det?"),
    ("history-blank-strings", j({"question": "Vad är det?", "history": ["", " ", "\n", "\u200b"]}), "any", "Vad är det?"),
    ("history-question-objects", j({"question": "Vad är det?", "history": [{"question": H}]}), "any", "Vad är det?"),
    ("history-nested-500-deep", s('{"question": "Vad är det?", "history": ' + "[" * 500 + "]" * 500 + "}"), "any",
     "Vad är det?"),
    ("history-nested-100000-deep", s('{"question": "Vad är det?", "history": ' + "[" * 100_000 + "]" * 100_000 + "}"),
     "any", None),
    ("object-nested-100000-deep", s('{"q": ' * 100_000 + "1" + "}" * 100_000), "message", None),
    ("array-nested-100000-deep", s("[" * 100_000 + "]" * 100_000), "message", None),
    ("history-one-400kb-turn", j({"question": "Vad är det?", "history": ["vård " * 80_000]}), "any", "Vad är det?"),
    ("history-25000-turns-900kb", j({"question": "Vad är det?", "history": [H] * 25_000}), "any", None),
    ("history-10mb", j({"question": "Vad är det?", "history": [H * 30] * 10_500}), "any", None),
    # line separators other than "\n" stay inside their line
    ("u2028-inside", s("Vem samordnar\u2028vården?"), "answer", "Vem samordnar\u2028vården?"),
    ("u2029-inside", s("Vem samordnar\u2029vården?"), "answer", "Vem samordnar\u2029vården?"),
    ("vt-x0b-inside", s("Vem samordnar\x0bvården?"), "answer", "Vem samordnar\x0bvården?"),
    ("ff-x0c-inside", s("Vem samordnar\x0cvården?"), "answer", "Vem samordnar\x0cvården?"),
    ("fs-x1c-inside", s("Vem samordnar\x1cvården?"), "answer", "Vem samordnar\x1cvården?"),
    ("gs-x1d-inside", s("Vem samordnar\x1dvården?"), "answer", "Vem samordnar\x1dvården?"),
    ("rs-x1e-inside", s("Vem samordnar\x1evården?"), "answer", "Vem samordnar\x1evården?"),
    ("nel-x85-inside", s("Vem samordnar\x85vården?"), "answer", "Vem samordnar\x85vården?"),
    ("cr-inside", s("Vem samordnar\rvården?"), "answer", "Vem samordnar\rvården?"),
    ("crlf-line-end", s(Q + "\r"), "answer", Q),
    ("raw-u2028-inside-json", s('{"question": "Vem samordnar\u2028vården?"}'), "answer", "Vem samordnar\u2028vården?"),
    ("escaped-u2028-in-json", s('{"question": "Vem samordnar\\u2028vården?"}'), "answer", "Vem samordnar\u2028vården?"),
    ("escaped-newline-in-json", j({"question": "Vem samordnar\nvården?"}), "answer", "Vem samordnar\nvården?"),
    ("nul-inside", s("Vem samordnar\x00vården?"), "any", "Vem samordnar\x00vården?"),
    ("u2028-only", s("\u2028"), "message", None),
    ("sub-x1a-only", s("\x1a"), "message", None),
    # JSON that is not a question object
    ("json-array", j([Q]), "any", None),
    ("json-number", s("42"), "message", None),
    ("json-float-exponent", s("3.14e10"), "message", None),
    ("json-null", s("null"), "any", None),
    ("json-true", s("true"), "any", None),
    ("json-string", j(Q), "any", None),
    ("json-empty-object", s("{}"), "message", None),
    ("json-question-null", j({"question": None}), "message", None),
    ("json-question-number", j({"question": 5}), "message", None),
    ("json-question-list", j({"question": [Q]}), "message", None),
    ("json-question-object", j({"question": {"text": Q}}), "message", None),
    ("json-question-missing", j({"history": [H]}), "message", None),
    ("json-question-empty", j({"question": ""}), "message", None),
    ("json-question-NaN", s('{"question": NaN}'), "message", None),
    ("json-question-1e999", s('{"question": 1e999}'), "message", None),
    ("json-truncated", s('{"question": "Vem samordnar'), "any", None),
    ("json-trailing-garbage", s('{"question": "' + Q + '"} och mer'), "any", None),
    ("json-duplicate-keys", s('{"question": "a", "question": "' + Q + '"}'), "answer", Q),
    ("json-extra-fields", j({"question": Q, "k": -1, "mode": "evil", "index": "/"}), "answer", Q),
    ("json-invalid-escape", s('{"question": "\\x41 ' + Q + '"}'), "any", None),
    # nothing to answer
    ("empty-line", b"", "message", None),
    ("spaces-and-tabs-only", s("   \t  "), "message", None),
    ("zero-width-only", s("\u200b\u200b\ufeff\u2060"), "message", None),
    ("punctuation-only", s("???!!!"), "message", None),
    ("emoji-only", s("\U0001F914\U0001F914\U0001F914"), "message", None),
    ("combining-marks-only", s("\u0301\u0301\u0301"), "any", None),
    ("rtl-override-prefix", s("\u202e" + Q), "any", "\u202e" + Q),
    # very long lines
    ("long-question-5000-chars", s("Vem samordnar vården? " * 230), "message", "Vem samordnar vården? " * 230),
    ("json-question-100k-chars", j({"question": "a" * 100_000}), "message", None),
    ("one-word-3000-chars", s("x" * 3000), "message", None),
    ("line-998kb", s("b " * 499_000), "message", None),
    ("line-1200kb", s("a" * 1_200_000), "message", None),
    # text that looks like code
    ("html-script", s("<script>alert(1)</script> " + Q), "answer", "<script>alert(1)</script> " + Q),
    ("ansi-escape", s("\x1b[31m" + Q + "\x1b[0m"), "any", "\x1b[31m" + Q + "\x1b[0m"),
    ("format-strings", s("{0} %s %n ${HOME} " + Q), "any", "{0} %s %n ${HOME} " + Q),
    ("sql-ish", s("'; DROP TABLE x; --"), "any", "'; DROP TABLE x; --"),
    ("path-traversal", s("../../etc/passwd"), "any", "../../etc/passwd"),
]
IDS = [c[0] for c in CASES]
assert len(set(IDS)) == len(IDS)


def marker(i: int) -> str:
    """A line with no letters: answered at once ("no words in the question"), its own text in "question"."""
    return f"#{i}#"


@pytest.fixture(scope="module")
def batch(tiny_index_dir, tmp_path_factory):
    """Run every case (each followed by its marker question) through one `ask --json` process."""
    base = tmp_path_factory.mktemp("cli-batch")
    corpus, index = copy_small_index(tiny_index_dir, base)
    lines = []
    for i, (_, line, _, _) in enumerate(CASES):
        assert b"\n" not in line
        lines += [line, marker(i).encode("utf-8")]
    stdin = b"\n".join(lines) + b"\n"
    t0, cpu0 = time.monotonic(), _children_cpu()
    out = run_rag("ask", "--json", "--model", MODEL, "--index", str(index), "--corpus", str(corpus), stdin=stdin,
                  env=rag_env(base / "cache"), timeout=600)
    elapsed, cpu = time.monotonic() - t0, _children_cpu() - cpu0
    rows = json_lines(out.stdout)
    return {"out": out, "rows": rows, "elapsed": elapsed, "cpu": cpu, "stderr": out.stderr.decode("utf-8", "replace"),
            "n_in": len(lines), "stdin_mb": len(stdin) / 1e6}


def test_the_batch_ends_normally_without_a_traceback(batch):
    assert batch["out"].returncode == 0, batch["stderr"][-3000:]
    assert not has_traceback(batch["stderr"]), batch["stderr"][-3000:]
    assert "error while answering" not in batch["stderr"]


def test_n_lines_in_give_n_json_lines_out(batch):
    assert len(batch["rows"]) == batch["n_in"], (len(batch["rows"]), batch["n_in"])


def test_output_lines_survive_consumers_that_split_with_splitlines(batch):
    """The shared contract checker (../shared/tools/check-rag-contract) and tests/rag/test_cli.py read the output with
    str.splitlines(), which also breaks at U+2028, U+2029, \\x85, \\x1c-\\x1e, \\x0b, \\x0c: an answer line must not
    contain them raw (JSON can escape them), or N inputs come out as more than N lines."""
    text = batch["out"].stdout.decode("utf-8")
    assert len(text.splitlines()) == batch["n_in"]


def test_the_batch_finishes_quickly(batch):
    """~12 MB of input (a 10 MB history, 100 000-deep nesting, 1 MB lines) and ~90 questions: under a minute of CPU
    for the whole process, start included (measured as CPU time, so a busy machine does not make it flaky; the wall
    clock bound only catches a hang)."""
    assert batch["cpu"] < 60, f"{batch['cpu']:.1f} CPU s for {batch['stdin_mb']:.1f} MB"
    assert batch["elapsed"] < 300, f"{batch['elapsed']:.1f} s"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@pytest.mark.parametrize("i", range(len(CASES)), ids=IDS)
def test_each_bad_line_gets_its_own_clear_answer(batch, i):
    case_id, line, kind, expected_question = CASES[i]
    rows = batch["rows"]
    assert len(rows) > 2 * i + 1, f"output ended before input line {2 * i + 1} ({case_id})"
    row = json.loads(rows[2 * i])
    after = json.loads(rows[2 * i + 1])
    assert isinstance(row, dict) and isinstance(after, dict)
    assert after.get("question") == marker(i), f"output is out of step with the input after {case_id}"
    assert set(row) >= {"question", "answer", "abstained", "citations", "passages"}
    assert isinstance(row["question"], str) and isinstance(row["answer"], str)
    if expected_question is not None:  # a lone surrogate may become one U+FFFD or one per byte
        assert re.sub("\ufffd+", "\ufffd", row["question"]) == expected_question
    assert row.get("reason") != "error" and "Något gick fel" not in row["answer"], row["answer"]
    assert row["answer"].strip() and looks_swedish(row["answer"]), row["answer"][:300]
    if kind == "message":
        assert row["abstained"] is True and row["citations"] == [], row
    elif kind == "answer":
        assert row.get("reason") not in ("error", "bad_input"), row.get("reason")


def test_a_follow_up_with_history_is_read_in_the_context_of_the_earlier_question(batch):
    """'Vad är det?' after 'Vad är en kontaktsjuksköterska?' searches for the contact nurse."""
    for case_id in ("followup-vad-ar-det+history", "history-is-a-string"):
        row = json.loads(batch["rows"][2 * IDS.index(case_id)])
        assert "kontaktsjuksköterska" in row.get("retrieval_query", "").lower(), (case_id, row.get("retrieval_query"))
