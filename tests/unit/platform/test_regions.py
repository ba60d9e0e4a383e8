"""Masks: polygons in fractions of the frame, painted out before detection."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from vigil.model.detectors import MotionDetector
from vigil.regions import MASK_GREY, Mask, apply_masks, mask_pixels


def _moving_square(n=24, h=120, w=160, side=16, x0=20, y0=20):
    frames = np.full((n, h, w, 3), 30, np.uint8)
    for t in range(n):
        x = x0 + 2 * t
        frames[t, y0:y0 + side, x:x + side] = 220
    return frames


def test_a_mask_covers_its_polygon_at_any_resolution():
    m = Mask(polygon=[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]])
    for h, w in ((120, 160), (240, 320)):
        covered = mask_pixels([m], h, w)
        assert covered.shape == (h, w)
        assert covered.mean() == pytest.approx(0.25, abs=0.02)
        assert covered[0, 0] and not covered[-1, -1]
    assert mask_pixels([], 10, 10) is None


def test_apply_masks_paints_flat_grey_and_keeps_the_input():
    frames = _moving_square()
    m = Mask(polygon=[[0.0, 0.0], [1.0, 0.0], [1.0, 0.5], [0.0, 0.5]])
    out = apply_masks(frames, [m])
    assert out is not frames and (out[:, :50] == MASK_GREY).all() and (out[:, 70:] == frames[:, 70:]).all()
    assert frames[0, 25, 25, 0] == 220  # the caller's frames (evidence) are untouched
    assert apply_masks(frames, []) is frames


def test_a_mask_over_the_only_mover_leaves_the_motion_detector_nothing():
    frames = _moving_square()
    assert any(MotionDetector().detect(frames)[4:]), "without a mask the square is found"
    over = Mask(name="tree", polygon=[[0.05, 0.08], [0.7, 0.08], [0.7, 0.4], [0.05, 0.4]])
    assert not any(MotionDetector().detect(apply_masks(frames, [over])))


def test_bad_polygons_are_refused_with_the_reason():
    with pytest.raises(ValidationError, match="no area"):
        Mask(polygon=[[0, 0], [0.5, 0.5], [1, 1]])
    with pytest.raises(ValidationError):
        Mask(polygon=[[0, 0], [1.2, 0], [0, 1]])
    with pytest.raises(ValidationError):
        Mask(polygon=[[0, 0], [1, 0]])
