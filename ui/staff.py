"""Staff sessions in the app: log in against the staff accounts, time out when idle, log out; pages call
`require_staff()` first and show nothing else without a login."""

from __future__ import annotations

import os
import time

import streamlit as st

from rag.staff import LoginThrottle, StaffAccounts, StaffUser

DEFAULT_TIMEOUT_MINUTES = 30


@st.cache_resource(show_spinner=False)
def throttle() -> LoginThrottle:
    """One throttle per server process, so failed attempts count across sessions."""
    return LoginThrottle()


def timeout_seconds() -> float:
    try:
        return 60 * float(os.environ.get("RAG_STAFF_TIMEOUT_MINUTES") or DEFAULT_TIMEOUT_MINUTES)
    except ValueError:
        return 60 * DEFAULT_TIMEOUT_MINUTES


def current_staff() -> StaffUser | None:
    """The logged-in staff member of this session, or None (an idle session has timed out)."""
    session = st.session_state.get("staff")
    if not session:
        return None
    if time.time() - session["seen"] > timeout_seconds():
        st.session_state.pop("staff", None)
        st.session_state["staff_notice"] = "Du har loggats ut efter en tids inaktivitet. Logga in igen."
        return None
    session["seen"] = time.time()
    return StaffUser(session["user"], session["name"])


def require_staff() -> StaffUser:
    """Stop the page unless a staff member is logged in (the page then shows only a refusal)."""
    user = current_staff()
    if user is None:
        st.error("Den här sidan är bara för personal. Logga in på sidan Personal.")
        st.stop()
    return user


def login_form() -> None:
    """The login page: user name and password; a wrong password counts towards a lockout."""
    st.subheader("Personal – logga in", anchor=False)
    notice = st.session_state.pop("staff_notice", None)
    if notice:
        st.info(notice)
    accounts = StaffAccounts()
    if not accounts.configured():
        st.warning("Inga personalkonton är upplagda. Den som driftar tjänsten lägger upp konton med "
                   "`python -m rag staff add NAMN` (se README).")
        return
    with st.form("staff-login"):
        username = st.text_input("Användarnamn", key="staff_username")
        password = st.text_input("Lösenord", type="password", key="staff_password")
        submitted = st.form_submit_button("Logga in")
    if not submitted:
        return
    username = (username or "").strip().lower()
    wait = throttle().locked(username)
    if wait:
        st.error(f"För många felaktiga försök. Försök igen om {int(wait // 60) + 1} minuter.")
        return
    user = accounts.verify(username, password)
    if user is None:
        throttle().failed(username)
        st.error("Fel användarnamn eller lösenord.")
        return
    throttle().succeeded(username)
    now = time.time()
    st.session_state["staff"] = {"user": user.username, "name": user.name, "since": now, "seen": now}
    st.session_state.pop("staff_password", None)
    st.rerun()


def logout() -> None:
    st.session_state.pop("staff", None)
    st.session_state["staff_notice"] = "Du är utloggad."
