"""Masks, threshold tuning, who may edit what, and the audit log of every control-plane change."""

from __future__ import annotations

from sqlmodel import Session

from vigil.models import Camera, ModelVersion

SQUARE = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]


def _cameras(engine) -> None:
    with Session(engine) as s:
        s.add_all([Camera(id="cam-a", source_type="rtsp", context="campus", source_uri="rtsp://u:pw@10.1.1.1/a"),
                   Camera(id="cam-b", source_type="file", context="subway")])
        s.commit()


def _user(client, admin, role: str, cameras: list[str] | None = None) -> dict[str, str]:
    name = f"{role}-{'-'.join(cameras) if cameras else 'all'}"
    r = client.post("/users", headers=admin, json={"name": name, "role": role, "cameras": cameras})
    assert r.status_code == 201, r.text
    uid = r.json()["id"]
    return {"X-API-Key": client.post(f"/users/{uid}/keys", headers=admin, json={}).json()["key"]}


def test_masks_and_tuning_are_validated_stored_and_returned(client, admin, engine):
    _cameras(engine)
    r = client.put("/cameras/cam-a/masks", headers=admin, json={"masks": [{"name": "tree", "polygon": SQUARE}]})
    assert r.status_code == 200, r.text
    assert r.json()["masks"] == [{"name": "tree", "polygon": SQUARE}]
    assert client.get("/cameras/cam-a", headers=admin).json()["masks"][0]["name"] == "tree"
    bad = client.put("/cameras/cam-a/masks", headers=admin, json={"masks": [{"polygon": [[0, 0], [1, 1], [0.5, 0.5]]}]})
    assert bad.status_code == 422 and "no area" in bad.text
    outside = client.put("/cameras/cam-a/masks", headers=admin, json={"masks": [{"polygon": [[0, 0], [1.5, 0], [0, 1]]}]})
    assert outside.status_code == 422
    r = client.put("/cameras/cam-a/tuning", headers=admin, json={"threshold_mode": "fixed", "threshold": 0.7})
    assert r.status_code == 200 and r.json()["tuning"] == {"threshold_mode": "fixed", "threshold": 0.7}
    # a release above the configured threshold (0.5) is refused with what is wrong
    r = client.put("/cameras/cam-a/tuning", headers=admin, json={"release_threshold": 0.9})
    assert r.status_code == 422 and "must not exceed threshold" in r.json()["detail"][0]["msg"]
    assert client.put("/cameras/cam-a/tuning", headers=admin, json={"threshold": 2}).status_code == 422
    assert client.put("/cameras/nope/masks", headers=admin, json={"masks": []}).status_code == 404


def test_an_analyst_limited_to_cameras_edits_only_their_masks_thresholds_and_contexts(client, admin, engine):
    _cameras(engine)
    analyst = _user(client, admin, "analyst", ["cam-a"])  # campus only
    viewer = _user(client, admin, "viewer")
    body = {"normal": ["people walking"], "abnormal": ["a person cycling"]}
    assert client.put("/contexts/campus/prompt-sets/default", headers=analyst, json=body).status_code == 201
    r = client.put("/contexts/subway/prompt-sets/default", headers=analyst, json=body)
    assert r.status_code == 403 and "campus" in r.json()["detail"] and "subway" in r.json()["detail"]
    assert client.delete("/contexts/subway/prompt-sets/default", headers=analyst).status_code == 403
    assert client.put("/cameras/cam-a/masks", headers=analyst, json={"masks": [{"polygon": SQUARE}]}).status_code == 200
    assert client.put("/cameras/cam-b/masks", headers=analyst, json={"masks": []}).status_code == 404
    assert client.put("/cameras/cam-b/tuning", headers=analyst, json={"threshold": 0.4}).status_code == 404
    assert client.put("/cameras/cam-a/tuning", headers=viewer, json={"threshold": 0.4}).status_code == 403
    assert client.put("/contexts/subway/prompt-sets/default", headers=viewer, json=body).status_code == 403
    # an unlimited analyst edits any context; cameras themselves stay an admin's
    anyone = _user(client, admin, "analyst")
    assert client.put("/contexts/subway/prompt-sets/default", headers=anyone, json=body).status_code == 201
    assert client.patch("/cameras/cam-a", headers=anyone, json={"enabled": False}).status_code == 403


def test_every_change_is_audited_with_who_before_and_after_and_no_source_url(client, admin, engine):
    _cameras(engine)
    analyst = _user(client, admin, "analyst", ["cam-a"])
    client.post("/cameras", headers=admin, json={"id": "cam-new", "source_type": "rtsp",
                                                 "source_uri": "rtsp://admin:hunter2@10.9.9.9/s"})
    client.patch("/cameras/cam-new", headers=admin, json={"enabled": False})
    client.patch("/cameras/cam-new", headers=admin, json={"enabled": False})  # no change: no entry
    client.delete("/cameras/cam-new", headers=admin)
    client.put("/cameras/cam-a/masks", headers=analyst, json={"masks": [{"name": "screen", "polygon": SQUARE}]})
    client.put("/cameras/cam-a/tuning", headers=analyst, json={"threshold": 0.6})
    body = {"normal": ["people walking"], "abnormal": ["a person cycling"]}
    client.put("/contexts/campus/prompt-sets/default", headers=analyst, json=body)
    client.put("/contexts/campus/prompt-sets/default", headers=analyst, json={**body, "abnormal": ["a car"]})
    client.put("/contexts/subway/prompt-sets/default", headers=analyst, json=body)  # refused: not audited
    with Session(engine) as s:
        s.add_all([ModelVersion(id="heads:v1", kind="heads", backbone="b", active=True),
                   ModelVersion(id="heads:v2", kind="heads", backbone="b")])
        s.commit()
    assert client.post("/models/heads:v2/activate", headers=admin).status_code == 200

    assert client.get("/audit", headers=analyst).status_code == 403  # admins only
    log = client.get("/audit", headers=admin).json()
    assert [e["action"] for e in log][::-1] == [
        "camera.create", "camera.update", "camera.delete", "camera.masks", "camera.tuning", "prompt_set.save",
        "prompt_set.save", "model.activate"]
    assert "hunter2" not in str(log) and "10.9.9.9" not in str(log)
    by = {(e["action"], e["target"]): e for e in log}
    upd = by[("camera.update", "camera:cam-new")]
    assert upd["actor_role"] == "admin" and upd["before"]["enabled"] is True and upd["after"]["enabled"] is False
    assert by[("camera.create", "camera:cam-new")]["after"]["has_source_uri"] is True
    masks = by[("camera.masks", "camera:cam-a")]
    assert masks["actor_role"] == "analyst" and masks["before"]["masks"] == []
    assert masks["after"]["masks"] == [{"name": "screen", "polygon": SQUARE}]
    edits = [e for e in log if e["action"] == "prompt_set.save"]
    assert edits[0]["before"]["abnormal"] == ["a person cycling"] and edits[0]["after"]["abnormal"] == ["a car"]
    assert edits[1]["before"] is None
    act = by[("model.activate", "model:heads")]
    assert act["before"] == {"active": ["heads:v1"]} and act["after"] == {"active": ["heads:v2"]}
    only = client.get("/audit", headers=admin, params={"target": "camera:cam-a"}).json()
    assert {e["action"] for e in only} == {"camera.masks", "camera.tuning"}
    assert len(client.get("/audit", headers=admin, params={"action": "prompt_set.save", "limit": 1}).json()) == 1


def test_snapshot_is_a_recent_frame_of_the_camera(client, admin, engine, store):
    from datetime import timedelta

    import cv2
    import numpy as np

    from vigil.models import SegmentScore, utcnow
    from vigil.segments import encode_segment

    _cameras(engine)
    assert client.get("/cameras/cam-a/snapshot", headers=admin).status_code == 404  # never streamed
    now = utcnow()
    frames = np.zeros((4, 48, 64, 3), np.uint8)
    frames[:, :, 32:] = 250  # right half bright
    store.put("segments/cam-a/1.npz", encode_segment(list(frames), quality=90, meta={}))
    with Session(engine) as s:
        for seq, key in ((1, "segments/cam-a/1.npz"), (2, "segments/cam-a/gone.npz")):  # the newest was purged
            t = now - timedelta(seconds=10 - seq)
            s.add(SegmentScore(segment_id=f"cam-a:{seq}", camera_id="cam-a", seq=seq, score=0.1, model_version="m",
                               object_key=key, t_start=t, t_end=t + timedelta(seconds=1), frame_scores=[0.1] * 4))
        s.commit()
    r = client.get("/cameras/cam-a/snapshot", headers=admin)
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"
    img = cv2.imdecode(np.frombuffer(r.content, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == (48, 64, 3) and img[:, 40:].mean() > 200 and img[:, :24].mean() < 30
    limited = _user(client, admin, "viewer", ["cam-b"])
    assert client.get("/cameras/cam-a/snapshot", headers=limited).status_code == 404


def test_zones_are_validated_audited_and_events_filter_by_zone(client, admin, engine):
    from vigil.models import Event, utcnow

    _cameras(engine)
    walk = {"name": "walkway", "polygon": SQUARE, "prompt_set": "walkway", "threshold": 0.4, "loiter_s": 60}
    r = client.put("/cameras/cam-a/zones", headers=admin, json={"zones": [walk]})
    assert r.status_code == 200, r.text
    assert r.json()["zones"] == [walk]
    dup = client.put("/cameras/cam-a/zones", headers=admin, json={"zones": [walk, walk]})
    assert dup.status_code == 422 and "unique" in dup.text
    assert client.put("/cameras/cam-a/zones", headers=admin,
                      json={"zones": [{**walk, "name": "has space"}]}).status_code == 422
    assert client.put("/cameras/cam-a/zones", headers=admin,
                      json={"zones": [{**walk, "threshold": 1.5}]}).status_code == 422
    (entry,) = client.get("/audit", headers=admin, params={"action": "camera.zones"}).json()
    assert entry["before"]["zones"] == [] and entry["after"]["zones"] == [walk]
    now = utcnow()
    with Session(engine) as s:
        for i, zone in enumerate((None, "walkway", "walkway", "door")):
            s.add(Event(id=f"ev:{i}", camera_id="cam-a", zone=zone, t_start=now, t_end=now, first_seq=i, last_seq=i,
                        peak_score=0.7, model_version="m"))
        s.commit()

    def ids(**params):
        return sorted(e["id"] for e in client.get("/events", headers=admin, params=params).json()["items"])

    assert ids(zone="walkway") == ["ev:1", "ev:2"]
    assert ids(zone="-") == ["ev:0"]  # the whole view
    assert ids(zone=["-", "door"]) == ["ev:0", "ev:3"]
    assert client.get("/events/ev:1", headers=admin).json()["zone"] == "walkway"
    csv = client.get("/events/export.csv", headers=admin, params={"zone": "door"}).text.splitlines()
    assert csv[0].split(",")[:3] == ["id", "camera_id", "zone"] and csv[1].startswith("ev:3,cam-a,door,")
