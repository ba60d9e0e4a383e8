"""Cameras: list with health, add, edit, enable/disable, delete (changes need the admin role)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from services.dashboard import data, session
from services.dashboard.client import ApiError, describe

SOURCE_TYPES = ["file", "rtsp", "http", "frames", "synthetic"]


def period_text(p: dict | None) -> str:
    """A camera's normal period in words: how far it is, or what became of it."""
    if not p:
        return "not recorded"
    done = f"{p['recorded_s'] / 60:.0f} of {p['target_s'] / 60:.0f} min"
    text = {"recording": f"recording, {done}", "complete": f"complete ({done}), training queued",
            "training": f"training ({p.get('run_id')})", "trained": "trained"}.get(p["status"], p["status"])
    return f"{text}: {p['error']}" if p.get("error") else text


def source_text(src: dict | None) -> str:
    """The ingest side of a camera in words: connected or not, measured fps, reconnects."""
    if not src:
        return "not ingested"
    if not src.get("reporting"):
        return f"ingest not reporting since {pd.Timestamp(src['reported_at']):%H:%M:%S} UTC"
    if src.get("connected"):
        text = "connected" + (f", {src['fps']:.1f} fps" if src.get("fps") is not None else "")
    else:
        text = src.get("state") or "disconnected"
    if src.get("reconnects"):
        text += f", {src['reconnects']} reconnects"
    if src.get("dropped"):
        text += f", {src['dropped']} segments dropped"
    return text


def health_of(client, cams: list[dict]) -> dict[str, dict[str, str]]:  # noqa: ANN001
    """Each camera's health (scoring and ingest sides), the model scoring it and its normal period."""
    out: dict[str, dict[str, str]] = {}
    for cam in cams:
        try:
            h = client.camera_health(cam["id"])
        except ApiError as exc:
            out[cam["id"]] = {"health": f"unknown ({exc.status})"}
            continue
        state = h.get("state") or h.get("status") or "unknown"
        state = "no segments yet" if state == "unknown" else state
        extra = f", last segment {pd.Timestamp(h['last_segment_at']):%Y-%m-%d %H:%M:%S} UTC" if h.get("last_segment_at") else ""
        src = h.get("source") or {}
        out[cam["id"]] = {"health": f"{state}{extra}", "source health": source_text(h.get("source")),
                          "last error": src.get("last_error") or "", "scored by": h.get("scored_by") or "n/a",
                          "normal period": period_text(h.get("normal_period"))}
    return out


def _changed(client, msg: str) -> None:  # noqa: ANN001
    data.cameras.clear()
    st.session_state["cam-flash"] = msg
    st.rerun()


def render() -> None:
    client = session.require_client()
    st.title("Cameras")
    if flash := st.session_state.pop("cam-flash", None):
        st.success(flash)
    try:
        cams = data.cameras(client.identity, client)
    except ApiError as exc:
        st.error(describe(exc))
        return
    health = health_of(client, cams)
    if cams:
        na = {"health": "n/a", "source health": "n/a", "last error": "", "scored by": "n/a", "normal period": "n/a"}
        st.dataframe(pd.DataFrame([{"id": c["id"], "name": c.get("name"), "enabled": c["enabled"],
                                    **{**na, **health.get(c["id"], {})}, "source": c["source_type"],
                                    "source URL set": c["has_source_uri"], "from config": bool(c.get("from_config")),
                                    "context": c["context"],
                                    "created": pd.Timestamp(c["created_at"])} for c in cams]),
                     hide_index=True, column_config={"enabled": st.column_config.CheckboxColumn(),
                                                     "source URL set": st.column_config.CheckboxColumn(),
                                                     "from config": st.column_config.CheckboxColumn(
                                                         help="seeded from the YAML settings at start")})
    else:
        st.info("No cameras yet.")
    admin = session.has_role("admin")
    if not admin:
        st.caption("Adding, editing and disabling cameras needs the admin role.")
        return

    add, edit = st.tabs(["Add", "Edit / disable / delete"])
    with add, st.form("cam-add", clear_on_submit=True):
        c1, c2 = st.columns(2)
        cid = c1.text_input("Id", max_chars=64, help="letters, digits, _ . -")
        name = c2.text_input("Name", max_chars=200)
        c3, c4, c5 = st.columns([1, 3, 1])
        stype = c3.selectbox("Source type", SOURCE_TYPES)
        uri = c4.text_input("Source URL or path", type="password", help="write-only: never shown again")
        ctx = c5.text_input("Context", value="default", max_chars=100)
        enabled = st.checkbox("Enabled", value=True)
        if st.form_submit_button("Add camera", type="primary"):
            try:
                client.create_camera({"id": cid.strip(), "name": name.strip() or None, "source_type": stype,
                                      "source_uri": uri.strip() or None, "context": ctx.strip() or "default",
                                      "enabled": enabled})
            except ApiError as exc:
                st.error(f"Not added: {describe(exc)}")
            else:
                _changed(client, f"Camera {cid.strip()} added.")
    with edit:
        if not cams:
            st.caption("Nothing to edit.")
            return
        ids = [c["id"] for c in cams]
        cid = st.selectbox("Camera", ids, key="cam-edit-id")
        cam = next(c for c in cams if c["id"] == cid)
        with st.form(f"cam-edit-{cid}"):
            c1, c2, c3 = st.columns([2, 1, 1])
            name = c1.text_input("Name", cam.get("name") or "", max_chars=200)
            stype = c2.selectbox("Source type", SOURCE_TYPES,
                                 index=SOURCE_TYPES.index(cam["source_type"]) if cam["source_type"] in SOURCE_TYPES else 0)
            ctx = c3.text_input("Context", cam["context"], max_chars=100)
            uri = st.text_input("New source URL (empty = keep)", type="password")
            enabled = st.checkbox("Enabled", value=cam["enabled"])
            if st.form_submit_button("Save changes", type="primary"):
                changes = {"name": name.strip() or None, "source_type": stype, "context": ctx.strip() or "default",
                           "enabled": enabled}
                if uri.strip():
                    changes["source_uri"] = uri.strip()
                try:
                    client.update_camera(cid, changes)
                except ApiError as exc:
                    st.error(f"Not saved: {describe(exc)}")
                else:
                    _changed(client, f"Camera {cid} saved.")
        c1, c2 = st.columns(2)
        if c1.button("Enable" if not cam["enabled"] else "Disable", icon=":material/power_settings_new:"):
            try:
                client.update_camera(cid, {"enabled": not cam["enabled"]})
            except ApiError as exc:
                st.error(describe(exc))
            else:
                _changed(client, f"Camera {cid} {'enabled' if not cam['enabled'] else 'disabled'}.")
        sure = c2.checkbox(f"Yes, delete {cid} (its events stay)", key=f"cam-del-ok-{cid}")
        if c2.button("Delete", disabled=not sure, icon=":material/delete:"):
            try:
                client.delete_camera(cid)
            except ApiError as exc:
                st.error(describe(exc))
            else:
                _changed(client, f"Camera {cid} deleted.")
