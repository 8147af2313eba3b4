"""Obesvarade frågor: what patients asked that the sources could not answer (or that got 👎), redacted, counted and
grouped by the nearest topic in the sources, with the closest passages: the content-gap report."""

from collections import defaultdict

import streamlit as st

from rag.feedback import FeedbackStore
from rag.present import escape_markdown
from rag.questionlog import QuestionLog
from ui.resources import load_pipeline
from ui.staff import require_staff

require_staff()
st.subheader("Obesvarade frågor", anchor=False)
log = QuestionLog.from_env()
if not log.enabled:
    st.info("Frågeloggen är avstängd. Den som driftar tjänsten slår på den med RAG_QUESTION_LOG_DIR (se README och "
            "docs/data-protection.md); återkoppling med 👎 visas ändå nedan.")
items = [{"question": r.get("question", ""), "why": "avböjd", "nearest": r.get("nearest") or []}
         for r in log.read() if r.get("abstained") and r.get("reason") == "not_covered"]
items += [{"question": r.get("question", ""), "why": "👎", "nearest": []}
          for r in FeedbackStore.from_env().read() if r.get("rating") == "not_helpful"]
if not items:
    st.success("Inga obesvarade frågor ännu.")
    st.stop()
pipeline = load_pipeline()
passages = {p.passage_id: p for p in pipeline.index.passages}
groups: dict[str, list[dict]] = defaultdict(list)
for item in items:
    top = item["nearest"][0] if item["nearest"] else {}
    topic = top.get("heading") or top.get("title") or "Utan närmaste ämne"
    groups[topic].append(item)
st.caption(f"{len(items)} frågor i {len(groups)} ämnen, flest först")
for topic, group in sorted(groups.items(), key=lambda kv: -len(kv[1])):
    with st.expander(f"{escape_markdown(topic)} – {len(group)} frågor"):
        counts: dict[str, int] = defaultdict(int)
        for item in group:
            counts[item["question"].strip()] += 1
        st.markdown("\n".join(f"- {escape_markdown(q)} ({n} st)" for q, n in sorted(counts.items(),
                                                                                     key=lambda kv: -kv[1])))
        nearest = {n["passage_id"] for item in group for n in item["nearest"]}
        shown = [passages[pid] for pid in nearest if pid in passages][:3]
        if shown:
            st.caption("Närmaste textavsnitt i källorna:")
            for p in shown:
                st.markdown(f"> {escape_markdown(p.text[:300])}  \n— *{escape_markdown(p.title)}*")
