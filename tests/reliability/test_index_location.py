"""`--index DIR` at something that is not an index of this project is refused before any work, and nothing is touched.

"The project only ever deletes what its own manifest says it wrote": a folder of the user's own files, a regular
file, the corpus folder itself, a folder with someone else's manifest.json ... are refused with a clear (English,
CLI) message, exit code 2, and every file keeps its bytes (the whole parent folder is compared before and after,
so a lock file or a temporary folder beside it counts as a change too).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from tests.reliability.conftest import (MODEL, has_traceback, rag_env, run_rag, start_rag, tree_snapshot,
                                        write_tiny_corpus)


def _user_files(folder: Path) -> None:
    (folder / "sub").mkdir(parents=True)
    (folder / "anteckningar.txt").write_text("Mina egna anteckningar om behandlingen.\n", encoding="utf-8")
    (folder / "foto.jpg").write_bytes(bytes(range(256)) * 40)
    (folder / "sub" / "remiss.pdf").write_bytes(b"%PDF-1.4\n% not really\n")
    (folder / ".dold").write_text("hidden", encoding="utf-8")


def make_location(kind: str, base: Path) -> Path:
    """A location that is not an index of ours, inside `base` (which holds nothing else)."""
    loc = base / "target"
    if kind == "user-folder":
        _user_files(loc)
    elif kind == "user-folder-with-own-manifest":
        _user_files(loc)
        (loc / "manifest.json").write_text(json.dumps({"name": "Min webbapp", "version": "1.0"}), encoding="utf-8")
    elif kind == "user-folder-with-damaged-manifest":
        _user_files(loc)
        (loc / "manifest.json").write_text('{"name": "Min', encoding="utf-8")
    elif kind == "user-folder-with-foreign-manifest-listing-files":
        # someone else's tool writes {"format_version": ..., "files": {...}} too (asset manifests, packs)
        _user_files(loc)
        (loc / "manifest.json").write_text(json.dumps(
            {"format_version": 2, "files": {"anteckningar.txt": "9f2c", "foto.jpg": "77ab"}}), encoding="utf-8")
    elif kind == "user-folder-with-index-like-file-names":
        loc.mkdir()
        (loc / "passages.jsonl").write_text('{"mitt": "eget"}\n', encoding="utf-8")
        (loc / "documents.jsonl").write_text('{"mina": "dokument"}\n', encoding="utf-8")
    elif kind == "the-corpus-folder":
        write_tiny_corpus(loc)
        (loc / "metadata.jsonl").write_text(json.dumps({"path": "rutin.txt", "title": "Rutin"}) + "\n", encoding="utf-8")
    elif kind == "regular-file":
        loc.write_bytes(b"this is the user's file, not an index\n" * 100)
    elif kind == "empty-regular-file":
        loc.write_bytes(b"")
    elif kind == "symlink-to-user-folder":
        _user_files(base / "real")
        loc.symlink_to(base / "real", target_is_directory=True)
    elif kind == "symlink-to-regular-file":
        (base / "real.txt").write_text("the user's file\n", encoding="utf-8")
        loc.symlink_to(base / "real.txt")
    elif kind == "named-pipe":
        os.mkfifo(loc)
    else:
        raise ValueError(kind)
    return loc


KINDS = ["user-folder", "user-folder-with-own-manifest", "user-folder-with-damaged-manifest",
         "user-folder-with-foreign-manifest-listing-files", "user-folder-with-index-like-file-names",
         "the-corpus-folder", "regular-file", "empty-regular-file", "symlink-to-user-folder", "symlink-to-regular-file",
         "named-pipe"]


@pytest.mark.parametrize("force", [False, True], ids=["ask", "build-force"])
@pytest.mark.parametrize("kind", KINDS)
def test_a_location_that_is_not_our_index_is_refused_and_left_untouched(kind, force, tmp_path, warm_cache):
    from rag.pipeline import Pipeline, PipelineConfig
    from rag.search.location import IndexLocationError

    corpus = write_tiny_corpus(tmp_path / "corpus")
    area = tmp_path / "area"
    area.mkdir()
    loc = make_location(kind, area)
    before = tree_snapshot(area)
    logs: list[str] = []
    refused = None
    try:
        Pipeline(PipelineConfig(corpus_dir=corpus, index_dir=loc, model=MODEL)).warm_up(rebuild=force, log=logs.append)
    except IndexLocationError as exc:
        refused = exc
    after = tree_snapshot(area)
    lost = sorted(k for k in before if k not in after)
    changed = sorted(k for k in before if k in after and after[k] != before[k])
    assert refused is not None, f"not refused: an index was built at {loc}; user files lost: {lost}, changed: {changed}"
    message = str(refused)
    assert str(loc) in message and ("not an index" in message or "is a file" in message or "not a folder" in message)
    assert "untouched" in message or "not touched" in message or "nothing in it" in message
    assert after == before, f"files at or beside the refused location were changed: lost {lost}, changed {changed}"
    assert not any("Building" in line for line in logs)


def test_the_cli_refuses_a_user_folder_and_a_file_with_exit_2_and_touches_nothing(tmp_path):
    """The real CLI, three refusals at once: `build --force` into a folder of the user's files, `ask` with a
    regular file as --index, `ask --json` at a folder with someone else's manifest."""
    corpus = write_tiny_corpus(tmp_path / "corpus")
    areas = {name: tmp_path / name for name in ("folder", "file", "manifest")}
    for a in areas.values():
        a.mkdir()
    locs = {"folder": make_location("user-folder", areas["folder"]),
            "file": make_location("regular-file", areas["file"]),
            "manifest": make_location("user-folder-with-own-manifest", areas["manifest"])}
    before = {name: tree_snapshot(a) for name, a in areas.items()}
    env = rag_env(tmp_path / "cache")
    common = ["--model", MODEL, "--corpus", str(corpus)]
    procs = {
        "folder": start_rag("build", "--force", *common, "--index", str(locs["folder"]), env=env, stdin=False),
        "file": start_rag("ask", *common, "--index", str(locs["file"]), "Vem samordnar vården?", env=env, stdin=False),
        "manifest": start_rag("ask", "--json", *common, "--index", str(locs["manifest"]), env=env),
    }
    results = {}
    for name, proc in procs.items():
        out, err = proc.communicate(input=b"Vem samordnar v\xc3\xa5rden?\n" if name == "manifest" else None,
                                    timeout=300)
        results[name] = (proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))
    for name, (code, out, err) in results.items():
        assert code == 2, (name, code, err[-2000:])
        assert err.startswith("error: ") and str(locs[name]) in err, (name, err[-2000:])
        assert not has_traceback(err), (name, err[-2000:])
        assert out == "", (name, out[:500])
        assert tree_snapshot(areas[name]) == before[name], f"{name}: the refused location or its folder changed"


def test_a_file_the_user_put_into_an_index_folder_survives_a_rebuild_where_it_was(small_index, warm_cache):
    """The index folder is ours, one file in it is not: a rebuild replaces the index files and keeps the user's file
    (its bytes, at its path); it is neither deleted nor moved into a hidden `.NAME.old-*` folder."""
    from rag.pipeline import Pipeline, PipelineConfig

    corpus, index = small_index
    note = index / "MINA-ANTECKNINGAR.txt"
    note.write_text("Skriv inte över den här filen.\n", encoding="utf-8")
    nested = index / "lexical" / "min-fil.txt"
    nested.write_text("Inte heller den här.\n", encoding="utf-8")
    logs: list[str] = []
    Pipeline(PipelineConfig(corpus_dir=corpus, index_dir=index, model=MODEL)).warm_up(rebuild=True, log=logs.append)
    everywhere = [p for p in index.parent.rglob("*") if p.name in (note.name, nested.name)]
    assert everywhere, "the user's files were deleted by the rebuild"
    assert note.is_file() and note.read_text(encoding="utf-8") == "Skriv inte över den här filen.\n", (
        f"the user's file is no longer where it was; found at {[str(p) for p in everywhere]}; log: {logs}")
    assert nested.is_file() and nested.read_text(encoding="utf-8") == "Inte heller den här.\n"


def test_a_rebuild_never_deletes_anything_outside_the_index_folder(small_index, warm_cache, tmp_path):
    """Files beside the index (the user's, and a folder named like a leftover that holds the user's files) are kept."""
    from rag.pipeline import Pipeline, PipelineConfig

    corpus, index = small_index
    (index.parent / "granne.txt").write_text("grannens fil\n", encoding="utf-8")
    mine = index.parent / f".{index.name}.tmp-mitt"
    mine.mkdir()
    (mine / "viktigt.txt").write_text("inte en byggrest\n", encoding="utf-8")
    old_like = index.parent / f".{index.name}.old-mitt"
    old_like.mkdir()
    (old_like / "passages.jsonl").write_text("mina egna rader\n", encoding="utf-8")
    (old_like / "brev.txt").write_text("ett brev\n", encoding="utf-8")
    keep = {p: tree_snapshot(p) for p in (index.parent / "granne.txt", mine, old_like, corpus)}
    Pipeline(PipelineConfig(corpus_dir=corpus, index_dir=index, model=MODEL)).warm_up(rebuild=True, log=lambda _: None)
    for path, snap in keep.items():
        assert tree_snapshot(path) == snap, f"{path} was changed by a rebuild of {index}"
