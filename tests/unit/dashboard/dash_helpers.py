"""Helpers of the dashboard page tests: seed rows, an in-memory object store, AppTest per view."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from streamlit.testing.v1 import AppTest

from services.dashboard.client import ApiClient
from vigil.models import Event, SegmentScore

ADMIN_KEY = "dash-test-admin-key-0123456789"
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class FakeStore:
    """The slice of ObjectStore the API uses, in memory."""

    bucket = "vigil"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

        class _Client:
            def bucket_exists(_self, _b: str) -> bool:  # noqa: N805
                return True

        self.client = _Client()

    def put(self, key: str, data: bytes, content_type: str = "") -> None:
        self.objects[key] = data

    def exists(self, key: str) -> bool:
        return key in self.objects

    def get(self, key: str) -> bytes:
        from vigil.objectstore import ObjectMissing

        if key not in self.objects:
            raise ObjectMissing(key)
        return self.objects[key]

    def presigned_get(self, key: str, expires_s: int = 300) -> str:
        return f"http://s3.test/vigil/{key}?X-Amz-Expires={expires_s}&X-Amz-Signature=fake"


def make_event(i: int, *, camera: str = "cam-a", score: float = 0.7, severity: str = "medium", status: str = "closed",
               text: str = "fighting between people", **kw) -> Event:
    t = T0 + timedelta(minutes=i)
    return Event(
        id=f"{camera}:{i:09d}", camera_id=camera, t_start=t, t_end=t + timedelta(seconds=8), first_seq=i,
        last_seq=i + 1, peak_score=score, severity=severity, status=status, model_version="m1",
        peak_s_sem=score + 0.05 if score < 0.95 else score, peak_s_pred=score - 0.1,
        top_descriptions=kw.pop("top_descriptions", None) or [
            {"text": text, "prob": 0.6, "abnormal": True}, {"text": "people walking", "prob": 0.2, "abnormal": False}],
        segment_ids=[f"{camera}:{i}"], created_at=t, updated_at=t, **kw,
    )


def segment_scores(camera: str, start: datetime, n: int, *, peak_at: int | None = None) -> list[SegmentScore]:
    out = []
    for seq in range(n):
        ts = start + timedelta(seconds=4 * seq)
        hot = peak_at is not None and abs(seq - peak_at) <= 1
        out.append(SegmentScore(segment_id=f"{camera}:{seq}", camera_id=camera, seq=seq, score=0.8 if hot else 0.2,
                                s_sem=0.85 if hot else 0.15, s_pred=0.6 if hot else 0.25, gate=0.5, model_version="m1",
                                object_key=f"segments/{camera}/{seq}", t_start=ts, t_end=ts + timedelta(seconds=4),
                                frame_scores=[0.5] * 16, top_descriptions=[]))
    return out


def page_test(view: str, client: ApiClient, *, me: dict | None = None, query: dict | None = None,
              timeout: float = 30) -> AppTest:
    """An AppTest running one view's ``render()`` as a signed-in user."""

    def script() -> None:
        import importlib

        import streamlit as st

        importlib.import_module(f"services.dashboard.views.{st.session_state['_view']}").render()

    at = AppTest.from_function(script, default_timeout=timeout)
    at.session_state["_view"] = view
    at.session_state["vigil_client"] = client
    at.session_state["vigil_me"] = me or client.me()
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at
