"""Cached reads (short TTLs, one cache partition per user) and the mutations that clear them.

Each cached function takes the user's ``who`` digest (part of the cache key) and the client
as ``_client`` (not hashed). Pages call these, never the client, for reads.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import streamlit as st

from services.dashboard.client import ApiClient, ApiError


@st.cache_data(ttl=15, show_spinner=False)
def cameras(who: str, _client: ApiClient) -> list[dict]:
    return _client.cameras()


@st.cache_data(ttl=10, show_spinner=False)
def events_page(who: str, _client: ApiClient, filters: tuple, limit: int, cursor: str | None) -> dict:
    return _client.events(_unfreeze(filters), limit=limit, cursor=cursor)


@st.cache_data(ttl=60, show_spinner=False)  # presigned URLs live 300 s
def event(who: str, _client: ApiClient, event_id: str) -> dict:
    return _client.event(event_id)


@st.cache_data(ttl=60, show_spinner=False)
def thumbnails(who: str, _client: ApiClient, event_ids: tuple[str, ...]) -> dict[str, str | None]:
    """Thumbnail URLs of the events on one table page (the list endpoint has keys, not URLs:
    one detail request per visible row, in parallel; only the visible page)."""

    def one(eid: str) -> tuple[str, str | None]:
        try:
            return eid, _client.event(eid).get("thumbnail_url")
        except ApiError:
            return eid, None

    with ThreadPoolExecutor(max_workers=8) as pool:
        return dict(pool.map(one, event_ids))


@st.cache_data(ttl=10, show_spinner=False)
def camera_scores(who: str, _client: ApiClient, camera_id: str, since: datetime | None, until: datetime | None,
                  limit: int = 500) -> dict:
    return _client.camera_scores(camera_id, since=since, until=until, limit=limit)


@st.cache_data(ttl=30, show_spinner=False)
def contexts(who: str, _client: ApiClient) -> list[dict]:
    return _client.contexts()


@st.cache_data(ttl=15, show_spinner=False)
def prompt_sets(who: str, _client: ApiClient, context: str) -> list[dict]:
    return _client.prompt_sets(context)


@st.cache_data(ttl=30, show_spinner=False)
def models(who: str, _client: ApiClient) -> list[dict]:
    return _client.models()


@st.cache_data(ttl=10, show_spinner=False)
def training_runs(who: str, _client: ApiClient) -> list[dict]:
    return _client.training_runs()


def _unfreeze(filters: tuple) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in filters:
        out.setdefault(k, []).append(v)
    return {k: (v if len(v) > 1 or k in {"camera", "severity"} else v[0]) for k, v in out.items()}


def freeze(filters: Mapping[str, Any]) -> tuple:
    from services.dashboard.client import filters_key

    return filters_key(filters)


@st.cache_resource(show_spinner=False)
def vigil_settings():
    """The Vigil settings this dashboard process sees (``VIGIL_CONFIG``/``VIGIL_*``), or None."""
    try:
        from vigil.config import load_settings

        return load_settings()
    except Exception:  # noqa: BLE001 - the dashboard works without them (no threshold fallback)
        return None


def threshold_for(camera_id: str, reported: float | None) -> tuple[float | None, str]:
    """The event threshold of a camera: as the API reports it, else from this process's config."""
    if reported is not None:
        return float(reported), "from the API"
    s = vigil_settings()
    if s is None:
        return None, "unknown"
    return float(s.params_for(camera_id).threshold), "from the dashboard's configuration"
