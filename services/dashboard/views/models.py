"""Models: versions with their metrics, activation (admin), training runs with progress."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from services.dashboard import data, session
from services.dashboard.client import ApiError, describe


def progress_of(run: dict) -> float | None:
    """A training run's progress in [0, 1]: done runs 1; else ``metrics.progress`` or epoch / epochs."""
    if run.get("status") in {"succeeded", "failed"}:
        return 1.0
    m, p = run.get("metrics") or {}, run.get("params") or {}
    if isinstance(m.get("progress"), (int, float)):
        return max(0.0, min(1.0, float(m["progress"])))
    epoch, epochs = m.get("epoch"), p.get("epochs") or m.get("epochs")
    if isinstance(epoch, (int, float)) and isinstance(epochs, (int, float)) and epochs > 0:
        return max(0.0, min(1.0, float(epoch) / float(epochs)))
    return 0.0 if run.get("status") == "pending" else None


def _scalars(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_scalars(v, f"{prefix}{k}."))
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[f"{prefix}{k}"] = v
    return out


def render() -> None:
    client = session.require_client()
    who = client.identity
    st.title("Models")
    try:
        versions = data.models(who, client)
    except ApiError as exc:
        st.error(describe(exc))
        return
    active = next((v for v in versions if v["active"]), None)
    st.markdown(f"Active version: **{active['id']}** ({active['backbone']})" if active else "No active model version.")
    if versions:
        df = pd.DataFrame([{"version": v["id"], "active": v["active"], "backbone": v["backbone"],
                            "created": pd.Timestamp(v["created_at"]),
                            "activated": pd.Timestamp(v["activated_at"]) if v.get("activated_at") else None,
                            **_scalars(v.get("metrics") or {}), "description": v.get("description")}
                           for v in versions])
        st.dataframe(df, hide_index=True, column_config={"active": st.column_config.CheckboxColumn()})
        if session.has_role("admin"):
            c1, c2 = st.columns([4, 1], vertical_alignment="bottom")
            target = c1.selectbox("Version to activate", [v["id"] for v in versions if not v["active"]],
                                  placeholder="every version is active")
            if c2.button("Activate", disabled=not target, icon=":material/rocket_launch:"):
                try:
                    client.activate_model(target)
                except ApiError as exc:
                    st.error(f"Not activated: {describe(exc)}")
                else:
                    data.models.clear()
                    st.toast(f"{target} is now the active model version")
                    st.rerun()
        else:
            st.caption("Activating a version needs the admin role.")
    else:
        st.info("No model versions registered.")

    st.subheader("Training runs")
    try:
        runs = data.training_runs(who, client)
    except ApiError as exc:
        st.error(describe(exc))
        return
    if not runs:
        st.caption("No training runs.")
        return
    df = pd.DataFrame([{"run": r["id"], "status": r["status"], "progress": progress_of(r),
                        "base": r.get("base_model_version"), "output": r.get("output_model_version"),
                        "started": pd.Timestamp(r["started_at"]),
                        "finished": pd.Timestamp(r["finished_at"]) if r.get("finished_at") else None,
                        **_scalars(r.get("metrics") or {})} for r in runs])
    st.dataframe(df, hide_index=True, column_config={
        "progress": st.column_config.ProgressColumn(min_value=0.0, max_value=1.0, format="percent")})
