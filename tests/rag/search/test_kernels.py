"""The compiled term BM25 against its numpy reference on the shipped index: the same rows and scores, bit for bit."""

import subprocess
import sys
from collections import OrderedDict

import numpy as np
import pytest

from rag.search import kernels
from rag.search.lexical import LexicalIndex
from rag.search.query import Query
from rag.search.retrieve import sparse_term_bm25, top_term_bm25, warm_kernels

pytest.importorskip("numba")  # a requirement (and ranx's): present wherever the project is installed


@pytest.fixture(scope="module")
def questions(pipeline):
    """Real questions, analyzed: the gold set (follow-ups with their history) and the everyday set."""
    import json

    from eval.gold import load_gold
    from rag.search.query import normalize_query

    from tests.conftest import PROJECT_ROOT

    items = [(it.question, it.history) for it in load_gold()]
    with open(PROJECT_ROOT / "eval" / "sets" / "lay_shipped.jsonl", encoding="utf-8") as f:
        items += [(json.loads(line)["question"], ()) for line in f if line.strip()]
    return [pipeline.processor.run(normalize_query(q), [normalize_query(h) for h in history]) for q, history in items]


@pytest.fixture(scope="module", autouse=True)
def loaded(pipeline):
    was_ready = kernels.ready()
    warm_kernels(pipeline.index.lexical, background=False)
    assert kernels.ready()
    yield
    if not was_ready:  # the other test modules run as the shipped pipeline does: without the kernels
        kernels._ready.clear()


def test_the_questions_exercise_every_branch_of_the_formula(questions):
    terms = [t for q in questions for t in q.terms]
    assert sum(len(t.tokens) > 1 for t in terms) > 50  # several forms of a word
    assert sum(len(t.parts) > 1 for t in terms) > 20  # a compound's parts (a mean of several)
    assert sum(any(len(alt) > 1 for alt in t.alternatives) for t in terms) > 5  # a lay word's multi-word phrasing
    assert sum(t.weight != 1.0 for t in terms) > 5  # a follow-up's context terms


@pytest.mark.parametrize("dense_from", [1e-9, kernels.DENSE_FROM, 1e9], ids=["all-sparse", "default", "all-dense"])
def test_compiled_formula_equals_the_numpy_formula(pipeline, questions, monkeypatch, dense_from):
    monkeypatch.setattr(kernels, "DENSE_FROM", dense_from)
    lex = pipeline.index.lexical
    for query in questions:
        rows, scores = sparse_term_bm25(query, lex.postings, compiled=False)
        got_rows, got_scores = sparse_term_bm25(query, lex.postings, compiled=True)
        assert got_rows.dtype == np.int64 and got_scores.dtype == np.float32
        assert np.array_equal(got_rows, rows), query.question
        assert np.array_equal(got_scores, scores), query.question  # bit for bit, not within a tolerance


def test_scratch_arrays_are_left_clean_and_reused(pipeline, questions):
    lex = pipeline.index.lexical
    with kernels.POOL.take(lex.count()) as scratch:
        pass
    before = scratch.stamps.copy()
    for query in questions[:40]:
        sparse_term_bm25(query, lex.postings, compiled=True)
    with kernels.POOL.take(lex.count()) as again:
        assert again is scratch  # one question at a time: the same arrays serve every question
        assert all(not a[: lex.count()].any() for a in again.floats)
        assert (again.stamps > before).all()


def test_stamps_near_their_limit_reset_the_marks_and_scores_stay_the_same(pipeline, questions, monkeypatch):
    lex = pipeline.index.lexical
    monkeypatch.setattr(kernels.Scratch, "STAMP_LIMIT", 3)
    with kernels.POOL.take(lex.count()) as scratch:
        pass
    for query in questions[:20]:
        rows, scores = sparse_term_bm25(query, lex.postings, compiled=False)
        got_rows, got_scores = sparse_term_bm25(query, lex.postings, compiled=True)
        assert np.array_equal(got_rows, rows) and np.array_equal(got_scores, scores)
    # reset before the last question: its terms' stamps count from 0 (without the reset: 20 questions' worth)
    assert scratch.stamps[0] == len(questions[19].terms)


def test_postings_outside_the_index_are_refused():
    from rag.search.query import QueryTerm

    term = QueryTerm("a", tokens=("a",))
    with kernels.POOL.take(4) as scratch, pytest.raises(ValueError, match="within the index"):
        kernels.term_scores(4, [(np.array([1, 7]), np.ones(2, dtype=np.float32))], [term], {"a": 0}, 0.8, 0.7,
                            scratch)


def test_compiled_postings_equal_numpy_over_segments_and_tombstones(pipeline):
    """Three segments, passages of each removed: every token's live rows and contributions, compiled and numpy."""
    texts = [p.text for p in pipeline.index.passages]
    lex = LexicalIndex(pipeline.index.lexical.analyzer)
    thirds = len(texts) // 3
    lex.index(texts[:thirds])
    for chunk in (texts[thirds: 2 * thirds], texts[2 * thirds:]):
        lex.append([lex.vocabulary.add(lex.analyzer.analyze(t)) for t in chunk])
    tokens = [t for t in lex.vocabulary.tokens if t]
    assert len(lex.parts) == 3 and len(tokens) > 1000

    def same() -> int:
        compared = 0
        for token in tokens:
            rows, scores = lex._postings_numpy(token)
            got_rows, got_scores = lex._postings(token, compiled=True)
            assert np.array_equal(got_rows, rows) and np.array_equal(got_scores, scores), token
            compared += len(rows)
        return compared

    assert same() > 10_000
    removed = list(range(0, len(texts), 7))
    lex.remove_rows(removed, [sorted(set(lex.vocabulary.add(lex.analyzer.analyze(texts[r])))) for r in removed])
    assert not lex._all_live()
    assert same() > 10_000
    rows, _ = lex._postings(tokens[0], compiled=True)
    assert not set(rows.tolist()) & set(removed)


def test_halves_and_the_best_k_in_the_kernel_equal_the_whole_formula(pipeline, questions):
    from rag.search.dense import top_indices

    lex = pipeline.index.lexical
    split = 0
    for query in questions:
        rows, scores = sparse_term_bm25(query, lex.postings, compiled=False)
        postings = {t: lex.postings(t) for t in dict.fromkeys(query.lexical_tokens)}
        place = {t: i for i, t in enumerate(postings)}
        if not rows.size:
            continue
        halves = kernels.term_scores(lex.count(), list(postings.values()), query.terms, place, 0.8, 0.7, split_from=0)
        assert np.array_equal(halves[0], rows) and np.array_equal(halves[1], scores), query.question
        for k in (1, 5, 50):
            best = top_indices(scores, min(k, len(scores)))
            for split_from in (0, 10**12):
                got_rows, got_scores = kernels.term_scores(lex.count(), list(postings.values()), query.terms, place,
                                                           0.8, 0.7, split_from=split_from, k=k)
                assert got_rows.tolist() == rows[best].tolist(), (query.question, k, split_from)
                assert np.array_equal(got_scores, scores[best])
        split += 1
    assert split > 100


def test_the_best_k_keeps_the_lower_rows_among_ties_and_halves_check_every_posting():
    from rag.search.dense import top_indices
    from rag.search.query import QueryTerm

    term = QueryTerm("a", tokens=("a",))
    rows = np.arange(0, 1000, 3)
    scores = np.ones(len(rows), dtype=np.float32)
    scores[::7] = 2.0  # 48 rows score 2, the rest tie at 1
    for k in (1, 10, 48, 60, 400):
        best = top_indices(scores, min(k, len(scores)))
        for split_from in (0, 10**12):
            got_rows, got_scores = kernels.term_scores(1000, [(rows, scores)], [term], {"a": 0}, 0.8, 0.7,
                                                       split_from=split_from, k=k)
            assert got_rows.tolist() == rows[best].tolist() and np.array_equal(got_scores, scores[best])
    for bad in ([5, 900, 3], [900, 5], [5, 5, 900], [5, 1000]):  # out of order on either side of the middle, past n
        with pytest.raises(ValueError, match="within the index"):
            kernels.term_scores(1000, [(np.array(bad), np.ones(len(bad), dtype=np.float32))], [term], {"a": 0},
                                0.8, 0.7, split_from=0)
    with pytest.raises(ValueError, match="k must be > 0"):
        kernels.term_scores(1000, [(rows, scores)], [term], {"a": 0}, 0.8, 0.7, k=0)


def test_a_term_of_several_forms_counts_each_row_once_and_bad_postings_in_any_form_are_refused():
    from rag.search.query import QueryTerm

    # forms of one word: the longest summed straight into the total, the rows only the others hold added after
    term = QueryTerm("a", tokens=("long", "short", "other"), weight=0.5)
    rng = np.random.default_rng(1)
    postings = {t: (np.sort(rng.choice(1000, size, replace=False)), rng.random(size).astype(np.float32))
                for t, size in (("long", 600), ("short", 90), ("other", 200))}
    postings["short"][1][:10] = 0.0  # zero contributions, and rows where a shorter form beats the longest
    expected = sparse_term_bm25(Query("", "", (term,)), postings.get, compiled=False)
    assert len(expected[0]) > 600  # rows the longest form lacks
    for split_from in (0, 10**12):
        got = kernels.term_scores(1000, list(postings.values()), [term], {t: i for i, t in enumerate(postings)},
                                  0.8, 0.7, split_from=split_from)
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])
    place = {t: i for i, t in enumerate(postings)}
    for bad_form in ("short", "other", "long"):
        for bad in ("order", "nan"):
            broken = dict(postings)
            rows, scores = (a.copy() for a in postings[bad_form])
            if bad == "order":
                rows[3], rows[4] = rows[4], rows[3]
            else:
                scores[5] = np.nan
            broken[bad_form] = (rows, scores)
            for split_from in (0, 10**12):
                with pytest.raises(ValueError, match="within the index"):
                    kernels.term_scores(1000, list(broken.values()), [term], place, 0.8, 0.7, split_from=split_from)
    with kernels.POOL.take(1000) as scratch:  # every failure left its scratch arrays at zero
        assert all(not a.any() for a in scratch.floats)
    assert np.array_equal(kernels.term_scores(1000, list(postings.values()), [term], place, 0.8, 0.7)[1], expected[1])


@pytest.mark.parametrize("split_from,halves", [(None, True), (0, True), (0, False)],
                         ids=["default", "in-two-halves", "halves-off"])
def test_top_k_is_the_same_with_and_without_the_kernels(pipeline, questions, monkeypatch, threads_calling,
                                                        split_from, halves):
    lex = pipeline.index.lexical
    if split_from is not None:  # the postings read and the formula folded in two threads
        monkeypatch.setattr(kernels, "SPLIT_FROM", split_from)
    monkeypatch.setattr(kernels, "HALVES", halves)  # RAG_PARALLEL_SEARCH=0: never split
    threads = threads_calling(kernels, "_fold_rows")
    monkeypatch.setattr(lex, "_postings_cache", OrderedDict())  # the postings scored again, in two halves
    compiled = [top_term_bm25(q, lex, 50) for q in questions]
    in_helper = {name for name in threads if name.startswith("bm25-half")}
    assert bool(in_helper) == (split_from == 0 and halves) and len(threads - in_helper) == 1
    monkeypatch.setattr(kernels, "_ready", type(kernels._ready)())  # not ready: the numpy formula
    assert not kernels.ready()
    for query, (rows, scores) in zip(questions, compiled):
        expected_rows, expected_scores = top_term_bm25(query, lex, 50)
        assert np.array_equal(rows, expected_rows) and np.array_equal(scores, expected_scores)


def test_a_failing_kernel_warns_and_leaves_numpy_in_charge(monkeypatch):
    monkeypatch.setattr(kernels, "_ready", type(kernels._ready)())

    def broken() -> None:
        raise TypeError("no such signature")

    with pytest.warns(UserWarning, match="using numpy"):
        kernels.warm(broken, background=False)
    assert not kernels.ready()


def test_without_numba_the_pipeline_answers_the_same(pipeline):
    """RAG_NUMBA=0 in a fresh process: kernels never load, and the answer and its hits are those of this process."""
    question = "Vad gör en kontaktsjuksköterska?"
    answer = pipeline.ask(question)
    code = ("import json; from rag import Pipeline, PipelineConfig; from rag.search import kernels; "
            f"p = Pipeline(PipelineConfig()).warm_up(log=lambda m: None); a = p.ask({question!r}); "
            "print(json.dumps([kernels.load() is None, kernels.ready(), a.text, "
            "[h.passage.passage_id for h in a.hits]]))")
    from tests.conftest import PROJECT_ROOT

    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
                         env={**__import__("os").environ, "RAG_NUMBA": "0"})
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    not_loaded, ready, text, hits = json.loads(out.stdout.strip().splitlines()[-1])
    assert not_loaded and not ready
    assert text == answer.text and hits == [h.passage.passage_id for h in answer.hits]


def test_the_pipeline_loads_the_kernels_after_its_first_answer_and_only_on_a_large_index():
    """A fresh process: on the shipped index (below LARGE_INDEX) numba is never imported; with the threshold at 0
    the kernels load in the background once the first answer is out, and the next answers are the same."""
    code = """
import json, sys, time
import rag.pipeline as rp
from rag import Pipeline, PipelineConfig
from rag.search import kernels
p = Pipeline(PipelineConfig()).warm_up(log=lambda m: None)
first = p.ask("Vad gör en kontaktsjuksköterska?")
small = ["numba" in sys.modules, kernels.ready()]
rp.LARGE_INDEX = 0
p2 = Pipeline(PipelineConfig()).warm_up(log=lambda m: None)
before = ["numba" in sys.modules, p2.ask("Vad gör en kontaktsjuksköterska?").text == first.text]
for _ in range(600):
    if kernels.ready():
        break
    time.sleep(0.1)
print(json.dumps(small + before + [kernels.ready(), p2.ask("Vad gör en kontaktsjuksköterska?").text == first.text]))
"""
    from tests.conftest import PROJECT_ROOT

    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    import json

    small_numba, small_ready, _, same_before, ready, same_after = json.loads(out.stdout.strip().splitlines()[-1])
    assert not small_numba and not small_ready
    assert same_before and ready and same_after


@pytest.mark.parametrize("rows, scores, weight", [
    ([3, 1], [1.0, 1.0], 1.0),  # not ascending: n is taken from the last row, so the first is out of bounds
    ([1, 1], [1.0, 1.0], 1.0),  # a row twice
    ([0, 1], [1.0, -1.0], 1.0),  # a negative contribution
    ([0, 1], [1.0, 1.0], -1.0),  # a negative weight
], ids=["unsorted", "repeated", "negative-score", "negative-weight"])
def test_bad_postings_are_refused_and_the_scratch_stays_clean(pipeline, questions, rows, scores, weight):
    from rag.search.query import Query, QueryTerm

    term = QueryTerm("a", tokens=("a",), parts=("b", "c"), weight=weight)
    good = (np.array([0, 2]), np.ones(2, dtype=np.float32))
    bad = (np.array(rows, dtype=np.int64), np.array(scores, dtype=np.float32))
    with pytest.raises(ValueError):
        sparse_term_bm25(Query("", "", (term,)), {"a": good, "b": good, "c": bad}.get, compiled=True)
    lex = pipeline.index.lexical
    for query in questions[:10]:  # the next questions are unaffected
        expected = sparse_term_bm25(query, lex.postings, compiled=False)
        got = sparse_term_bm25(query, lex.postings, compiled=True)
        assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


def test_two_questions_at_once_each_in_two_halves_get_their_own_answers(pipeline, questions, monkeypatch):
    """Two app sessions asking at the same time: each question's halves fold into their own scratch arrays."""
    from concurrent.futures import ThreadPoolExecutor

    lex = pipeline.index.lexical
    monkeypatch.setattr(kernels, "SPLIT_FROM", 0)
    serial = [top_term_bm25(q, lex, 50) for q in questions]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in range(3):
            together = list(pool.map(lambda q: top_term_bm25(q, lex, 50), questions))
            for (rows, scores), (rows2, scores2) in zip(serial, together):
                assert rows.tolist() == rows2.tolist() and np.array_equal(scores, scores2)
