"""How the attribute stream's features were chosen: a study on normal footage and one labelled dataset.

Extracts, through the served Detect stage (:func:`vigil.model.stages.detect`, one cold camera
per clip, 16-frame segments), every box's attribute vector (:mod:`vigil.model.attributes`)
of a dataset's training (normal) and test clips, caches them, then scores test boxes by
their k-nearest-neighbour distance to the normal boxes in several feature spaces and
reports the pooled frame AUC (the maximum over a frame's boxes, smoothed as the served
object stream is).

    python benchmarks/attribute_study.py extract avenue ../shared/data/cuhk_avenue_subset
    python benchmarks/attribute_study.py score avenue

Choices are made on one dataset and confirmed on the other (the record says which).
"""

from __future__ import annotations

import json
import sys
import time
from itertools import islice
from pathlib import Path

import numpy as np

CACHE = Path("/tmp/vigil-attribute-study")


def extract(dataset: str, root: str, segment_frames: int = 16) -> None:
    from services.eval.ucsd import READERS
    from vigil.model import stages
    from vigil.model.normality import NormalityConfig

    geometry = NormalityConfig()
    CACHE.mkdir(parents=True, exist_ok=True)
    out = {}
    for split in ("training", "testing"):
        for clip in READERS[dataset](Path(root), split):
            t0 = time.perf_counter()
            state = stages.new_detector_state(geometry, clip.fps)
            owners, attrs, n = [], [], 0
            it = clip.iter_frames()
            while seg := list(islice(it, segment_frames)):
                obs, state = stages.detect(np.stack(seg), state, geometry)
                owners.append(obs.owner + n)
                attrs.append(obs.attributes)
                n += len(seg)
            key = f"{split}/{clip.name}"
            out[f"{key}/owner"] = np.concatenate(owners)
            out[f"{key}/attrs"] = np.concatenate(attrs)
            out[f"{key}/n"] = np.asarray(n)
            if clip.labels is not None:
                out[f"{key}/labels"] = np.asarray(clip.labels)
            print(f"{key}: {n} frames, {len(out[f'{key}/owner'])} boxes, {time.perf_counter() - t0:.1f} s", flush=True)
    np.savez_compressed(CACHE / f"{dataset}.npz", **out)


def load(dataset: str) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    data = np.load(CACHE / f"{dataset}.npz")
    clips: dict[str, dict[str, dict[str, np.ndarray]]] = {"training": {}, "testing": {}}
    for k in data.files:
        split, name, field = k.split("/")
        clips[split].setdefault(name, {})[field] = data[k]
    from vigil.model.attributes import N_ATTRIBUTES

    for split in clips.values():  # a cache written before an attribute was added: zeros for it (dwell is recomputed)
        for c in split.values():
            c["attrs"] = np.pad(c["attrs"], ((0, 0), (0, N_ATTRIBUTES - c["attrs"].shape[1])))
    return clips


def _smooth(x: np.ndarray, fps: float, sigma_s: float = 0.5) -> np.ndarray:
    from vigil.model.tubes import gaussian_smooth

    return gaussian_smooth(x, sigma_s * fps)


def _auc(scores: list[np.ndarray], labels: list[np.ndarray]) -> dict[str, float]:
    from services.eval.ucsd import frame_metrics

    m = frame_metrics(scores, labels)
    return {"auc": round(m["auc"], 4), "auc_video_norm": round(m["auc_video_norm"], 4)}


def _frames(clip: dict, box_scores: np.ndarray) -> np.ndarray:
    s = np.full(int(clip["n"]), -np.inf)
    np.maximum.at(s, clip["owner"], box_scores)
    return np.where(np.isfinite(s), s, 0.0)


def _dwell(clip: dict, fps: float, dwell_s: float, w: int = 64, h: int = 48) -> np.ndarray:
    """Dwell of the cached boxes (normalised coordinates) by the served occupancy rule."""
    from vigil.model.attributes import clip_dwell

    a, owner, n = clip["attrs"], clip["owner"], int(clip["n"])
    boxes: list[list] = [[] for _ in range(n)]
    index: list[list[int]] = [[] for _ in range(n)]
    for i in range(len(a)):
        cx, cy, bw, bh = a[i, :4]
        boxes[owner[i]].append((int((cx - bw / 2) * w), int((cy - bh / 2) * h),
                                int(np.ceil((cx + bw / 2) * w)), int(np.ceil((cy + bh / 2) * h))))
        index[owner[i]].append(i)
    per_frame, _ = clip_dwell(boxes, w, h, fps, dwell_s)
    out = np.zeros(len(a))
    for idx, d in zip(index, per_frame):
        out[idx] = d
    return out


def score(dataset: str) -> dict:
    """Pooled frame AUC of each candidate feature, scored as a box density or a raw value (no labels used to fit)."""
    from sklearn.neighbors import NearestNeighbors

    from vigil.model.attributes import attribute_features

    clips = load(dataset)
    fps = 10.0 if dataset == "ucsd" else 25.0
    train = np.concatenate([c["attrs"] for c in clips["training"].values()]).astype(np.float64)
    test = list(clips["testing"].values())
    labels = [c["labels"] for c in test]
    out: dict[str, dict] = {}

    def density(name: str, feats, k: int = 5) -> None:
        f = feats(train)
        mu, sd = f.mean(0), f.std(0) + 1e-3
        nn = NearestNeighbors(n_neighbors=k).fit((f - mu) / sd)
        scores = [_smooth(_frames(c, nn.kneighbors((feats(c["attrs"].astype(np.float64)) - mu) / sd)[0].mean(1)), fps)
                  for c in test]
        out[name] = _auc(scores, labels)

    density("speed", lambda a: np.sqrt(a[:, 6:7]))
    density("velocity_density", lambda a: attribute_features(a)[:, :-4])
    density("velocity_density_with_place_0.5", lambda a: np.concatenate(
        [attribute_features(a)[:, :-4], 0.5 * a[:, :4] / train[:, :4].std(0)], 1))
    moving = train[train[:, 6] > 0]
    for k, q in ((20, 50), (20, 90), (100, 50), (100, 90)):
        nn = NearestNeighbors(n_neighbors=k).fit(moving[:, :2])
        scores = []
        for c in test:
            a = c["attrs"].astype(np.float64)
            ref = np.percentile(moving[nn.kneighbors(a[:, :2])[1], 6], q, axis=1)
            scores.append(_smooth(_frames(c, a[:, 6] / np.maximum(ref, 0.5)), fps))
        out[f"place_speed_k{k}_q{q}"] = _auc(scores, labels)
    for tau in (2.0, 5.0, 10.0):
        out[f"dwell_{tau:g}s"] = _auc([_smooth(_frames(c, _dwell(c, fps, tau)), fps) for c in test], labels)
    return out


def main() -> None:
    cmd, dataset = sys.argv[1], sys.argv[2]
    if cmd == "extract":
        extract(dataset, sys.argv[3])
    elif cmd == "score":
        print(json.dumps(score(dataset), indent=1))
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
