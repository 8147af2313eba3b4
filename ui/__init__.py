"""Streamlit user interface: the patient chat and the staff workspace, run by the app.py router."""
