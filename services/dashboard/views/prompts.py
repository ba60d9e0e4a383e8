"""Prompts: edit the normal and abnormal descriptions of a context; preview them on an event; save."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from pydantic import ValidationError

from services.dashboard import data, preview, session
from services.dashboard.client import ApiError, describe

NEW = "+ new set"


def _lines(text: str) -> list[str]:
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _build(name: str, context: str, normal: str, abnormal: str, scene: list[str], template: str):  # noqa: ANN202
    from vigil.model.prompts import PromptSet

    return PromptSet(name=name, context=context, normal=_lines(normal), abnormal=_lines(abnormal), scene=scene,
                     template=template)


@st.cache_resource(show_spinner="Loading the model for the preview ...")
def _model(backbone: str):  # noqa: ANN202
    return preview.load_model(backbone)


def run_preview(client, context: str, name: str, event_id: str, edited, saved) -> None:  # noqa: ANN001
    # computed here with the served model's own scoring (the API has no preview route: it holds no model)
    try:
        ev = data.event(client.identity, client, event_id)
        if not ev.get("clip_url"):
            st.warning("This event has no evidence clip yet: nothing to preview on.")
            return
        settings = data.vigil_settings()
        backbone = settings.model.backbone if settings else "vigil-micro"
        frames = preview.sample_clip(client.fetch_url(ev["clip_url"]))
        model = _model(backbone)
        new = preview.preview(model, frames, edited)
        old = preview.preview(model, frames, saved) if saved is not None else None
    except ApiError as exc:
        st.error(f"Preview failed: {describe(exc)}")
        return
    except preview.PreviewError as exc:
        st.error(f"Preview failed: {exc}")
        return
    except Exception as exc:  # noqa: BLE001 - e.g. the clip URL expired or the store is down
        st.error(f"Preview failed: {type(exc).__name__}: {exc}")
        return
    st.session_state["prompt-preview"] = {"event": event_id, "backbone": backbone, "new": new, "old": old}


def show_preview() -> None:
    p = st.session_state.get("prompt-preview")
    if not p:
        return
    new, old = p["new"], p["old"]
    fired = [r["description"] for r in new.rows if r["fires"]]
    c = st.columns(3)
    c[0].metric("Semantic score (edited)", f"{new.s_sem:.2f}",
                delta=f"{new.s_sem - old.s_sem:+.2f} vs saved" if old else None, delta_color="off")
    c[1].metric("Window vote", "abnormal" if new.vote_abnormal else "normal")
    c[2].metric("Would fire", len(fired))
    if fired:
        st.success("Would fire: " + "; ".join(fired))
    else:
        st.info("No abnormal description would fire on this event with the edited set.")
    df = pd.DataFrame(new.rows)
    if old is not None:
        before = {r["description"]: r["fires"] for r in old.rows}
        df["fired with saved set"] = [before.get(d) for d in df["description"]]
    st.dataframe(df, hide_index=True, column_config={
        "mean_prob": st.column_config.ProgressColumn("mean probability", min_value=0.0, max_value=1.0, format="%.3f"),
        "argmax_frames": st.column_config.NumberColumn("frames as top-1"),
        "in_top": st.column_config.CheckboxColumn("top-k"), "fires": st.column_config.CheckboxColumn("fires")})
    st.caption(f"Computed in the dashboard on 16 frames sampled across event {p['event']}'s evidence clip with "
               f"backbone {p['backbone']} and zero-shot heads (the deployed model may have trained heads); "
               "only the semantic stream depends on the prompts.")


def render() -> None:
    client = session.require_client()
    who = client.identity
    st.title("Prompts")
    try:
        ctx_names = {c["name"] for c in data.contexts(who, client)}
        cams = data.cameras(who, client)
    except ApiError as exc:
        st.error(describe(exc))
        return
    ctx_names |= {c["context"] for c in cams} | {"default"}
    c1, c2 = st.columns(2)
    context = c1.selectbox("Context (site or camera group)", sorted(ctx_names), key="pr-context")
    try:
        sets = {s["name"]: s for s in data.prompt_sets(who, client, context)}
    except ApiError as exc:
        st.error(describe(exc))
        return
    if (pending := st.session_state.pop("pr-show", None)) in sets:  # the set just saved
        st.session_state[f"pr-set-{context}"] = pending
    choice = c2.selectbox("Prompt set", [*sorted(sets), NEW], key=f"pr-set-{context}")
    if choice == NEW:
        name = c2.text_input("Name of the new set", value="default" if "default" not in sets else "", key="pr-new-name")
        from vigil.model.prompts import load_prompt_set

        base = load_prompt_set("default")
        current = {"normal": base.normal, "abnormal": base.abnormal, "scene": base.scene, "template": base.template,
                   "version": None}
        st.caption("A new set starts from the shipped default descriptions (ICPRAM 2024 tables).")
    else:
        name, current = choice, sets[choice]
        st.caption(f"version {current['version']} by {current['created_by']} · "
                   f"{pd.Timestamp(current['created_at']):%Y-%m-%d %H:%M} UTC")

    k = f"{context}/{name}/{current.get('version')}"
    e1, e2 = st.columns(2)
    normal = e1.text_area("Normal descriptions (one a line)", "\n".join(current["normal"]), height=260, key=f"pr-n-{k}")
    abnormal = e2.text_area("Abnormal descriptions (one a line)", "\n".join(current["abnormal"]), height=260,
                            key=f"pr-a-{k}")
    with st.expander("Template and scene cues"):
        template = st.text_input("Template ({} = the description)", current["template"], key=f"pr-t-{k}")
        scene = _lines(st.text_area("Scene descriptions (context cues)", "\n".join(current["scene"]), key=f"pr-s-{k}"))

    edited = saved = None
    if name:
        try:
            edited = _build(name, context, normal, abnormal, scene, template)
        except ValidationError as exc:
            st.error("; ".join(e["msg"] for e in exc.errors()))
        if current.get("version") is not None:
            saved = _build(name, context, "\n".join(current["normal"]), "\n".join(current["abnormal"]),
                           current["scene"], current["template"])
    changed = edited is not None and (current.get("version") is None or edited.version != current.get("content_hash"))

    st.subheader("Preview on an event")
    cam_ids = [c["id"] for c in cams if c["context"] == context]
    recent = []
    if cam_ids:
        try:
            recent = data.events_page(who, client, data.freeze({"camera": cam_ids, "sort": "peak_score"}), 20, None)["items"]
        except ApiError:
            recent = []
    p1, p2 = st.columns([4, 1], vertical_alignment="bottom")
    labels = {e["id"]: f"{e['camera_id']} · {pd.Timestamp(e['t_start']):%Y-%m-%d %H:%M:%S} · peak {e['peak_score']:.2f}"
              for e in recent}
    event_id = p1.selectbox("Event (highest-scoring of this context's cameras)", list(labels), format_func=labels.get,
                            key=f"pr-ev-{context}", accept_new_options=True, placeholder="type an event id")
    if p2.button("Preview", disabled=edited is None or not event_id, icon=":material/visibility:"):
        with st.spinner("Scoring the event's clip with the edited descriptions ..."):
            run_preview(client, context, name, event_id, edited, saved)
    show_preview()

    st.subheader("Save")
    if not session.has_role("analyst"):
        st.caption("Saving needs the analyst role.")
    elif st.button("Save as new version", type="primary", disabled=not changed, icon=":material/save:"):
        try:
            row, created = client.put_prompt_set(context, name, {
                "normal": edited.normal, "abnormal": edited.abnormal, "scene": edited.scene,
                "template": edited.template})
        except ApiError as exc:
            st.error(f"Not saved: {describe(exc)}")
        else:
            data.prompt_sets.clear()
            st.session_state.pop("prompt-preview", None)
            st.session_state["pr-show"] = name
            st.toast(f"Saved {context}/{name} version {row['version']}" if created else "No change: nothing saved")
            st.rerun()
    if not changed and edited is not None:
        st.caption("No changes to save.")
    if choice != NEW:
        with st.expander("History"):
            try:
                versions = client.prompt_set_versions(context, name)
                st.dataframe(pd.DataFrame([{"version": v["version"], "by": v["created_by"], "at": v["created_at"],
                                            "normal": len(v["normal"]), "abnormal": len(v["abnormal"])}
                                           for v in versions]), hide_index=True)
            except ApiError as exc:
                st.caption(describe(exc))
