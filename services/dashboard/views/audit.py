"""Audit log (admins): every change to cameras, masks, thresholds, prompt sets and model activation."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from services.dashboard import session
from services.dashboard.client import ApiError, describe

ACTIONS = ["(all)", "camera.create", "camera.update", "camera.delete", "camera.masks", "camera.zones", "camera.tuning",
           "prompt_set.save", "prompt_set.delete", "model.activate"]


def changed(before: dict | None, after: dict | None) -> str:
    """The fields that differ, as ``key: old → new`` (the whole value where there was none)."""
    if before is None or after is None:
        return json.dumps(after if before is None else before, separators=(",", ":"))[:300]
    keys = [k for k in sorted({*before, *after}) if before.get(k) != after.get(k)]
    return "; ".join(f"{k}: {json.dumps(before.get(k))} → {json.dumps(after.get(k))}" for k in keys)[:300]


def render() -> None:
    client = session.require_client()
    st.title("Audit log")
    if not session.has_role("admin"):
        st.info("The audit log is for admins.")
        return
    c1, c2, c3 = st.columns([2, 2, 1])
    target = c1.text_input("Target starts with", placeholder="camera:cam-01, prompt_set:campus/", key="audit-target")
    action = c2.selectbox("Action", ACTIONS, key="audit-action")
    limit = c3.number_input("Rows", min_value=10, max_value=1000, value=200, step=50, key="audit-limit")
    filters = {"limit": int(limit)}
    if target.strip():
        filters["target"] = target.strip()
    if action != ACTIONS[0]:
        filters["action"] = action
    try:
        rows = client.audit(**filters)
    except ApiError as exc:
        st.error(describe(exc))
        return
    if not rows:
        st.info("No changes recorded yet." if len(filters) == 1 else "No change matches these filters.")
        return
    st.dataframe(pd.DataFrame([{"when": pd.Timestamp(r["at"]), "who": r["actor"], "role": r["actor_role"],
                                "action": r["action"], "target": r["target"],
                                "change": changed(r.get("before"), r.get("after"))} for r in rows]),
                 hide_index=True, use_container_width=True)
