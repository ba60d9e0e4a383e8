"""Object attributes: what an analyst can read about an object, and what a one-class density scores.

Every box Detect finds gets one attribute vector (:func:`box_attributes`), measured on the
work-resolution optical flow into its frame:

- place and size in the view (normalised centre x, centre y, width, height);
- velocity: the mean flow of the box's moving pixels (x, y) and a robust speed, in
  work-frame pixels per flow gap (``TubeConfig.gap_s`` seconds, so the same at any fps);
- an 8-bin histogram of flow orientations weighted by magnitude, per box pixel (the
  velocity representation of Reiss & Hoshen, "Attribute-based Representations for Accurate
  and Interpretable Video Anomaly Detection", 2023);
- the share of the box that moves.

The attribute stream of :class:`~vigil.model.normality.NormalityModel` scores a box by the
distance of :func:`attribute_features` to its nearest normal boxes of the same camera — a
density estimate that compares an object with the objects seen *at the same place in the
view* (perspective: far people are small and slow), so its scale is the camera's own.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ATTRIBUTES", "box_attributes", "attribute_features", "N_ATTRIBUTES", "PLACE_DIM"]

ATTRIBUTES = (
    "cx", "cy", "w", "h", "vx", "vy", "speed",
    "hist0", "hist1", "hist2", "hist3", "hist4", "hist5", "hist6", "hist7",
    "moving",
)
N_ATTRIBUTES = len(ATTRIBUTES)
PLACE_DIM = 4  # the last columns of attribute_features: place and size in the view
_MOVING = 0.5  # work pixels per gap: slower flow is noise


def box_attributes(flow: np.ndarray | None, box: tuple[int, int, int, int], w: int, h: int) -> np.ndarray:
    """Attribute vector (:data:`ATTRIBUTES`) of one work-resolution box, float32 ``[N_ATTRIBUTES]``.

    ``flow`` float ``[h, w, 2]`` into the box's frame (None: no flow, velocity zero).
    """
    x0, y0, x1, y1 = box
    out = np.zeros(N_ATTRIBUTES, np.float32)
    out[:4] = ((x0 + x1) / (2 * w), (y0 + y1) / (2 * h), (x1 - x0) / w, (y1 - y0) / h)
    if flow is None:
        return out
    f = flow[y0:y1, x0:x1].astype(np.float32).reshape(-1, 2)
    if not len(f):
        return out
    mag = np.hypot(f[:, 0], f[:, 1])
    mv = mag > _MOVING
    if mv.sum() <= 10:
        return out
    fm, mm = f[mv], mag[mv]
    out[4:6] = fm.mean(axis=0)
    out[6] = np.percentile(mm, 75)
    ang = np.arctan2(fm[:, 1], fm[:, 0])
    bins = ((ang + np.pi) / (2 * np.pi) * 8).astype(np.int64) % 8
    out[7:15] = np.bincount(bins, weights=mm, minlength=8) / len(f)
    out[15] = mv.mean()
    return out


def attribute_features(attrs: np.ndarray, place_weight: float = 1.0) -> np.ndarray:
    """Attribute vectors ``[B, N_ATTRIBUTES]`` → the space the attribute density works in ``[B, 15]``.

    Velocity (mean flow and orientation histogram, square-rooted so fast objects do not
    dominate the distance) beside place and size in the view, weighted by ``place_weight``
    (in units of the other features' typical spread once standardised on normal boxes).
    """
    a = np.asarray(attrs, np.float64).reshape(-1, N_ATTRIBUTES)
    vel = np.sign(a[:, 4:6]) * np.sqrt(np.abs(a[:, 4:6]))
    hist = np.sqrt(a[:, 7:15])
    speed = np.sqrt(a[:, 6:7])
    return np.concatenate([vel, speed, hist, place_weight * a[:, :4]], axis=1)
