"""Retrieval-augmented, extractive question answering over Swedish cancer-care sources."""

from rag.pipeline import Pipeline, PipelineConfig
from rag.types import Answer, Citation, Document, Hit, Passage

__all__ = ["Answer", "Citation", "Document", "Hit", "Passage", "Pipeline", "PipelineConfig"]
