"""Object detectors for the object-centric mode: plugins behind one interface.

A detector turns a segment of frames (uint8 RGB ``[T, H, W, 3]``) into per-frame boxes
``(x0, y0, x1, y1)`` in pixel coordinates of the input, at most ``max_boxes`` (20, as in
the ICPRAM 2024 object-centric mode) per frame, largest first. Choose one with a typed
config, a discriminated union on ``type``::

    det = build_detector({"type": "motion"})
    boxes = det.detect(frames)          # list[list[tuple[int, int, int, int]]]

- ``motion``: background subtraction + contours, no weights. It keeps a running background
  per instance, so one detector per camera sees its segments in order (call
  :meth:`Detector.reset` when the camera's stream restarts). A fresh detector starts from
  the median of its first segment, so a single segment is enough to find movers.
- ``hog-person``: OpenCV's built-in HOG + linear-SVM people detector (Dalal & Triggs).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Annotated, Any, Literal

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Box = tuple[int, int, int, int]

__all__ = [
    "Box",
    "Detector",
    "DetectorUnavailable",
    "hog_available",
    "DetectorConfig",
    "HogPersonDetector",
    "HogPersonDetectorConfig",
    "MotionDetector",
    "MotionDetectorConfig",
    "build_detector",
    "context_box",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MotionDetectorConfig(_Strict):
    type: Literal["motion"] = "motion"
    max_boxes: int = Field(20, ge=1, le=256, description="boxes kept per frame, largest first")
    threshold: float = Field(
        18.0, gt=0, le=255, description="grey-level difference from the background that counts as foreground"
    )
    noise_k: float = Field(
        3.0, ge=0, description="raise the threshold to noise_k × the robust std of |frame - background|"
    )
    learning_rate: float = Field(0.02, gt=0, le=1, description="background update rate on background pixels")
    motion_gap: int = Field(
        2, ge=0, le=30, description="also require change against the frame this many frames earlier "
        "(removes ghosts of objects the background has not yet forgotten); 0 = background only"
    )
    foreground_rate: float = Field(
        0.002, ge=0, le=1, description="update rate on foreground pixels (absorbs objects that stop)"
    )
    min_area: float = Field(
        0.0006, gt=0, lt=1, description="smallest box kept, as a fraction of the frame area"
    )
    dilate: int = Field(1, ge=0, le=20, description="dilation iterations joining the parts of one object")
    pad: int = Field(2, ge=0, le=64, description="pixels added around every box")
    work_side: int = Field(360, ge=64, le=4096, description="frames are downscaled to this longest side")


class HogPersonDetectorConfig(_Strict):
    type: Literal["hog-person"] = "hog-person"
    max_boxes: int = Field(20, ge=1, le=256)
    hit_threshold: float = Field(0.0, description="SVM margin a window needs")
    win_stride: int = Field(8, ge=1, le=64)
    padding: int = Field(8, ge=0, le=64)
    scale: float = Field(1.05, gt=1.0, le=2.0, description="image pyramid step")
    upscale_to: int = Field(
        480, ge=64, le=4096, description="frames whose longest side is smaller are upscaled (people ≥ 128 px tall)"
    )
    nms_iou: float = Field(0.4, gt=0, le=1)


DetectorConfig = Annotated[MotionDetectorConfig | HogPersonDetectorConfig, Field(discriminator="type")]
_ADAPTER: TypeAdapter = TypeAdapter(DetectorConfig)


class DetectorUnavailable(RuntimeError):
    """The detector cannot run with this installation; the message says what to do."""


def hog_available() -> bool:
    """Whether this OpenCV build has the HOG people detector (OpenCV 4.x does, 5.x does not)."""
    return hasattr(cv2, "HOGDescriptor")


class Detector(ABC):
    """Per-frame boxes for a segment; implementations may keep per-camera state."""

    config: Any

    @abstractmethod
    def detect(self, frames: np.ndarray) -> list[list[Box]]:
        """uint8 ``[T, H, W, 3]`` → for each frame a list of ``(x0, y0, x1, y1)``, largest first."""

    def reset(self) -> None:
        """Forget per-camera state (a new stream)."""


def _check_frames(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 3:
        frames = frames[None]
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [T,H,W,3], got {frames.dtype} {frames.shape}")
    return frames


def _grey(frames: np.ndarray, scale: float) -> np.ndarray:
    out = []
    for f in frames:
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
        if scale != 1.0:
            g = cv2.resize(g, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        out.append(g)
    return np.stack(out).astype(np.float32)


def _largest(boxes: list[Box], n: int) -> list[Box]:
    return sorted(boxes, key=lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)[:n]


class MotionDetector(Detector):
    """Running-average background subtraction with a noise-adaptive threshold, then contours."""

    def __init__(self, config: MotionDetectorConfig | None = None) -> None:
        self.config = config or MotionDetectorConfig()
        self._bg: np.ndarray | None = None
        self._prev: list[np.ndarray] = []

    def reset(self) -> None:
        self._bg = None
        self._prev = []

    def foreground(self, frames: np.ndarray) -> tuple[np.ndarray, float]:
        """Binary foreground masks ``[T, h, w]`` (work resolution) and the scale work/input."""
        c = self.config
        frames = _check_frames(frames)
        h, w = frames.shape[1:3]
        scale = min(1.0, c.work_side / max(h, w))
        grey = _grey(frames, scale)
        if self._bg is None or self._bg.shape != grey.shape[1:]:
            self._bg = np.median(grey, axis=0)
            self._prev = []
        masks = np.empty(grey.shape, dtype=np.uint8)
        k3 = np.ones((3, 3), np.uint8)
        k_motion = np.ones((7, 7), np.uint8)
        history = list(self._prev)
        for i, g in enumerate(grey):
            diff = np.abs(g - self._bg)
            # robust noise level: median absolute difference ≈ 0.67σ for the background pixels
            thr = max(c.threshold, c.noise_k * 1.4826 * float(np.median(diff)))
            m = (diff > thr).astype(np.uint8)
            if c.motion_gap and len(history) >= c.motion_gap:
                moved = (np.abs(g - history[-c.motion_gap]) > thr).astype(np.uint8)
                m &= cv2.dilate(moved, k_motion)
            history = (history + [g])[-max(c.motion_gap, 1) :]
            m = cv2.morphologyEx(m, cv2.MORPH_OPEN, k3)
            if c.dilate:
                m = cv2.dilate(m, k3, iterations=c.dilate)
            masks[i] = m
            rate = np.where(m > 0, c.foreground_rate, c.learning_rate).astype(np.float32)
            self._bg = self._bg + rate * (g - self._bg)  # not in place: a state that came through Ray is read-only
        self._prev = history
        return masks, scale

    def detect(self, frames: np.ndarray) -> list[list[Box]]:
        c = self.config
        frames = _check_frames(frames)
        h, w = frames.shape[1:3]
        masks, scale = self.foreground(frames)
        min_area = c.min_area * masks.shape[1] * masks.shape[2]
        out: list[list[Box]] = []
        for m in masks:
            contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
            boxes = []
            for cnt in contours:
                x, y, bw, bh = cv2.boundingRect(cnt)
                if bw * bh < min_area:
                    continue
                x0 = max(int(x / scale) - c.pad, 0)
                y0 = max(int(y / scale) - c.pad, 0)
                x1 = min(int(np.ceil((x + bw) / scale)) + c.pad, w)
                y1 = min(int(np.ceil((y + bh) / scale)) + c.pad, h)
                boxes.append((x0, y0, x1, y1))
            out.append(_largest(boxes, c.max_boxes))
        return out


class HogPersonDetector(Detector):
    """OpenCV's default HOG people detector with non-maximum suppression."""

    def __init__(self, config: HogPersonDetectorConfig | None = None) -> None:
        self.config = config or HogPersonDetectorConfig()
        if not hog_available():
            raise DetectorUnavailable(
                f"the hog-person detector needs cv2.HOGDescriptor, which OpenCV {cv2.__version__} lacks "
                "(OpenCV 5 moved it out of the main modules): install opencv-python-headless<5 "
                "or choose the 'motion' detector"
            )
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, frames: np.ndarray) -> list[list[Box]]:
        c = self.config
        frames = _check_frames(frames)
        h, w = frames.shape[1:3]
        up = max(1.0, c.upscale_to / max(h, w))
        out: list[list[Box]] = []
        for f in frames:
            img = cv2.cvtColor(f, cv2.COLOR_RGB2BGR)
            if up != 1.0:
                img = cv2.resize(img, None, fx=up, fy=up, interpolation=cv2.INTER_LINEAR)
            rects, weights = self._hog.detectMultiScale(
                img,
                hitThreshold=c.hit_threshold,
                winStride=(c.win_stride, c.win_stride),
                padding=(c.padding, c.padding),
                scale=c.scale,
            )
            boxes: list[Box] = []
            if len(rects):
                weights = np.asarray(weights, dtype=np.float32).ravel()
                keep = cv2.dnn.NMSBoxes(
                    [list(map(int, r)) for r in rects], weights.tolist(), float(c.hit_threshold), c.nms_iou
                )
                for i in np.asarray(keep).ravel():
                    x, y, bw, bh = rects[int(i)]
                    boxes.append(
                        (
                            max(int(x / up), 0),
                            max(int(y / up), 0),
                            min(int(np.ceil((x + bw) / up)), w),
                            min(int(np.ceil((y + bh) / up)), h),
                        )
                    )
            out.append(_largest(boxes, c.max_boxes))
        return out


_REGISTRY: dict[str, type[Detector]] = {"motion": MotionDetector, "hog-person": HogPersonDetector}


def build_detector(cfg: DetectorConfig | dict[str, Any] | None = None) -> Detector:
    """A detector from its config (a model or a plain dict with ``type``); default ``motion``."""
    if cfg is None:
        cfg = MotionDetectorConfig()
    elif isinstance(cfg, dict):
        cfg = _ADAPTER.validate_python(cfg)
    return _REGISTRY[cfg.type](cfg)


def context_box(box: Box, width: int, height: int, margin: float = 0.25, min_side: int = 16) -> Box:
    """The square region an object crop is cut from: ``box`` grown to a square with ``margin``
    context on its longer side, at least ``min_side`` px, shifted (not clipped) to stay inside
    the ``width`` × ``height`` frame. Square, so the backbone's resize does not stretch the
    object; with context, so a bag on the ground or a person on a road shows where it is."""
    x0, y0, x1, y1 = box
    side = min(max(x1 - x0, y1 - y0, min_side) * (1 + margin), width, height)
    x0 = int(round(min(max((x0 + x1) / 2 - side / 2, 0), width - side)))
    y0 = int(round(min(max((y0 + y1) / 2 - side / 2, 0), height - side)))
    return x0, y0, x0 + int(side), y0 + int(side)
