"""Tube and optical-flow geometry of the object streams: one place for crops, flows and boxes.

A *tube* is the same (enlarged, square) box cut out of the frames at times
``t0 - context*step, …, t0 - step`` (the context) and ``t0, t0 + step, …`` (the targets).
Each crop holds the grey frame and the optical flow into it (or three grey frames), so an
encoder sees appearance *and* motion. Steps and gaps are given in seconds, so the same
defaults serve a 10 fps camera and a 4 fps segment sampler alike. Frames are worked on in
grey at a "work" resolution (longest side ``work_side``), converted by :func:`work_grey`
both in training and in the served Detect stage.
"""

from __future__ import annotations

import math
import threading
from typing import Any, Literal

import cv2
import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor


class TubeConfig(BaseModel):
    """Geometry of the crop tubes (shared by training and scoring)."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(64, ge=16, le=512, description="crop side in pixels (the backbone's input size)")
    context: int = Field(4, ge=1, le=32, description="context crops the forecaster aggregates")
    horizon: int = Field(2, ge=1, le=8, description="future crops forecast in training (scoring uses the first)")
    step_s: float = Field(0.2, gt=0, le=5, description="seconds between the crops of a tube")
    gap_s: float = Field(0.2, gt=0, le=5, description="seconds between the three grey frames of one crop")
    enlarge: float = Field(1.25, ge=1.0, le=4.0, description="the square crop's side over the box's longer side")
    min_side: int = Field(16, ge=4, le=512, description="smallest crop side in work-resolution pixels")
    channels: Literal["flow", "grey"] = Field(
        "flow", description="flow: grey + optical flow (x, y); grey: three grey frames gap apart"
    )
    flow_gain: float = Field(8.0, gt=0, le=64, description="uint8 levels per work-frame pixel of motion")
    flow_preset: Literal["ultrafast", "fast", "medium"] = Field(
        "medium",
        description="OpenCV DIS optical-flow preset; medium: ~10 ms per 360x240 frame on one CPU core, "
        "and the most accurate on normal footage (benchmarks/flow_presets.json)",
    )

    def frames(self, fps: float) -> tuple[int, int]:
        """(step, gap) in frames at ``fps``; at least one frame each."""
        return max(1, round(self.step_s * fps)), max(1, round(self.gap_s * fps))

    def history(self, fps: float) -> int:
        """Past frames a scorer must keep to build the tube of a frame."""
        step, gap = self.frames(fps)
        return self.context * step + 2 * gap


def square_box(box: tuple[int, int, int, int], enlarge: float, min_side: int, w: int, h: int) -> tuple[int, int, int]:
    """Square window (x0, y0, side) around ``box``, enlarged, clipped to lie inside the frame."""
    x0, y0, x1, y1 = box
    side = int(round(max(x1 - x0, y1 - y0) * enlarge))
    side = min(max(side, min_side), w, h)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    sx = int(round(min(max(cx - side / 2, 0), w - side)))
    sy = int(round(min(max(cy - side / 2, 0), h - side)))
    return sx, sy, side


_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
_DIS = threading.local()  # one DIS instance per thread and preset: an instance is not thread-safe, and
# a Detect replica scores several cameras at once (shared, it returned garbage flows under load)


def frame_flow(prev: np.ndarray, cur: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Dense optical flow ``prev → cur`` (grey uint8 ``[H, W]``) in pixels, float16 ``[H, W, 2]`` (DIS)."""
    cache = _DIS.__dict__
    if preset not in cache:
        if preset not in _DIS_PRESETS:
            raise ValueError(f"unknown optical-flow preset {preset!r}; choose one of {sorted(_DIS_PRESETS)}")
        cache[preset] = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])
    return cache[preset].calc(prev, cur, None).astype(np.float16)


def clip_flows(grey: np.ndarray, gap: int, start: int = 0, preset: str = "medium") -> np.ndarray:
    """Flow of every frame of ``grey[start:]`` from the frame ``gap`` earlier (clamped at 0)."""
    out = np.empty((len(grey) - start, *grey.shape[1:], 2), np.float16)
    for i, t in enumerate(range(start, len(grey))):
        out[i] = frame_flow(grey[max(t - gap, 0)], grey[t], preset)
    return out


def tube_crops(
    grey: np.ndarray,
    times: list[int],
    box: tuple[int, int, int, int],
    cfg: TubeConfig,
    gap: int,
    flip: bool = False,
    flow: Any = None,
) -> np.ndarray:
    """Crops of one box at ``times`` (indices into ``grey`` ``[L, H, W]`` uint8, clamped) → uint8 ``[n, S, S, 3]``.

    ``channels="grey"``: the grey frames ``τ-2·gap, τ-gap, τ``. ``channels="flow"``: the grey
    frame ``τ`` and the optical flow into it from ``τ-gap`` (``flow[τ]``, an array
    ``[L, H, W, 2]`` or a callable ``τ → [H, W, 2]``) in work-frame pixels (absolute speed:
    measured on Ped2, speed relative to the box size separated anomalies far worse, because
    motion boxes often hold a group), ``128 + flow_gain·v``.
    """
    n_frames, h, w = grey.shape
    if tuple(box) == (0, 0, w, h):  # frame mode: the whole frame, aspect not kept
        sx, sy, sw, sh = 0, 0, w, h
    else:
        sx, sy, side = square_box(box, cfg.enlarge, cfg.min_side, w, h)
        sw = sh = side
    size = cfg.size
    out = np.empty((len(times), size, size, 3), dtype=np.uint8)
    for i, t in enumerate(times):
        t = min(max(t, 0), n_frames - 1)
        if cfg.channels == "flow":
            f = flow(t) if callable(flow) else flow[t]
            g = cv2.resize(grey[t, sy : sy + sh, sx : sx + sw], (size, size), interpolation=cv2.INTER_AREA)
            v = cv2.resize(f[sy : sy + sh, sx : sx + sw].astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
            v[..., 0] *= cfg.flow_gain * (-1 if flip else 1)
            v[..., 1] *= cfg.flow_gain
            out[i, ..., 0] = g
            out[i, ..., 1:] = np.clip(128 + v, 0, 255).astype(np.uint8)
        else:
            idx = [min(max(t - k * gap, 0), n_frames - 1) for k in (2, 1, 0)]
            stack = np.stack([grey[j, sy : sy + sh, sx : sx + sw] for j in idx], axis=-1)
            out[i] = cv2.resize(stack, (size, size), interpolation=cv2.INTER_AREA)
    if flip:
        out = out[:, :, ::-1].copy()
    return out


CROP_MEAN, CROP_STD = 0.45, 0.25


def crops_to_tensor(crops: np.ndarray) -> Tensor:
    """uint8 ``[..., S, S, 3]`` → float ``[..., 3, S, S]``, normalised."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).float().div_(255.0).sub_(CROP_MEAN).div_(CROP_STD)
    return x.movedim(-1, -3)


CONTEXT_DIM = 4


def box_context(boxes: list[tuple[int, int, int, int]], w: int, h: int) -> np.ndarray:
    """Scene cues of crops: normalised centre x, centre y, width, height → float32 ``[B, 4]``."""
    if not boxes:
        return np.zeros((0, CONTEXT_DIM), np.float32)
    b = np.asarray(boxes, dtype=np.float32)
    return np.stack(
        [(b[:, 0] + b[:, 2]) / (2 * w), (b[:, 1] + b[:, 3]) / (2 * h), (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h],
        axis=1,
    )


def box_speed(flow: np.ndarray, box: tuple[int, int, int, int], moving: float = 0.5) -> float:
    """Robust speed of the object in a box: 75th percentile of |flow| over its moving pixels (px per gap)."""
    x0, y0, x1, y1 = box
    mag = np.linalg.norm(flow[y0:y1, x0:x1].astype(np.float32), axis=-1)
    mv = mag[mag > moving]
    return float(np.percentile(mv, 75)) if mv.size > 10 else 0.0


def work_grey(frames: np.ndarray, work_side: int) -> np.ndarray:
    """uint8 RGB ``[T, H, W, 3]`` → uint8 grey ``[T, h, w]`` with longest side ≤ ``work_side``."""
    h, w = frames.shape[1:3]
    scale = min(1.0, work_side / max(h, w))
    out = []
    for f in frames:
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            g = cv2.resize(g, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        out.append(g)
    return np.stack(out)


def gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0 or len(x) < 2:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(x, r, mode="edge")
    return np.convolve(padded, k, mode="valid")
