"""UCF-Crime (Sultani, Chen & Shah, CVPR 2018), test split with temporal annotations.

``Temporal_Anomaly_Annotation*.txt`` lines read
``Arson011_x264.mp4  Arson  150  420  680  1267`` — up to two anomalous intervals given as
0-based start/end frames (inclusive), ``-1`` when absent. Videos are found anywhere under
the root by file name. The literature scores 16-frame snippets and repeats each snippet's
score to its frames (:func:`snippet_scores_to_frames`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from vigil.datasets.base import Clip, DatasetLayoutError, require_dir, video_frame_count

UCF_CRIME_FPS = 30.0


def parse_annotation(path: Path) -> dict[str, tuple[str, list[tuple[int, int]]]]:
    """``{video file name: (category, [(start, end), ...])}`` from the annotation file."""
    out: dict[str, tuple[str, list[tuple[int, int]]]] = {}
    for ln, line in enumerate(Path(path).read_text().splitlines(), 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) < 6:
            raise DatasetLayoutError(f"{path}:{ln}: expected 'name category s1 e1 s2 e2', got {line!r}")
        s1, e1, s2, e2 = (int(x) for x in parts[2:6])
        iv = [(s, e) for s, e in ((s1, e1), (s2, e2)) if s >= 0 and e >= 0]
        out[parts[0]] = (parts[1], iv)
    return out


def snippet_scores_to_frames(scores: np.ndarray, n_frames: int, snippet: int = 16) -> np.ndarray:
    """Repeat each snippet's score to its ``snippet`` frames; the last snippet covers the rest."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.size == 0:
        raise ValueError("no snippet scores")
    idx = np.minimum(np.arange(n_frames) // snippet, scores.size - 1)
    return scores[idx]


def read_ucf_crime(root: str | Path, annotation: str | Path | None = None) -> list[Clip]:
    """Test clips with frame labels from the temporal annotation (0-based inclusive intervals)."""
    root = require_dir(Path(root), "UCF-Crime root")
    if annotation is None:
        found = sorted(root.rglob("Temporal_Anomaly_Annotation*.txt"))
        if not found:
            raise DatasetLayoutError(f"no Temporal_Anomaly_Annotation*.txt under {root}")
        annotation = found[0]
    ann = parse_annotation(Path(annotation))
    by_name = {p.name: p for p in root.rglob("*") if p.suffix.lower() in (".mp4", ".avi")}
    clips = []
    for name, (_cat, intervals) in ann.items():
        if name not in by_name:
            raise DatasetLayoutError(f"annotated video {name} not found under {root}")
        path = by_name[name]
        n = video_frame_count(path)
        y = np.zeros(n, dtype=np.uint8)
        for s, e in intervals:
            y[max(s, 0) : min(e + 1, n)] = 1
        clips.append(Clip(name=Path(name).stem, source=path, fps=UCF_CRIME_FPS, labels=y))
    return clips
