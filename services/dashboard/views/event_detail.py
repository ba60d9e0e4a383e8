"""Event detail: the evidence clip, the score timeline, the top descriptions, feedback."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import streamlit as st

from services.dashboard import charts, data, nav, session
from services.dashboard.client import ApiError, describe

TIMELINE_PAD_S = 60  # context shown around the event on the timeline


def _event_id() -> str | None:
    eid = st.query_params.get("event") or st.session_state.get(nav.EVENT_KEY)
    if eid:
        st.session_state[nav.EVENT_KEY] = eid
        if st.query_params.get("event") != eid:
            st.query_params["event"] = eid
    return eid


def timeline(client, ev: dict) -> None:  # noqa: ANN001
    who = client.identity
    t0, t1 = pd.Timestamp(ev["t_start"]), pd.Timestamp(ev["t_end"])
    since, until = (t0 - timedelta(seconds=TIMELINE_PAD_S)).to_pydatetime(), (t1 + timedelta(seconds=TIMELINE_PAD_S)).to_pydatetime()
    try:
        body = data.camera_scores(who, client, ev["camera_id"], since, until)
    except ApiError as exc:
        body = None
        st.warning(f"Score timeline unavailable: {describe(exc)}")
    threshold, origin = data.threshold_for(ev["camera_id"], body.get("threshold") if body else None)
    if body and body["items"]:
        scores = sorted(body["items"], key=lambda s: s["t_start"])
        for s in scores:
            s["t_start"] = pd.Timestamp(s["t_start"])
            s["t_end"] = pd.Timestamp(s["t_end"]) if s.get("t_end") else None
        st.plotly_chart(charts.score_timeline(scores, threshold=threshold, event_start=t0, event_end=t1),
                        key="timeline", config={"displayModeBar": False})
        st.caption(f"{len(scores)} segments, ±{TIMELINE_PAD_S} s around the event (shaded); "
                   f"threshold {threshold if threshold is not None else 'unknown'} ({origin})")
    else:
        if body is not None:
            st.info("No segment scores stored around this event (retention may have removed them).")
        st.plotly_chart(charts.peak_bars(ev, threshold=threshold), key="peaks", config={"displayModeBar": False})
        if threshold is not None:
            st.caption(f"dashed: threshold {threshold:.2f} ({origin})")


def descriptions(ev: dict) -> None:
    top = ev.get("top_descriptions") or []
    if not top:
        st.caption("no descriptions were recorded for this event")
        return
    df = pd.DataFrame([{"description": d.get("text", ""), "probability": float(d.get("prob", 0.0)),
                        "kind": "abnormal" if d.get("abnormal") else "normal"} for d in top])
    st.dataframe(df, hide_index=True, column_config={
        "probability": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.3f")})


def feedback(client, ev: dict) -> None:  # noqa: ANN001
    st.subheader("Feedback")
    for fb in ev.get("feedback") or []:
        icon = ":green[:material/check_circle:]" if fb["label"] == "true_positive" else ":red[:material/cancel:]"
        label = "true positive" if fb["label"] == "true_positive" else "false positive"
        st.markdown(f"{icon} **{label}** by {fb['author']} · {pd.Timestamp(fb['created_at']):%Y-%m-%d %H:%M} UTC"
                    + (f"  \n> {fb['note']}" if fb.get("note") else ""))
    if not session.has_role("analyst"):
        st.caption("Feedback needs the analyst role.")
        return
    with st.form("feedback", clear_on_submit=True):
        note = st.text_area("Note (optional)", max_chars=2000, height=80)
        c1, c2 = st.columns(2)
        tp = c1.form_submit_button("True positive", icon=":material/check_circle:", width="stretch")
        fp = c2.form_submit_button("False positive", icon=":material/cancel:", width="stretch")
    if tp or fp:
        try:
            client.add_feedback(ev["id"], "true_positive" if tp else "false_positive", note.strip() or None)
        except ApiError as exc:
            st.error(f"Feedback not saved: {describe(exc)}")
            return
        data.event.clear()
        st.session_state["vigil_flash"] = "Feedback saved."
        st.rerun()


def render() -> None:
    client = session.require_client()
    st.title("Event detail")
    if flash := st.session_state.pop("vigil_flash", None):
        st.success(flash)
    eid = _event_id()
    if not eid:
        st.info("No event selected: open one from the Events or Live page.")
        st.page_link(nav.pages()["events"], label="Go to Events", icon=":material/list:")
        return
    try:
        ev = data.event(client.identity, client, eid)
    except ApiError as exc:
        st.error(f"Event {eid!r}: {describe(exc)}")
        return

    t0, t1 = pd.Timestamp(ev["t_start"]), pd.Timestamp(ev["t_end"])
    st.caption(f"`{ev['id']}` · camera **{ev['camera_id']}** · {t0:%Y-%m-%d %H:%M:%S} → {t1:%H:%M:%S} UTC "
               f"({(t1 - t0).total_seconds():.0f} s) · model {ev['model_version']}")
    m = st.columns(6)
    m[0].metric("Peak score", f"{ev['peak_score']:.2f}")
    for col, (label, key) in zip(m[1:4], (("Semantic", "peak_s_sem"), ("Predictive", "peak_s_pred"),
                                          ("Objects", "peak_s_obj"))):
        col.metric(label, f"{ev[key]:.2f}" if ev.get(key) is not None else "n/a")
    m[4].metric("Severity", ev.get("severity") or "n/a")
    m[5].metric("Status", ev.get("status") or "n/a")

    left, right = st.columns([3, 2])
    with left:
        if ev.get("clip_url"):
            st.video(ev["clip_url"], format="video/mp4")
            st.caption(f"evidence clip (with pre/post-roll); link valid {ev.get('urls_expire_in_s') or '?'} s")
        elif ev.get("thumbnail_url"):
            st.image(ev["thumbnail_url"], caption="thumbnail (no clip yet)")
        else:
            st.info("No evidence clip for this event yet.")
        st.subheader("Score timeline")
        timeline(client, ev)
    with right:
        st.subheader("Top matching descriptions")
        descriptions(ev)
        feedback(client, ev)
