"""Confusion gallery (lands with the precomputed store)."""

import streamlit as st

st.title("Confusion gallery")
st.info("The confusion gallery needs a precomputed store; it is not available in this build yet.")
