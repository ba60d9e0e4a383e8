"""Choose the optical-flow preset from normal footage only (no test label is read).

    .venv/bin/python benchmarks/flow_presets.py --root ../shared/data/ucsd_ped2

The motion stream and the flow channels of the crops rest on OpenCV's DIS optical flow. For
each preset this measures, on the *training* (normal) clips of a UCSD-layout root:

- ``warp_error``: mean |I0 - warp(I1, flow)| over moving pixels (|I0 - I1| > 15 grey levels),
  for frame pairs ``gap`` apart (the tube's flow gap); ``no_flow_error`` is the same without
  warping. Lower means the flow explains the motion better.
- ``ms_per_frame``: flow time per frame at the work resolution, one thread.
- ``pseudo_auc_speed_x2`` / ``_x3``: ROC AUC of the box speed (:func:`box_speed`) of every box
  of the held-out normal clips (the trainer's calibration split) against the same box over a
  2x / 3x longer gap, i.e. the object moving 2x / 3x faster: the synthetic anomaly the
  trainer fits its gate on.

Writes benchmarks/flow_presets.json with the machine and the git commit.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import cv2
import numpy as np


def measure(root: Path, holdout_every: int = 8, progress: bool = True) -> dict:
    from sklearn.metrics import roc_auc_score
    from tqdm import tqdm

    from services.trainer.normality import detect_clips, load_grey_frames, split_holdout
    from vigil.datasets.ucsd import UCSD_FPS, read_ucsd
    from vigil.model.normality import NormalityConfig
    from vigil.model.tubes import _DIS_PRESETS, box_speed, frame_flow

    cv2.setNumThreads(1)
    cfg = NormalityConfig()
    step, gap = cfg.tube.frames(UCSD_FPS)
    clips = read_ucsd(root, "training")
    greys = [load_grey_frames(c.source, cfg.work_side) for c in clips]
    _, held = split_holdout(len(clips), holdout_every)
    held_boxes = detect_clips(cfg, [greys[i] for i in held])
    first = cfg.tube.history(UCSD_FPS)
    out: dict = {}
    for preset in tqdm(list(_DIS_PRESETS), desc="flow presets", disable=not progress):
        errs, base, seconds, n = [], [], 0.0, 0
        for g in greys:
            h, w = g.shape[1:]
            gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
            for t in range(gap, len(g), 3):
                a, b = g[t - gap], g[t]
                t0 = time.perf_counter()
                f = frame_flow(a, b, preset).astype(np.float32)
                seconds += time.perf_counter() - t0
                n += 1
                moving = np.abs(a.astype(np.int16) - b.astype(np.int16)) > 15
                if moving.sum() < 20:
                    continue
                back = cv2.remap(b, gx + f[..., 0], gy + f[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
                errs.append(np.abs(back.astype(np.float32) - a)[moving].mean())
                base.append(np.abs(b.astype(np.float32) - a)[moving].mean())
        entry = {"warp_error": float(np.mean(errs)), "no_flow_error": float(np.mean(base)),
                 "ms_per_frame": 1000 * seconds / n, "pairs": len(errs)}
        for speed in (2, 3):
            y, s = [], []
            for g, boxes in zip((greys[i] for i in held), held_boxes):
                for t in range(max(first, gap * speed), len(g), 2):
                    f1 = frame_flow(g[t - gap], g[t], preset).astype(np.float32)
                    fs = frame_flow(g[t - gap * speed], g[t], preset).astype(np.float32)
                    for box in boxes[t]:
                        s += [box_speed(f1, box), box_speed(fs, box)]
                        y += [0, 1]
            entry[f"pseudo_auc_speed_x{speed}"] = float(roc_auc_score(y, s))
        out[preset] = entry
    best = min(out, key=lambda k: out[k]["warp_error"])
    return {"root": str(root), "gap_frames": gap, "held_out_clips": [clips[i].name for i in held],
            "presets": out, "lowest_warp_error": best}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--root", type=Path, default=Path("../shared/data/ucsd_ped2"))
    ap.add_argument("--json", type=Path, default=Path(__file__).with_name("flow_presets.json"))
    args = ap.parse_args()
    result = measure(args.root)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    result.update(commit=commit, machine=f"{platform.processor() or platform.machine()}, {platform.python_version()}, "
                  "cv2 1 thread", measured=time.strftime("%Y-%m-%d"))
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["presets"], indent=2))


if __name__ == "__main__":
    main()
