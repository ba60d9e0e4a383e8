"""Metrics: frame-level ROC AUC and AP pooled over all test videos, event-level precision/recall.

Frame level follows the protocol of the VAD literature (UCF-Crime, XD-Violence,
ShanghaiTech...): every frame of every test video is one sample; scores and labels of all
videos are concatenated before computing one ROC AUC and one average precision (not a mean
of per-video values, which is undefined for all-normal videos).

Event level (chosen here; the papers report frame level only): events are half-open frame
intervals ``[start, end)``. A predicted event is a true positive when it overlaps a
ground-truth event of the same video with IoU >= ``min_iou`` (default 0: any overlap);
precision = matched predictions / predictions; recall = ground-truth events hit by at
least one prediction / ground-truth events.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Mapping, Sequence

import numpy as np

Interval = tuple[int, int]


@dataclass
class FrameMetrics:
    auc: float
    ap: float
    n_frames: int
    n_videos: int
    n_abnormal: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class EventMetrics:
    precision: float
    recall: float
    f1: float
    true_positives: int
    predicted: int
    ground_truth: int
    detected: int

    def to_dict(self) -> dict:
        return asdict(self)


def frame_level_metrics(scores: Sequence[Sequence[float]], labels: Sequence[Sequence[int]]) -> FrameMetrics:
    """Pooled ROC AUC and AP; ``scores[i]``, ``labels[i]`` are the frames of video ``i``."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    if len(scores) != len(labels):
        raise ValueError(f"{len(scores)} score sequences but {len(labels)} label sequences")
    for i, (s, y) in enumerate(zip(scores, labels)):
        if len(s) != len(y):
            raise ValueError(f"video {i}: {len(s)} scores but {len(y)} labels")
    s = np.concatenate([np.asarray(x, dtype=np.float64).ravel() for x in scores]) if scores else np.zeros(0)
    y = np.concatenate([np.asarray(x, dtype=np.int64).ravel() for x in labels]) if labels else np.zeros(0, int)
    if not np.all(np.isfinite(s)):
        raise ValueError("scores contain NaN or infinity")
    pos = int(y.sum())
    if pos == 0 or pos == len(y):
        raise ValueError("pooled labels need both normal and abnormal frames for ROC AUC / AP")
    return FrameMetrics(
        auc=float(roc_auc_score(y, s)),
        ap=float(average_precision_score(y, s)),
        n_frames=int(len(y)),
        n_videos=len(scores),
        n_abnormal=pos,
    )


def expand_segment_scores(segment_scores: Sequence[float], frames_per_segment: int, n_frames: int | None = None) -> np.ndarray:
    """Segment scores → one score per frame (each frame takes its segment's score)."""
    out = np.repeat(np.asarray(segment_scores, dtype=np.float64), frames_per_segment)
    if n_frames is not None:
        if n_frames > len(out):
            pad = out[-1] if len(out) else 0.0
            out = np.concatenate([out, np.full(n_frames - len(out), pad)])
        out = out[:n_frames]
    return out


def intervals_from_labels(labels: Sequence[int] | np.ndarray) -> list[Interval]:
    """Runs of 1s in a per-frame label sequence → ``[(start, end), ...]`` (end exclusive)."""
    y = np.asarray(labels).astype(bool).astype(np.int8)
    d = np.diff(np.concatenate([[0], y, [0]]))
    return list(zip(np.flatnonzero(d == 1).tolist(), np.flatnonzero(d == -1).tolist()))


def interval_iou(a: Interval, b: Interval) -> float:
    inter = max(0, min(a[1], b[1]) - max(a[0], b[0]))
    union = max(a[1], b[1]) - min(a[0], b[0])
    return inter / union if union > 0 else 0.0


def _overlaps(a: Interval, b: Interval, min_iou: float) -> bool:
    inter = min(a[1], b[1]) - max(a[0], b[0])
    if inter <= 0:
        return False
    return interval_iou(a, b) >= min_iou


def event_level_metrics(
    predicted: Mapping[str, Sequence[Interval]],
    ground_truth: Mapping[str, Sequence[Interval]],
    min_iou: float = 0.0,
) -> EventMetrics:
    """Event precision and recall over videos (keys); see the module doc for matching."""
    tp = n_pred = n_gt = detected = 0
    for vid in set(predicted) | set(ground_truth):
        preds = list(predicted.get(vid, []))
        gts = list(ground_truth.get(vid, []))
        n_pred += len(preds)
        n_gt += len(gts)
        tp += sum(any(_overlaps(p, g, min_iou) for g in gts) for p in preds)
        detected += sum(any(_overlaps(p, g, min_iou) for p in preds) for g in gts)
    precision = tp / n_pred if n_pred else 0.0
    recall = detected / n_gt if n_gt else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return EventMetrics(precision, recall, f1, tp, n_pred, n_gt, detected)
