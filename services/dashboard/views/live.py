"""Live: every camera with its status, a score sparkline and its open events; refreshes itself."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from services.dashboard import charts, data, nav, session
from services.dashboard.client import ApiError, describe
from services.dashboard.views.cameras import source_text
from vigil.clock import utcnow

REFRESH_S = 10
WINDOW = timedelta(minutes=10)  # sparkline span (segment scores)
EVENT_WINDOW = timedelta(hours=24)  # fallback sparkline span (event peaks)


def _sparkline_data(client, camera_id: str, now: datetime) -> tuple[list, list, float | None, str]:  # noqa: ANN001
    """Segment scores of the last minutes; without that endpoint, event peaks of the last day."""
    who = client.identity
    since = (now - WINDOW).replace(second=0, microsecond=0)  # a stable cache key within a minute
    body = data.camera_scores(who, client, camera_id, since, None, 200)
    reported = body.get("threshold")
    items = sorted(body["items"], key=lambda s: s["t_start"])
    if items:
        thr, _ = data.threshold_for(camera_id, reported)
        return [pd.Timestamp(s["t_start"]) for s in items], [s["score"] for s in items], thr, "segment scores, 10 min"
    # not scored lately: the camera's event peaks of the last day
    since = (now - EVENT_WINDOW).replace(minute=0, second=0, microsecond=0)
    page = data.events_page(who, client, data.freeze({"camera": [camera_id], "since": since, "order": "asc"}), 200, None)
    thr, _ = data.threshold_for(camera_id, reported)
    return ([pd.Timestamp(e["t_start"]) for e in page["items"]], [e["peak_score"] for e in page["items"]], thr,
            "event peaks, 24 h")


def _health(client, camera_id: str) -> dict:  # noqa: ANN001
    try:
        return client.camera_health(camera_id)
    except ApiError:
        return {"state": "health unavailable"}


def camera_card(client, cam: dict, open_events: list[dict], now: datetime) -> None:  # noqa: ANN001
    with st.container(border=True):
        health = _health(client, cam["id"]) if cam["enabled"] else None
        state = "disabled" if not cam["enabled"] else str((health or {}).get("state") or "unknown")
        state = "no segments yet" if state == "unknown" else state
        color = {"disabled": "gray", "running": "green", "enabled": "green", "stalled": "orange", "failed": "red",
                 "no segments yet": "gray"}.get(state, "orange")
        src = source_text(health.get("source")) if health and cam["enabled"] else None
        st.markdown(f"**{cam.get('name') or cam['id']}** :{color}[● {state}]  \n`{cam['id']}` · {cam['context']}"
                    + (f"  \ncamera: {src}" if src else ""))
        if health and (health.get("source") or {}).get("last_error") and not health["source"].get("connected"):
            st.caption(f"last error: {health['source']['last_error']}")
        try:
            t, v, thr, what = _sparkline_data(client, cam["id"], now)
        except ApiError as exc:
            st.caption(describe(exc))
            t, v, thr, what = [], [], None, ""
        if v:
            st.plotly_chart(charts.sparkline(t, v, threshold=thr), key=f"spark-{cam['id']}",
                            config={"displayModeBar": False, "staticPlot": True})
            st.caption(f"{what}: last {v[-1]:.2f}, max {max(v):.2f}"
                       + (f" · threshold {thr:.2f} (dotted)" if thr is not None else ""))
        else:
            st.caption(f"no scores yet ({what})" if what else "no scores")
        if open_events:
            st.markdown(f"**{len(open_events)} open event{'s' if len(open_events) > 1 else ''}**")
            for e in open_events[:3]:
                label = f"{pd.Timestamp(e['t_start']):%H:%M:%S} · {e['peak_score']:.2f} · {e.get('severity')}"
                if st.button(label, key=f"open-{e['id']}", icon=":material/warning:"):
                    nav.open_event(e["id"])
        else:
            st.caption("no open events")


def grid(client) -> None:  # noqa: ANN001
    who = client.identity
    now = utcnow()
    try:
        cams = data.cameras(who, client)
        open_page = data.events_page(who, client, data.freeze({"status": "open"}), 500, None)
    except ApiError as exc:
        st.error(describe(exc))
        return
    by_cam: dict[str, list[dict]] = {}
    for e in open_page["items"]:
        by_cam.setdefault(e["camera_id"], []).append(e)
    n_open = len(open_page["items"])
    m = st.columns(3)
    m[0].metric("Cameras", len(cams))
    m[1].metric("Enabled", sum(1 for c in cams if c["enabled"]))
    m[2].metric("Open events", f"{n_open}+" if open_page.get("next_cursor") else n_open)
    if not cams:
        st.info("No cameras yet: add one on the Cameras page.")
        return
    cols = st.columns(3)
    for i, cam in enumerate(cams):
        with cols[i % 3]:
            camera_card(client, cam, by_cam.get(cam["id"], []), now)
    st.caption(f"updated {now:%H:%M:%S} UTC")


def stack_banner(client) -> None:  # noqa: ANN001
    """On one machine: which embedded part is down or failed, since when, how often restarted."""
    try:
        info = client.stack()
    except ApiError:
        return  # an older API, or none: the grid says what matters
    bad = {n: p for n, p in (info.get("parts") or {}).items() if p["state"] != "up"}
    restarted = {n: p["restarts"] for n, p in (info.get("parts") or {}).items() if p["restarts"]}
    for name, p in bad.items():
        since = pd.Timestamp(p["since"], unit="s", tz="UTC")
        text = (f"**{name}** is {p['state']} since {since:%H:%M:%S} UTC (restarted {p['restarts']} times)"
                + (f": {p['last_error']}" if p.get("last_error") else ""))
        (st.error if p["state"] == "failed" else st.warning)(text)
    if restarted and not bad:
        st.caption("Stack restarts so far: " + ", ".join(f"{n} ×{k}" for n, k in restarted.items()))


def render() -> None:
    client = session.require_client()
    st.title("Live")
    auto = st.toggle(f"Refresh every {REFRESH_S} s", value=True, key="live-auto")

    @st.fragment(run_every=REFRESH_S if auto else None)
    def _live() -> None:
        stack_banner(client)
        grid(client)

    _live()
