"""Security: auth on every endpoint, roles, camera limits, injection and traversal attempts,
credentials never in responses or logs, keys stored hashed."""

from __future__ import annotations

import logging
import re

import pytest
from sqlmodel import Session, select

from services.api.security import hash_key
from vigil.models import ApiKey, Camera, Event

SECRET = "s3cr3tP4ssw0rd"
RTSP = f"rtsp://admin:{SECRET}@10.1.2.3:554/stream1"


def _paths(app):
    schema = app.openapi()
    for path, item in schema["paths"].items():
        for method in item:
            concrete = re.sub(r"\{[^}]+\}", "1", path)
            yield method.upper(), path, concrete


def test_every_endpoint_but_the_probes_requires_auth(client, app):
    seen = 0
    for method, template, path in _paths(app):
        for headers in ({}, {"X-API-Key": "not-a-key"}, {"Authorization": "Bearer not-a-key"},
                        {"Authorization": "Basic YWRtaW46YWRtaW4="}):
            r = client.request(method, path, headers=headers)
            if template in ("/health", "/ready"):  # a kubelet probe has no key; they say only status
                assert r.status_code == 200 and set(r.json()) <= {"status", "database", "object_store"}
            else:
                assert r.status_code == 401, (method, template, headers, r.status_code)
        seen += 1
    assert seen >= 25  # the whole surface was walked
    # the OpenAPI document too; no unauthenticated interactive docs
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/openapi.json", headers={"X-API-Key": "nope"}).status_code == 401
    for path in ("/docs", "/redoc"):
        assert client.get(path).status_code in (401, 404)


@pytest.fixture
def keys(client, admin):
    """A key per role, plus a viewer and an analyst limited to cam-a."""

    def mk(name, role, cameras=None):
        r = client.post("/users", headers=admin, json={"name": name, "role": role, "cameras": cameras})
        assert r.status_code == 201, r.text
        r = client.post(f"/users/{r.json()['id']}/keys", headers=admin, json={})
        assert r.status_code == 201, r.text
        return {"X-API-Key": r.json()["key"]}

    return {
        "viewer": mk("vera", "viewer"),
        "analyst": mk("anna", "analyst"),
        "admin": mk("adam", "admin"),
        "viewer_a": mk("vic", "viewer", ["cam-a"]),
        "analyst_a": mk("al", "analyst", ["cam-a"]),
    }


def test_keys_are_stored_hashed_and_shown_once(client, admin, engine):
    uid = client.post("/users", headers=admin, json={"name": "h", "role": "viewer"}).json()["id"]
    key = client.post(f"/users/{uid}/keys", headers=admin, json={}).json()["key"]
    with Session(engine) as s:
        rows = s.exec(select(ApiKey)).all()
    assert [r.key_hash for r in rows] == [hash_key(key)]
    assert all(key not in str(r.model_dump()) for r in rows)
    listed = client.get(f"/users/{uid}/keys", headers=admin)
    assert listed.status_code == 200 and key not in listed.text and "key_hash" not in listed.text
    assert client.get("/me", headers={"X-API-Key": key}).json() == {"name": "h", "role": "viewer", "cameras": None}


def test_revoked_and_expired_keys_and_disabled_users_fail(client, admin, app, engine):
    uid = client.post("/users", headers=admin, json={"name": "r", "role": "viewer"}).json()["id"]
    made = client.post(f"/users/{uid}/keys", headers=admin, json={}).json()
    h = {"X-API-Key": made["key"]}
    assert client.get("/events", headers=h).status_code == 200
    assert client.delete(f"/keys/{made['id']}", headers=admin).json()["revoked_at"]
    app.state.key_cache.clear()  # the cache would honour the key for up to 5 s
    assert client.get("/events", headers=h).status_code == 401
    made2 = client.post(f"/users/{uid}/keys", headers=admin, json={}).json()
    h2 = {"Authorization": f"Bearer {made2['key']}"}
    assert client.get("/events", headers=h2).status_code == 200
    assert client.patch(f"/users/{uid}", headers=admin, json={"disabled": True}).status_code == 200
    app.state.key_cache.clear()
    assert client.get("/events", headers=h2).status_code == 401
    # expired
    from datetime import timedelta

    from vigil.models import utcnow

    uid3 = client.post("/users", headers=admin, json={"name": "x", "role": "viewer"}).json()["id"]
    made3 = client.post(f"/users/{uid3}/keys", headers=admin, json={"expires_in_days": 1}).json()
    with Session(engine) as s:
        row = s.get(ApiKey, made3["id"])
        row.expires_at = utcnow() - timedelta(seconds=1)
        s.add(row)
        s.commit()
    app.state.key_cache.clear()
    assert client.get("/events", headers={"X-API-Key": made3["key"]}).status_code == 401


def test_roles(client, admin, keys, seed, make_event):
    seed([make_event(0, camera="cam-a")])
    ev = "/events/cam-a:000000000"
    prompt = {"normal": ["people walking"], "abnormal": ["fighting"]}
    cam = {"id": "cam-new", "source_type": "rtsp"}
    model = {"id": "m2", "backbone": "vigil-micro"}
    # (method, path, json, lowest role that may do it)
    cases = [
        ("GET", "/events", None, "viewer"),
        ("GET", ev, None, "viewer"),
        ("GET", "/events/export.csv", None, "viewer"),
        ("GET", "/cameras", None, "viewer"),
        ("GET", "/models", None, "viewer"),
        ("GET", "/metrics", None, "viewer"),
        ("POST", f"{ev}/feedback", {"label": "true_positive"}, "analyst"),
        ("PUT", "/contexts/default/prompt-sets/p1", prompt, "analyst"),
        ("POST", "/cameras", cam, "admin"),
        ("POST", "/models", model, "admin"),
        ("POST", "/models/m2/activate", None, "admin"),
        ("GET", "/users", None, "admin"),
        ("POST", "/contexts", {"name": "site-1"}, "admin"),
    ]
    rank = {"viewer": 0, "analyst": 1, "admin": 2}
    for method, path, body, need in cases:
        for role in ("viewer", "analyst", "admin"):
            resp = client.request(method, path, headers=keys[role], json=body)
            if rank[role] >= rank[need]:
                assert resp.status_code < 400, (method, path, role, resp.status_code, resp.text)
            else:
                assert resp.status_code == 403, (method, path, role, resp.status_code)
            if method == "POST" and path in ("/cameras", "/models", "/contexts") and resp.status_code == 201:
                break  # created once; a second admin try would conflict


def test_camera_limits_hold(client, admin, keys, seed, make_event, engine):
    seed([make_event(0, camera="cam-a"), make_event(1, camera="cam-b"), make_event(2, camera="cam-b")])
    for cid in ("cam-a", "cam-b"):
        assert client.post("/cameras", headers=admin, json={"id": cid, "source_type": "rtsp"}).status_code == 201
    va = keys["viewer_a"]
    items = client.get("/events", headers=va).json()["items"]
    assert [e["camera_id"] for e in items] == ["cam-a"]
    # asking for another camera explicitly still yields nothing of it
    assert client.get("/events", headers=va, params={"camera": ["cam-b"]}).json()["items"] == []
    assert client.get("/events", headers=va, params={"camera": ["cam-a", "cam-b"]}).json()["items"] == items
    assert client.get("/events/cam-b:000000001", headers=va).status_code == 404
    assert client.get("/events/cam-b:000000001/feedback", headers=va).status_code == 404
    assert client.post("/events/cam-b:000000001/feedback", headers=keys["analyst_a"],
                       json={"label": "true_positive"}).status_code == 404
    assert client.post("/events/cam-a:000000000/feedback", headers=keys["analyst_a"],
                       json={"label": "true_positive"}).status_code == 201
    csv_text = client.get("/events/export.csv", headers=va).text
    assert "cam-a:000000000" in csv_text and "cam-b" not in csv_text
    assert [c["id"] for c in client.get("/cameras", headers=va).json()] == ["cam-a"]
    assert client.get("/cameras/cam-b", headers=va).status_code == 404
    assert client.get("/me", headers=va).json()["cameras"] == ["cam-a"]
    # the unlimited viewer sees all three
    assert len(client.get("/events", headers=keys["viewer"]).json()["items"]) == 3


def test_sql_injection_attempts_fail_cleanly(client, admin, seed, make_event, engine, keys):
    seed([make_event(i, camera="cam-a" if i else "cam-b") for i in range(5)])
    attempts = ["' OR '1'='1", "x'; DROP TABLE events; --", "\" OR 1=1 --", "%' UNION SELECT * FROM api_keys --",
                "cam-a' --", "1) OR (1=1"]
    for a in attempts:
        for params in ({"q": a}, {"camera": [a]}, {"severity": [a]}):
            r = client.get("/events", headers=admin, params=params)
            assert r.status_code in (200, 422), (params, r.status_code)
            if r.status_code == 200:
                assert r.json()["items"] == [], params
        r = client.get("/events", headers=keys["viewer_a"], params={"camera": [a]})
        assert r.status_code in (200, 422) and (r.status_code == 422 or r.json()["items"] == [])
        assert client.get(f"/events/{a}", headers=admin).status_code in (404, 422)
        assert client.get("/events", headers=admin, params={"sort": a}).status_code == 422
        assert client.get("/events", headers=admin, params={"cursor": a}).status_code == 400
        assert client.get("/events", headers={"X-API-Key": a}).status_code == 401
        assert client.put(f"/contexts/{a}/prompt-sets/x", headers=admin,
                          json={"normal": ["a"], "abnormal": ["b"]}).status_code in (404, 422)
    with Session(engine) as s:
        assert len(s.exec(select(Event)).all()) == 5


TRAVERSALS = ["..%2F..%2Fsecrets%2Fadmin.txt", "%2e%2e%2f%2e%2e%2fsecrets", "....//....//secrets",
              "..%5C..%5Csecrets", "%252e%252e%252fsecrets", "cam-a%2F..%2F..%2Fsecrets"]
# every route that takes a camera id, context, prompt-set name, event id or model version in its path
ROUTES = ["/cameras/{x}", "/cameras/{x}/snapshot", "/cameras/{x}/scores", "/cameras/{x}/health", "/contexts/{x}",
          "/contexts/{x}/prompt-sets", "/contexts/default/prompt-sets/{x}", "/prompt-sets/{x}",
          "/prompt-sets/{x}/versions", "/events/{x}", "/events/{x}/feedback", "/events/{x}/deliveries",
          "/models/{x}"]


@pytest.mark.parametrize("route", ROUTES)
def test_path_traversal_in_ids_and_names_reaches_no_object_or_file(client, admin, store, seed, make_event, route,
                                                                  settings, monkeypatch):
    """Ids and names that try to climb out of their prefix answer 404/422, never 200 or 500,
    and no object outside the camera's own keys is read: the API never builds a key or a
    path from what the URL says."""
    import builtins

    store.put("secrets/admin.txt", b"TOP-SECRET-OBJECT")
    (settings.state_dir / "secrets").mkdir(exist_ok=True)
    (settings.state_dir / "secrets" / "admin.txt").write_text("TOP-SECRET-FILE")
    seed([make_event(1)])
    client.post("/cameras", headers=admin, json={"id": "cam-a", "source_type": "synthetic", "source_uri": "plaza"})
    read_keys: list[str] = []
    get = store.get
    monkeypatch.setattr(store, "get", lambda key: read_keys.append(key) or get(key))
    opened: list[str] = []
    real_open = builtins.open
    monkeypatch.setattr(builtins, "open", lambda f, *a, **k: opened.append(str(f)) or real_open(f, *a, **k))
    for x in TRAVERSALS:
        r = client.get(route.format(x=x), headers=admin)
        assert r.status_code in (404, 405, 422), (route, x, r.status_code, r.text[:200])
        assert "TOP-SECRET" not in r.text and "root:" not in r.text
    assert not [k for k in read_keys if "secrets" in k or ".." in k], read_keys
    assert not [f for f in opened if "secrets" in f or "passwd" in f], opened


def test_camera_credentials_never_returned_or_logged(client, admin, caplog, keys):
    caplog.set_level(logging.DEBUG)
    bodies = []
    r = client.post("/cameras", headers=admin, json={"id": "gate", "source_type": "rtsp", "source_uri": RTSP})
    assert r.status_code == 201 and r.json()["has_source_uri"] is True
    bodies.append(r.text)
    bodies.append(client.get("/cameras", headers=admin).text)
    bodies.append(client.get("/cameras/gate", headers=keys["viewer"]).text)
    bodies.append(client.patch("/cameras/gate", headers=admin, json={"source_uri": RTSP + "?x=1", "name": "Gate"}).text)
    # duplicates, invalid bodies: error messages must not echo the URL either
    bodies.append(client.post("/cameras", headers=admin, json={"id": "gate", "source_type": "rtsp", "source_uri": RTSP}).text)
    bad = client.post("/cameras", headers=admin, json={"id": "bad/id", "source_type": "rtsp", "source_uri": RTSP * 40})
    assert bad.status_code == 422
    bodies.append(bad.text)
    bad2 = client.patch("/cameras/gate", headers=admin, json={"source_uri": RTSP, "enabled": "maybe"})
    assert bad2.status_code == 422
    bodies.append(bad2.text)
    bodies.append(client.get("/openapi.json", headers=admin).text)
    for b in bodies:
        assert SECRET not in b
    assert SECRET not in caplog.text
    for rec in caplog.records:
        assert SECRET not in rec.getMessage()


def test_admin_key_is_not_stored_or_echoed(client, admin, engine):
    r = client.get("/me", headers=admin)
    assert r.json()["role"] == "admin" and admin["X-API-Key"] not in r.text
    with Session(engine) as s:
        assert s.exec(select(ApiKey)).all() == []
        assert s.exec(select(Camera)).all() == []


def test_hostile_values_fail_cleanly(client, admin, seed, make_event):
    """NUL characters (PostgreSQL refuses them), out-of-range times, huge numbers: 4xx, never 500."""
    seed([make_event(0)])
    cases = [
        ("GET", "/events", {"params": {"q": "a\x00b"}}),
        ("GET", "/events", {"params": {"camera": ["cam\x00"]}}),
        ("GET", "/events", {"params": {"severity": ["\x00"]}}),
        ("GET", "/events", {"params": {"since": "0001-01-01T00:00:00+05:00"}}),
        ("GET", "/events", {"params": {"until": "9999-12-31T23:59:59-05:00"}}),
        ("GET", "/events", {"params": {"min_score": "1e309"}}),
        ("GET", "/events/export.csv", {"params": {"q": "\x00"}}),
        ("GET", "/events/cam-a%00x", {}),
        ("POST", "/events/cam-a:000000000/feedback", {"json": {"label": "true_positive", "note": "a\x00b"}}),
        ("POST", "/cameras", {"json": {"id": "nul-cam", "source_type": "rtsp", "name": "x\x00"}}),
        ("PUT", "/contexts/default/prompt-sets/nul", {"json": {"normal": ["a\x00"], "abnormal": ["b"]}}),
        ("POST", "/users", {"json": {"name": "u1", "role": "viewer", "cameras": None}}),
        ("GET", "/contexts/default/prompt-sets/p/versions/99999999999", {}),
    ]
    for method, path, kw in cases:
        r = client.request(method, path, headers=admin, **kw)
        assert r.status_code < 500, (method, path, kw, r.status_code, r.text)


def test_the_published_default_admin_key_is_refused_outside_development(tmp_path, caplog):
    from services.api.main import create_app
    from vigil.config import ConfigError, Settings

    db = {"url": f"sqlite:///{tmp_path / 'k.db'}"}
    with pytest.raises(ConfigError, match="published default key.*VIGIL_API__ADMIN_KEY"):
        create_app(Settings(state_dir=tmp_path, database=db, environment="production"))
    own = create_app(Settings(state_dir=tmp_path, database=db, environment="production", api={"admin_key": "k" * 32}))
    assert own.state.admin_key == "k" * 32
    caplog.set_level(logging.WARNING, logger="services.api.main")
    dev = create_app(Settings(state_dir=tmp_path, database=db, environment="development"))
    assert dev.state.admin_key == "vigil-dev-admin-key"
    assert any("development" in r.getMessage() and "default admin key" in r.getMessage() for r in caplog.records)


def test_vigil_api_in_production_with_the_default_key_exits_2_naming_the_setting(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from services.cli import app

    monkeypatch.setenv("VIGIL_ENVIRONMENT", "production")
    monkeypatch.setenv("VIGIL_DATABASE__URL", f"sqlite:///{tmp_path / 'k.db'}")
    r = CliRunner().invoke(app, ["api", "--state-dir", str(tmp_path)])
    assert r.exit_code == 2, r.output
    assert "api.admin_key is the published default" in r.output
    assert not (tmp_path / "k.db").exists()  # refused before the schema is made
