"""UCSD Anomaly Detection Dataset, Ped1 and Ped2 (Mahadevan et al., CVPR 2010).

Layout (as distributed in frame form)::

    ROOT/training/frames/NN/*.jpg     normal clips
    ROOT/testing/frames/NN/*.jpg      test clips
    ROOT/pedN.mat                     cell ``gt`` 1×K, each [start; end], 1-based inclusive
    ROOT/frame_labels_per_video.npz   optional: key NN → per-frame 0/1 (preferred when present)

The original ``Train001``/``Test001`` folder names (with ``*.tif`` frames) are read too.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vigil.datasets.base import Clip, DatasetLayoutError, image_files, require_dir

UCSD_FPS = 10.0


def _clip_dirs(split_dir: Path) -> list[Path]:
    base = split_dir / "frames" if (split_dir / "frames").is_dir() else split_dir
    dirs = sorted(d for d in base.iterdir() if d.is_dir() and not d.name.endswith("_gt") and image_files(d))
    if not dirs:
        raise DatasetLayoutError(f"no clip folders with images under {base}")
    return dirs


def _mat_intervals(root: Path) -> list[list[tuple[int, int]]] | None:
    mats = sorted(root.glob("ped*.mat")) + sorted(root.glob("*/ped*.mat"))
    if not mats:
        return None
    from scipy.io import loadmat

    gt = loadmat(str(mats[0]))["gt"].ravel()
    out = []
    for cell in gt:
        a = np.asarray(cell).astype(int)
        if a.ndim == 1:
            a = a.reshape(2, -1)
        out.append([(int(a[0, j]), int(a[1, j])) for j in range(a.shape[1])])
    return out


def intervals_to_labels(intervals: list[tuple[int, int]], n: int, one_based: bool = True) -> np.ndarray:
    """Inclusive [start, end] intervals → a 0/1 vector of length ``n``."""
    y = np.zeros(n, dtype=np.uint8)
    off = 1 if one_based else 0
    for s, e in intervals:
        if s < 0 or e < 0:
            continue
        y[max(s - off, 0) : min(e - off + 1, n)] = 1
    return y


def read_ucsd(root: str | Path, split: str = "testing") -> list[Clip]:
    """Clips of one split (``training`` or ``testing``); test clips carry frame labels."""
    root = require_dir(Path(root), "UCSD root")
    names = {"training": ("training", "Train"), "testing": ("testing", "Test")}
    if split not in names:
        raise ValueError(f"split must be 'training' or 'testing', got {split!r}")
    split_dir = next((root / n for n in names[split] if (root / n).is_dir()), None)
    if split_dir is None:
        raise DatasetLayoutError(f"{root} has no {names[split][0]}/ (or {names[split][1]}/) folder")
    dirs = _clip_dirs(split_dir)
    clips = [Clip(name=d.name, source=d, fps=UCSD_FPS, frame_paths=image_files(d)) for d in dirs]
    if split == "training":
        return clips
    npz = root / "frame_labels_per_video.npz"
    if npz.is_file():
        with np.load(npz) as z:
            for c in clips:
                if c.name in z:
                    c.labels = np.asarray(z[c.name]).astype(np.uint8).ravel()
    if any(c.labels is None for c in clips):
        intervals = _mat_intervals(root)
        if intervals is None:
            raise DatasetLayoutError(f"{root} has neither frame_labels_per_video.npz nor ped*.mat for test labels")
        if len(intervals) != len(clips):
            raise DatasetLayoutError(f"ped*.mat has {len(intervals)} clips but {len(clips)} test folders")
        for c, iv in zip(clips, intervals):
            if c.labels is None:
                c.labels = intervals_to_labels(iv, len(c.frame_paths))
    for c in clips:
        if len(c.labels) != len(c.frame_paths):
            raise DatasetLayoutError(f"clip {c.name}: {len(c.labels)} labels for {len(c.frame_paths)} frames")
    return clips
