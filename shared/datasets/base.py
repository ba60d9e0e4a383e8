"""What every dataset reader returns: clips of frames with optional frame-level labels."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")


class DatasetLayoutError(FileNotFoundError):
    """The folder does not hold the layout a reader expects; the message says what is missing."""


@dataclass
class Clip:
    """One video of a dataset: a folder of images or a video file, plus frame labels (1 = abnormal).

    ``labels`` is ``None`` for unlabelled (training) clips. Frames come back as uint8 RGB
    ``[T, H, W, 3]`` (grey footage is replicated into three channels).
    """

    name: str
    source: Path
    labels: np.ndarray | None = None
    fps: float = 25.0
    frame_paths: list[Path] = field(default_factory=list)

    @property
    def is_video_file(self) -> bool:
        return not self.frame_paths

    def __len__(self) -> int:
        if self.frame_paths:
            return len(self.frame_paths)
        if self.labels is not None:
            return int(len(self.labels))
        return video_frame_count(self.source)

    def iter_frames(self) -> Iterator[np.ndarray]:
        """Frames one at a time (uint8 RGB ``[H, W, 3]``), in order."""
        if self.frame_paths:
            for p in self.frame_paths:
                img = cv2.imread(str(p), cv2.IMREAD_COLOR)
                if img is None:
                    raise DatasetLayoutError(f"cannot decode image {p}")
                yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            return
        cap = cv2.VideoCapture(str(self.source))
        if not cap.isOpened():
            raise DatasetLayoutError(f"cannot open video {self.source}")
        try:
            while True:
                ok, img = cap.read()
                if not ok:
                    break
                yield cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    def frames(self) -> np.ndarray:
        """All frames as one uint8 array ``[T, H, W, 3]``."""
        return np.stack(list(self.iter_frames()))


def resample_clip(clip: Clip, fps: float, out_dir: Path) -> Clip:
    """The clip as a camera at ``fps`` would have recorded it: for each tick ``i / fps`` the
    source frame shown at that moment (the latest one at or before it), written as PNG frames
    to ``out_dir`` (lossless: the model sees the source pixels), with the labels of those frames.

    Frame rate is data, not a constant of the detector: the same defaults are measured at each
    dataset's own rate and at the live default (4 fps). Only slowing down is meaningful; a rate
    at or above the source's is refused."""
    if not 0 < fps < clip.fps:
        raise ValueError(f"resampling {clip.name} ({clip.fps:g} fps) to {fps:g} fps: give a rate between 0 and "
                         f"the source's {clip.fps:g} fps")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_src = len(clip)
    keep = np.floor(np.arange(int(np.ceil(n_src * fps / clip.fps))) * clip.fps / fps + 1e-6).astype(int)
    keep = keep[keep < n_src]
    wanted = set(keep.tolist())
    paths = []
    for i, img in enumerate(clip.iter_frames()):
        if i in wanted:
            paths.append(out_dir / f"{len(paths):06d}.png")
            cv2.imwrite(str(paths[-1]), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    if len(paths) != len(keep):
        raise DatasetLayoutError(f"{clip.source} holds {len(paths)} of the {n_src} frames it announces")
    labels = None if clip.labels is None else np.asarray(clip.labels)[keep]
    return Clip(name=clip.name, source=out_dir, labels=labels, fps=float(fps), frame_paths=paths)


def image_files(folder: Path) -> list[Path]:
    """Images of a folder in name order (natural order for zero-padded names)."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def video_frame_count(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise DatasetLayoutError(f"cannot open video {path}")
    try:
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n <= 0:  # some containers lack the count: decode to count
            n = 0
            while cap.grab():
                n += 1
        return n
    finally:
        cap.release()


def require_dir(path: Path, what: str) -> Path:
    if not Path(path).is_dir():
        raise DatasetLayoutError(f"{what}: folder {path} does not exist")
    return Path(path)
