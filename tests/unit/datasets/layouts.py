"""Writers for the tiny dataset trees the dataset tests build (videos, MATLAB cell arrays)."""

from pathlib import Path

import cv2
import numpy as np


def write_video(path: Path, frames: np.ndarray, fps: float = 25.0) -> None:
    """uint8 frames ``[T, H, W, 3]`` → an MJPG ``.avi``/``.mp4`` at ``path`` (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (w, h))
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()


def mat_cell(items) -> np.ndarray:
    """A 1×N MATLAB cell array (object array) for ``scipy.io.savemat``."""
    c = np.empty((1, len(items)), dtype=object)
    for i, x in enumerate(items):
        c[0, i] = x
    return c
