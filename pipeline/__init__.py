"""Persona Studio's engine: pure Python, never imports streamlit."""
