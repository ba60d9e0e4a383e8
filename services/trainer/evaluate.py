"""Held-out evaluation of a model version and the registration gate.

Every version is scored the way the serving path scores (``AnomalyModel.score`` segment by
segment, camera state carried along), on cached encoder features:

- each camera's ``s_pred`` is calibrated on its *training* normal clips (in key order);
- each held-out clip starts from that calibrated state;
- **AUC/AP**: frame level, pooled over every held-out clip (held-out normal calibration clips
  and confirmed anomalies; frame labels from the clip's meta when present), each frame
  taking its segment's score (:func:`vigil.evaluation.frame_level_metrics`);
- **false alarms per hour**: on held-out *normal* clips only; an alarm is a run of
  consecutive segments at or above the camera's threshold (one alarm however long);
- **misses**: held-out abnormal segments under the threshold; **missed events**: held-out
  confirmed-anomaly events none of whose segments reaches the threshold (no alarm at all);
- ``feedback``: the mean score and the count over threshold of the false-positive segments
  (training data: reported to show the feedback took effect, never used by the gate).

Gate (:func:`gate_decision`): the candidate is registered only if its AUC is not lower than
the active version's (minus ``auc_tolerance``), its false alarms per hour are not higher
(plus ``fa_tolerance``), it misses no more held-out abnormal segments and events at the
cameras' thresholds (plus ``miss_tolerance`` segments), and it is strictly better in AUC or
false alarms. Without held-out anomalies there is no AUC and no misses, and the gate decides
on false alarms alone (stated in the decision).

*Chosen here:* misses are checked besides AUC because AUC ranks while alarms need a
threshold: a retrain on false-positive feedback can raise the AUC and still push held-out
anomalies under the threshold. Measured with vigil-tiny on the trainer tests' SynthCity
scenario (``tests/unit/trainer/scenario.py``, 160x120, six events of plain plaza footage
marked false positive): AUC 0.899 -> 0.917 with misses 5 -> 6 of 14. Such a version would
silently lose detections, so it is not registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from vigil.evaluation import frame_level_metrics
from vigil.model.anomaly import AnomalyModel, SegmentHistory

from .dataset import ClipRef, TrainingSet
from .features import ClipFeatures


@dataclass
class ClipScores:
    score: np.ndarray  # [S] fused
    s_sem: np.ndarray  # [S] (nan when off)
    s_pred: np.ndarray  # [S] (nan while uncalibrated / no history)


def calibrated_states(
    model: AnomalyModel, ts: TrainingSet, feats: dict[str, ClipFeatures]
) -> dict[str, SegmentHistory | None]:
    """Per camera, the state after calibrating ``s_pred`` on its training normal clips."""
    out: dict[str, SegmentHistory | None] = {}
    for cam in ts.cameras:
        encs = [e for c in ts.select(split="train", source="calibration", camera=cam) for e in feats[c.clip_id].encoded()]
        out[cam] = model.calibrate(encs) if len(encs) >= 3 else None
    return out


def score_clip(model: AnomalyModel, f: ClipFeatures, state: SegmentHistory | None) -> ClipScores:
    n = len(f)
    score, s_sem, s_pred = np.zeros(n), np.full(n, np.nan), np.full(n, np.nan)
    for i, enc in enumerate(f.encoded()):
        res, state = model.score(enc, state)
        score[i] = res.score
        if res.s_sem is not None:
            s_sem[i] = res.s_sem
        if res.s_pred is not None:
            s_pred[i] = res.s_pred
    return ClipScores(score, s_sem, s_pred)


def _alarms(above: np.ndarray) -> int:
    a = np.asarray(above, bool).astype(np.int8)
    return int(np.sum(np.diff(np.concatenate([[0], a])) == 1))


def evaluate(
    model: AnomalyModel, ts: TrainingSet, feats: dict[str, ClipFeatures], threshold: Callable[[str], float],
) -> dict[str, Any]:
    states = calibrated_states(model, ts, feats)
    scores, labels = [], []
    alarms, normal_s, misses, n_abn = 0, 0.0, 0, 0
    anomaly_events, missed_events = 0, 0
    fp_scores, fp_over = [], 0
    per_clip: dict[str, list[float]] = {}
    for c in ts.clips:
        if c.split != "eval" and c.source != "false_positive":
            continue
        f = feats[c.clip_id]
        sc = score_clip(model, f, states.get(c.camera_id))
        per_clip[c.clip_id] = [round(float(x), 5) for x in sc.score]
        thr = threshold(c.camera_id)
        if c.source == "false_positive":
            fp_scores.extend(sc.score.tolist())
            fp_over += int((sc.score >= thr).sum())
            if c.split != "eval":
                continue
        seg_lab = (f.labels.mean(axis=1) >= 0.5).astype(int)
        scores.append(np.repeat(sc.score, f.labels.shape[1]))
        labels.append(f.labels.reshape(-1).astype(int))
        if c.source == "calibration" and not seg_lab.any():
            alarms += _alarms(sc.score >= thr)
            normal_s += f.labels.size / f.fps
        abn = seg_lab == 1
        n_abn += int(abn.sum())
        misses += int((sc.score[abn] < thr).sum())
        if c.source == "confirmed_anomaly":
            anomaly_events += 1
            missed_events += int(not (sc.score >= thr).any())
    out: dict[str, Any] = {"auc": None, "ap": None}
    if labels:
        y = np.concatenate(labels)
        if 0 < y.sum() < len(y):
            m = frame_level_metrics(scores, labels)
            out.update(auc=m.auc, ap=m.ap)
    hours = normal_s / 3600.0
    out.update(
        false_alarms=alarms, normal_hours=hours, fa_per_hour=(alarms / hours) if hours > 0 else None,
        abnormal_segments=n_abn, misses=misses, anomaly_events=anomaly_events, missed_events=missed_events,
        feedback={"fp_segments": len(fp_scores), "fp_mean_score": float(np.mean(fp_scores)) if fp_scores else None,
                  "fp_over_threshold": fp_over},
        clip_scores=per_clip,
    )
    return out


def gate_decision(candidate: dict[str, Any], active: dict[str, Any], *, auc_tolerance: float = 0.0,
                  fa_tolerance: float = 0.0, miss_tolerance: int = 0) -> tuple[bool, str]:
    """(passes, reason) — see the module doc."""
    reasons, better = [], False
    if candidate.get("abnormal_segments") and active.get("abnormal_segments"):
        c_m, a_m = candidate.get("misses", 0), active.get("misses", 0)
        if c_m > a_m + miss_tolerance:
            return False, f"misses {c_m} > active {a_m} of {candidate['abnormal_segments']} held-out abnormal segments"
        c_e, a_e = candidate.get("missed_events", 0), active.get("missed_events", 0)
        if c_e > a_e:
            return False, f"missed events {c_e} > active {a_e} of {candidate.get('anomaly_events')} held-out anomalies"
        reasons.append(f"misses {a_m} -> {c_m} of {candidate['abnormal_segments']}")
    c_auc, a_auc = candidate.get("auc"), active.get("auc")
    if c_auc is not None and a_auc is not None:
        if c_auc < a_auc - auc_tolerance:
            return False, f"AUC {c_auc:.4f} < active {a_auc:.4f}"
        better |= c_auc > a_auc
        reasons.append(f"AUC {a_auc:.4f} -> {c_auc:.4f}")
    else:
        reasons.append("no held-out anomalies: AUC not compared")
    c_fa, a_fa = candidate.get("fa_per_hour"), active.get("fa_per_hour")
    if c_fa is not None and a_fa is not None:
        if c_fa > a_fa + fa_tolerance:
            return False, f"false alarms/h {c_fa:.2f} > active {a_fa:.2f}"
        better |= c_fa < a_fa
        reasons.append(f"false alarms/h {a_fa:.2f} -> {c_fa:.2f}")
    else:
        reasons.append("no held-out normal footage: false alarms not compared")
    if c_auc is None and c_fa is None:
        return False, "nothing to evaluate on: no held-out clips"
    if not better:
        return False, "not better than the active version: " + "; ".join(reasons)
    return True, "; ".join(reasons)
