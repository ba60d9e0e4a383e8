"""The pages of the dashboard and how one page opens another."""

from __future__ import annotations

import streamlit as st


def pages() -> dict[str, st.Page]:
    from services.dashboard.views import (audit, cameras, dead_letters, event_detail, events, live, models,
                                         prompts, regions)

    return {
        "live": st.Page(live.render, title="Live", icon=":material/videocam:", url_path="live", default=True),
        "events": st.Page(events.render, title="Events", icon=":material/list:", url_path="events"),
        "event": st.Page(event_detail.render, title="Event detail", icon=":material/play_circle:", url_path="event"),
        "prompts": st.Page(prompts.render, title="Prompts", icon=":material/edit_note:", url_path="prompts"),
        "models": st.Page(models.render, title="Models", icon=":material/model_training:", url_path="models"),
        "cameras": st.Page(cameras.render, title="Cameras", icon=":material/settings_input_antenna:",
                           url_path="cameras"),
        "regions": st.Page(regions.render, title="Masks & thresholds", icon=":material/format_shapes:",
                           url_path="regions"),
        "audit": st.Page(audit.render, title="Audit log", icon=":material/history:", url_path="audit"),
        "dead_letters": st.Page(dead_letters.render, title="Dead letters", icon=":material/report:",
                                url_path="dead-letters"),
    }


EVENT_KEY = "vigil_event_id"


def open_event(event_id: str) -> None:
    """Show one event on the detail page (its id also goes in the URL, so the link can be shared)."""
    st.session_state[EVENT_KEY] = event_id
    st.switch_page(pages()["event"], query_params={"event": event_id})
