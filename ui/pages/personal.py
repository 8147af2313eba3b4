"""Staff login (the only staff page a visitor can reach without logging in, at /personal)."""

import streamlit as st

from ui.staff import current_staff, login_form, logout

user = current_staff()
if user is None:
    login_form()
else:
    st.subheader("Personal", anchor=False)
    st.markdown(f"Inloggad som **{user.name}**. Välj en sida i menyn.")
    st.button("Logga ut", key="staff_logout", on_click=logout)
