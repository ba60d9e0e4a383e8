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
