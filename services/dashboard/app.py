"""Vigil dashboard: ``streamlit run services/dashboard/app.py`` (or ``vigil dashboard``).

Sign-in first (or the preset key of ``VIGIL_DASHBOARD_API_KEY``), then the pages: Live,
Events, Event detail, Prompts, Models, Cameras. All data comes from the API.
"""

from __future__ import annotations

import streamlit as st

from services.dashboard import nav, session

st.set_page_config(page_title="Vigil", page_icon=":material/visibility:", layout="wide")

env = session.dashboard_env()
preset_error = session.ensure_preset_sign_in(env)

if session.current_client() is None:
    if preset_error:
        st.error(f"The preset API key (VIGIL_DASHBOARD_API_KEY) was refused: {preset_error}")
    st.navigation([st.Page(session.sign_in_view, title="Sign in", icon=":material/login:")]).run()
else:
    who = session.me()
    with st.sidebar:
        st.markdown(f"**{who.get('name')}** · {who.get('role')}")
        if not env.preset_key and st.button("Sign out", icon=":material/logout:"):
            session.sign_out()
            st.rerun()
    st.navigation(list(nav.pages().values())).run()
