"""Streamlit entry point: the patient chat for everyone; the staff workspace only after a staff login (/personal)."""

from __future__ import annotations

import logging
from pathlib import Path

import streamlit as st

from rag.ingest.profile import CorpusProfile
from rag.pipeline import PipelineConfig
from ui.chat import chat_page
from ui.resources import ensure_index, load_pipeline
from ui.staff import current_staff

log = logging.getLogger(__name__)
ROOT = Path(__file__).resolve().parent
ICON = ROOT / "assets" / "icon.png"
STAFF_PAGES = (("ui/pages/granskning.py", "Granskning"), ("ui/pages/aterkoppling.py", "Återkoppling"),
               ("ui/pages/obesvarade.py", "Obesvarade frågor"), ("ui/pages/kallor.py", "Källor"))


def main() -> None:
    profile = CorpusProfile.load(PipelineConfig().corpus_dir)
    st.set_page_config(page_title=profile.name, page_icon=str(ICON), layout="centered")  # a local icon: no request elsewhere
    try:
        ensure_index()
        load_pipeline()
    except Exception:  # not cached: the next page load tries again
        log.exception("the pipeline could not be loaded")
        st.error("Tjänsten kan inte svara just nu. Försök igen om en stund. Vid akuta besvär: ring 112. "
                 "Sjukvårdsrådgivning dygnet runt: ring 1177.")
        st.stop()
    staff = current_staff()
    pages = [st.Page(chat_page, title="Chatt", url_path="chatt", default=True),
             st.Page(str(ROOT / "ui" / "pages" / "personal.py"), title="Personal", url_path="personal")]
    if staff is not None:  # patients never see, and cannot open, the staff pages
        pages += [st.Page(str(ROOT / path), title=title) for path, title in STAFF_PAGES]
    st.navigation(pages, position="sidebar" if staff is not None else "hidden").run()


main()
