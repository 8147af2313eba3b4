"""The question log: off by default, redacted on disk, pruned to its retention."""

import json
from datetime import datetime, timedelta, timezone

from rag.questionlog import QuestionLog


def test_the_log_is_off_unless_configured(monkeypatch, pipeline):
    monkeypatch.delenv("RAG_QUESTION_LOG_DIR", raising=False)
    log = QuestionLog.from_env()
    assert not log.enabled
    log.append(pipeline.ask("Vad är ett standardiserat vårdförlopp?"))  # nothing written anywhere
    assert log.read() == []


def test_records_are_redacted_and_hold_the_nearest_passages(tmp_path, pipeline):
    log = QuestionLog(tmp_path / "log")
    answer = pipeline.ask("Jag heter Anna Svensson, 19850612-1234. Vilka biverkningar ger strålbehandling?")
    log.append(answer)
    raw = (tmp_path / "log" / "questions.jsonl").read_text(encoding="utf-8")
    assert "Svensson" not in raw and "1234" not in raw and "[personnummer]" in raw
    (record,) = log.read()
    assert record["abstained"] == answer.abstained and record["reason"] == answer.reason
    assert [n["passage_id"] for n in record["nearest"]] == [h.passage.passage_id for h in answer.hits[:3]]


def test_old_records_are_pruned_and_the_rest_kept(tmp_path, pipeline):
    log = QuestionLog(tmp_path / "log", retention_days=90)
    log.append(pipeline.ask("Vad är en kontaktsjuksköterska?"))
    path = tmp_path / "log" / "questions.jsonl"
    old = json.loads(path.read_text(encoding="utf-8").splitlines()[0])
    old["timestamp"] = (datetime.now(timezone.utc) - timedelta(days=91)).isoformat()
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(old, ensure_ascii=False) + "\n")
    assert len(log.read()) == 2
    assert log.prune() == 1 and len(log.read()) == 1
