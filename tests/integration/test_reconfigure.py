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
