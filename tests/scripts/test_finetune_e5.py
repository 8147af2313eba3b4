"""The fine-tuning script's data preparation: SweQUAD windows hold the answer, and nothing held out is trained on."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from eval.benchmarks import BENCHMARKS
from eval.gold import load_gold

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "finetune_e5.py"
pytestmark = pytest.mark.skipif(not (BENCHMARKS / "swequad-mc" / "derived_beir").exists(),
                                reason="../shared/benchmarks is absent")


@pytest.fixture(scope="module")
def ft():
    spec = importlib.util.spec_from_file_location("finetune_e5", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def tokenizer(ft):
    return ft.load_window_tokenizer()


@pytest.fixture(scope="module")
def swequad(ft, tokenizer):
    return ft.swequad_pairs(tokenizer, ft.WINDOW_TOKENS)


def test_answer_window_is_a_whole_word_stretch_around_the_answer(ft, tokenizer):
    text = " ".join(f"ord{i}" for i in range(600)) + " svaret är fyrtiotvå " + " ".join(f"ord{i}" for i in range(600))
    window = ft.answer_window(text, "svaret är fyrtiotvå", tokenizer, 50)
    assert "svaret är fyrtiotvå" in window and window in text
    assert len(tokenizer.encode(window, add_special_tokens=False).ids) <= 52  # whole words may add a piece or two
    assert window.split()[0] in text.split() and window.split()[-1] in text.split()
    assert ft.answer_window("Kort text.", "saknas", tokenizer, 50) == "Kort text."


def test_swequad_windows_hold_the_gold_answer_and_fit_the_sequence(ft, tokenizer, swequad):
    from rag.text import normalize_text

    _, queries, _ = ft.load_swequad()
    answers = {q["_id"]: normalize_text(q["answer"]) for q in queries}
    assert len(swequad) == sum(q["split"] == "train" for q in queries) == 962
    assert all(answers[p.qid] in p.passage for p in swequad)
    lengths = [len(tokenizer.encode(ft.PASSAGE_PROMPT + p.passage).ids) for p in swequad]
    assert sum(n > ft.MAX_SEQ_LENGTH for n in lengths) <= 0.01 * len(lengths)


def test_no_held_out_question_or_passage_is_trained_on(ft, tokenizer, swequad, pipeline):
    pairs, stats = ft.training_pairs(tokenizer, ft.WINDOW_TOKENS, index=pipeline.index)
    _, queries, qrels = ft.load_swequad()
    held_out = {q["_id"] for q in queries if q["split"] in ("dev", "test")}
    banned = {ft.question_key(q["text"]) for q in queries if q["_id"] in held_out}
    banned |= {ft.question_key(it.question) for it in load_gold(split="report")}
    assert pairs and not [p for p in pairs if ft.question_key(p.query) in banned]
    assert {p.qid for p in pairs}.isdisjoint(held_out)
    assert {p.group for p in pairs}.isdisjoint({f"swequad:{qrels[q]}" for q in held_out})
    # the raw training split repeats some dev/test questions verbatim: those are dropped, not trained on
    assert stats["dropped_as_held_out"] > 0 and len(pairs) == stats["pairs"]


def test_gold_pairs_are_tune_answerable_and_their_passage_holds_the_evidence(ft, pipeline):
    from rag.text import normalize_text

    tune = {it.id: it for it in load_gold(split="tune")}
    pairs = ft.gold_pairs(pipeline.index)
    assert len(pairs) >= 0.9 * sum(it.answerable for it in tune.values())
    for p in pairs:
        item = tune[p.qid]  # KeyError for anything outside the tune split
        assert item.answerable and p.query.endswith(item.question)
        words = normalize_text(item.evidence).split()
        assert " ".join(words[: max(1, len(words) // 2)]) in p.passage or " ".join(words[len(words) // 2:]) in p.passage


def test_batches_never_pair_two_questions_of_one_passage(ft, swequad):
    keys = [frozenset({p.group, "q:" + ft.question_key(p.query)}) for p in swequad]
    batches = ft.grouped_batches(keys, 32, seed=13)
    assert sorted(i for b in batches for i in b) == list(range(len(swequad)))
    for batch in batches:
        groups = [swequad[i].group for i in batch]
        assert len(groups) == len(set(groups)) and len(batch) <= 32
    assert batches == ft.grouped_batches(keys, 32, seed=13) != ft.grouped_batches(keys, 32, seed=14)
