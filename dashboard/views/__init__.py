"""The dashboard's pages: scripts that `st.navigation` in dashboard/app.py runs (not imported as modules)."""
