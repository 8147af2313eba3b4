"""Återkoppling: patients' ratings and comments, filtered by rating, date and text, with a CSV export."""

import csv
import io
from datetime import date, timedelta

import streamlit as st

from rag.feedback import FeedbackStore
from ui.staff import require_staff

require_staff()
st.subheader("Återkoppling", anchor=False)
records = FeedbackStore.from_env().read()
if not records:
    st.info("Ingen återkoppling ännu.")
    st.stop()
col1, col2 = st.columns(2)
rating = col1.selectbox("Omdöme", ["Alla", "👍 Till hjälp", "👎 Inte till hjälp"], key="fb_rating")
since = col2.date_input("Från och med", value=date.today() - timedelta(days=90), key="fb_since")
text = st.text_input("Sök i fråga och kommentar", key="fb_text").strip().lower()


def keep(r: dict) -> bool:
    if rating.startswith("👍") and r.get("rating") != "helpful":
        return False
    if rating.startswith("👎") and r.get("rating") != "not_helpful":
        return False
    if str(r.get("timestamp", ""))[:10] < since.isoformat():
        return False
    return not text or text in f"{r.get('question', '')} {r.get('comment', '')}".lower()


rows = [r for r in records if keep(r)]
columns = ["timestamp", "rating", "question", "comment", "answer", "reason", "model"]
st.caption(f"{len(rows)} av {len(records)} omdömen")
st.dataframe([{c: r.get(c, "") for c in columns} for r in rows], hide_index=True, width="stretch")
out = io.StringIO()
writer = csv.DictWriter(out, fieldnames=columns, extrasaction="ignore")
writer.writeheader()
writer.writerows(rows)
st.download_button("Exportera som CSV", out.getvalue().encode("utf-8-sig"), file_name="aterkoppling.csv",
                   mime="text/csv", key="fb_csv")
