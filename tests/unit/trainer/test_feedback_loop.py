"""The feedback loop: events an analyst marks as false positives score lower after retraining,
and a version that misses held-out confirmed anomalies more than its parent is never
registered (the evaluation gate), with feedback or without (vigil-tiny, the scenes' prompts).

Two backbones: ``vigil-micro`` (random weights: fast, shows the mechanics; its features do not
tell one event from another, so the retrain moves every semantic score together) and
``vigil-tiny`` (trained on SynthCity: the plaza's crowds marked normal, fire held out).

SynthCity, two cameras (plaza ``cam_a``, campus walkway ``cam_b``), backbone ``vigil-micro``:
normal calibration clips per camera (every 3rd held out), three events on ``cam_a`` marked
false positive, four confirmed-anomaly events (fire, crowd gathering, fighting, vehicle off
road) held out. Same data path as ``vigil train`` (builder, feature cache, packing, objective,
evaluation); the epochs run in-process here (the Ray Train path is the integration test's).
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from services.trainer.config import TrainConfig
from services.trainer.dataset import build_training_set
from services.trainer.evaluate import evaluate, gate_decision
from services.trainer.features import FeatureCache
from services.trainer.loop import build_model, data_flags, fit_in_process
from services.trainer.run import pack
from vigil.model.anomaly import AnomalyModel
from vigil.model.backbones import WEIGHTS_DIR
from vigil.model.heads import save_heads

from . import scenario

THRESHOLD = 0.5  # the cameras' default params.threshold


def _retrain(parent: AnomalyModel, backbone: str, store, engine, tmp_path):
    """Evaluate ``parent``, fit the heads on the stored data as ``vigil train`` does, evaluate the candidate."""
    # coop off: with vigil-micro's random text tower, random CoOp context tokens alone move s_sem
    # arbitrarily; CoOp training is covered by test_objective and the integration run.
    cfg = TrainConfig(coop=False, data={"frames_per_segment": scenario.T})
    ts = build_training_set(store, engine, cfg.data)
    feats = {c.clip_id: FeatureCache(store, parent, scenario.T).get(c) for c in ts.clips}
    before = evaluate(parent, ts, feats, lambda cam: THRESHOLD)
    data = pack(parent, ts, feats, cfg)
    model = build_model(backbone, None, cfg, parent.prompt_set, **data_flags(data, cfg))
    fit_in_process(model, parent.prompt_set, cfg, data)
    save_heads(model, tmp_path / "heads.pt")
    cand = AnomalyModel.create(backbone, heads=tmp_path / "heads.pt", prompt_set=parent.prompt_set)
    return ts, before, evaluate(cand, ts, feats, lambda cam: THRESHOLD)


def _report(tag: str, ts, before: dict, after: dict) -> list[str]:
    """Print the before/after numbers (the closing notes quote them); returns the false-positive clips."""
    keys = ("auc", "ap", "fa_per_hour", "false_alarms", "misses", "abnormal_segments", "missed_events",
            "anomaly_events", "feedback")
    print(f"\n{tag} before:", json.dumps({k: before[k] for k in keys}))
    print(f"{tag} after: ", json.dumps({k: after[k] for k in keys}))
    fp_clips = [c.clip_id for c in ts.select(source="false_positive")]
    for cid in fp_clips + [c.clip_id for c in ts.select(source="confirmed_anomaly")]:
        print(f"  {cid}: {before['clip_scores'][cid]} -> {after['clip_scores'][cid]}")
    return fp_clips


def test_false_positive_feedback_lowers_their_scores_without_more_misses(store, engine, micro, tmp_path):
    scenario.build(store, engine)
    ts, before, after = _retrain(micro, "vigil-micro", store, engine, tmp_path)

    fp_clips = _report("FEEDBACK-LOOP", ts, before, after)

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
    # with random features the retrain also pulls two edge segments of held-out anomalies under
    # the threshold (0 -> 2 of 14, measured): the gate must then refuse the version
    ok, why = gate_decision(after, before)
    assert ok == (after["misses"] <= before["misses"] and (after["auc"] > before["auc"]
                                                          or after["fa_per_hour"] < before["fa_per_hour"])), why


@pytest.mark.skipif(not (WEIGHTS_DIR / "vigil-tiny.pt").is_file(), reason="vigil-tiny checkpoint missing")
def test_retraining_on_normal_footage_alone_never_deploys_lost_detections(store, engine, tmp_path):
    """No feedback at all: a retrain on the cameras' normal footage.

    Measured with the crop-trained vigil-tiny and the scenes' own prompts: zero-shot misses 3
    of 14 held-out abnormal segments; the retrain (segment-mean hinge on calibration segments
    that score over the margin) lifts AUC 0.908 -> 0.920 but misses 3 -> 5 and one event, false
    alarms unchanged. The frames-only vigil-tiny of before missed 5 -> 5: none of its
    calibration segments crossed the margin, so nothing moved. Such a version must not reach
    the cameras: the evaluation gate refuses any candidate that misses more.
    """
    parent = AnomalyModel.create("vigil-tiny", prompt_set=scenario.prompt_set())
    scenario.build(store, engine, calib_frames=96, fp_events=0, size=(160, 120))
    ts, before, after = _retrain(parent, "vigil-tiny", store, engine, tmp_path)
    keys = ("auc", "fa_per_hour", "misses", "abnormal_segments", "missed_events")
    print("\nNORMAL-ONLY before:", json.dumps({k: before[k] for k in keys}))
    print("NORMAL-ONLY after: ", json.dumps({k: after[k] for k in keys}))
    assert not ts.select(source="false_positive")
    assert before["abnormal_segments"] == after["abnormal_segments"] > 0
    assert before["misses"] < before["abnormal_segments"], "zero-shot finds some anomalies to keep"
    assert after["auc"] >= before["auc"] - 0.01
    assert after["fa_per_hour"] <= before["fa_per_hour"]
    ok, why = gate_decision(after, before)
    assert after["misses"] <= before["misses"] or not ok, f"a version that misses more was registered: {why}"


@pytest.mark.skipif(not (WEIGHTS_DIR / "vigil-tiny.pt").is_file(), reason="vigil-tiny checkpoint missing")
def test_crowds_marked_normal_on_the_plaza_score_lower(store, engine, tmp_path):
    """An analyst on the plaza (``cam_a``) marks three crowd gatherings as false positives
    (markets gather crowds there); fire on both cameras and a crowd on the walkway are held out.

    Measured (crop-trained vigil-tiny, the scenes' prompts): the marked segments score lower
    (mean 0.705 -> 0.473), false alarms 75 -> 0 per hour, AUC 0.956 -> 0.958, but misses 2 -> 3
    of 16 held-out abnormal segments, so the evaluation gate refuses the version. The cause is
    the objective, not this backbone: the feedback lowers *every* abnormal description on the
    plaza, and the held-out fire there falls to ~0.5, the predictive stream's share of the fused
    score (1.0 -> 0.50-0.53). The frames-only vigil-tiny of before showed the same fall (0.97 ->
    0.51) and passed with a 0.00004 margin over the threshold.
    """
    parent = AnomalyModel.create("vigil-tiny", prompt_set=scenario.prompt_set())
    scenario.build(store, engine, calib_frames=96, size=(160, 120), fp_anomaly="crowd_gathering",
                   tp_anomalies={"cam_a": ["fire", "fire"], "cam_b": ["fire", "crowd_gathering"]})
    ts, before, after = _retrain(parent, "vigil-tiny", store, engine, tmp_path)
    fp_clips = _report("CROWD-FEEDBACK", ts, before, after)

    fb0, fb1 = before["feedback"], after["feedback"]
    assert fb0["fp_over_threshold"] > 0, "the marked crowds raised alarms under zero-shot"
    for cid in fp_clips:
        assert np.all(np.array(after["clip_scores"][cid]) < np.array(before["clip_scores"][cid]))
    assert fb1["fp_mean_score"] < 0.75 * fb0["fp_mean_score"]
    assert after["fa_per_hour"] < before["fa_per_hour"]
    assert before["anomaly_events"] == after["anomaly_events"] == 4
    assert before["misses"] < before["abnormal_segments"], "zero-shot finds held-out anomalies to keep"
    assert after["missed_events"] <= before["missed_events"]
    assert after["auc"] >= before["auc"] - 0.01
    ok, why = gate_decision(after, before)
    assert after["misses"] <= before["misses"] or not ok, f"a version that misses more was registered: {why}"
