"""Events: the API's filters, a paginated table (keyset cursors) with thumbnails, CSV export."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

import pandas as pd
import streamlit as st

from services.dashboard import data, nav, session
from services.dashboard.client import ApiError, describe

SEVERITIES = ["low", "medium", "high", "critical"]
PAGE_SIZES = [25, 50, 100]
_F = "ev_filters"
_STACK = "ev_cursor_stack"  # cursors of the pages visited: [None, c1, c2, ...]
_SIZE = "ev_page_size"


def _day(d: Any, end: bool = False) -> datetime | None:
    if not d:
        return None
    return datetime.combine(d, time.max if end else time.min, tzinfo=UTC)


WHOLE_VIEW = "-"  # the API's zone filter for events of a camera's whole view
REVIEW_CHOICES = ["any", "unreviewed", "assigned to me", "acknowledged", "resolved"]


def review_filter(choice: str) -> dict[str, Any]:
    """The API filters a review choice of the form stands for."""
    if choice == "unreviewed":
        return {"review": ["new"]}
    if choice == "assigned to me":
        return {"assignee": session.me().get("name"), "review": ["new", "acknowledged"]}
    if choice in ("acknowledged", "resolved"):
        return {"review": [choice]}
    return {}


def filter_form(camera_ids: list[str], zone_names: list[str] | None = None) -> dict[str, Any] | None:
    """The filter form; returns the new filters when applied, else None."""
    with st.form("event-filters", border=True):
        c1, c0, c2, c3, c4 = st.columns([3, 2, 2, 2, 2])
        cams = c1.multiselect("Cameras", camera_ids, placeholder="all cameras")
        zones = c0.multiselect("Zones", [WHOLE_VIEW, *(zone_names or [])], placeholder="any zone",
                               format_func=lambda z: "whole view (no zone)" if z == WHOLE_VIEW else z)
        sev = c2.multiselect("Severity", SEVERITIES, placeholder="any")
        status = c3.selectbox("Status", ["any", "open", "closed"])
        min_score = c4.slider("Min peak score", 0.0, 1.0, 0.0, 0.05)
        c5, c10, c6, c7, c8, c9 = st.columns([3, 2, 2, 2, 2, 2])
        q = c5.text_input("Description contains", max_chars=200)
        review = c10.selectbox("Review", REVIEW_CHOICES)
        since = c6.date_input("From (UTC)", value=None)
        until = c7.date_input("To (UTC)", value=None)
        sort = c8.selectbox("Sort by", ["t_start", "peak_score", "t_end"],
                            format_func={"t_start": "start time", "peak_score": "peak score", "t_end": "end time"}.get)
        order = c9.selectbox("Order", ["desc", "asc"], format_func={"desc": "newest / highest first",
                                                                     "asc": "oldest / lowest first"}.get)
        applied = st.form_submit_button("Apply filters", type="primary", icon=":material/filter_alt:")
    if not applied:
        return None
    return {
        "camera": cams, "zone": zones, "severity": sev, **review_filter(review), "status": None if status == "any" else status,
        "min_score": min_score or None, "q": q.strip() or None, "since": _day(since),
        "until": _day(until, end=True), "sort": sort, "order": order,
    }


def _table(items: list[dict], thumbs: dict[str, str | None]) -> pd.DataFrame:
    rows = []
    for e in items:
        top = e.get("top_descriptions") or []
        best = next((d for d in top if d.get("abnormal")), top[0] if top else {})
        rows.append({
            "thumbnail": thumbs.get(e["id"]),
            "start": pd.Timestamp(e["t_start"]),
            "camera": e["camera_id"],
            "zone": e.get("zone") or "",
            "peak": e["peak_score"],
            "severity": e.get("severity"),
            "status": e.get("status"),
            "review": e.get("review_status") if e.get("review_status") != "resolved" else
            f"resolved: {(e.get('resolution') or '').replace('_', ' ')}",
            "assignee": e.get("assignee") or "",
            "semantic": e.get("peak_s_sem"),
            "predictive": e.get("peak_s_pred"),
            "top description": f"{best.get('text', '')} ({best.get('prob', 0):.2f})" if best else "",
            "duration s": (pd.Timestamp(e["t_end"]) - pd.Timestamp(e["t_start"])).total_seconds(),
            "id": e["id"],
        })
    return pd.DataFrame(rows)


COLUMNS = {
    "thumbnail": st.column_config.ImageColumn("", width="small"),
    "start": st.column_config.DatetimeColumn("start (UTC)", format="YYYY-MM-DD HH:mm:ss"),
    "peak": st.column_config.ProgressColumn("peak score", min_value=0.0, max_value=1.0, format="%.2f"),
    "semantic": st.column_config.NumberColumn(format="%.2f"),
    "predictive": st.column_config.NumberColumn(format="%.2f"),
    "duration s": st.column_config.NumberColumn(format="%.0f"),
}


def csv_export(client, filters: dict[str, Any], where) -> None:  # noqa: ANN001
    """Two steps, so that no export runs until asked: fetch every matching event as CSV from
    the API, then offer the bytes for download (kept until the filters change)."""
    key = data.freeze(filters)
    ready = st.session_state.get("ev_csv")
    if ready and ready[0] == key:
        n = ready[1].count(b"\n") - 1
        where.download_button("Download CSV", data=ready[1], file_name="vigil-events.csv", mime="text/csv",
                              icon=":material/download:", type="primary",
                              help=f"{n} events matching the filters")
        return
    if where.button("Export CSV", icon=":material/table_view:", help="every event matching the filters"):
        try:
            with st.spinner("Exporting ..."):
                st.session_state["ev_csv"] = (key, client.export_csv(filters))
        except ApiError as exc:
            st.error(f"Export failed: {describe(exc)}")
            return
        st.rerun()


def render() -> None:
    client = session.require_client()
    who = client.identity
    st.title("Events")
    try:
        cams = data.cameras(who, client)
    except ApiError as exc:
        st.error(describe(exc))
        cams = []
    camera_ids = [c["id"] for c in cams]
    zone_names = sorted({z["name"] for c in cams for z in c.get("zones") or []})

    new = filter_form(camera_ids, zone_names)
    if new is not None:
        st.session_state[_F] = new
        st.session_state[_STACK] = [None]
    filters: dict[str, Any] = st.session_state.setdefault(_F, {"sort": "t_start", "order": "desc"})
    stack: list[str | None] = st.session_state.setdefault(_STACK, [None])

    top = st.columns([2, 2, 2, 6])
    size = top[0].selectbox("Rows per page", PAGE_SIZES, key=_SIZE, on_change=lambda: st.session_state.update({_STACK: [None]}))
    show_thumbs = top[1].toggle("Thumbnails", value=True)
    try:
        page = data.events_page(who, client, data.freeze(filters), int(size), stack[-1])
    except ApiError as exc:
        st.error(f"Could not load events: {describe(exc)}")
        return
    items, next_cursor = page["items"], page.get("next_cursor")
    csv_export(client, filters, top[2])

    thumbs = data.thumbnails(who, client, tuple(e["id"] for e in items)) if (show_thumbs and items) else {}
    df = _table(items, thumbs)
    if df.empty:
        st.info("No events match these filters.")
    else:
        sel = st.dataframe(df, hide_index=True, column_config=COLUMNS, on_select="rerun", selection_mode="single-row",
                           key=f"ev-table-{len(stack)}", row_height=60 if show_thumbs else None,
                           column_order=[c for c in df.columns if c != "thumbnail" or show_thumbs])
        picked = sel.selection.rows[0] if sel and sel.selection.rows else None

    nav_cols = st.columns([1.4, 1.4, 7.2], vertical_alignment="center")
    if nav_cols[0].button("Previous", disabled=len(stack) <= 1, icon=":material/chevron_left:"):
        stack.pop()
        st.rerun()
    if nav_cols[1].button("Next", disabled=not next_cursor, icon=":material/chevron_right:"):
        stack.append(next_cursor)
        st.rerun()
    nav_cols[2].caption(f"page {len(stack)} · {len(items)} events" + (" · more pages" if next_cursor else " · last page"))

    if not df.empty:
        ids = list(df["id"])
        labels = {r["id"]: f"{r['start']:%Y-%m-%d %H:%M:%S} · {r['camera']} · {r['peak']:.2f} · {r['severity']}"
                  for r in df.to_dict("records")}
        with st.container(border=True):
            c1, c2 = st.columns([5, 1], vertical_alignment="bottom")
            chosen = c1.selectbox("Event", ids, index=picked if picked is not None else 0, format_func=labels.get,
                                  key=f"ev-pick-{hash(data.freeze(filters))}-{len(stack)}-{picked}")
            if c2.button("Open event", type="primary", icon=":material/open_in_new:"):
                nav.open_event(chosen)
