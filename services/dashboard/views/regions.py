"""Masks & thresholds: draw the regions removed from a camera's detection on a recent frame of
it, and set its own event thresholds (analysts, for the cameras they may see)."""

from __future__ import annotations

import streamlit as st

from services.dashboard import charts, data, session
from services.dashboard.client import ApiError, describe

MODES = ["(configured)", "calibrated", "fixed"]


def _saved(msg: str) -> None:
    data.cameras.clear()
    st.session_state["regions-flash"] = msg
    st.rerun()


def masks_editor(client, cam: dict, may_edit: bool) -> None:  # noqa: ANN001
    cid = cam["id"]
    try:
        jpeg = client.camera_snapshot(cid)
    except ApiError as exc:
        jpeg = None
        st.info(f"No recent frame: {describe(exc)}")
    masks = list(cam.get("masks") or [])
    drawn = st.session_state.get(f"drawn-{cid}")
    fig = charts.mask_canvas(jpeg, masks, drawn=drawn)
    event = st.plotly_chart(fig, key=f"mask-canvas-{cid}", on_select="rerun" if may_edit else "ignore",
                            selection_mode=("lasso", "box"), config={"displaylogo": False})
    picked = charts.polygon_from_selection(getattr(event, "selection", None) if may_edit else None)
    if picked and picked != drawn:
        st.session_state[f"drawn-{cid}"] = drawn = picked
        st.rerun()
    if not may_edit:
        st.caption("Drawing masks needs the analyst role.")
    elif drawn:
        c1, c2, c3 = st.columns([2, 1, 1])
        name = c1.text_input("Mask name", value=f"mask {len(masks) + 1}", max_chars=100, key=f"mask-name-{cid}")
        if c2.button("Add mask", type="primary", icon=":material/add:", key=f"mask-add-{cid}"):
            try:
                client.put_masks(cid, [*masks, {"name": name.strip() or "mask", "polygon": drawn}])
            except ApiError as exc:
                st.error(f"Mask not saved: {describe(exc)}")
            else:
                st.session_state.pop(f"drawn-{cid}", None)
                _saved(f"Mask {name.strip() or 'mask'} added to {cid}: detection ignores it from the next segment.")
        if c3.button("Discard", key=f"mask-discard-{cid}"):
            st.session_state.pop(f"drawn-{cid}", None)
            st.rerun()
    else:
        st.caption("Draw a region with the lasso (or the box tool) on the frame to mask it.")
    for i, m in enumerate(masks):
        c1, c2 = st.columns([4, 1])
        c1.markdown(f"**{m.get('name', 'mask')}** · {len(m['polygon'])} corners")
        if may_edit and c2.button("Remove", key=f"mask-rm-{cid}-{i}", icon=":material/delete:"):
            try:
                client.put_masks(cid, masks[:i] + masks[i + 1:])
            except ApiError as exc:
                st.error(f"Not removed: {describe(exc)}")
            else:
                _saved(f"Mask {m.get('name', 'mask')} removed from {cid}.")


def thresholds_editor(client, cam: dict, may_edit: bool) -> None:  # noqa: ANN001
    cid, tuning = cam["id"], dict(cam.get("tuning") or {})
    st.caption("Empty fields keep the configured value: " + (", ".join(f"{k} = {v}" for k, v in tuning.items())
                                                             if tuning else "this camera uses the configuration's."))
    with st.form(f"tuning-{cid}"):
        c1, c2, c3 = st.columns(3)
        mode = c1.selectbox("Threshold mode", MODES, index=MODES.index(tuning.get("threshold_mode", "(configured)")),
                            disabled=not may_edit)
        thr = c2.number_input("Threshold (fixed mode)", min_value=0.0, max_value=1.0, step=0.01,
                              value=tuning.get("threshold"), disabled=not may_edit)
        rel = c3.number_input("Release threshold", min_value=0.0, max_value=1.0, step=0.01,
                              value=tuning.get("release_threshold"), disabled=not may_edit)
        c4, c5 = st.columns(2)
        n_open = c4.number_input("Segments above before an event opens", min_value=1, max_value=1000, step=1,
                                 value=tuning.get("min_event_segments"), disabled=not may_edit)
        n_end = c5.number_input("Segments below before it ends", min_value=1, max_value=1000, step=1,
                                value=tuning.get("end_after_segments"), disabled=not may_edit)
        if st.form_submit_button("Save thresholds", type="primary", disabled=not may_edit):
            body = {"threshold_mode": None if mode == MODES[0] else mode, "threshold": thr, "release_threshold": rel,
                    "min_event_segments": n_open, "end_after_segments": n_end}
            try:
                client.put_tuning(cid, {k: v for k, v in body.items() if v is not None})
            except ApiError as exc:
                st.error(f"Thresholds not saved: {describe(exc)}")
            else:
                _saved(f"Thresholds of {cid} saved: they apply from its next segment.")


def render() -> None:
    client = session.require_client()
    st.title("Masks & thresholds")
    if flash := st.session_state.pop("regions-flash", None):
        st.success(flash)
    try:
        cams = data.cameras(client.identity, client)
    except ApiError as exc:
        st.error(describe(exc))
        return
    if not cams:
        st.info("No cameras yet: add one on the Cameras page.")
        return
    cid = st.selectbox("Camera", [c["id"] for c in cams], key="regions-camera",
                       format_func=lambda i: next((f"{c.get('name') or i} ({i})" for c in cams if c["id"] == i), i))
    cam = next(c for c in cams if c["id"] == cid)
    may_edit = session.has_role("analyst")
    masks, thresholds = st.tabs(["Masks", "Thresholds"])
    with masks:
        masks_editor(client, cam, may_edit)
    with thresholds:
        thresholds_editor(client, cam, may_edit)
