"""ShanghaiTech Campus (Luo, Liu & Gao, ICCV 2017).

Layout::

    ROOT/training/videos/01_001.avi ...              normal videos
      (or ROOT/training/frames/01_001/*.jpg)
    ROOT/testing/frames/01_0014/*.jpg ...            test clips as frames
    ROOT/testing/test_frame_mask/01_0014.npy ...     per-frame 0/1
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vigil.datasets.base import Clip, DatasetLayoutError, image_files, require_dir

SHANGHAITECH_FPS = 24.0


def read_shanghaitech(root: str | Path, split: str = "testing") -> list[Clip]:
    root = require_dir(Path(root), "ShanghaiTech root")
    if split == "training":
        vids = root / "training" / "videos"
        if vids.is_dir():
            files = sorted(p for p in vids.iterdir() if p.suffix.lower() in (".avi", ".mp4"))
            return [Clip(name=p.stem, source=p, fps=SHANGHAITECH_FPS) for p in files]
        frames = require_dir(root / "training" / "frames", "ShanghaiTech training videos or frames")
        return [
            Clip(name=d.name, source=d, fps=SHANGHAITECH_FPS, frame_paths=image_files(d))
            for d in sorted(frames.iterdir())
            if d.is_dir()
        ]
    if split != "testing":
        raise ValueError(f"split must be 'training' or 'testing', got {split!r}")
    frames = require_dir(root / "testing" / "frames", "ShanghaiTech test frames")
    masks = require_dir(root / "testing" / "test_frame_mask", "ShanghaiTech test_frame_mask")
    clips = []
    for d in sorted(p for p in frames.iterdir() if p.is_dir()):
        lab = masks / f"{d.name}.npy"
        if not lab.is_file():
            raise DatasetLayoutError(f"no frame labels {lab} for test clip {d.name}")
        paths = image_files(d)
        y = np.load(lab).astype(np.uint8).ravel()
        if len(y) != len(paths):
            raise DatasetLayoutError(f"clip {d.name}: {len(y)} labels for {len(paths)} frames")
        clips.append(Clip(name=d.name, source=d, fps=SHANGHAITECH_FPS, frame_paths=paths, labels=y))
    if not clips:
        raise DatasetLayoutError(f"no test clips under {frames}")
    return clips
