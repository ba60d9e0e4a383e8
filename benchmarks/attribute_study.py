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
    return clips


def main() -> None:
    cmd, dataset = sys.argv[1], sys.argv[2]
    if cmd == "extract":
        extract(dataset, sys.argv[3])
    else:
        raise SystemExit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
