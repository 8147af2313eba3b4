import json
from collections import Counter

from eval.gold import FROZEN_TUNE_PATH, GOLD_PATH, evidence_span, is_relevant, load_gold
from rag.ingest.loader import CorpusLoader
from tests.conftest import CORPUS, SEEDS


def test_gold_set_is_large_and_balanced_enough():
    items = load_gold()
    assert len(items) >= 60
    assert sum(not it.answerable for it in items) >= 15
    kinds = Counter(it.kind for it in items)
    assert {"document", "lay", "typo", "no-diacritics", "follow-up", "uncovered", "off-topic"} <= set(kinds)
    assert {it.split for it in items} == {"tune", "report"}
    assert len({it.id for it in items}) == len(items)
    for seed in SEEDS:
        assert sum(it.doc_id == f"seeds/{seed}" for it in items) >= 10


def test_every_evidence_is_an_exact_substring_of_its_document():
    docs = {d.doc_id: d for d in CorpusLoader(CORPUS).run().documents}
    for it in load_gold():
        if it.answerable:
            assert it.doc_id in docs, it.id
            assert evidence_span(docs[it.doc_id].text, it.evidence) is not None, it.id
        else:
            assert it.doc_id is None and it.evidence is None
        if it.kind == "follow-up":
            assert it.history


def test_the_tuning_split_is_frozen():
    """Changing the questions tuned on would make earlier tuning results incomparable: edit a copy instead."""
    frozen = [json.loads(line) for line in FROZEN_TUNE_PATH.read_text("utf-8").splitlines() if line.strip()]
    current = [json.loads(line) for line in GOLD_PATH.read_text("utf-8").splitlines()
               if line.strip() and json.loads(line)["split"] == "tune"]
    assert current == frozen


def test_relevance_needs_most_of_the_evidence_inside_the_passage():
    assert is_relevant(0, 100, (10, 50))
    assert is_relevant(0, 40, (10, 50))  # 30 of 40 characters inside
    assert not is_relevant(0, 20, (10, 50))
