"""A mask drawn through the API reaches detection on the real embedded stack.

Two cameras read the same video of one square moving along a band of the picture. The API
masks that band on one of them before it streams; the control plane hands the mask to the
worker, which paints it out before Detect, Encode and Score. The masked camera's detector
finds no box anywhere (its only mover is masked) and it opens no event, while its unmasked
twin's boxes sit on the band. The twin also scores the band as a zone with its own
threshold: every segment has a zone row, and its events name the zone.
"""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlmodel import Session, func, select

from services.api.main import create_app
from services.ingest.desired import DesiredCameras
from services.ingest.runner import IngestService
from services.scoring.control_plane import ServingReconciler
from services.scoring.deploy import deploy_scoring_app, handle_score_fn, reconfigure_scoring_app
from services.scoring.sink import Sink
from services.scoring.worker import ScoringWorker
from vigil.bus import ensure_topics, make_consumer, make_producer
from vigil.db import make_engine
from vigil.models import Event, SegmentScore
from vigil.objectstore import ObjectStore

from tests.integration.test_camera_control import _count, _wait

KEY = "masks-admin-key"
BAND = [[0.0, 0.3], [1.0, 0.3], [1.0, 0.55], [0.0, 0.55]]  # the square moves along y 40..60 of 120
N_FRAMES, PER_SEGMENT = 240, 4  # 60 segments: past the model's and the threshold's calibration (16 + 16)


def test_a_mask_over_the_only_mover_leaves_no_boxes_and_no_events(stack, moving_square_video):
    from ray import serve

    _, s = stack
    video = moving_square_video("band", n_frames=N_FRAMES)
    s = s.model_copy(update={
        "api": s.api.model_copy(update={"admin_key": SecretStr(KEY)}), "cameras": [],
        "serve": s.serve.model_copy(update={"app_name": "vigil-masks"}),
        "camera_defaults": s.camera_defaults.model_copy(update={"fps": 10.0, "frames_per_segment": PER_SEGMENT})})
    store, engine = ObjectStore(s.s3), make_engine(s.database_url)
    ensure_topics(s.kafka)
    handle = deploy_scoring_app(s)
    control = ServingReconciler(s, engine, dict, lambda uc: reconfigure_scoring_app(s, uc), applied={}, every_s=1.0)
    served = handle_score_fn(handle)
    boxes: dict[str, list] = {"masked": [], "twin": []}

    def score(frames, state, prompt_set, camera_id=None, detector_state=None, fps=None):  # noqa: ANN001, ANN202
        res = served(frames, state, prompt_set, camera_id, detector_state, fps)
        if camera_id in boxes:  # the cameras' whole views (a zone's key is <camera>~<zone>)
            boxes[camera_id].append([b for frame in res.get("boxes") or [] for b in frame])
        return res

    worker = ScoringWorker(s, score_fn=score, sink=Sink(engine), store=store, producer=make_producer(s.kafka),
                           consumer=make_consumer(s.kafka, group="vigil-masks", client_id="masks"), control=control)
    th = threading.Thread(target=worker.run, daemon=True)
    ingest = None
    admin = {"X-API-Key": KEY}
    try:
        with TestClient(create_app(s, engine=engine, store=store)) as api:
            for cid in boxes:
                r = api.post("/cameras", headers=admin, json={"id": cid, "source_type": "file", "enabled": False,
                                                              "source_uri": f"{video}?realtime=false"})
                assert r.status_code == 201, r.text
            r = api.put("/cameras/masked/masks", headers=admin, json={"masks": [{"name": "band", "polygon": BAND}]})
            assert r.status_code == 200, r.text
            # the twin scores the band as a zone of its own too, with a threshold every segment passes
            r = api.put("/cameras/twin/zones", headers=admin, json={"zones": [{"name": "lane", "polygon": BAND,
                                                                              "threshold": 0.0}]})
            assert r.status_code == 200, r.text
            control.poll()
            assert [m.name for m in control.masks_for("masked")] == ["band"]
            control.start()
            th.start()
            ingest = IngestService(s, store, make_producer(s.kafka), desired=DesiredCameras(engine, s).read,
                                   reconcile_every_s=1.0)
            ingest.start()
            for cid in boxes:
                assert api.patch(f"/cameras/{cid}", headers=admin, json={"enabled": True}).status_code == 200
            n = N_FRAMES // PER_SEGMENT
            _wait(lambda: all(_count(engine, c) >= n for c in boxes), 240, "both cameras' segments scored")
    finally:
        if ingest is not None:
            ingest.shutdown(timeout=10)
        control.close()
        worker.stop.set()
        if th.is_alive():
            th.join(30)
        worker.close()
        serve.delete("vigil-masks")
    with Session(engine) as db:
        per_segment = db.exec(select(SegmentScore.segment_id, func.count()).where(SegmentScore.camera_id == "masked")
                              .group_by(SegmentScore.segment_id)).all()
        all_events = list(db.exec(select(Event)))
        events = {e.camera_id for e in all_events if e.zone is None}
        lane_rows = db.exec(select(func.count()).select_from(SegmentScore).where(SegmentScore.zone == "lane")).one()
    assert len(per_segment) == n and {c for _, c in per_segment} == {1}  # every segment scored exactly once
    twin_on_band = [b for seg in boxes["twin"] for b in seg if 30 <= (b[1] + b[3]) / 2 <= 70]
    assert sum(1 for seg in boxes["twin"] if seg) >= n // 2, "the unmasked twin finds the square"
    assert len(twin_on_band) >= n // 2, boxes["twin"][:5]
    assert not any(boxes["masked"]), "the masked camera's detector found boxes"
    assert "masked" not in events, "the masked camera opened an event"
    assert lane_rows == n, "every segment of the twin scored in its zone too"
    lane = [e for e in all_events if e.zone == "lane"]
    assert lane and all(e.camera_id == "twin" and e.id.endswith("~lane") for e in lane), all_events
    print(f"twin: {len(twin_on_band)} boxes on the band over {n} segments, {len(lane)} event(s) in its zone; "
          "masked: none, no event")
