"""Damaged indexes: a manifest that is valid JSON but not an object, a manifest with fields of the wrong type, a
manifest whose `files` list lost an entry, are never served: the index is rebuilt with a message and no traceback.
A damaged index where nothing can be written gives a clear message (exit code 2) and is left as it was."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability.conftest import (MODEL, TINY_QUESTION, has_traceback, json_lines, looks_swedish, rag_env,
                                        start_rag, tree_snapshot)


def _manifest(index: Path) -> dict:
    return json.loads((index / "manifest.json").read_text(encoding="utf-8"))


def _write(index: Path, data) -> None:
    text = data if isinstance(data, (str, bytes)) else json.dumps(data)
    path = index / "manifest.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8"))


def _remove(index: Path, key: str) -> None:
    m = _manifest(index)
    m.pop(key)
    _write(index, m)


def _folder_manifest(index: Path) -> None:
    (index / "manifest.json").unlink()
    (index / "manifest.json").mkdir()


MANIFEST_DAMAGE = {
    # valid JSON, not an object
    "json-empty-list": lambda ix: _write(ix, "[]"),
    "json-list-holding-the-manifest": lambda ix: _write(ix, [_manifest(ix)]),
    "json-string": lambda ix: _write(ix, '"manifest"'),
    "json-number": lambda ix: _write(ix, "42"),
    "json-null": lambda ix: _write(ix, "null"),
    "json-true": lambda ix: _write(ix, "true"),
    # not JSON at all
    "empty-file": lambda ix: _write(ix, ""),
    "cut-in-half": lambda ix: _write(ix, (ix / "manifest.json").read_text(encoding="utf-8")[:300]),
    "not-utf8": lambda ix: _write(ix, b"\xff\xfe\x00{"),
    "a-folder": _folder_manifest,
    # an object with fields of the wrong type
    "problems-not-objects": lambda ix: _write(ix, {**_manifest(ix), "problems": [5, "x"]}),
    "problems-a-string": lambda ix: _write(ix, {**_manifest(ix), "problems": "none"}),
    "analyzer-a-string": lambda ix: _write(ix, {**_manifest(ix), "analyzer": "swedish"}),
    "files-a-list": lambda ix: _write(ix, {**_manifest(ix), "files": sorted(_manifest(ix)["files"])}),
    "checksum-a-number": lambda ix: _write(ix, {**_manifest(ix), "files": {**_manifest(ix)["files"], "dense.faiss": 5}}),
    "format-version-as-text": lambda ix: _write(ix, {**_manifest(ix), "format_version": str(_manifest(ix)["format_version"])}),
    "passage-count-as-text": lambda ix: _write(ix, {**_manifest(ix), "passage_count": str(_manifest(ix)["passage_count"])}),
    "model-an-object": lambda ix: _write(ix, {**_manifest(ix), "model": {"name": MODEL}}),
}


@pytest.mark.parametrize("damage", list(MANIFEST_DAMAGE))
def test_a_damaged_manifest_is_never_served_but_rebuilt_with_a_message(damage, small_index, warm_cache, encoder):
    from rag.search.index import CorpusIndex, open_index

    corpus, index = small_index
    MANIFEST_DAMAGE[damage](index)
    logs: list[str] = []
    served = open_index(corpus, index, lambda: encoder, MODEL, log=logs.append)
    assert any(line.startswith("Building the index") for line in logs), logs
    assert served.manifest.get("kind") == "cancer-rag-index"
    reloaded = CorpusIndex.load(index, verify=True)
    assert len(reloaded.passages) == len(served.passages) > 0


@pytest.mark.parametrize("entry", ["dense.faiss", "passages.npy", "sentence_vectors.npy", "lexical/tokens.json"])
@pytest.mark.parametrize("also_the_file", [False, True], ids=["entry-only", "entry-and-file"])
def test_an_index_whose_manifest_lost_a_file_entry_is_invalid_and_rebuilt(entry, also_the_file, small_index,
                                                                          warm_cache, encoder):
    from rag.search.index import CorpusIndex, IndexInvalid, open_index

    corpus, index = small_index
    m = _manifest(index)
    del m["files"][entry]
    _write(index, m)
    if also_the_file:
        (index / entry).unlink()
    with pytest.raises(IndexInvalid) as invalid:
        CorpusIndex.load(index)
    assert entry in str(invalid.value) or "missing" in str(invalid.value)
    logs: list[str] = []
    open_index(corpus, index, lambda: encoder, MODEL, log=logs.append)
    assert any(line.startswith("Building the index") for line in logs), logs
    assert entry in _manifest(index)["files"] and (index / entry).is_file()


def _cli_in_process(args, stdin: bytes, capsys, monkeypatch):
    """`python -m rag ...` run through rag.__main__.main in this process (the model and analyser are loaded once)."""
    import rag.__main__ as cli

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8"))
    capsys.readouterr()
    code = cli.main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("key", ["document_count", "built_at", "model"])
def test_build_reports_an_index_whose_manifest_lacks_a_field_without_a_traceback(key, small_index, warm_cache,
                                                                                 capsys, monkeypatch):
    corpus, index = small_index
    _remove(index, key)
    code, out, err = _cli_in_process(["build", "--model", MODEL, "--corpus", str(corpus), "--index", str(index)], b"",
                                     capsys, monkeypatch)
    assert code == 0 and not has_traceback(err), err[-2000:]
    code, out, err = _cli_in_process(["ask", "--json", "--model", MODEL, "--corpus", str(corpus), "--index", str(index)],
                                     (TINY_QUESTION + "\n").encode(), capsys, monkeypatch)
    assert code == 0 and json.loads(json_lines(out.encode())[0])["question"] == TINY_QUESTION


# ------------------------------------------------------------------------------------------- read-only places


def _damage_dense(index: Path) -> None:
    path = index / "dense.faiss"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _read_only(paths: list[Path]):
    """Make folders (and their files) unwritable. Not root: chmod. Root (permissions do not stop it): the immutable
    attribute (chattr +i); where that is not possible the test is skipped with the reason. Returns an undo."""
    if os.geteuid() != 0:
        modes = {}
        for p in paths:
            for q in [p, *p.rglob("*")]:
                modes[q] = q.stat().st_mode
                q.chmod(q.stat().st_mode & ~0o222)

        def undo() -> None:
            for q, mode in modes.items():
                q.chmod(mode)

        return undo
    chattr = shutil.which("chattr")
    if not chattr:
        pytest.skip("running as root and chattr is missing: no way to make a folder read-only for root here")
    done = subprocess.run([chattr, "-R", "+i", *map(str, paths)], capture_output=True, text=True)
    if done.returncode != 0:
        subprocess.run([chattr, "-R", "-i", *map(str, paths)], capture_output=True)
        pytest.skip(f"running as root and this file system has no immutable attribute ({done.stderr.strip()}): "
                    "a read-only folder cannot be simulated for root")
    return lambda: subprocess.run([chattr, "-R", "-i", *map(str, paths)], capture_output=True, check=True)


def test_a_damaged_index_in_a_read_only_place_gives_a_clear_message_and_is_left_as_it_was(
        small_index, warm_cache, capsys, monkeypatch):
    corpus, index = small_index
    _damage_dense(index)
    place = index.parent
    before = tree_snapshot(place)
    undo = _read_only([place])
    try:
        code, out, err = _cli_in_process(
            ["ask", "--json", "--model", MODEL, "--corpus", str(corpus), "--index", str(index)],
            (TINY_QUESTION + "\n").encode(), capsys, monkeypatch)
    finally:
        undo()
    assert code == 2, (code, err[-2000:])
    assert err.startswith("error: ") and str(index) in err and "cannot be written" in err, err[-2000:]
    assert "dense.faiss" in err, "the message should say what is wrong with the index"
    assert not has_traceback(err) and out == "", err[-2000:]
    assert tree_snapshot(place) == before


def test_the_cli_gives_a_clear_message_for_an_index_that_cannot_be_made_and_rebuilds_a_list_manifest(tmp_path,
                                                                                                      small_index):
    """Two real CLI processes at once: --index under a regular FILE (mkdir fails: a place nothing can be written,
    even as root) gives exit code 2 and a message; an index whose manifest is `[]` is rebuilt and answers."""
    corpus, index = small_index
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"the user's file\n")
    _write(index, "[]")
    env = rag_env(tmp_path / "cache")
    common = ["--model", MODEL, "--corpus", str(corpus)]
    under_file = start_rag("ask", "--json", *common, "--index", str(blocker / "index"), env=env)
    list_manifest = start_rag("ask", "--json", *common, "--index", str(index), env=env)
    out1, err1 = under_file.communicate(input=(TINY_QUESTION + "\n").encode(), timeout=300)
    out2, err2 = list_manifest.communicate(input=(TINY_QUESTION + "\n").encode(), timeout=300)
    err1, err2 = err1.decode("utf-8", "replace"), err2.decode("utf-8", "replace")
    assert under_file.returncode == 2, err1[-2000:]
    assert err1.startswith("error: ") and "cannot be written" in err1 and not has_traceback(err1), err1[-2000:]
    assert blocker.read_bytes() == b"the user's file\n" and out1 == b""
    assert list_manifest.returncode == 0 and not has_traceback(err2), err2[-2000:]
    assert "Building the index" in err2 and "manifest" in err2, err2[-2000:]
    row = json.loads(json_lines(out2)[0])
    assert row["question"] == TINY_QUESTION and looks_swedish(row["answer"])
