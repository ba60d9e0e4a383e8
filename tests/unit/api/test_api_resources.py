"""Cameras, contexts, versioned prompt sets, model versions, training runs, health/ready/metrics."""

from __future__ import annotations

from sqlmodel import Session, select

from vigil.models import Camera, TrainingRun


def test_camera_crud(client, admin, engine, app):
    r = client.post("/cameras", headers=admin, json={"id": "cam-1", "name": "Gate", "source_type": "rtsp",
                                                     "context": "walkway", "source_uri": "rtsp://u:p@h/s"})
    assert r.status_code == 201, r.text
    assert r.json() == {**r.json(), "id": "cam-1", "name": "Gate", "context": "walkway", "enabled": True,
                        "has_source_uri": True}
    assert "source_uri" not in r.json()
    assert client.post("/cameras", headers=admin, json={"id": "cam-1", "source_type": "rtsp"}).status_code == 409
    r = client.patch("/cameras/cam-1", headers=admin, json={"enabled": False, "source_uri": "rtsp://h2/s"})
    assert r.status_code == 200 and r.json()["enabled"] is False
    with Session(engine) as s:
        stored = s.get(Camera, "cam-1").source_uri
    assert stored.startswith("fernet:") and "rtsp://h2/s" not in stored  # sealed at rest
    assert app.state.source_seal.open(stored) == "rtsp://h2/s"  # what ingest reads
    assert client.patch("/cameras/cam-1", headers=admin, json={"source_type": None}).status_code == 422
    assert [c["id"] for c in client.get("/cameras", headers=admin).json()] == ["cam-1"]
    assert client.delete("/cameras/cam-1", headers=admin).status_code == 204
    assert client.get("/cameras/cam-1", headers=admin).status_code == 404
    assert client.delete("/cameras/cam-1", headers=admin).status_code == 404


def test_prompt_sets_are_versioned(client, admin):
    base = "/contexts/walkway/prompt-sets"
    v1 = {"normal": ["people walking"], "abnormal": ["riding a bicycle"]}
    r = client.put(f"{base}/site", headers=admin, json=v1)
    assert r.status_code == 201 and r.json()["version"] == 1 and r.json()["created_by"] == "bootstrap-admin"
    h1 = r.json()["content_hash"]
    r = client.put(f"{base}/site", headers=admin, json=v1)  # identical: no new version
    assert r.status_code == 200 and r.json()["version"] == 1
    v2 = {**v1, "abnormal": ["riding a bicycle", "skateboarding"]}
    r = client.put(f"{base}/site", headers=admin, json=v2)
    assert r.status_code == 201 and r.json()["version"] == 2 and r.json()["content_hash"] != h1
    assert client.get(f"{base}/site", headers=admin).json()["abnormal"] == ["riding a bicycle", "skateboarding"]
    assert [v["version"] for v in client.get(f"{base}/site/versions", headers=admin).json()] == [1, 2]
    assert client.get(f"{base}/site/versions/1", headers=admin).json()["abnormal"] == ["riding a bicycle"]
    assert client.put(f"{base}/other", headers=admin, json=v1).status_code == 201
    assert [p["name"] for p in client.get(base, headers=admin).json()] == ["other", "site"]
    assert client.get("/contexts/default/prompt-sets", headers=admin).json() == []  # per context
    # invalid: a description both normal and abnormal, empty lists, bad template
    assert client.put(f"{base}/bad", headers=admin, json={"normal": ["x"], "abnormal": ["x"]}).status_code == 422
    assert client.put(f"{base}/bad", headers=admin, json={"normal": [], "abnormal": ["x"]}).status_code == 422
    assert client.put(f"{base}/bad", headers=admin, json={**v1, "template": "no placeholder"}).status_code == 422
    # delete = tombstone version; history stays; re-creating continues the numbering
    assert client.delete(f"{base}/site", headers=admin).status_code == 204
    assert client.get(f"{base}/site", headers=admin).status_code == 404
    assert [p["name"] for p in client.get(base, headers=admin).json()] == ["other"]
    assert len(client.get(f"{base}/site/versions", headers=admin).json()) == 3
    r = client.put(f"{base}/site", headers=admin, json=v1)
    assert r.status_code == 201 and r.json()["version"] == 4


def test_contexts(client, admin):
    assert client.post("/contexts", headers=admin, json={"name": "campus", "description": "walkways"}).status_code == 201
    assert client.post("/contexts", headers=admin, json={"name": "campus"}).status_code == 409
    assert client.post("/contexts", headers=admin, json={"name": "../x"}).status_code == 422
    assert client.get("/contexts/campus", headers=admin).json()["description"] == "walkways"
    assert [c["name"] for c in client.get("/contexts", headers=admin).json()] == ["campus"]


def test_model_versions_list_and_activate(client, admin, engine):
    for mid in ("m1", "m2"):
        assert client.post("/models", headers=admin, json={"id": mid, "backbone": "vigil-micro"}).status_code == 201
    assert client.post("/models", headers=admin, json={"id": "m1", "backbone": "x"}).status_code == 409
    assert all(not m["active"] for m in client.get("/models", headers=admin).json())
    assert client.post("/models/m1/activate", headers=admin).json()["active"] is True
    r = client.post("/models/m2/activate", headers=admin)
    assert r.status_code == 200 and r.json()["activated_at"]
    active = {m["id"]: m["active"] for m in client.get("/models", headers=admin).json()}
    assert active == {"m1": False, "m2": True}
    # a camera's normality version: activating it leaves the heads and other cameras' versions active
    for mid, cam in (("normality:n1", "cam-a"), ("normality:n2", "cam-b"), ("normality:n3", "cam-a")):
        assert client.post("/models", headers=admin, json={"id": mid, "backbone": "vigil-micro", "kind": "normality",
                                                           "camera_id": cam}).status_code == 201
        assert client.post(f"/models/{mid}/activate", headers=admin).status_code == 200
    active = {m["id"]: m["active"] for m in client.get("/models", headers=admin).json()}
    assert active == {"m1": False, "m2": True, "normality:n1": False, "normality:n2": True, "normality:n3": True}
    assert client.post("/models/nope/activate", headers=admin).status_code == 404
    # the registry's own heads ids (<backbone>@<package>+heads:<digest>) can be read and activated
    heads = "vigil-micro@package:b5a0479ba4e2+heads:1f2e3d4c5b6a"
    assert client.post("/models", headers=admin, json={"id": heads, "backbone": "vigil-micro"}).status_code == 201
    assert client.get(f"/models/{heads}", headers=admin).json()["id"] == heads
    assert client.post(f"/models/{heads}/activate", headers=admin).json()["active"] is True
    assert client.post(f"/models/{heads}/activate", headers=admin).status_code == 200
    client.post("/models/m2/activate", headers=admin)
    with Session(engine) as s:
        s.add(TrainingRun(id="run-1", status="succeeded", output_model_version="m2"))
        s.commit()
    runs = client.get("/training-runs", headers=admin).json()
    assert [(r["id"], r["status"]) for r in runs] == [("run-1", "succeeded")]


def test_ready_and_metrics(client, admin):
    for headers in (admin, {}):  # probes answer without credentials, and say nothing but status
        r = client.get("/ready", headers=headers)
        assert r.status_code == 200 and r.json() == {"status": "ready", "database": "ok", "object_store": "ok"}
    assert client.get("/metrics").status_code == 401
    client.get("/events", headers=admin)
    client.get("/events/does-not-exist", headers=admin)
    m = client.get("/metrics", headers=admin)
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    assert 'vigil_api_requests_total{method="GET",route="/events",status="200"}' in m.text
    # labelled by route template, not by the raw path
    assert 'route="/events/{event_id}",status="404"' in m.text and "does-not-exist" not in m.text
    assert "vigil_api_request_seconds_bucket" in m.text


def test_ready_reports_a_broken_database(settings, store, tmp_path):
    from fastapi.testclient import TestClient

    from services.api.main import create_app
    from vigil.db import make_engine

    (tmp_path / "db-is-a-dir").mkdir()
    bad = make_engine(f"sqlite:///{tmp_path}/db-is-a-dir")  # SQLite cannot open a directory
    app = create_app(settings, engine=bad, store=store)
    with TestClient(app) as c:
        r = c.get("/ready")  # no key: a kubelet probe has none
    assert r.status_code == 503 and r.json() == {"status": "not ready", "database": "unavailable", "object_store": "ok"}


def test_openapi_is_complete(app):
    schema = app.openapi()
    assert schema["info"]["title"] == "Vigil API"
    schemes = schema["components"]["securitySchemes"]
    assert {"APIKeyHeader", "HTTPBearer"} <= set(schemes)
    for path, item in schema["paths"].items():
        for method, op in item.items():
            assert op.get("summary") or op.get("description"), (method, path)
            assert {"200", "201", "202", "204"} & set(op["responses"]), (method, path)  # a documented success
            if path not in ("/health", "/ready"):  # the open probes
                assert op.get("security"), (method, path)


def test_camera_scores_and_health(client, admin, engine):
    from datetime import timedelta

    from vigil.models import Camera, CameraState, SegmentScore, utcnow

    now = utcnow()
    assert client.get("/cameras/cam-a/health", headers=admin).status_code == 404  # no such camera
    with Session(engine) as s:
        s.add_all([Camera(id="cam-a", source_type="file"), Camera(id="cam-b", source_type="file")])
        s.commit()
    assert client.get("/cameras/cam-a/health", headers=admin).json()["state"] == "unknown"
    with Session(engine) as s:
        for i in range(10):
            t = now - timedelta(seconds=40 - 4 * i)
            s.add(SegmentScore(segment_id=f"cam-a:{i}", camera_id="cam-a", seq=i, score=i / 10, model_version="m",
                               object_key=f"segments/cam-a/{i:09d}.npz", t_start=t, t_end=t + timedelta(seconds=4),
                               scored_at=t + timedelta(seconds=4), frame_scores=[0.1] * 4))
        s.add(CameraState(camera_id="cam-a", last_seq=9, updated_at=now - timedelta(seconds=2)))
        s.commit()
    body = client.get("/cameras/cam-a/scores", headers=admin).json()
    assert [x["seq"] for x in body["items"]] == list(range(10)) and body["threshold"] == 0.5
    assert body["items"][0]["t_start"].endswith(("Z", "+00:00"))  # UTC, with its offset
    # the latest n, still oldest first
    assert [x["seq"] for x in client.get("/cameras/cam-a/scores", headers=admin, params={"limit": 3}).json()["items"]] == [7, 8, 9]
    since = (now - timedelta(seconds=30)).isoformat()
    got = client.get("/cameras/cam-a/scores", headers=admin, params={"since": since, "limit": 2}).json()["items"]
    assert [x["seq"] for x in got] == [3, 4]
    h = client.get("/cameras/cam-a/health", headers=admin).json()
    assert h["state"] == "running" and h["last_seq"] == 9 and h["last_segment_at"]
    assert h["scored_by"] == "zero-shot defaults" and h["normality_version"] is None and h["last_model_version"] == "m"
    from vigil.models import ModelVersion, NormalPeriod

    with Session(engine) as s:  # the camera's own version, and another camera's (not this one's)
        s.add(ModelVersion(id="normality:aaa", kind="normality", camera_id="cam-a", backbone="b", active=True, activated_at=now))
        s.add(ModelVersion(id="normality:bbb", kind="normality", camera_id="cam-b", backbone="b", active=True, activated_at=now))
        s.add(NormalPeriod(camera_id="cam-a", status="trained", target_s=60, recorded_s=64, clips=[{"key": "k"}]))
        s.commit()
    h = client.get("/cameras/cam-a/health", headers=admin).json()
    assert h["scored_by"] == "own normality normality:aaa" and h["normality_version"] == "normality:aaa"
    assert h["normal_period"]["status"] == "trained" and h["normal_period"]["clips"] == 1
    assert "key" not in str(h["normal_period"]), "object keys stay inside"
    with Session(engine) as s:
        st = s.get(CameraState, "cam-a")
        st.updated_at = now - timedelta(minutes=5)
        s.add(st)
        for sc in s.exec(select(SegmentScore)):
            sc.scored_at = now - timedelta(minutes=5)
            s.add(sc)
        s.commit()
    assert client.get("/cameras/cam-a/health", headers=admin).json()["state"] == "stalled"
    # camera limits apply
    uid = client.post("/users", headers=admin, json={"name": "lim", "role": "viewer", "cameras": ["cam-b"]}).json()["id"]
    k = {"X-API-Key": client.post(f"/users/{uid}/keys", headers=admin, json={}).json()["key"]}
    assert client.get("/cameras/cam-a/scores", headers=k).status_code == 404
    assert client.get("/cameras/cam-a/health", headers=k).status_code == 404
    assert client.get("/cameras/cam-b/scores", headers=k).json()["items"] == []


def test_configured_cameras_seed_the_cameras_table_once(settings, engine, store, admin):
    """The demo's own cameras are listed (not "No cameras yet"), marked as from configuration;
    seeding again at the next start adds nothing and keeps an edit."""
    from fastapi.testclient import TestClient

    from services.api.main import create_app
    from vigil.config import CameraConfig, SyntheticSource

    s = settings.model_copy(update={"cameras": [
        CameraConfig(id="demo-0", name="Plaza", source=SyntheticSource(scene="plaza"), params={"context": "campus"}),
        CameraConfig(id="demo-1", enabled=False, source=SyntheticSource(scene="street")),
    ]})
    with TestClient(create_app(s, engine=engine, store=store)) as c:
        cams = {x["id"]: x for x in c.get("/cameras", headers=admin).json()}
        assert set(cams) == {"demo-0", "demo-1"} and all(x["from_config"] for x in cams.values())
        assert cams["demo-0"]["source_type"] == "synthetic" and cams["demo-0"]["context"] == "campus"
        assert cams["demo-1"]["enabled"] is False and not cams["demo-0"]["has_source_uri"]
        assert c.patch("/cameras/demo-0", headers=admin, json={"name": "Plaza north"}).status_code == 200
        assert c.post("/cameras", headers=admin, json={"id": "added", "source_type": "rtsp"}).json()["from_config"] is False
    with TestClient(create_app(s, engine=engine, store=store)) as c:  # the next start
        cams = {x["id"]: x for x in c.get("/cameras", headers=admin).json()}
    assert set(cams) == {"demo-0", "demo-1", "added"} and cams["demo-0"]["name"] == "Plaza north"
