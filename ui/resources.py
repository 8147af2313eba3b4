"""Resources every page shares: the one pipeline per server process, the index check with a progress bar."""

from __future__ import annotations

import logging

import streamlit as st

from embeddings import preparation_needed
from rag.pipeline import Pipeline, PipelineConfig
from rag.search.index import index_status
from rag.types import Answer, Passage

log = logging.getLogger(__name__)

@st.cache_resource(show_spinner="Laddar källorna och språkmodellen …")
def load_pipeline() -> Pipeline:
    """The same pipeline as the CLI, loaded once per server process (on a large index the compiled BM25 goes on
    loading in the background, before the first visitor's question)."""
    return Pipeline(PipelineConfig()).warm_up().preload()


BUILD_STAGES = {"documents": "Läser dokumenten", "passages": "Beräknar vektorer för textavsnitt", "sentences": "Beräknar vektorer för meningar",
                "lexical": "Bygger ordindex"}


def ensure_index() -> None:
    """On a new machine (or after the sources changed) prepare the model and build the search index first, with a
    progress bar, so the first visitor sees what is happening rather than a long spinner."""
    if st.session_state.get("index_checked"):
        return
    config = PipelineConfig()
    reason = index_status(config.corpus_dir, config.index_dir, config.model)
    preparing = preparation_needed(config.model)
    if reason or preparing:
        log.info("before serving: %s", "; ".join(x for x in (preparing, reason) if x))
        text = ("Förbereder språkmodellen första gången – det tar ungefär en minut …" if preparing
                else "Bygger sökindexet första gången – det tar några minuter …")
        bar = st.progress(0.0, text=text)

        def progress(stage: str, done: int, total: int) -> None:
            bar.progress(done / max(1, total), text=f"{BUILD_STAGES.get(stage, stage)}: {done} av {total}")

        Pipeline(config).warm_up(progress=progress, log=log.info)
        bar.empty()
    st.session_state["index_checked"] = True


@st.cache_resource(show_spinner=False)
def passage_lookup(_pipeline: Pipeline, built_at: str) -> dict[str, Passage]:
    """All passages by id (keyed on the index build time so a rebuilt index gets a fresh table)."""
    return {p.passage_id: p for p in _pipeline.index.passages}


def find_passage(pipeline: Pipeline, answer: Answer, passage_id: str) -> Passage | None:
    """The cited passage: from the answer's hits, else from the whole index."""
    for hit in answer.hits:
        if hit.passage.passage_id == passage_id:
            return hit.passage
    return passage_lookup(pipeline, pipeline.index.manifest.get("built_at", "")).get(passage_id)
