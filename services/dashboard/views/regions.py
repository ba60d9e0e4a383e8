"""Masks & thresholds: on a recent frame of a camera, draw the regions removed from its detection
(masks) and the regions scored on their own (zones: their own prompt set, threshold and
loitering time), and set its own event thresholds (analysts, for the cameras they may see)."""

from __future__ import annotations

import streamlit as st

from services.dashboard import charts, data, session
from services.dashboard.client import ApiError, describe

MODES = ["(configured)", "calibrated", "fixed"]


def _saved(msg: str) -> None:
    data.cameras.clear()
    st.session_state["regions-flash"] = msg
    st.rerun()


def _canvas(jpeg: bytes | None, cam: dict, kind: str, may_edit: bool) -> list[list[float]] | None:
    """The camera's recent frame with its masks and zones; returns the polygon just drawn (for ``kind``)."""
    cid = cam["id"]
    drawn = st.session_state.get(f"drawn-{kind}-{cid}")
    fig = charts.mask_canvas(jpeg, list(cam.get("masks") or []), zones=list(cam.get("zones") or []), drawn=drawn)
    event = st.plotly_chart(fig, key=f"{kind}-canvas-{cid}", on_select="rerun" if may_edit else "ignore",
                            selection_mode=("lasso", "box"), config={"displaylogo": False})
    picked = charts.polygon_from_selection(getattr(event, "selection", None) if may_edit else None)
    if picked and picked != drawn:
        st.session_state[f"drawn-{kind}-{cid}"] = drawn = picked
        st.rerun()
    if not may_edit:
        st.caption(f"Drawing {kind} needs the analyst role.")
    elif not drawn:
        st.caption(f"Draw a region with the lasso (or the box tool) on the frame to add it to the {kind}.")
    return drawn if may_edit else None


def _discard(kind: str, cid: str) -> None:
    st.session_state.pop(f"drawn-{kind}-{cid}", None)


def _listed(cam: dict, kind: str, items: list[dict], text, put, may_edit: bool) -> None:  # noqa: ANN001
    """The camera's masks or zones, each with a Remove button (``put`` saves the list without it)."""
    cid = cam["id"]
    for i, item in enumerate(items):
        c1, c2 = st.columns([4, 1])
        c1.markdown(text(item))
        if may_edit and c2.button("Remove", key=f"{kind}-rm-{cid}-{i}", icon=":material/delete:"):
            try:
                put(cid, items[:i] + items[i + 1:])
            except ApiError as exc:
                st.error(f"Not removed: {describe(exc)}")
            else:
                _saved(f"{kind[:-1].capitalize()} {item.get('name', kind[:-1])} removed from {cid}.")


def masks_editor(client, cam: dict, jpeg: bytes | None, may_edit: bool) -> None:  # noqa: ANN001
    cid, masks = cam["id"], list(cam.get("masks") or [])
    drawn = _canvas(jpeg, cam, "masks", may_edit)
    if drawn:
        c1, c2, c3 = st.columns([2, 1, 1])
        name = c1.text_input("Mask name", value=f"mask {len(masks) + 1}", max_chars=100, key=f"mask-name-{cid}")
        if c2.button("Add mask", type="primary", icon=":material/add:", key=f"mask-add-{cid}"):
            try:
                client.put_masks(cid, [*masks, {"name": name.strip() or "mask", "polygon": drawn}])
            except ApiError as exc:
                st.error(f"Mask not saved: {describe(exc)}")
            else:
                _discard("masks", cid)
                _saved(f"Mask {name.strip() or 'mask'} added to {cid}: detection ignores it from the next segment.")
        if c3.button("Discard", key=f"mask-discard-{cid}"):
            _discard("masks", cid)
            st.rerun()
    _listed(cam, "masks", masks, lambda m: f"**{m.get('name', 'mask')}** · {len(m['polygon'])} corners",
            client.put_masks, may_edit)


def zone_text(z: dict) -> str:
    parts = [f"prompt set {z['prompt_set']}" if z.get("prompt_set") else "the camera's prompt set",
             f"threshold {z['threshold']:.2f}" if z.get("threshold") is not None else "the camera's thresholds"]
    if z.get("loiter_s"):
        parts.append(f"occupied longer than {z['loiter_s']:.0f} s opens an event")
    return f"**{z['name']}** · " + " · ".join(parts)


def zones_editor(client, cam: dict, jpeg: bytes | None, may_edit: bool) -> None:  # noqa: ANN001
    cid, zones = cam["id"], list(cam.get("zones") or [])
    drawn = _canvas(jpeg, cam, "zones", may_edit)
    if drawn:
        try:
            sets = sorted(s["name"] for s in data.prompt_sets(client.identity, client, cam["context"]))
        except ApiError:
            sets = []
        with st.form(f"zone-add-{cid}"):
            c1, c2 = st.columns(2)
            name = c1.text_input("Zone name", value=f"zone{len(zones) + 1}", max_chars=32,
                                 help="letters, digits, _ . -")
            ps = c2.selectbox("Prompt set", ["(the camera's)", *sets], help=f"sets of context {cam['context']}")
            c3, c4 = st.columns(2)
            thr = c3.number_input("Threshold (empty: the camera's)", min_value=0.0, max_value=1.0, step=0.01,
                                  value=None)
            loiter = c4.number_input("Loitering after (s, empty: off)", min_value=1.0, max_value=86400.0, step=5.0,
                                     value=None)
            if st.form_submit_button("Add zone", type="primary"):
                zone = {"name": name.strip(), "polygon": drawn, "prompt_set": None if ps.startswith("(") else ps,
                        "threshold": thr, "loiter_s": loiter}
                try:
                    client.put_zones(cid, [*zones, zone])
                except ApiError as exc:
                    st.error(f"Zone not saved: {describe(exc)}")
                else:
                    _discard("zones", cid)
                    _saved(f"Zone {name.strip()} added to {cid}: scored on its own from the next segment.")
        if st.button("Discard the drawn zone", key=f"zone-discard-{cid}"):
            _discard("zones", cid)
            st.rerun()
    _listed(cam, "zones", zones, zone_text, client.put_zones, may_edit)


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
    try:  # once per run: both tabs draw on it
        jpeg = client.camera_snapshot(cid)
    except ApiError as exc:
        jpeg = None
        st.info(f"No recent frame: {describe(exc)}")
    masks, zones, thresholds = st.tabs(["Masks", "Zones", "Thresholds"])
    with masks:
        masks_editor(client, cam, jpeg, may_edit)
    with zones:
        zones_editor(client, cam, jpeg, may_edit)
    with thresholds:
        thresholds_editor(client, cam, may_edit)
