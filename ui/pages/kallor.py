"""Källor: the documents with their dates and age warnings; add a document, take one out (the index is rebuilt with
a progress bar, reusing every embedding it already has)."""

import streamlit as st

from rag.ingest.sources import UPLOAD_SUFFIXES, add_upload, remove_document
from rag.pipeline import PipelineConfig
from rag.present import escape_markdown, is_outdated, max_source_age_from_env, source_meta
from rag.search.index import open_index
from embeddings import load_encoder
from ui.resources import BUILD_STAGES, load_pipeline
from ui.staff import require_staff

user = require_staff()
st.subheader("Källor", anchor=False)
pipeline = load_pipeline()
config = PipelineConfig()
max_age = max(1, round(max_source_age_from_env()))


def rebuild(message: str) -> None:
    bar = st.progress(0.0, text=message)

    def progress(stage: str, done: int, total: int) -> None:
        bar.progress(done / max(1, total), text=f"{BUILD_STAGES.get(stage, stage)}: {done} av {total}")

    open_index(config.corpus_dir, config.index_dir, lambda: load_encoder(config.model), config.model,
               progress=progress, log=lambda m: None)
    bar.empty()
    load_pipeline.clear()


upload = st.file_uploader("Lägg till ett dokument", type=[s.lstrip(".") for s in UPLOAD_SUFFIXES], key="src_upload")
if upload is not None and st.button("Lägg till", key="src_add"):
    try:
        rel = add_upload(config.corpus_dir, upload.name, upload.getvalue(), user=user.username)
    except (ValueError, OSError) as exc:
        st.error(f"Dokumentet kunde inte läggas till: {exc}")
    else:
        rebuild(f"Lägger till {rel} …")
        st.success(f"{rel} är tillagt och sökbart.")
        st.rerun()

docs = sorted(pipeline.index.documents.values(), key=lambda d: (d.date, d.title), reverse=True)
old = sum(is_outdated(d.date, max_age) for d in docs)
st.caption(f"{len(docs)} dokument; {old} äldre än {max_age} år")
for doc in docs:
    with st.container(border=True):
        flag = " · ⚠ äldre källa" if is_outdated(doc.date, max_age) else ""
        st.markdown(f"**{escape_markdown(doc.title)}**  \n{escape_markdown(source_meta(doc.publisher, doc.date))}"
                    f"{flag}  \n`{escape_markdown(doc.path)}`")
        if st.button("Ta bort ur sökindexet", key=f"src_remove_{doc.doc_id}"):
            how = remove_document(config.corpus_dir, doc.path)
            rebuild(f"Tar bort {doc.path} …")
            st.success(f"{doc.path} är borttaget ur sökindexet"
                       + (" och filen är raderad." if how == "deleted" else " (filen ligger kvar i källmappen)."))
            st.rerun()
for problem in pipeline.index.problems:
    st.caption(f"{escape_markdown(problem.path)}: {escape_markdown(problem.message)}")
