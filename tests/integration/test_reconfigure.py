"""Live reconfigure on the real stack: thresholds and prompts change under load, no restart, no lost segment."""

from __future__ import annotations

import time

from services.scoring.deploy import deploy_scoring_app, reconfigure_scoring_app
from vigil.db import make_engine

from tests.integration.test_faults import _config, _count, _ingest, _settings, _stop, _wait, _worker


def test_reconfigure_under_load_keeps_replicas_and_every_segment(stack, tmp_path):
    from ray import serve

    n_cams, n_seg = 2, 40  # real-time cameras: segments keep arriving well after the switch
    s = _settings(stack, _config(stack, tmp_path, "rc", n_cams, app="vigil-reconf", realtime=True))
    s = s.model_copy(update={"serve": s.serve.model_copy(update={"encoder_num_cpus": 0.25})})
    handle = deploy_scoring_app(s)
    info0 = handle.scorer_info.remote().result(timeout_s=120)
    w, th = _worker(s, handle)
    engine = make_engine(s.database_url)
    try:
        ing = _ingest(s, n_seg)
        _wait(lambda: _count(engine) >= 15, 120, "15 rows before the reconfigure")
        ps = {"name": "live", "normal": ["people walking"], "abnormal": ["a fire"], "scene": ["a plaza"]}
        reconfigure_scoring_app(s, {"thresholds": {"default": 0.05}, "prompt_sets": {"live": ps}})
        _wait(lambda: handle.scorer_info.remote().result(timeout_s=30)["generation"] > info0["generation"], 60,
              "the new config on the replica")
        info1 = handle.scorer_info.remote().result(timeout_s=30)
        t_switch = time.time()
        assert ing.join(timeout=120)
        _wait(lambda: _count(engine) >= n_cams * n_seg, 240, "all rows")
    finally:
        _stop(w, th)
        serve.delete("vigil-reconf")
    assert info1["pid"] == info0["pid"], "reconfigure must not restart the Score replica"
    assert info1["thresholds"] == {"default": 0.05} and "live" in info1["prompt_sets"]
    assert _count(engine) == n_cams * n_seg
    from sqlmodel import Session, select

    from vigil.models import Event, SegmentScore

    with Session(engine) as db:
        late = [r for r in db.exec(select(SegmentScore)) if r.scored_at.timestamp() > t_switch + 2]
        events = list(db.exec(select(Event)))
    # threshold 0.05 (fixed mode, min 2 segments) opens an event on every camera scored after the switch
    assert late and {r.camera_id for r in late} <= {e.camera_id for e in events}


def test_prompt_set_edited_through_the_api_reaches_the_next_segments(stack, tmp_path):
    """An analyst edits the camera's context's prompt set (the API writes a new SQL version);
    the control plane reconfigures Score within seconds; the next segments are described by
    the new set, every segment is scored exactly once, and the replica never restarts."""
    from fastapi.testclient import TestClient
    from pydantic import SecretStr
    from ray import serve
    from sqlmodel import Session, select

    from services.api.main import create_app
    from services.scoring.control_plane import ServingReconciler
    from vigil.clock import as_utc
    from vigil.models import Event, SegmentScore

    n_seg = 40
    s = _settings(stack, _config(stack, tmp_path, "pe", 1, app="vigil-prompt-edit", realtime=True))
    s = s.model_copy(update={"serve": s.serve.model_copy(update={"encoder_num_cpus": 0.25}),
                             "api": s.api.model_copy(update={"admin_key": SecretStr("pe-admin")})})
    engine = make_engine(s.database_url)
    handle = deploy_scoring_app(s)
    info0 = handle.scorer_info.remote().result(timeout_s=120)
    rec = ServingReconciler(s, engine, dict, lambda uc: reconfigure_scoring_app(s, uc), applied={}, every_s=1.0).start()
    w, th = _worker(s, handle)
    w.control = rec
    new = ["a purple elephant dancing", "a red balloon floating"]
    try:
        ing = _ingest(s, n_seg)
        _wait(lambda: _count(engine) >= 8, 120, "8 rows before the edit")
        with TestClient(create_app(s, engine=engine)) as api:
            r = api.put("/contexts/default/prompt-sets/default", headers={"X-API-Key": "pe-admin"},
                        json={"normal": ["people walking"], "abnormal": new})
            assert r.status_code == 201, r.text
        t_edit = time.time()
        _wait(lambda: "default/default" in handle.scorer_info.remote().result(timeout_s=30)["prompt_sets"], 10,
              "the edited set on the replica")
        reached_s = time.time() - t_edit
        # now let events open (the camera's own thresholds, through the API): every segment is above 0
        with TestClient(create_app(s, engine=engine)) as api:
            r = api.put(f"/cameras/{s.cameras[0].id}/tuning", headers={"X-API-Key": "pe-admin"},
                        json={"threshold_mode": "fixed", "threshold": 0.0})
            assert r.status_code == 200, r.text
        t_tuned = time.time()
        assert ing.join(timeout=180)
        _wait(lambda: _count(engine) >= n_seg, 240, "all rows")
        info1 = handle.scorer_info.remote().result(timeout_s=30)
    finally:
        rec.close()
        _stop(w, th)
        serve.delete("vigil-prompt-edit")
    print(f"prompt-set edit on the replica {reached_s:.1f} s after the API answered")
    with Session(engine) as db:
        rows = list(db.exec(select(SegmentScore).order_by(SegmentScore.seq)))
    assert len(rows) == n_seg == len({r.segment_id for r in rows}), "a segment lost or scored twice"
    texts = [{d["text"] for d in r.top_descriptions} for r in rows]
    assert not any(t & set(new) for t in texts[:8]), "described by the new set before the edit"
    late = [t for r, t in zip(rows, texts) if r.scored_at.timestamp() > t_edit + reached_s + 2]
    # every description now comes from the edited set (its normal and abnormal lists)
    assert late and all(t & set(new) and t <= set(new) | {"people walking"} for t in late), late[:3]
    assert info1["pid"] == info0["pid"]
    # each row names the set that scored it: the packaged one, then the context's edited version
    assert rows[0].prompt_set.startswith("default@") and all(r.prompt_set.startswith("default/default@")
                                                              for r, t in zip(rows, texts) if t in late)
    # the events opened once the tuning reached the worker carry the new descriptions and name the new version
    with Session(engine) as db:
        events = [e for e in db.exec(select(Event)) if as_utc(e.created_at).timestamp() > t_tuned]
    assert events, "no event after the threshold was tuned to 0 through the API"
    for e in events:
        assert e.prompt_set.startswith("default/default@"), e.prompt_set
        assert {d["text"] for d in e.top_descriptions} <= set(new) | {"people walking"}, e.top_descriptions
    print(f"{len(events)} event(s) after the tuning, described by the edited set")
