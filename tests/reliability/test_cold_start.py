"""Cold starts and crashes: many first users on an empty index make exactly one build (threads of one process, and
separate processes), a build killed between the two renames of its swap is put back at the next start, leftovers of
killed builds are cleaned, and `kill -9` of `python -m rag build --force` at any moment never leaves a corrupt
index to serve: the next start serves the old index's answers (or builds afresh).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from tests.reliability.conftest import (MODEL, TINY_QUESTION, answer_signature, copy_small_index, has_traceback,
                                        json_lines, rag_env, siblings_of, start_rag, write_tiny_corpus)


def _pipeline(corpus: Path, index: Path):
    from rag.pipeline import Pipeline, PipelineConfig

    return Pipeline(PipelineConfig(corpus_dir=corpus, index_dir=index, model=MODEL))


# ------------------------------------------------------------------------------------ concurrent first users


def test_concurrent_first_users_in_one_process_make_exactly_one_build(tmp_path, private_cache):
    """Six app sessions (threads of one server process) start at once on an empty index."""
    corpus = write_tiny_corpus(tmp_path / "corpus")
    index = tmp_path / "indexes" / MODEL
    n = 6
    barrier = threading.Barrier(n)
    logs: list[str] = []
    answers: list = [None] * n
    errors: list[BaseException] = []

    def user(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            pipeline = _pipeline(corpus, index).warm_up(log=logs.append)
            answers[i] = pipeline.ask(TINY_QUESTION)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=user, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    builds = [line for line in logs if line.startswith("Building the index")]
    assert len(builds) == 1, builds
    assert all(a is not None and a.reason != "error" and (a.text or a.notice) for a in answers), answers
    assert len({answer_signature(a) for a in answers}) == 1
    assert siblings_of(index) == []


def test_concurrent_first_users_in_separate_processes_make_exactly_one_build(tmp_path):
    """Three `python -m rag ask --json` processes start together on an empty index: one builds, the others wait for
    that build under the lock and load it; all three answer."""
    corpus = write_tiny_corpus(tmp_path / "corpus")
    index = tmp_path / "indexes" / MODEL
    env = rag_env(tmp_path / "cache")
    procs = [start_rag("ask", "--json", "--model", MODEL, "--corpus", str(corpus), "--index", str(index), env=env)
             for _ in range(3)]
    outs = [p.communicate(input=(TINY_QUESTION + "\n").encode(), timeout=400) for p in procs]
    stderrs = [err.decode("utf-8", "replace") for _, err in outs]
    for p, err in zip(procs, stderrs):
        assert p.returncode == 0 and not has_traceback(err), err[-2000:]
    builds = sum(err.count("Building the index") for err in stderrs)
    assert builds == 1, stderrs
    rows = [json.loads(json_lines(out)[0]) for out, _ in outs]
    assert all(r["question"] == TINY_QUESTION and r["answer"] and r.get("reason") != "error" for r in rows), rows
    assert len({r["answer"] for r in rows}) == 1
    assert siblings_of(index) == []


# --------------------------------------------------------------------------------------------- kill -9


class Watched:
    """A child process whose stderr is collected by a thread (tqdm writes "\\r", not lines)."""

    def __init__(self, cmd: list[str], env: dict) -> None:
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=PROJECT_ROOT, env=env)
        self.err = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            chunk = self.proc.stderr.read1(65536)
            if not chunk:
                return
            self.err += chunk

    def text(self) -> str:
        return self.err.decode("utf-8", "replace")

    def finish(self, timeout: float) -> int:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self._reader.join(timeout=10)
        return self.proc.returncode


# where: (how, marker in stderr for an external kill / the self-kill point)
KILL_POINTS = {
    "early": ("external", "Building the index"),
    "while-embedding": ("external", "Embedding passages"),
    "at-bm25": ("external", "BM25 index"),
    "mid-save": ("self", "after-documents-jsonl"),
    "between-renames": ("self", "between-renames"),
}


@pytest.fixture(scope="module")
def killed_builds(tiny_index_dir, tmp_path_factory):
    """For every kill point: a copy of a served index, `build --force` killed there, then the next start.

    All kill runs go at once (each in its own folder, with its own empty embedding cache so the build really
    embeds). The next start is the real CLI for "between-renames" and the in-process pipeline for the others.
    """
    from rag.search.index import CorpusIndex

    base = tmp_path_factory.mktemp("kill-9")
    cases = {}
    for name, (how, what) in KILL_POINTS.items():
        corpus, index = copy_small_index(tiny_index_dir, base / name)
        env = rag_env(base / name / "cache")
        cases[name] = {"corpus": corpus, "index": index, "env": env, "how": how, "what": what,
                       "old_built_at": json.loads((index / "manifest.json").read_text())["built_at"]}
    old = _pipeline(cases["early"]["corpus"], cases["early"]["index"]).warm_up(log=lambda _: None)
    baseline = answer_signature(old.ask(TINY_QUESTION))
    for case in cases.values():
        case["run"] = Watched(cmd_for(case), case["env"])
    deadline = time.monotonic() + 300
    pending = {n for n, c in cases.items() if c["how"] == "external"}
    while pending and time.monotonic() < deadline:
        for name in list(pending):
            case = cases[name]
            if case["what"] in case["run"].text():
                case["run"].proc.send_signal(signal.SIGKILL)
                pending.discard(name)
            elif case["run"].proc.poll() is not None:
                pending.discard(name)
        time.sleep(0.01)
    for case in cases.values():
        case["code"] = case["run"].finish(timeout=300)
        case["stderr"] = case["run"].text()
        case["leftovers_after_kill"] = siblings_of(case["index"])
        case["index_existed_after_kill"] = case["index"].exists()
    for name, case in cases.items():
        logs: list[str] = []
        case["next_logs"] = logs
        try:
            if name == "between-renames":
                out = subprocess.run([sys.executable, "-m", "rag", "ask", "--json", "--model", MODEL, "--corpus",
                                      str(case["corpus"]), "--index", str(case["index"])],
                                     input=(TINY_QUESTION + "\n").encode(), capture_output=True, cwd=PROJECT_ROOT,
                                     env=case["env"], timeout=300)
                case["next_cli"] = out
                logs.extend(out.stderr.decode("utf-8", "replace").splitlines())
            pipeline = _pipeline(case["corpus"], case["index"]).warm_up(log=logs.append)
            case["next_answer"] = answer_signature(pipeline.ask(TINY_QUESTION))
            case["served_built_at"] = pipeline.index.manifest.get("built_at")
            CorpusIndex.load(case["index"], verify=True)
            case["next_error"] = None
        except Exception as exc:  # noqa: BLE001 - reported by the tests
            case["next_error"] = exc
        case["leftovers_after_next_start"] = siblings_of(case["index"])
    return {"cases": cases, "baseline": baseline}


def cmd_for(case: dict) -> list[str]:
    args = ["--model", MODEL, "--corpus", str(case["corpus"]), "--index", str(case["index"])]
    if case["how"] == "external":
        return [sys.executable, "-m", "rag", "build", "--force", *args]
    return [sys.executable, "-m", "tests.reliability._kill_build", case["what"], *args]


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_kill_9_of_build_force_never_leaves_a_corrupt_index_to_serve(killed_builds, point):
    case = killed_builds["cases"][point]
    assert case["code"] == -signal.SIGKILL, (
        f"the build was not killed at {point} (exit {case['code']}): {case['stderr'][-1500:]}")
    assert case["next_error"] is None, f"the next start failed after a kill at {point}: {case['next_error']!r}"
    assert case["next_answer"] == killed_builds["baseline"], "the next start gave other answers than the old index"
    rebuilt = any(line.startswith("Building the index") for line in case["next_logs"])
    assert case["served_built_at"] == case["old_built_at"] or rebuilt, "a different index was served without a build"
    if point == "between-renames":
        out = case["next_cli"]
        err = out.stderr.decode("utf-8", "replace")
        assert out.returncode == 0 and not has_traceback(err), err[-2000:]
        assert not case["index_existed_after_kill"], "the kill did not land between the two renames"
        assert "Recovered the index" in err, err[-2000:]
        assert case["served_built_at"] == case["old_built_at"], "the old index was not put back"
        row = json.loads(json_lines(out.stdout)[0])
        assert row["question"] == TINY_QUESTION and row["answer"] and row.get("reason") != "error"


@pytest.mark.parametrize("point", list(KILL_POINTS))
def test_leftovers_of_a_killed_build_are_gone_after_the_next_start(killed_builds, point):
    case = killed_builds["cases"][point]
    assert case["leftovers_after_next_start"] == [], (
        f"left beside the index after the next start (after the kill: {case['leftovers_after_kill']})")


# ------------------------------------------------------------------------- swap recovery and leftovers


def _leftover_copies(index: Path) -> tuple[Path, Path]:
    """What killed builds leave: a `.NAME.tmp-*` with some index files, a `.NAME.old-*` with a whole old index."""
    tmp = index.with_name(f".{index.name}.tmp-0123456789ab")
    tmp.mkdir()
    for name in ("dense.faiss", "documents.jsonl"):
        shutil.copyfile(index / name, tmp / name)
    old = index.with_name(f".{index.name}.old-ba9876543210")
    shutil.copytree(index, old)
    return tmp, old


def test_an_index_left_in_old_by_a_swap_killed_between_its_renames_is_put_back(small_index, warm_cache):
    corpus, index = small_index
    before = answer_signature(_pipeline(corpus, index).warm_up(log=lambda _: None).ask(TINY_QUESTION))
    built_at = json.loads((index / "manifest.json").read_text())["built_at"]
    old = index.with_name(f".{index.name}.old-feedc0ffee00")
    index.rename(old)  # exactly the state between the renames: the old index away, nothing in its place
    tmp = index.with_name(f".{index.name}.tmp-feedc0ffee01")
    shutil.copytree(old, tmp)  # the finished new build that never got renamed in
    logs: list[str] = []
    pipeline = _pipeline(corpus, index).warm_up(log=logs.append)
    assert any("Recovered the index" in line for line in logs), logs
    assert not any(line.startswith("Building the index") for line in logs), logs
    assert pipeline.index.manifest["built_at"] == built_at
    assert answer_signature(pipeline.ask(TINY_QUESTION)) == before
    assert siblings_of(index) == []


def test_leftovers_beside_a_served_index_are_cleaned_at_the_next_start(small_index, warm_cache):
    """A build killed while saving leaves `.NAME.tmp-*` beside an index that is still fine: the next start serves
    that index and removes the leftovers (they are ours: nothing but index files)."""
    corpus, index = small_index
    _leftover_copies(index)
    logs: list[str] = []
    _pipeline(corpus, index).warm_up(log=logs.append).ask(TINY_QUESTION)
    assert siblings_of(index) == [], logs


def test_leftovers_are_cleaned_by_the_next_build(small_index, warm_cache):
    corpus, index = small_index
    _leftover_copies(index)
    _pipeline(corpus, index).warm_up(rebuild=True, log=lambda _: None)
    assert siblings_of(index) == []


def test_the_build_lock_file_is_never_mistaken_for_an_index(small_index, warm_cache):
    """A stale lock file of a killed build (flock is released by the kernel on kill -9) does not block a start."""
    corpus, index = small_index
    lock = index.with_name(f".{index.name}.lock")
    lock.write_bytes(b"")
    done = threading.Event()

    def start() -> None:
        _pipeline(corpus, index).warm_up(rebuild=True, log=lambda _: None)
        done.set()

    t = threading.Thread(target=start, daemon=True)
    t.start()
    t.join(timeout=120)
    assert done.is_set(), "a start hung on a leftover lock file"
