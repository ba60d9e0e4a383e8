"""Dead letters (admins): segments the scoring path gave up on and notifications that never
landed, each with the reason, and a button that sends it round again."""

from __future__ import annotations

import base64

import pandas as pd
import streamlit as st

from services.dashboard import session
from services.dashboard.client import ApiError, describe


def _payload_head(b64: str, n: int = 120) -> str:
    raw = base64.b64decode(b64)
    return raw[:n].decode(errors="replace") + ("…" if len(raw) > n else "")


def _segments(client) -> None:  # noqa: ANN001
    state = st.radio("Show", ["pending", "replayed", "all"], horizontal=True, key="dl-state")
    try:
        rows = client.dead_letters(state=state)
    except ApiError as exc:
        st.error(describe(exc))
        return
    if not rows:
        st.success("No dead letters." if state != "replayed" else "Nothing replayed yet.")
        return
    st.dataframe(pd.DataFrame([{
        "id": r["id"], "when": pd.Timestamp(r["at"]), "where": f"{r['source_topic']}[{r['partition']}]@{r['offset']}",
        "key": r.get("key") or "", "attempts": r.get("attempts"), "reason": r["reason"],
        "replay": ("done " + str(pd.Timestamp(r["replayed_at"]))) if r.get("replayed_at") else
                  ("asked by " + r["replay_requested_by"]) if r.get("replay_requested_at") else "",
        "payload": _payload_head(r["payload_b64"]),
    } for r in rows]), hide_index=True, use_container_width=True)
    waiting = [r["id"] for r in rows if not r.get("replay_requested_at") or r.get("replayed_at")]
    if not waiting:
        return
    c1, c2 = st.columns([1, 3])
    dl_id = c1.selectbox("Dead letter", waiting, key="dl-pick")
    if c2.button("Replay to its topic", key="dl-replay", help="the relay re-publishes the original message; "
                 "if it fails again it comes back here at its new offset"):
        try:
            client.replay_dead_letter(int(dl_id))
        except ApiError as exc:
            st.error(describe(exc))
        else:
            st.toast(f"Replay of dead letter {dl_id} requested")
            st.rerun()


def _notifications(client) -> None:  # noqa: ANN001
    try:
        rows = client.failed_deliveries()
    except ApiError as exc:
        st.error(describe(exc))
        return
    if not rows:
        st.success("Every notification was delivered (or is still being tried).")
        return
    st.dataframe(pd.DataFrame([{
        "id": r["id"], "event": r["event_id"], "version": r["version"], "channel": r["channel"],
        "attempts": r["attempts"], "last error": r.get("last_error") or "",
    } for r in rows]), hide_index=True, use_container_width=True)
    c1, c2 = st.columns([1, 3])
    did = c1.selectbox("Notification", [r["id"] for r in rows], key="dn-pick")
    if c2.button("Retry with a fresh budget", key="dn-retry"):
        try:
            client.retry_delivery(int(did))
        except ApiError as exc:
            st.error(describe(exc))
        else:
            st.toast(f"Notification {did} queued again")
            st.rerun()


def render() -> None:
    client = session.require_client()
    st.title("Dead letters")
    if not session.has_role("admin"):
        st.info("Dead letters are for admins.")
        return
    seg, note = st.tabs(["Segments", "Notifications"])
    with seg:
        _segments(client)
    with note:
        _notifications(client)
