"""Does the served optical flow measure fast objects? A label-free check of the motion streams.

    python benchmarks/flow_large_motion.py   # ~2 min on 2 cores; writes benchmarks/flow_large_motion.json

The object streams read a box's speed from the dense optical flow Detect computes (OpenCV DIS,
:func:`vigil.model.tubes.frame_flow`). For each box the motion detector finds on normal footage,
its speed is measured from frame t to t+1 and from t to t+3. An object keeps its course over
a few frames, so a flow that measures displacement faithfully gives a ratio of about 3; where it
falls well under 3, the flow loses objects that move more than it can follow (coarse-to-fine
flow loses objects smaller than their own displacement). The training's synthetic anomalies
(3× speed-ups, :func:`services.trainer.normality.fit_gate`) are made exactly this way, so a
ratio under 3 also means the gate learns from speed-ups the flow cannot see.

Footage: SynthCity plaza (a design-split seed) at the live 4 fps and at 10 fps, and the UCSD
Ped2 normal training clips at their own 10 fps. No label is read. Beside the served dense flow,
the same check on the plaza at 4 fps with the boxes' corner tracks (an alternative, not served:
served as the box speed it scored lower on Ped2: ``box_speed_from_tracks`` in attribute_study.json).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

BINS = ((1.0, 4.0), (4.0, 8.0), (8.0, float("inf")))  # speed from t to t+1, work pixels


def track_speed(prev: np.ndarray, cur: np.ndarray, box: tuple[int, int, int, int]) -> float | None:
    """A box's displacement from ``prev`` to ``cur`` (the box is where its object is in ``cur``),
    from pyramidal Lucas-Kanade tracks of up to 20 corners inside it (75th percentile of their
    displacement; 15 px window, 3 levels): the alternative measured beside the dense flow.
    None where fewer than 3 corners track."""
    import cv2

    x0, y0, x1, y1 = box
    p = cv2.goodFeaturesToTrack(np.ascontiguousarray(cur[y0:y1, x0:x1]), 20, 0.01, 2)
    if p is None or len(p) < 3:
        return None
    p = (p.reshape(-1, 2) + (x0, y0)).astype(np.float32).reshape(-1, 1, 2)
    q, ok, _ = cv2.calcOpticalFlowPyrLK(cur, prev, p, None, winSize=(15, 15), maxLevel=3)
    d = np.linalg.norm((q - p).reshape(-1, 2), axis=1)[ok.ravel() == 1]
    return float(np.percentile(d, 75)) if len(d) >= 3 else None


def ratios(grey: np.ndarray, fps: float, method: str = "dense", preset: str = "medium", every: int = 3) -> dict:
    """Speed over a 3-frame gap / speed over one frame, per box of the motion detector; ``method``
    dense: the served DIS flow (:func:`~vigil.model.tubes.box_speed`), tracks: :func:`track_speed`."""
    from vigil.model import stages
    from vigil.model.normality import NormalityConfig
    from vigil.model.tubes import box_speed, frame_flow

    cfg = NormalityConfig()
    boxes = stages.segment_boxes(cfg, stages.new_detector_state(cfg, fps).detector, grey)
    rows = []
    t0 = time.process_time()
    for t in range(min(20, len(grey) // 4), len(grey) - 3, every):  # past the background model's warm-up
        if method == "dense":
            f1 = frame_flow(grey[t], grey[t + 1], preset).astype(np.float32)
            f3 = frame_flow(grey[t], grey[t + 3], preset).astype(np.float32)
            speeds = [(box_speed(f1, b), box_speed(f3, b)) for b in boxes[t]]
        else:
            # the box is where its object is at t: its corners tracked from t to t+1 and to t+3
            speeds = [(track_speed(grey[t + 1], grey[t], b), track_speed(grey[t + 3], grey[t], b)) for b in boxes[t]]
        rows += [(s1, s3) for s1, s3 in speeds if s1 is not None and s3 is not None and s1 > 1.0]  # boxes that move
    r = np.asarray(rows, np.float64).reshape(-1, 2)
    out = {"fps": fps, "method": method, "cpu_s": round(time.process_time() - t0, 2), "boxes": int(len(r)),
           "ratio_median": round(float(np.median(r[:, 1] / r[:, 0])), 2)}
    for lo, hi in BINS:
        m = (r[:, 0] >= lo) & (r[:, 0] < hi)
        out[f"speed_{lo:g}_{hi:g}"] = {"boxes": int(m.sum()),
                                        "ratio_median": round(float(np.median(r[m, 1] / r[m, 0])), 2) if m.any() else None}
    return out


def main() -> dict:
    from vigil.datasets import read_ucsd
    from vigil.model.normality import NormalityConfig
    from vigil.model.tubes import work_grey
    from vigil.synthcity import DEV_SEEDS, render_clip

    side = NormalityConfig().work_side
    t0 = time.time()
    runs = {}
    for fps in (4.0, 10.0):
        clip = render_clip("plaza", DEV_SEEDS[0] + 11, int(60 * fps), fps=fps, night=False)
        runs[f"synthcity_plaza_{fps:g}fps"] = ratios(work_grey(clip.frames, side), fps)
        if fps == 4.0:
            runs["synthcity_plaza_4fps_tracks"] = ratios(work_grey(clip.frames, side), fps, method="tracks")
    ped2 = read_ucsd(Path(HERE.parent.parent / "shared/data/ucsd_ped2"), "training")[:4]
    parts = [ratios(work_grey(c.frames(), side), c.fps) for c in ped2]
    runs["ucsd_ped2_training_10fps"] = {"clips": [c.name for c in ped2], "per_clip": parts,
                                        "ratio_median_of_clips": round(float(np.median([p["ratio_median"] for p in parts])), 2)}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=HERE.parent).stdout.strip()
    rec = {"what": __doc__.split("\n\n")[0].strip(),
           "command": "python benchmarks/flow_large_motion.py", "commit": commit,
           "flow": "OpenCV DIS, preset medium (TubeConfig.flow_preset), work resolution (NormalityConfig.work_side)",
           "seconds": round(time.time() - t0, 1), "runs": runs}
    (HERE / "flow_large_motion.json").write_text(json.dumps(rec, indent=1))
    return rec


if __name__ == "__main__":
    print(json.dumps(main()["runs"], indent=1))
