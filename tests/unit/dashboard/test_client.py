"""The API client: the key goes in one header, unknown routes vs unknown resources, filters."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from services.dashboard.client import ApiClient, ApiError, EndpointMissing, Unreachable, _params, describe
from tests.unit.dashboard.dash_helpers import make_event


def test_every_request_carries_the_users_key(admin, user_client, cameras):
    viewer = user_client("viewer")
    assert viewer.me()["role"] == "viewer"
    assert admin.me()["role"] == "admin"
    with pytest.raises(ApiError) as exc:
        ApiClient("http://testserver", "vgl_wrong", http=admin._http).cameras()
    assert exc.value.status == 401 and "sign in again" in describe(exc.value)


def test_role_limits_come_from_the_api(user_client, cameras, seed):
    seed(make_event(1))
    viewer = user_client("viewer")
    with pytest.raises(ApiError) as exc:
        viewer.review_event("cam-a:000000001", {"status": "resolved", "resolution": "true_positive"})
    assert exc.value.status == 403 and "analyst" in exc.value.detail


def test_missing_route_is_not_a_missing_resource(admin, cameras):
    with pytest.raises(EndpointMissing):
        admin._get("/no-such-route")
    with pytest.raises(ApiError) as exc:
        admin.event("cam-a:999")
    assert not isinstance(exc.value, EndpointMissing) and exc.value.status == 404 and exc.value.detail == "no such event"


def test_camera_limited_user_sees_only_their_cameras(user_client, cameras, seed):
    seed(make_event(1), make_event(2, camera="cam-b"))
    limited = user_client("viewer", cameras=["cam-b"])
    assert [c["id"] for c in limited.cameras()] == ["cam-b"]
    assert [e["id"] for e in limited.events({})["items"]] == ["cam-b:000000002"]


def test_filters_become_query_parameters():
    t = datetime(2026, 1, 2, 3, 4, tzinfo=UTC)
    assert _params({"camera": ["a", "b"], "since": t, "q": "", "severity": [], "status": None, "min_score": 0.5}) == [
        ("camera", "a"), ("camera", "b"), ("since", "2026-01-02T03:04:00+00:00"), ("min_score", "0.5")]


def test_unreachable_api_is_reported():
    client = ApiClient("http://127.0.0.1:9", "k", http=httpx.Client(base_url="http://127.0.0.1:9", timeout=1))
    with pytest.raises(Unreachable) as exc:
        client.me()
    assert "did not answer" in describe(exc.value)
