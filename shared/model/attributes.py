"""Object attributes: what an analyst can read about an object, and what a one-class density scores.

Every box Detect finds gets one attribute vector (:func:`box_attributes`), measured on the
work-resolution optical flow into its frame:

- place and size in the view (normalised centre x, centre y, width, height);
- velocity: the mean flow of the box's moving pixels (x, y) and a robust speed, in
  work-frame pixels per flow gap (``TubeConfig.gap_s`` seconds, so the same at any fps);
- an 8-bin histogram of flow orientations weighted by magnitude, per box pixel (the
  velocity representation of Reiss & Hoshen, "Attribute-based Representations for Accurate
  and Interpretable Video Anomaly Detection", 2023);
- the share of the box that moves;
- dwell: how much of the last seconds the box's area of the view was occupied by objects
  (an exponential average of the boxes' footprint with time constant ``dwell_s``; 0 for an
  object that just arrived, towards 1 for one that stays — loitering, or a person dancing in
  place), kept per camera across segments (:func:`update_occupancy`).

The attribute stream of :class:`~vigil.model.normality.NormalityModel` scores a box by the
distance of :func:`attribute_features` to its nearest normal boxes of the same camera — a
density estimate that compares an object with the objects seen *at the same place in the
view* (perspective: far people are small and slow), so its scale is the camera's own.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ATTRIBUTES", "box_attributes", "attribute_features", "N_ATTRIBUTES", "PLACE_DIM", "OCCUPANCY_COLS",
           "new_occupancy", "box_dwell", "update_occupancy", "clip_dwell", "dwell_seconds"]

ATTRIBUTES = (
    "cx", "cy", "w", "h", "vx", "vy", "speed",
    "hist0", "hist1", "hist2", "hist3", "hist4", "hist5", "hist6", "hist7",
    "moving", "dwell",
)
N_ATTRIBUTES = len(ATTRIBUTES)
PLACE_DIM = 4  # the last columns of attribute_features: place and size in the view
_MOVING = 0.5  # work pixels per gap: slower flow is noise


def box_attributes(flow: np.ndarray | None, box: tuple[int, int, int, int], w: int, h: int,
                   dwell: float = 0.0) -> np.ndarray:
    """Attribute vector (:data:`ATTRIBUTES`) of one work-resolution box, float32 ``[N_ATTRIBUTES]``.

    ``flow`` float ``[h, w, 2]`` into the box's frame (None: no flow, velocity zero);
    ``dwell`` from :func:`clip_dwell`.
    """
    x0, y0, x1, y1 = box
    out = np.zeros(N_ATTRIBUTES, np.float32)
    out[16] = dwell
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


OCCUPANCY_COLS = 64  # the occupancy map's width in cells (its height keeps the view's aspect)


def new_occupancy(w: int, h: int) -> np.ndarray:
    """An empty occupancy map for a ``w`` × ``h`` view, float32 ``[rows, OCCUPANCY_COLS]``."""
    return np.zeros((max(1, round(OCCUPANCY_COLS * h / w)), OCCUPANCY_COLS), np.float32)


def _cells(occ: np.ndarray, box: tuple[int, int, int, int], w: int, h: int) -> tuple[slice, slice]:
    rows, cols = occ.shape
    x0, y0, x1, y1 = box
    cx0, cx1 = int(x0 * cols / w), max(int(np.ceil(x1 * cols / w)), int(x0 * cols / w) + 1)
    cy0, cy1 = int(y0 * rows / h), max(int(np.ceil(y1 * rows / h)), int(y0 * rows / h) + 1)
    return slice(min(cy0, rows - 1), cy1), slice(min(cx0, cols - 1), cx1)


def box_dwell(occ: np.ndarray, box: tuple[int, int, int, int], w: int, h: int) -> float:
    """Mean occupancy of the cells under ``box`` (work pixels of a ``w`` × ``h`` view)."""
    return float(occ[_cells(occ, box, w, h)].mean())


def update_occupancy(occ: np.ndarray, boxes: list[tuple[int, int, int, int]], w: int, h: int,
                     alpha: float) -> np.ndarray:
    """One frame: ``occ ← (1 - alpha)·occ + alpha·footprint(boxes)`` (a new array: state that came
    through Ray is read-only)."""
    foot = np.zeros_like(occ)
    for box in boxes:
        foot[_cells(occ, box, w, h)] = 1.0
    return (1.0 - alpha) * occ + alpha * foot


def clip_dwell(boxes: list[list[tuple[int, int, int, int]]], w: int, h: int, fps: float, dwell_s: float,
               occ: np.ndarray | None = None) -> tuple[list[list[float]], np.ndarray]:
    """Dwell of every box of consecutive frames (read before the frame's own footprint is added),
    and the occupancy map after them; ``occ`` None: a camera that just started."""
    occ = new_occupancy(w, h) if occ is None or occ.shape != new_occupancy(w, h).shape else occ
    alpha = min(1.0, 1.0 / max(dwell_s * fps, 1e-6))
    out = []
    for frame_boxes in boxes:
        out.append([box_dwell(occ, b, w, h) for b in frame_boxes])
        occ = update_occupancy(occ, frame_boxes, w, h, alpha)
    return out, occ


def dwell_seconds(dwell: float, dwell_s: float) -> float:
    """Seconds of unbroken presence that give occupancy ``dwell`` (``1 - exp(-T / dwell_s)``)."""
    return float(-dwell_s * np.log(max(1.0 - float(dwell), 1e-6)))


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
