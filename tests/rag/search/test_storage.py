"""The columnar storage: string and ragged columns, memory-mapped loading, lazy views equal to what was built."""

import mmap
import os
from pathlib import Path

import numpy as np
import pytest

from rag.search.columns import RaggedColumn, StringColumn
from rag.search.dense import top_indices
from rag.search.index import CorpusIndex
from rag.search.segment import byte_offsets
from rag.search.views import StackedRows


def test_string_column_round_trip_with_swedish_text(tmp_path):
    values = ["Kontaktsjuksköterskan", "", "ﬂer – “citat” 😀", "å" * 1000]
    StringColumn.write(tmp_path / "s.bin", values)
    col = StringColumn.open(tmp_path / "s.bin")
    assert list(col) == values and len(col) == 4 and col[-1] == values[-1]


def test_ragged_column_round_trip(tmp_path):
    rows = [[3, 1, 2], [], [7]]
    RaggedColumn.from_rows(rows).save(tmp_path / "r")
    col = RaggedColumn.open(tmp_path / "r")
    assert [c.tolist() for c in col] == rows


def test_byte_offsets_match_utf8_slicing():
    text = "Vårdförlopp – ﬂer 😀 stöd"
    b = byte_offsets(text)
    data = text.encode("utf-8")
    for start in range(len(text)):
        for end in range(start, len(text) + 1):
            assert data[b[start] : b[end]].decode("utf-8") == text[start:end]


def test_top_indices_equals_a_stable_full_sort():
    rng = np.random.default_rng(0)
    for _ in range(50):
        scores = rng.integers(0, 5, size=rng.integers(1, 40)).astype(np.float32)
        k = int(rng.integers(1, len(scores) + 2))
        assert top_indices(scores, k).tolist() == np.argsort(-scores, kind="stable")[:k].tolist()


def test_stacked_rows_index_like_the_concatenated_array(tmp_path):
    rng = np.random.default_rng(1)
    parts = [rng.standard_normal((n, 4)).astype(np.float32) for n in (5, 1, 7)]
    for i, a in enumerate(parts):
        np.save(tmp_path / f"v{i}.npy", a)
    stacked = StackedRows([np.load(tmp_path / f"v{i}.npy", mmap_mode="r") for i in range(3)])
    whole = np.concatenate(parts)
    for rows in ([], [0], [12, 0, 5, 5, 6, -1], rng.integers(0, 13, 40).tolist()):
        got = stacked[rows]
        assert got.shape == (len(rows), 4) and np.array_equal(got, whole[rows] if rows else whole[:0])
    assert np.array_equal(stacked[6], whole[6]) and np.array_equal(np.asarray(stacked), whole)
    for bad in ([13], [-14]):
        try:
            stacked[bad]
        except IndexError:
            pass
        else:
            raise AssertionError(f"row {bad} should not be found")


def test_a_loaded_index_maps_its_files_and_its_views_equal_the_build(seed_index_dir, encoder):
    corpus, index_dir = seed_index_dir
    built = CorpusIndex.build(corpus, encoder)
    loaded = CorpusIndex.load(index_dir)
    for array in (loaded.passage_vectors, loaded.sentence_vectors, loaded.segments[0].postings.values):
        base = array
        while isinstance(base, np.ndarray) and base.base is not None:
            base = base.base
        assert isinstance(base, mmap.mmap), type(base)  # mapped, not read
        assert type(array) is np.ndarray  # a plain view: no np.memmap Python code on every row access
    assert [loaded.passages[i] for i in range(len(loaded.passages))] == [built.passages[i] for i in range(len(built.passages))]
    assert [loaded.sentences[i] for i in range(len(loaded.sentences))] == [built.sentences[i] for i in range(len(built.sentences))]
    assert [loaded.passage_sentences[i] for i in range(len(loaded.passages))] == \
        [built.passage_sentences[i] for i in range(len(built.passages))]
    assert np.allclose(np.asarray(loaded.passage_vectors), np.asarray(built.passage_vectors), atol=1e-6)
    assert sorted(loaded.documents) == sorted(built.documents)
    for doc_id, doc in built.documents.items():
        assert loaded.documents[doc_id] == doc


def _resident_kb(path: Path) -> int:
    """This process's resident kB of the mappings of `path` (/proc/self/smaps)."""
    target, total, inside = os.path.realpath(path), 0, False
    with open("/proc/self/smaps", encoding="utf-8") as smaps:
        for line in smaps:
            fields = line.split()
            if fields and "-" in fields[0] and len(fields) >= 5:  # a mapping's header line
                inside = len(fields) >= 6 and fields[5] == target
            elif inside and fields[0] == "Rss:":
                total += int(fields[1])
    return total


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="needs Linux's /proc/self/smaps")
def test_released_pages_leave_the_process_and_the_rows_stay_readable(seed_index_dir):
    _, index_dir = seed_index_dir
    loaded = CorpusIndex.load(index_dir)
    vectors = loaded.segments[0].directory / "sentence_vectors.npy"
    rows = np.array(loaded.sentence_vectors[np.arange(len(loaded.sentences))])  # every row read once
    texts = [loaded.sentences[i].text for i in range(len(loaded.sentences))]
    assert _resident_kb(vectors) > 0
    assert loaded.release_pages() >= 9  # vectors, texts, passages, sentences and their token columns
    assert _resident_kb(vectors) == 0  # out of the process (still in the page cache)
    assert np.array_equal(np.asarray(loaded.sentence_vectors[np.arange(len(rows))]), rows)  # and read back alike
    assert [loaded.sentences[i].text for i in range(len(texts))] == texts
    assert _resident_kb(vectors) > 0
    # before each question the pipeline trims: only above a resident budget
    assert not loaded.trim(budget_mb=1e9) and _resident_kb(vectors) > 0
    assert loaded.trim(budget_mb=0) and _resident_kb(vectors) == 0


def test_stored_token_sets_are_what_the_analyzer_makes(seed_index_dir):
    index = CorpusIndex.load(seed_index_dir[1])
    analyze = index.lexical.analyzer.analyze
    for row in range(len(index.sentences)):
        assert index.sentence_token_sets[row] == frozenset(analyze(index.sentences[row].text))
    for row in range(len(index.passages)):
        p = index.passages[row]
        assert index.passage_context_token_sets[row] == frozenset(analyze(f"{p.title} {p.heading}"))


def test_passages_are_found_by_id_and_a_loaded_index_is_not_checksummed_at_start(seed_index_dir, tmp_path):
    import shutil

    index = CorpusIndex.load(seed_index_dir[1])
    for row in range(len(index.passages)):
        assert index.passage_row(index.passages[row].passage_id) == row
    assert index.passage_row("0" * 16) is None
    copy = tmp_path / "index"
    shutil.copytree(seed_index_dir[1], copy)
    data = bytearray((copy / "doc_texts.bin").read_bytes())
    data[10] ^= 1  # same size, other bytes: only a full verification sees it
    (copy / "doc_texts.bin").write_bytes(bytes(data))
    CorpusIndex.load(copy)
    import pytest
    from rag.search.index import IndexInvalid

    with pytest.raises(IndexInvalid, match="checksum"):
        CorpusIndex.load(copy, verify=True)
