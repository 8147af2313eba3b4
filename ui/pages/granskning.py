"""Granskning: the chat with every retrieval detail shown (scores, passages, documents, triage), for staff."""

import streamlit as st

from ui.audit import render_manifest
from ui.chat import chat_page
from ui.resources import load_pipeline
from ui.staff import require_staff

require_staff()
with st.sidebar:
    render_manifest(load_pipeline().index.manifest)
chat_page(audit=True)
