"""Regions of a camera's view: masks that remove parts of the picture from detection.

A polygon is a list of ``[x, y]`` points in fractions of the frame's width and height (0..1),
so it holds at any resolution the camera is stored or scored at. A mask (a waving tree, a
screen, a timestamp overlay) is painted flat grey over every frame before Detect, Encode and
Score see it: the motion detector finds no change there, optical flow no motion and the
encoder no content. Evidence clips keep the unmasked picture.
"""

from __future__ import annotations

from typing import Annotated

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

Point = Annotated[list[Annotated[float, Field(ge=0.0, le=1.0)]], Field(min_length=2, max_length=2)]
MASK_GREY = 128  # what a masked pixel becomes: flat, so nothing moves or shows there


class Mask(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field("mask", min_length=1, max_length=100)
    polygon: list[Point] = Field(min_length=3, max_length=100, description="[x, y] in fractions of the frame")

    @field_validator("polygon")
    @classmethod
    def _has_area(cls, pts: list[list[float]]) -> list[list[float]]:
        area = 0.5 * abs(sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1])))
        if area < 1e-6:
            raise ValueError("the polygon encloses no area (its points are on one line)")
        return pts


def mask_pixels(masks: list[Mask], height: int, width: int) -> np.ndarray | None:
    """Boolean ``[H, W]``: True where a mask covers the frame (None: no masks)."""
    if not masks:
        return None
    canvas = np.zeros((height, width), np.uint8)
    for m in masks:
        pts = np.round(np.asarray(m.polygon, np.float64) * [width - 1, height - 1]).astype(np.int32)
        cv2.fillPoly(canvas, [pts], 1)
    return canvas.astype(bool)


def apply_masks(frames: np.ndarray, masks: list[Mask]) -> np.ndarray:
    """``frames`` ``[T, H, W, 3]`` with the masked pixels flat grey (a copy; the input is kept)."""
    covered = mask_pixels(masks, frames.shape[1], frames.shape[2])
    if covered is None:
        return frames
    out = frames.copy()
    out[:, covered] = MASK_GREY
    return out


ZONE_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"


class Zone(BaseModel):
    """A region of the view scored on its own: its own prompt set (a walking-only zone where
    cycling is abnormal), its own threshold and, optionally, a longest allowed occupancy.

    Its segments are the camera's frames cut to the zone's bounding box with everything outside
    the polygon (and the camera's masks) painted out; its events name the zone.
    """

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=ZONE_NAME, description="letters, digits, _ . - (32 at most)")
    polygon: list[Point] = Field(min_length=3, max_length=100, description="[x, y] in fractions of the frame")
    prompt_set: str | None = Field(None, max_length=64, description="a prompt set of the camera's context; "
                                   "empty: the camera's own")
    threshold: float | None = Field(None, ge=0, le=1, description="fixed threshold of the zone's events; "
                                    "empty: the camera's thresholds")
    loiter_s: float | None = Field(None, gt=0, le=24 * 3600, description="someone in the zone for longer than "
                                   "this many seconds without a break opens an event")

    _has_area = field_validator("polygon")(Mask._has_area.__func__)  # the same check as a mask's


def zone_frames(frames: np.ndarray, zone: Zone, masks: list[Mask] | None = None) -> np.ndarray:
    """The zone's view of ``frames``: cut to its bounding box, outside its polygon (and under any
    mask) flat grey."""
    t, h, w = frames.shape[:3]
    inside = mask_pixels([Mask(polygon=zone.polygon)], h, w)
    covered = mask_pixels(masks or [], h, w)
    ys, xs = np.nonzero(inside)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    y1, x1 = y0 + max(2, (y1 - y0) // 2 * 2), x0 + max(2, (x1 - x0) // 2 * 2)  # even sides, as stored frames
    out = frames[:, y0:y1, x0:x1].copy()
    off = ~inside[y0:y1, x0:x1]
    if covered is not None:
        off |= covered[y0:y1, x0:x1]
    out[:, off[: out.shape[1], : out.shape[2]]] = MASK_GREY
    return out
