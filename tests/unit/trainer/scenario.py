"""A small SynthCity world for the trainer tests: two cameras, normal calibration clips,
false-positive events on one camera and confirmed anomalies on both."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vigil.synthcity import render_clip

from .fakes import add_event

T = 8
FPS = 4.0
SIZE = (96, 72)
CAMERAS = {"cam_a": ("plaza", 1_000_011), "cam_b": ("campus_walkway", 1_000_012)}


@dataclass
class Scenario:
    fp_events: list[str]
    tp_events: list[str]


def _segments(frames: np.ndarray, labels: np.ndarray | None = None, abnormal_only: bool = False) -> list[np.ndarray]:
    out = []
    for i in range(len(frames) // T):
        if labels is not None and abnormal_only and labels[i * T : (i + 1) * T].mean() < 0.5:
            continue
        out.append(frames[i * T : (i + 1) * T])
    return out


def prompt_set():
    """The SynthCity prompts of both cameras' scenes (plaza, campus walkway) in one set."""
    from services.eval.synthcity import prompt_set_for
    from vigil.model.prompts import PromptSet

    sets = [prompt_set_for(scene) for scene, _ in CAMERAS.values()]
    union = lambda field: list(dict.fromkeys(t for p in sets for t in getattr(p, field)))  # noqa: E731
    return PromptSet(name="synthcity-plaza-walkway", context="synthcity", normal=union("normal"),
                     abnormal=union("abnormal"), scene=union("scene"))


# the default confirmed anomalies: per camera, event k stages these two (8 s and 28 s in)
TP_ANOMALIES = ([("fire", 8), ("crowd_gathering", 28)], [("fighting", 8), ("vehicle_off_road", 28)])


def build(store, engine, *, calib_clips: int = 3, calib_frames: int = 48, fp_events: int = 3, tp_per_camera: int = 2,
          size: tuple[int, int] = SIZE, fp_anomaly: str | None = None,
          tp_anomalies: dict[str, list[str]] | None = None) -> Scenario:
    """Calibration clips on both cameras, confirmed anomalies on both, false positives on ``cam_a``.

    A false-positive event is plain footage of ``cam_a`` (3 segments), or with ``fp_anomaly``
    the abnormal segments of a clip staging that SynthCity anomaly type (a kind of event the
    site calls normal). ``tp_anomalies`` (camera -> types, one event each, staged 8 s in)
    replaces the default confirmed anomalies (:data:`TP_ANOMALIES`, ``tp_per_camera`` events).
    """
    from vigil.db import session_scope
    from services.trainer.dataset import put_calibration_clip

    w, h = size
    fps_ids, tp_ids = [], []
    with session_scope(engine) as db:
        seq = 0
        for cam, (scene, seed) in CAMERAS.items():
            for k in range(calib_clips):
                c = render_clip(scene, seed=seed, n_frames=calib_frames, width=w, height=h, fps=FPS, warmup_s=20 + 40 * k)
                put_calibration_clip(store, cam, f"{k:03d}", c.frames, fps=FPS, labels=c.labels)
            staged = ([[(t, 8)] for t in tp_anomalies[cam]] if tp_anomalies is not None
                      else [TP_ANOMALIES[k % 2] for k in range(tp_per_camera)])
            for k, anomalies in enumerate(staged):
                c = render_clip(scene, seed=seed, n_frames=48, width=w, height=h, fps=FPS, warmup_s=300 + 50 * k,
                                anomalies=anomalies)
                segs = _segments(c.frames, c.labels, abnormal_only=True)
                ev = f"ev-tp-{cam}-{k}"
                add_event(db, store, camera_id=cam, event_id=ev, segments=segs, label="true_positive", first_seq=seq, fps=FPS)
                seq += 100
                tp_ids.append(ev)
        scene, seed = CAMERAS["cam_a"]
        for k in range(fp_events):
            if fp_anomaly is None:
                c = render_clip(scene, seed=seed, n_frames=3 * T, width=w, height=h, fps=FPS, warmup_s=600 + 30 * k)
                segs = _segments(c.frames)
            else:
                c = render_clip(scene, seed=seed, n_frames=48, width=w, height=h, fps=FPS, warmup_s=600 + 30 * k,
                                anomalies=[(fp_anomaly, 8)])
                segs = _segments(c.frames, c.labels, abnormal_only=True)
            ev = f"ev-fp-{k}"
            add_event(db, store, camera_id="cam_a", event_id=ev, segments=segs, label="false_positive",
                      first_seq=seq, fps=FPS)
            seq += 100
            fps_ids.append(ev)
    return Scenario(fps_ids, tp_ids)
