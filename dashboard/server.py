"""The dashboard as Streamlit serves it: app.py behind ``st.App``, whose page HTML names the files each page will need.

``closewatch dashboard`` and ``closewatch up`` run ``streamlit run`` on this
file (through dashboard/streamlit_run.py); Streamlit finds the ``app`` below
and serves dashboard/app.py exactly as ``streamlit run dashboard/app.py``
would, with one middleware more: ``PreloadHints`` (dashboard/preload.py),
which lets a browser opening a page for the first time fetch that page's
chart, table and widget code while it starts Streamlit's frontend.
"""

import streamlit as st
from starlette.middleware import Middleware

from closewatch.dashboard.preload import PreloadHints

app = st.App("app.py", middleware=[Middleware(PreloadHints)])
