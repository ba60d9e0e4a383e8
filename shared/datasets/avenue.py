"""CUHK Avenue (Lu, Shi & Jia, ICCV 2013).

Layout::

    ROOT/training_videos/01.avi ...     normal videos
    ROOT/testing_videos/01.avi ...      test videos
    ROOT/testing_label_mask/1_label.mat ...   (or ROOT/ground_truth_demo/testing_label_mask/)
        ``volLabel``: cell 1×T of H×W masks; a frame is abnormal when its mask has a pixel set.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vigil.datasets.base import Clip, DatasetLayoutError, require_dir

AVENUE_FPS = 25.0


def _label_dir(root: Path) -> Path:
    for cand in (root / "testing_label_mask", root / "ground_truth_demo" / "testing_label_mask"):
        if cand.is_dir():
            return cand
    raise DatasetLayoutError(f"{root} has no testing_label_mask/ (nor ground_truth_demo/testing_label_mask/)")


def mask_labels(mat_path: Path) -> np.ndarray:
    """Frame labels from one ``N_label.mat``: 1 where the frame's mask has any pixel set."""
    from scipy.io import loadmat

    vol = loadmat(str(mat_path))["volLabel"].ravel()
    return np.array([int(np.asarray(m).any()) for m in vol], dtype=np.uint8)


def read_avenue(root: str | Path, split: str = "testing") -> list[Clip]:
    root = require_dir(Path(root), "Avenue root")
    folder = require_dir(root / f"{split}_videos", f"Avenue {split} videos")
    videos = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".avi", ".mp4", ".mkv"))
    if not videos:
        raise DatasetLayoutError(f"no videos in {folder}")
    clips = [Clip(name=v.stem, source=v, fps=AVENUE_FPS) for v in videos]
    if split == "testing":
        labels = _label_dir(root)
        for c in clips:
            mat = labels / f"{int(c.name)}_label.mat"
            if not mat.is_file():
                raise DatasetLayoutError(f"no label file {mat} for test video {c.name}")
            c.labels = mask_labels(mat)
    return clips
