"""Saliency quality (lands with the quality metrics)."""

import streamlit as st

st.title("Saliency quality")
st.info("Saliency-quality scores are not available in this build yet.")
