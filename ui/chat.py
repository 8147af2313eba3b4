"""The patient chat: questions, cited answers with source cards, notices, refusals with suggestions, feedback."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace

import streamlit as st

from rag.present import (
    answer_markdown,
    citation_label,
    escape_markdown,
    highlight_html,
    is_outdated,
    markdown_link,
    max_source_age_from_env,
    passage_block,
    quote_span,
    source_meta,
)
from rag.types import Answer, Citation, Document, Passage

from rag.feedback import MAX_COMMENT_CHARS, FeedbackStore, build_record
from rag.pipeline import MAX_QUESTION_CHARS, Pipeline
from rag.questionlog import QuestionLog
from ui.audit import render_audit
from ui.resources import find_passage, load_pipeline

log = logging.getLogger(__name__)

ABOUT = (
    "Assistenten svarar bara med meningar ur de listade källorna och ger inga personliga medicinska råd. "
    "**Vid akuta besvär: ring 112.** Sjukvårdsrådgivning dygnet runt: ring 1177."
)


def welcome_text(profile) -> str:
    """The empty page's greeting, from the corpus profile (what the sources cover)."""
    return (f"Hej! Här kan du ställa frågor om {profile.covers}. Jag svarar med meningar ur källorna och visar "
            "varifrån varje mening kommer, så att du kan läsa mer.")


THANKS = "Tack! Ditt omdöme är sparat och hjälper oss att förbättra tjänsten."


# ------------------------------------------------------------------------------------------------------- state


def init_state() -> None:
    st.session_state.setdefault("session_id", uuid.uuid4().hex[:12])
    st.session_state.setdefault("turns", [])  # [{"id": int, "question": str, "answer": Answer}]
    st.session_state.setdefault("next_turn_id", 1)
    st.session_state.setdefault("feedback_sent", {})  # turn id -> "helpful" | "not_helpful"
    st.session_state.setdefault("feedback_error", {})  # turn id -> message


def choose_example(question: str) -> None:
    st.session_state["pending_question"] = question


def ask_standalone(turn_id: int) -> None:
    """Undo a follow-up reading in one click: the turn is answered again as a question of its own."""
    st.session_state["standalone_turn"] = turn_id


def clear_conversation() -> None:
    st.session_state["turns"] = []
    st.session_state["feedback_sent"] = {}
    st.session_state["feedback_error"] = {}


def save_feedback(turn_id: int) -> None:
    """Form callback: store the rating and the (redacted) comment for one answer."""
    rating = st.session_state.get(f"rating-{turn_id}")
    errors = st.session_state["feedback_error"]
    if rating is None:
        errors[turn_id] = "Välj tumme upp eller tumme ner innan du skickar."
        return
    turn = next((t for t in st.session_state["turns"] if t["id"] == turn_id), None)
    if turn is None:
        return
    record = build_record(
        turn["answer"], helpful=rating == 1, comment=st.session_state.get(f"comment-{turn_id}", ""),
        manifest=load_pipeline().index.manifest, answer_id=f"{st.session_state.get('session_id', '')}-{turn_id}",
    )
    try:
        FeedbackStore.from_env().append(record)
    except OSError:
        log.exception("could not save feedback")
        errors[turn_id] = "Omdömet kunde tyvärr inte sparas just nu. Försök gärna igen senare."
        return
    errors.pop(turn_id, None)
    st.session_state["feedback_sent"][turn_id] = record["rating"]


# ---------------------------------------------------------------------------------------------------- sidebar


def source_line(doc: Document, old: bool) -> str:
    """One Markdown list item: linked title, then publisher and date (flagged when old)."""
    meta = escape_markdown(source_meta(doc.publisher, doc.date, nobreak=True))
    flag = " :material/warning: *äldre källa*" if old else ""
    return f"- {markdown_link(doc.title or doc.doc_id, doc.url)}  \n  {meta}{flag}"


def render_sources(documents: dict[str, Document], max_age: int) -> None:
    docs = sorted(documents.values(), key=lambda d: (d.date, d.title), reverse=True)
    old = [d for d in docs if is_outdated(d.date, max_age)]
    old_ids = {d.doc_id for d in old}
    st.markdown(f"**Källor:** {len(docs)} dokument")
    if old:
        st.warning(f"{len(old)} av {len(docs)} källor är äldre än {max_age} år. "
                   "Uppgifterna i dem kan ha ändrats sedan dess.")
        with st.expander(f"Äldre källor ({len(old)})"):
            st.markdown("\n".join(source_line(d, True) for d in old))
    with st.expander(f"Alla källor ({len(docs)})"):
        st.markdown("\n".join(source_line(d, d.doc_id in old_ids) for d in docs))


# ------------------------------------------------------------------------------------------------------- chat


def render_welcome(profile) -> None:
    with st.chat_message("assistant"):
        st.markdown(escape_markdown(welcome_text(profile)))
        if profile.examples:
            st.markdown("**Prova en fråga:**")
        for i, example in enumerate(profile.examples):
            st.button(example, key=f"example-{i}", on_click=choose_example, args=(example,), width="stretch")


def render_answer(answer: Answer, turn_id: int, pipeline: Pipeline, audit: bool, max_age: int):
    """Notice first, then the follow-up note, the answer (or the abstention), its source cards and feedback."""
    if answer.notice:
        st.error(f"**Viktigt:** {escape_markdown(answer.notice)}", icon=":material/emergency:")
    followup_of = answer.details.get("followup_of")
    if followup_of:
        st.caption(f"Tolkad som följdfråga till: {escape_markdown(followup_of)}")
        st.button("Fråga utan sammanhang", key=f"standalone-{turn_id}", on_click=ask_standalone, args=(turn_id,),
                  help="Svara på frågan som den står, utan att koppla den till den förra frågan.")
    if answer.abstained:
        if answer.text:  # an urgent or suicide notice comes instead of the refusal: no refusal box beside it
            st.info(escape_markdown(answer.text), icon=":material/info:")
    else:
        st.markdown(answer_markdown(answer.text))
    slot = st.container()
    render_suggestions(slot, answer, turn_id)
    if answer.citations:
        st.caption("Källor – öppna för att se meningen i sitt sammanhang:")
        for citation in answer.citations:
            render_citation(citation, find_passage(pipeline, answer, citation.passage_id), max_age)
    render_feedback(turn_id)
    if audit:
        render_audit(answer, pipeline)
    return slot


def render_suggestions(slot, answer: Answer, turn_id: int) -> None:
    """Questions the sources answer, offered with a refusal (one click asks them)."""
    if not answer.suggestions:
        return
    with slot:
        st.markdown("**Det här kan jag svara på:**")
        for i, suggestion in enumerate(answer.suggestions):
            st.button(suggestion, key=f"suggestion-{turn_id}-{i}", on_click=choose_example, args=(suggestion,),
                      width="stretch")


def render_citation(citation: Citation, passage: Passage | None, max_age: int) -> None:
    """A source card: title, publisher, date, link, and the passage with the quoted sentence highlighted."""
    with st.expander(escape_markdown(citation_label(citation, nobreak=True))):
        meta = escape_markdown(source_meta(citation.publisher, citation.date, nobreak=True))
        st.markdown(f"{meta}  \n{markdown_link('Läs hela texten hos källan ↗', citation.url)}")
        if is_outdated(citation.date, max_age):
            st.warning(f"Källan är från {escape_markdown(citation.date)}, alltså äldre än {max_age} år. "
                       "Kontrollera gärna att uppgiften fortfarande gäller.")
        span = quote_span(passage, citation) if passage else None
        if passage is not None and span is not None:
            body = highlight_html(passage.text, [(span[0], span[1], "quote")])
        else:
            body = highlight_html(citation.quote, [(0, len(citation.quote), "quote")])
        st.markdown(passage_block(body), unsafe_allow_html=True)


def render_feedback(turn_id: int) -> None:
    sent = st.session_state["feedback_sent"].get(turn_id)
    if sent:
        st.caption(THANKS)
        return
    with st.form(key=f"feedback-{turn_id}", border=False):
        st.caption("Var svaret till hjälp? Skriv gärna en kommentar, men inga personuppgifter.")
        st.feedback("thumbs", key=f"rating-{turn_id}")
        st.text_input("Kommentar (valfri)", key=f"comment-{turn_id}", max_chars=MAX_COMMENT_CHARS,
                      placeholder="Valfri kommentar", label_visibility="collapsed")
        st.form_submit_button("Skicka omdöme", key=f"send-{turn_id}", on_click=save_feedback, args=(turn_id,))
    error = st.session_state["feedback_error"].get(turn_id)
    if error:
        st.warning(error)


def ask(pipeline: Pipeline, question: str, audit: bool, max_age: int) -> None:
    """Show the new question, answer it in the context of the earlier ones, and keep the turn."""
    turns = st.session_state["turns"]
    turn_id = st.session_state["next_turn_id"]
    st.session_state["next_turn_id"] = turn_id + 1
    with st.chat_message("user"):
        st.markdown(escape_markdown(question))
    with st.chat_message("assistant"):
        try:
            with st.spinner("Söker i källorna …"):
                # A chain of follow-ups keeps its topic: each earlier turn counts as the question it was read as.
                history = [t["answer"].details.get("resolved_question") or t["question"] for t in turns]
                answer = pipeline.ask(question, history=history, suggest=False)  # the reply first, suggestions next
        except Exception:  # the user gets a plain message; staff find the trace in the server log
            log.exception("answering failed")
            st.error("Något gick fel när frågan skulle besvaras. Försök igen om en stund.")
            return
        turn = {"id": turn_id, "question": question, "answer": answer}
        turns.append(turn)
        try:
            QuestionLog.from_env().append(answer)  # off unless configured; redacted before it reaches disk
        except OSError:
            log.exception("could not log the question")
        slot = render_answer(answer, turn_id, pipeline, audit, max_age)
        if answer.reason == "not_covered":
            try:
                turn["answer"] = answer = replace(answer, suggestions=pipeline.suggest(answer))
            except Exception:  # suggestions are a help, never the reason a reply fails
                log.exception("suggestions failed")
            render_suggestions(slot, answer, turn_id)




def render_sidebar(pipeline: Pipeline) -> int:
    """About text, a fresh start, the source list with age warnings; returns the max source age in years."""
    with st.sidebar:
        st.markdown("### Om assistenten")
        st.markdown(ABOUT)
        st.button("Börja om samtalet", key="clear_conversation", on_click=clear_conversation)
        st.divider()
        max_age = st.number_input(
            "Varna för källor äldre än (år)", min_value=1, max_value=100, step=1,
            value=max(1, round(max_source_age_from_env())), key="max_source_age",
        )
        render_sources(pipeline.index.documents, int(max_age))
    return int(max_age)


def chat_page(audit: bool = False) -> None:
    """The chat: the patient page (audit=False) and, with every retrieval detail shown, the staff review page."""
    init_state()
    pipeline = load_pipeline()
    max_age = render_sidebar(pipeline)
    profile = pipeline.profile
    standalone = st.session_state.pop("standalone_turn", None)
    if standalone is not None:
        for turn in st.session_state["turns"]:
            if turn["id"] == standalone:
                turn["answer"] = pipeline.ask(turn["question"])  # no history: the question as it stands
    st.subheader(profile.name if not audit else f"{profile.name} – granskning", anchor=False)
    st.caption(ABOUT)
    question = st.chat_input("Skriv din fråga här …", max_chars=MAX_QUESTION_CHARS)
    question = question or st.session_state.pop("pending_question", None)
    if not st.session_state["turns"] and not question:
        render_welcome(profile)
    for turn in st.session_state["turns"]:
        with st.chat_message("user"):
            st.markdown(escape_markdown(turn["question"]))
        with st.chat_message("assistant"):
            render_answer(turn["answer"], turn["id"], pipeline, audit, max_age)
    if question:
        ask(pipeline, question, audit, max_age)
