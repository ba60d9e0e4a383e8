"""The dashboard's only way to the data: the Vigil API, called with the signed-in user's key.

Every request goes through :meth:`ApiClient._request`, which adds ``X-API-Key``; the API
decides what the user may see and do (roles, camera limits). Nothing else in the dashboard
touches the database or the object store.

Errors: :class:`ApiError` with the HTTP status and the API's ``detail``; an endpoint this
API does not have (an unknown route: 404 "Not Found" or 405) is :class:`EndpointMissing`, so a
page can say clearly what is unavailable instead of failing.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import httpx


class ApiError(RuntimeError):
    def __init__(self, status: int, detail: str, *, path: str = "") -> None:
        super().__init__(f"{status} {detail}" + (f" ({path})" if path else ""))
        self.status = status
        self.detail = detail
        self.path = path


class EndpointMissing(ApiError):
    """The API has no such route (not the same as 'no such event')."""


class Unreachable(ApiError):
    """The API did not answer (connection refused, timeout)."""


def _detail(resp: httpx.Response) -> str:
    try:
        body = resp.json()
    except ValueError:
        return resp.text[:200] or resp.reason_phrase
    d = body.get("detail") if isinstance(body, dict) else None
    if isinstance(d, list):  # validation errors: where and why
        return "; ".join(f"{'.'.join(str(x) for x in e.get('loc', []))}: {e.get('msg', '')}" for e in d)
    return str(d) if d is not None else resp.reason_phrase


def _params(filters: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Query parameters: lists repeat the name, datetimes go out as ISO 8601, empties are dropped."""
    out: list[tuple[str, str]] = []
    for k, v in filters.items():
        if v is None or v == "" or v == []:
            continue
        values = v if isinstance(v, (list, tuple)) else [v]
        for x in values:
            out.append((k, x.isoformat() if isinstance(x, datetime) else str(x)))
    return out


class ApiClient:
    """A thin typed wrapper over the REST API for one user (one key)."""

    def __init__(self, base_url: str, key: str, *, http: httpx.Client | None = None, timeout_s: float = 15.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._key = key
        self._http = http or httpx.Client(base_url=self.base_url, timeout=timeout_s)

    @property
    def identity(self) -> str:
        """A short digest of (API, key): the cache partition of this user; never the key itself."""
        return hashlib.sha256(f"{self.base_url}\0{self._key}".encode()).hexdigest()[:16]

    # ------------------------------------------------------------------ transport
    def _request(self, method: str, path: str, *, params: Any = None, json: Any = None) -> httpx.Response:
        try:
            resp = self._http.request(method, path, params=params, json=json, headers={"X-API-Key": self._key})
        except httpx.TransportError as exc:
            raise Unreachable(0, f"the API at {self.base_url} did not answer ({type(exc).__name__})", path=path) from None
        if resp.status_code >= 400:
            detail = _detail(resp)
            if resp.status_code == 405 or (resp.status_code == 404 and detail == "Not Found"):
                raise EndpointMissing(resp.status_code, f"this API has no {method} {path}", path=path)
            raise ApiError(resp.status_code, detail, path=path)
        return resp

    def _get(self, path: str, **params: Any) -> Any:
        return self._request("GET", path, params=_params(params)).json()

    # ------------------------------------------------------------------ who
    def me(self) -> dict:
        return self._get("/me")

    # ------------------------------------------------------------------ events
    def events(self, filters: Mapping[str, Any], *, limit: int = 50, cursor: str | None = None) -> dict:
        """One page: ``{"items": [...], "next_cursor": str | None}``."""
        return self._get("/events", **filters, limit=limit, cursor=cursor)

    def export_csv(self, filters: Mapping[str, Any]) -> bytes:
        return self._request("GET", "/events/export.csv", params=_params(filters)).content

    def event(self, event_id: str) -> dict:
        """The event with short-lived ``clip_url``/``thumbnail_url`` and its feedback."""
        return self._get(f"/events/{_quote(event_id)}")

    def feedback(self, event_id: str) -> list[dict]:
        return self._get(f"/events/{_quote(event_id)}/feedback")

    def review_event(self, event_id: str, body: Mapping[str, Any]) -> dict:
        return self._request("PATCH", f"/events/{_quote(event_id)}/review", json=dict(body)).json()

    def stack(self) -> dict:
        """The embedded stack's parts (``embedded`` False on a cluster)."""
        return self._get("/stack")

    def deliveries(self, event_id: str) -> list[dict]:
        """The event's notifications: one per version and channel, with status and latency."""
        return self._get(f"/events/{_quote(event_id)}/deliveries")

    # ------------------------------------------------------------------ dead letters (admins)
    def dead_letters(self, state: str = "all", limit: int = 200) -> list[dict]:
        return self._get("/dead-letters", state=state, limit=limit)

    def replay_dead_letter(self, dl_id: int) -> dict:
        return self._request("POST", f"/dead-letters/{dl_id}/replay").json()

    def failed_deliveries(self, limit: int = 200) -> list[dict]:
        return self._get("/deliveries", status="dead_letter", limit=limit)

    def retry_delivery(self, delivery_id: int) -> dict:
        return self._request("POST", f"/deliveries/{delivery_id}/retry").json()


    # ------------------------------------------------------------------ cameras
    def cameras(self) -> list[dict]:
        return self._get("/cameras")

    def create_camera(self, body: Mapping[str, Any]) -> dict:
        return self._request("POST", "/cameras", json=dict(body)).json()

    def update_camera(self, camera_id: str, changes: Mapping[str, Any]) -> dict:
        return self._request("PATCH", f"/cameras/{_quote(camera_id)}", json=dict(changes)).json()

    def delete_camera(self, camera_id: str) -> None:
        self._request("DELETE", f"/cameras/{_quote(camera_id)}")

    def camera_scores(self, camera_id: str, *, since: datetime | None = None, until: datetime | None = None,
                      limit: int = 500) -> dict:
        """Segment scores of a camera, oldest first: ``{"items": [...], "threshold": float | None}``."""
        body = self._get(f"/cameras/{_quote(camera_id)}/scores", since=since, until=until, limit=limit)
        return {"items": list(body.get("items", [])), "threshold": body.get("threshold")}

    def camera_snapshot(self, camera_id: str) -> bytes:
        """A recent frame of the camera, JPEG."""
        return self._request("GET", f"/cameras/{_quote(camera_id)}/snapshot").content

    def put_masks(self, camera_id: str, masks: list[dict]) -> dict:
        return self._request("PUT", f"/cameras/{_quote(camera_id)}/masks", json={"masks": masks}).json()

    def put_zones(self, camera_id: str, zones: list[dict]) -> dict:
        return self._request("PUT", f"/cameras/{_quote(camera_id)}/zones", json={"zones": zones}).json()

    def put_tuning(self, camera_id: str, tuning: Mapping[str, Any]) -> dict:
        return self._request("PUT", f"/cameras/{_quote(camera_id)}/tuning", json=dict(tuning)).json()

    def audit(self, **filters: Any) -> list[dict]:
        return self._get("/audit", **filters)

    def camera_health(self, camera_id: str) -> dict:
        """Scoring side, model, normal period and (``source``) the ingest side of a camera."""
        return self._get(f"/cameras/{_quote(camera_id)}/health")

    # ------------------------------------------------------------------ prompts
    def contexts(self) -> list[dict]:
        return self._get("/contexts")

    def prompt_sets(self, context: str) -> list[dict]:
        return self._get(f"/contexts/{_quote(context)}/prompt-sets")

    def prompt_set_versions(self, context: str, name: str) -> list[dict]:
        return self._get(f"/contexts/{_quote(context)}/prompt-sets/{_quote(name)}/versions")

    def put_prompt_set(self, context: str, name: str, body: Mapping[str, Any]) -> tuple[dict, bool]:
        """Save; returns the version and whether it is new (201) or unchanged (200)."""
        resp = self._request("PUT", f"/contexts/{_quote(context)}/prompt-sets/{_quote(name)}", json=dict(body))
        return resp.json(), resp.status_code == 201

    # ------------------------------------------------------------------ models
    def models(self) -> list[dict]:
        return self._get("/models")

    def activate_model(self, version_id: str) -> dict:
        return self._request("POST", f"/models/{_quote(version_id)}/activate").json()

    def training_runs(self, limit: int = 100) -> list[dict]:
        return self._get("/training-runs", limit=limit)

    # ------------------------------------------------------------------ evidence
    def fetch_url(self, url: str) -> bytes:
        """A presigned evidence URL (no API key is sent to the object store)."""
        resp = httpx.get(url, timeout=30)
        resp.raise_for_status()
        return resp.content


def _quote(segment: str) -> str:
    from urllib.parse import quote

    return quote(segment, safe=":@-._~")


def describe(exc: ApiError) -> str:
    """One line for the user."""
    if isinstance(exc, Unreachable):
        return exc.detail
    if exc.status == 401:
        return "the API refused the key (401): sign in again"
    if exc.status == 403:
        return f"not allowed for your role (403): {exc.detail}"
    return f"the API answered {exc.status}: {exc.detail}"


def filters_key(filters: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A hashable, order-free form of event filters (for caches and cursor stacks)."""
    return tuple(sorted(_params(filters)))
