"""The feedback loop: events an analyst marks as false positives score lower after retraining,
and the held-out confirmed anomalies are not missed more than before.

SynthCity, two cameras (plaza ``cam_a``, campus walkway ``cam_b``), backbone ``vigil-micro``:
normal calibration clips per camera (every 3rd held out), three events on ``cam_a`` marked
false positive, four confirmed-anomaly events (fire, crowd gathering, fighting, vehicle off
road) held out. Same data path as ``vigil train`` (builder, feature cache, packing, objective,
evaluation); the epochs run in-process here (the Ray Train path is the integration test's).
"""

from __future__ import annotations

import json

import numpy as np

from services.trainer.config import TrainConfig
from services.trainer.dataset import build_training_set
from services.trainer.evaluate import evaluate
from services.trainer.features import FeatureCache
from services.trainer.loop import build_model, data_flags, fit_in_process
from services.trainer.run import pack
from vigil.model.anomaly import AnomalyModel
from vigil.model.heads import save_heads

from . import scenario

THRESHOLD = 0.5  # the cameras' default params.threshold


def test_false_positive_feedback_lowers_their_scores_without_more_misses(store, engine, micro, tmp_path):
    scenario.build(store, engine)
    # coop off: with vigil-micro's random text tower, random CoOp context tokens alone move s_sem
    # arbitrarily; CoOp training is covered by test_objective and the integration run.
    cfg = TrainConfig(coop=False, data={"frames_per_segment": scenario.T})
    ts = build_training_set(store, engine, cfg.data)
    feats = {c.clip_id: FeatureCache(store, micro, scenario.T).get(c) for c in ts.clips}
    before = evaluate(micro, ts, feats, lambda cam: THRESHOLD)
    data = pack(micro, ts, feats, cfg)
    model = build_model("vigil-micro", None, cfg, micro.prompt_set, **data_flags(data, cfg))
    fit_in_process(model, micro.prompt_set, cfg, data)
    save_heads(model, tmp_path / "heads.pt")
    cand = AnomalyModel.create("vigil-micro", heads=tmp_path / "heads.pt")
    after = evaluate(cand, ts, feats, lambda cam: THRESHOLD)

    keys = ("auc", "ap", "fa_per_hour", "false_alarms", "misses", "abnormal_segments", "missed_events",
            "anomaly_events", "feedback")
    print("\nFEEDBACK-LOOP before:", json.dumps({k: before[k] for k in keys}))
    print("FEEDBACK-LOOP after: ", json.dumps({k: after[k] for k in keys}))
    fp_clips = [c.clip_id for c in ts.select(source="false_positive")]
    for cid in fp_clips + [c.clip_id for c in ts.select(source="confirmed_anomaly")]:
        print(f"  {cid}: {before['clip_scores'][cid]} -> {after['clip_scores'][cid]}")

    fb0, fb1 = before["feedback"], after["feedback"]
    assert fb0["fp_segments"] == fb1["fp_segments"] == 9
    assert fb0["fp_over_threshold"] == 9, "the scenario's false positives are alarms under zero-shot"
    assert fb1["fp_over_threshold"] == 0, "after retraining none of them raises an alarm"
    assert fb1["fp_mean_score"] < 0.5 * fb0["fp_mean_score"]
    for cid in fp_clips:  # each marked segment, not just the mean
        assert np.all(np.array(after["clip_scores"][cid]) < np.array(before["clip_scores"][cid]))
    assert before["anomaly_events"] == after["anomaly_events"] == 4
    assert after["missed_events"] <= before["missed_events"] == 0, "no held-out anomaly goes unalarmed"
    assert after["auc"] >= before["auc"] - 0.01
    assert after["fa_per_hour"] <= before["fa_per_hour"]
