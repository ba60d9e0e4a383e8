"""Event detail: the evidence clip, the score timeline, the top descriptions, its review."""

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


# what each stream's reason means to an analyst (vigil.model.reasons)
STREAM_NAMES = {"semantic": "prompt", "place_speed": "speed here", "motion": "speed", "attr": "motion pattern",
                "dwell": "time in place", "mem": "appearance", "pred": "motion forecast", "size": "size here"}


def descriptions(ev: dict) -> None:
    top = ev.get("top_descriptions") or []
    if not top:
        st.caption("no descriptions were recorded for this event")
        return
    df = pd.DataFrame([{"description": d.get("text", ""), "probability": float(d.get("prob", 0.0)),
                        "kind": "abnormal" if d.get("abnormal") else "normal",
                        "stream": STREAM_NAMES.get(d.get("stream"), d.get("stream") or "semantic")} for d in top])
    st.dataframe(df, hide_index=True, column_config={
        "probability": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="%.3f")})


RESOLUTIONS = {"true_positive": "true positive", "false_positive": "false positive", "duplicate": "duplicate"}


def review_line(ev: dict) -> str:
    """Where the event's review stands, in words."""
    state = ev.get("review_status") or "new"
    text = {"new": "not reviewed yet", "acknowledged": "acknowledged",
            "resolved": f"resolved: {RESOLUTIONS.get(ev.get('resolution'), ev.get('resolution'))}"}.get(state, state)
    if ev.get("assignee"):
        text += f" · assigned to {ev['assignee']}"
    if ev.get("reviewed_by") and ev.get("reviewed_at"):
        text += f" · last by {ev['reviewed_by']} at {pd.Timestamp(ev['reviewed_at']):%Y-%m-%d %H:%M} UTC"
    return text


def _review(client, ev: dict, body: dict, flash: str) -> None:  # noqa: ANN001
    try:
        client.review_event(ev["id"], body)
    except ApiError as exc:
        st.error(f"Review not saved: {describe(exc)}")
        return
    data.event.clear()
    data.events_page.clear()
    st.session_state["vigil_flash"] = flash
    st.rerun()


def feedback(client, ev: dict) -> None:  # noqa: ANN001
    st.subheader("Review")
    st.markdown(f"**{review_line(ev)}**" + (f"  \n> {ev['review_note']}" if ev.get("review_note") else ""))
    for fb in ev.get("feedback") or []:
        icon = ":green[:material/check_circle:]" if fb["label"] == "true_positive" else ":red[:material/cancel:]"
        label = "true positive" if fb["label"] == "true_positive" else "false positive"
        st.markdown(f"{icon} **{label}** by {fb['author']} · {pd.Timestamp(fb['created_at']):%Y-%m-%d %H:%M} UTC"
                    + (f"  \n> {fb['note']}" if fb.get("note") else ""))
    if not session.has_role("analyst"):
        st.caption("Reviewing needs the analyst role.")
        return
    me = session.me().get("name")
    if ev.get("review_status", "new") == "new" or ev.get("assignee") != me:
        if st.button("Acknowledge and assign to me", icon=":material/assignment_ind:"):
            _review(client, ev, {"status": "acknowledged", "assignee": me}, f"Acknowledged; assigned to {me}.")
    with st.form("feedback", clear_on_submit=True):
        note = st.text_area("Note (optional)", max_chars=2000, height=80)
        c1, c2, c3 = st.columns(3)
        tp = c1.form_submit_button("True positive", icon=":material/check_circle:", width="stretch")
        fp = c2.form_submit_button("False positive", icon=":material/cancel:", width="stretch")
        dup = c3.form_submit_button("Duplicate", icon=":material/content_copy:", width="stretch")
    if tp or fp or dup:  # resolving it; a true or false positive is also the feedback retraining learns from
        resolution = "true_positive" if tp else "false_positive" if fp else "duplicate"
        _review(client, ev, {"status": "resolved", "resolution": resolution, "note": note.strip() or None},
                "Feedback saved." if not dup else "Resolved as a duplicate.")


def notifications(client, ev: dict) -> None:  # noqa: ANN001
    """Where the event's messages went (vigil notify): per version and channel, whether it landed."""
    st.subheader("Notifications")
    try:
        rows = client.deliveries(ev["id"])
    except ApiError as exc:
        st.caption(f"Notifications unavailable: {describe(exc)}")
        return
    if not rows:
        st.caption("No notification rule matched this event (or vigil notify is not running).")
        return
    st.dataframe(pd.DataFrame([{
        "version": r["version"], "kind": r["kind"], "channel": r["channel"], "status": r["status"],
        "attempts": r["attempts"],
        "latency s": round(r["latency_s"], 1) if r.get("latency_s") is not None else None,
        "last error": r.get("last_error") or "",
    } for r in rows]), hide_index=True, use_container_width=True)


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
        notifications(client, ev)
