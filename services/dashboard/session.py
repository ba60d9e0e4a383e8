"""Who is signed in: the API client of this browser session (one place for authorization).

The API URL comes from ``VIGIL_DASHBOARD_API_URL`` (set by ``vigil dashboard`` / ``vigil demo``).
When ``VIGIL_DASHBOARD_API_KEY`` is set (the single-user demo), that key signs everyone in;
otherwise the sign-in page asks for the user's own API key, which lives only in this
browser session's state and is sent to the API as ``X-API-Key``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import streamlit as st

from services.dashboard.client import ApiClient, ApiError, describe

CLIENT_KEY = "vigil_client"
ME_KEY = "vigil_me"


@dataclass(frozen=True)
class DashboardEnv:
    api_url: str
    preset_key: str | None


def dashboard_env() -> DashboardEnv:
    """The two environment variables, read in this one place."""
    return DashboardEnv(
        api_url=os.environ.get("VIGIL_DASHBOARD_API_URL", "http://127.0.0.1:8000"),
        preset_key=os.environ.get("VIGIL_DASHBOARD_API_KEY") or None,
    )


def current_client() -> ApiClient | None:
    return st.session_state.get(CLIENT_KEY)


def me() -> dict:
    return st.session_state.get(ME_KEY) or {"name": "?", "role": "viewer", "cameras": None}


def has_role(role: str) -> bool:
    order = ["viewer", "analyst", "admin"]
    return order.index(me().get("role", "viewer")) >= order.index(role)


def sign_in(client: ApiClient) -> str | None:
    """Check the key with ``GET /me``; keep the client on success, else return why not."""
    try:
        who = client.me()
    except ApiError as exc:
        return describe(exc)
    st.session_state[CLIENT_KEY] = client
    st.session_state[ME_KEY] = who
    return None


def sign_out() -> None:
    st.session_state.pop(CLIENT_KEY, None)
    st.session_state.pop(ME_KEY, None)
    st.cache_data.clear()


def ensure_preset_sign_in(env: DashboardEnv) -> str | None:
    """Sign in with the preset key when there is one and nobody is signed in yet."""
    if env.preset_key and current_client() is None:
        return sign_in(ApiClient(env.api_url, env.preset_key))
    return None


def sign_in_view() -> None:
    env = dashboard_env()
    _, mid, _ = st.columns([1, 2, 1])
    with mid:
        _sign_in_form(env)


def _sign_in_form(env: DashboardEnv) -> None:
    st.title("Vigil")
    st.caption(f"zero-shot video anomaly detection · API {env.api_url}")
    with st.form("sign-in"):
        key = st.text_input("API key", type="password", help="Your personal key (X-API-Key); ask an admin for one.")
        ok = st.form_submit_button("Sign in", type="primary")
    if ok:
        if not key.strip():
            st.error("Enter your API key.")
            return
        why = sign_in(ApiClient(env.api_url, key.strip()))
        if why:
            st.error(f"Sign-in failed: {why}")
        else:
            st.rerun()


def require_client() -> ApiClient:
    client = current_client()
    if client is None:
        st.warning("Not signed in.")
        st.stop()
    return client
