"""The citation-audit view for staff: every retrieved passage with scores, the used sentences, the documents."""

from __future__ import annotations

import logging
from typing import Any

import streamlit as st

from rag.pipeline import Pipeline
from rag.present import code_text, escape_markdown, highlight_html, passage_block, used_citations
from rag.types import Answer

log = logging.getLogger(__name__)


def render_audit(answer: Answer, pipeline: Pipeline) -> None:
    """Staff view: every retrieved passage with score and used sentences, the source documents, the details."""
    details = answer.details
    with st.container(border=True):
        st.markdown("**Granskning**")
        p = details.get("p_answerable")
        status = "avstod" if answer.abstained else "svarade"
        lines = [
            f"Sökfråga: {escape_markdown(answer.retrieval_query or answer.question)}",
            f"Resultat: {status}" + (f" (orsak: `{code_text(answer.reason)}`)" if answer.reason else ""),
            f"Sannolikhet att frågan kan besvaras: `{p:.3f}`" if isinstance(p, (int, float)) else "",
            "Tider (ms): " + " · ".join(f"{k} {v:.1f}" for k, v in answer.timings_ms.items()),
            "Rättningar: " + pairs_text(details.get("corrections")),
            "Utvidgningar: " + pairs_text(details.get("expansions")),
            "Säkerhet: " + safety_text(details.get("safety") or {}),
        ]
        st.markdown("  \n".join(line for line in lines if line))
        evidence = details.get("evidence") or {}
        if evidence:
            st.markdown("| signal | värde |\n|---|---|\n" + "\n".join(
                f"| {escape_markdown(str(k))} | `{format_value(v)}` |" for k, v in evidence.items()))
        st.markdown(f"**Hämtade passager ({len(answer.hits)})**")
        for hit in answer.hits:
            used = used_citations(hit.passage.passage_id, answer.citations)
            doc = pipeline.index.documents.get(hit.passage.doc_id)
            title = doc.title if doc else hit.passage.title
            used_text = ", ".join(f"\\[{c.n}\\] {escape_markdown(shorten(c.quote))}" for c in used) or "inga"
            st.markdown(
                f"**#{hit.rank}** · poäng `{hit.score:.4f}` · {escape_markdown(hit.retriever)}  \n"
                f"passage `{code_text(hit.passage.passage_id)}` · dokument `{code_text(hit.passage.doc_id)}`  \n"
                f"{escape_markdown(title)}  \n"
                f"Använda meningar: {used_text}"
            )
            if doc is not None:
                with st.expander(f"Hela dokumentet, träff #{hit.rank}: {escape_markdown(shorten(title, 60))}"):
                    spans = [(hit.passage.start, hit.passage.end, "passage")]
                    spans += [(c.start, c.end, "quote") for c in used]
                    st.caption("Passagen är ljust markerad, citerade meningar starkt markerade.")
                    st.markdown(passage_block(highlight_html(doc.text, spans), max_height="28rem"),
                                unsafe_allow_html=True)


def pairs_text(pairs: Any) -> str:
    items = [f"{escape_markdown(str(a))} → {escape_markdown(str(b))}" for a, b in (pairs or ())]
    return ", ".join(items) or "inga"


def safety_text(safety: dict[str, Any]) -> str:
    """The triage for staff: level, concepts, which line raised it, what context set aside, where the notice comes
    from."""
    level = safety.get("level") or "none"
    parts = [f"nivå `{code_text(level)}`"]
    if safety.get("advice") and level != "advice":
        parts.append("även personligt råd")
    concepts = ", ".join(escape_markdown(str(c)) for c in safety.get("concepts") or ())
    if concepts:
        parts.append(f"begrepp: {concepts}")
    if safety.get("raised_by"):
        parts.append("upptäckt av: " + ", ".join(escape_markdown(str(x)) for x in safety["raised_by"]))
    aside = ", ".join(f"{escape_markdown(str(c))} ({escape_markdown(str(r))})" for c, r in safety.get("set_aside") or ())
    if aside:
        parts.append(f"bortsett från: {aside}")
    sources = "; ".join(escape_markdown(f"{s.get('publisher', '')}: {s.get('title', '')}")
                        for s in safety.get("sources") or ())
    if sources:
        parts.append(f"källa för meddelandet: {sources}")
    return " · ".join(parts)


def format_value(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else code_text(str(value))


def shorten(text: str, limit: int = 90) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"




def render_manifest(manifest: dict[str, Any]) -> None:
    rows = [("Modell", manifest.get("model", "")), ("Byggt", manifest.get("built_at", "")),
            ("Korpus-hash", manifest.get("corpus_hash", "")), ("Passager", manifest.get("passage_count", "")),
            ("Dokument", manifest.get("document_count", ""))]
    st.markdown("**Index**  \n" + "  \n".join(f"{label}: `{code_text(str(value))}`" for label, value in rows))
