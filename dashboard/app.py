"""The dashboard's entry point: `nas dashboard`, or `streamlit run dashboard/app.py`.

The storage and tracking URLs come from NAS_STORAGE and NAS_TRACKING (else the embedded default under
.nas/); service mode is on when NAS_DATABASE_URL (or the config file) names a queue database.
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

try:
    from dashboard import auth, common
except ModuleNotFoundError:  # a checkout that is not pip-installed: the repository root is two folders up
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from dashboard import auth, common

st.set_page_config(page_title="hybrid-nas", page_icon=":material/hub:", layout="wide")

pages = [  # paths relative to this file
    st.Page("views/studies.py", title="Studies", icon=":material/table_rows:", default=True),
    st.Page("views/study.py", title="Study", icon=":material/scatter_plot:", url_path="study"),
    st.Page("views/ablation.py", title="Ablation", icon=":material/science:", url_path="ablation"),
    st.Page("views/submit.py", title="Submit", icon=":material/upload_file:", url_path="submit"),
    st.Page("views/export.py", title="Export", icon=":material/download:", url_path="export"),
]
page = st.navigation(pages)

m = common.mode()
with st.sidebar:
    st.caption("**hybrid-nas**")
    if m.service:
        st.caption(f":material/cloud: service mode · queue `{common.shown(m.url)}`")
    else:
        st.caption(":material/computer: embedded mode (studies run on this machine)")
    if m.problem:
        st.caption(f":material/warning: {m.problem}")
    st.caption(f"Optuna storage `{common.shown(common.storage_url())}`")
    st.caption(f"MLflow tracking `{common.shown(common.tracking_url())}`")
    auth.sidebar(m.service)
    st.toggle(
        "Refresh while studies run",
        value=True,
        key="auto_refresh",
        help="Pages re-read the studies every few seconds while a study runs.",
    )

page.run()
