"""Thresholds that follow the scene: a long SynthCity camera whose light fades at dusk.

One camera (a design-split seed, ``DEV_SEEDS``: no benchmark camera), day light, rendered at
the live 4 fps: a normal stretch, then a slow dusk (brightness falling to ``dusk_gain`` with
the sensor noise of a darkening camera), then anomalies staged in the dark. Every segment
goes through the served stages (:mod:`vigil.model.stages`: detect → encode → score, the
camera's state carried along) and the scoring worker's own :class:`~vigil.events.EventTracker`
twice: with the default adapting threshold and with the threshold frozen after calibration
(``threshold_adapt_window: 0``, the old behaviour). Events that overlap no staged anomaly
are false alarms.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from vigil.config import CameraParams

T0 = datetime(2026, 1, 1, 16, 0, tzinfo=UTC)


def _events(scores: list[float], descriptions: list[list[dict]], params: CameraParams, seg_s: float):
    from vigil.events import EventTracker

    tr = EventTracker.for_camera("dusk", params)
    opened, thresholds = {}, []
    for i, s in enumerate(scores):
        t = T0 + timedelta(seconds=i * seg_s)
        for tn in tr.update(segment_id=f"dusk:{i}", seq=i, t_start=t, t_end=t + timedelta(seconds=seg_s), score=s,
                            top_descriptions=descriptions[i]):
            opened[tn.event.id] = (tn.event.first_seq, tn.event.last_seq)
        thresholds.append(tr.threshold)
    if tr.open is not None:  # still open at the end of the clip: it never ended
        opened[tr.open["id"]] = (tr.open["first_seq"], len(scores) - 1)
    return sorted(opened.values()), thresholds


def run_dusk(*, scene: str = "plaza", seed_offset: int = 11, minutes: float = 56.0, fps: float = 4.0,
             segment_frames: int = 16, dusk: tuple[float, float] = (14.0, 44.0), dusk_gain: float = 0.3,
             anomalies: tuple[tuple[str, float], ...] = (("fighting", 13.0), ("running", 16.0),
                                                         ("fighting", 48.0), ("running", 52.0)),
             backbone: str = "vigil-tiny", normality_minutes: float = 12.0, steps: int = 150,
             progress: bool = True) -> dict[str, Any]:
    """``dusk``: (start, end) minute of the fade (30 min by default, as a real dusk takes);
    ``anomalies``: (type, minute) staged by day, after the normal period, and in the dark;
    ``normality_minutes``: the camera's normality is learnt on its first minutes (daylight, as a
    camera installed by day would; 0 = zero-shot defaults only), and its version scores (and
    its threshold is learnt) from there on."""
    from itertools import islice

    from tqdm.auto import tqdm

    from vigil.model import stages
    from vigil.model.anomaly import AnomalyModel
    from vigil.model.normality import NormalityConfig
    from vigil.synthcity import DEV_SEEDS, render_clip

    n = int(minutes * 60 * fps)
    f = lambda m: int(m * 60 * fps)  # noqa: E731  minute -> frame
    clip = render_clip(scene, DEV_SEEDS[0] + seed_offset, n, fps=fps, night=False,
                       anomalies=[(t, f(m)) for t, m in anomalies], lighting=[(f(dusk[0]), 1.0), (f(dusk[1]), dusk_gain)])
    model = AnomalyModel.create(backbone)
    normality, geometry = None, NormalityConfig()
    if normality_minutes > 0:
        normality = _learn_normality(clip.frames[:f(normality_minutes)], fps, steps, model)
        geometry = normality.config
    det_state, state = stages.new_detector_state(geometry, fps), {}
    scores, descs, labels, streams = [], [], [], []
    it = iter(clip.frames)
    bar = tqdm(total=n // segment_frames, desc="dusk through the served stages", unit="seg", disable=not progress)
    k = 0
    while seg := list(islice(it, segment_frames)):
        frames = np.stack(seg)
        obs, det_state = stages.detect(frames, det_state, geometry, fps=fps, tubes=normality is not None)
        enc = stages.encode(model, frames, obs)
        res, state = stages.score(model, normality, enc, obs, state, None, fps=fps)
        scores.append(float(res["score"]))
        descs.append(res.get("top_descriptions") or [])
        streams.append({k: None if v is None else round(float(v), 4) for k, v in (res.get("streams") or {}).items()}
                       | {"s_obj": None if res.get("s_obj") is None else round(float(res["s_obj"]), 4),
                          "s_zero_shot": None if res.get("s_zero_shot") is None else round(float(res["s_zero_shot"]), 4)})
        labels.append(int(clip.labels[k:k + len(seg)].max()))
        k += len(seg)
        bar.update(1)
    bar.close()
    # the camera's own version scores from the end of its training footage on (the platform
    # activates it then and learns its threshold from the segments that follow, never from the
    # footage it was trained on); the zero-shot defaults score from the first segment
    first = f(normality_minutes) // segment_frames
    runs = threshold_runs(scores, descs, labels, first=first, fps=fps, segment_frames=segment_frames)
    y = np.asarray(labels)
    d0, d1 = f(dusk[0]) // segment_frames, f(dusk[1]) // segment_frames
    blk = f(15.0) // segment_frames
    s = np.asarray(scores)
    return {"scene": scene, "seed": DEV_SEEDS[0] + seed_offset, "split": "dev", "minutes": minutes, "fps": fps,
            "segments": len(scores), "dusk_minutes": list(dusk), "dusk_gain": dusk_gain,
            "anomalies_staged": [list(a) for a in anomalies], "backbone": model.version,
            "normality": {"minutes": normality_minutes, "steps": steps, "version": normality.version if normality else None},
            "mean_score": {"before_dusk": round(float(s[first:d0][y[first:d0] == 0].mean()), 4),
                           "dark": round(float(s[d1:][y[d1:] == 0].mean()), 4)},
            # how the normal level drifts: the 95th percentile of normal scores in each 15 minutes scored
            "normal_p95_by_15min": [round(float(np.percentile(s[i:i + blk][y[i:i + blk] == 0], 95)), 3)
                                    for i in range(first, len(s), blk) if (y[i:i + blk] == 0).any()],
            "runs": runs, "scores": [round(x, 4) for x in scores], "streams": streams, "labels": labels}


def threshold_runs(scores: list[float], descriptions: list[list[dict]], labels: list[int], *, first: int, fps: float,
                   segment_frames: int) -> dict[str, dict[str, Any]]:
    """The camera's events from segment ``first`` on, with the default adapting threshold and
    with it frozen after calibration; events overlapping no staged anomaly are false alarms."""
    y = np.asarray(labels)
    anomaly_runs = _runs(y)
    runs = {}
    for name, params in (("adapting", CameraParams(fps=fps, frames_per_segment=segment_frames)),
                         # the old behaviour: never moves after calibration, not even after a long event
                         ("frozen", CameraParams(fps=fps, frames_per_segment=segment_frames, threshold_adapt_window=0,
                                                 event_relearn_after_s=0))):
        events, thr = _events(scores[first:], descriptions[first:], params, segment_frames / fps)
        events = [(a + first, b + first) for a, b in events]
        false = [e for e in events if not y[e[0]:e[1] + 1].any()]
        found = [r for r in anomaly_runs if r[1] >= first and any(e[0] <= r[1] and r[0] <= e[1] for e in events)]
        runs[name] = {"events": events, "false_alarms": len(false),
                      "false_alarm_segments": int(sum(b - a + 1 for a, b in false)),
                      "anomalies_opened": len(found), "anomalies": sum(r[1] >= first for r in anomaly_runs),
                      "scored_from_segment": first,
                      "threshold_start": round(thr[params.calibration_skip_segments + params.calibration_segments], 4),
                      "threshold_end": round(thr[-1], 4)}
    return runs


def record_dusk(out: str = "benchmarks/synthcity_dusk.json", normality_minutes: float = 12.0,
                **kw: Any) -> dict[str, Any]:
    """Both detectors on the dusk clip (zero-shot defaults; the camera's own normality learnt on
    its first ``normality_minutes`` of daylight), written to ``out`` with the commit and the command."""
    import json
    import subprocess
    from pathlib import Path

    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    runs = {"zero_shot_defaults": run_dusk(normality_minutes=0, **kw),
            f"daylight_normality_{normality_minutes:g}min": run_dusk(normality_minutes=normality_minutes, **kw)}
    rec = {"what": "thresholds on a long clip with a lighting change: SynthCity plaza (dev seed, never a "
                   "benchmark camera) at 4 fps, 14 minutes of day, then light fading to 0.3 over 30 minutes with a "
                   "darkening camera's noise, anomalies staged by day and in the dark, through the served stages and "
                   "the scoring worker's EventTracker with the default adapting threshold and with it frozen after "
                   "calibration; the camera's own version scores from the end of its daylight normal period",
           "command": f"python -c \"from services.eval.dusk import record_dusk; record_dusk({out!r})\"",
           "commit": commit,
           "summary": {k: {m: {f: r["runs"][m][f] for f in ("false_alarms", "false_alarm_segments", "anomalies_opened",
                                                            "anomalies", "threshold_start", "threshold_end")}
                           for m in r["runs"]} | {"mean_score": r["mean_score"], "normal_p95_by_15min": r["normal_p95_by_15min"]}
                       for k, r in runs.items()},
           "runs": runs}
    Path(out).write_text(json.dumps(rec, indent=1))
    return rec


def _learn_normality(frames: np.ndarray, fps: float, steps: int, zero_shot: Any):
    """The camera's normality from its first minutes (clips of one minute), as train-normal learns it."""
    import tempfile
    from pathlib import Path

    import cv2

    from services.trainer.normality import train_normal
    from vigil.model.normality import NormalityModel

    work = Path(tempfile.mkdtemp(prefix="vigil-dusk-"))
    per = int(60 * fps)
    dirs = []
    for c in range(0, len(frames), per):
        d = work / f"clip{c // per:03d}"
        d.mkdir()
        for i, img in enumerate(frames[c:c + per]):
            cv2.imwrite(str(d / f"{i:05d}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
        dirs.append(d)
    path = train_normal(dirs, work / "model", fps=fps, steps=steps, holdout_every=3, zero_shot=zero_shot, progress=False)
    return NormalityModel.load(path)


def _runs(y: np.ndarray) -> list[tuple[int, int]]:
    out, start = [], None
    for i, v in enumerate(list(y) + [0]):
        if v and start is None:
            start = i
        elif not v and start is not None:
            out.append((start, i - 1))
            start = None
    return out
