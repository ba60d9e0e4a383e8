"""Detector plugins: config union, motion boxes on a synthetic mover, HOG runs, limits."""

import numpy as np
import pytest
from pydantic import ValidationError

from vigil.model.detectors import (
    DetectorUnavailable,
    HogPersonDetector,
    hog_available,
    MotionDetector,
    MotionDetectorConfig,
    build_detector,
    context_box,
)


def _moving_squares(t=16, h=120, w=160, n=1, seed=0):
    rng = np.random.default_rng(seed)
    frames = np.full((t, h, w, 3), 100, np.uint8)
    frames = np.clip(frames + rng.normal(0, 2, frames.shape), 0, 255).astype(np.uint8)
    truth = []
    for i in range(t):
        row = []
        for k in range(n):
            x0, y0 = 5 + 4 * i + 0 * k, 10 + 22 * k
            frames[i, y0 : y0 + 16, x0 : x0 + 10] = 230
            row.append((x0, y0, x0 + 10, y0 + 16))
        truth.append(row)
    return frames, truth


def test_union_dispatches_on_type_and_forbids_unknown_keys():
    assert isinstance(build_detector({"type": "motion"}), MotionDetector)
    assert isinstance(build_detector(None), MotionDetector)
    with pytest.raises(ValidationError):
        build_detector({"type": "motion", "bogus": 1})
    with pytest.raises(ValidationError):
        build_detector({"type": "yolo"})


def test_motion_finds_the_mover():
    frames, truth = _moving_squares()
    boxes = build_detector({"type": "motion"}).detect(frames)
    assert len(boxes) == len(frames)
    hits = 0
    for i in range(4, len(frames)):
        tx0, ty0, tx1, ty1 = truth[i][0]
        for x0, y0, x1, y1 in boxes[i]:
            if x0 <= tx0 + 3 and y0 <= ty0 + 3 and x1 >= tx1 - 3 and y1 >= ty1 - 3 and (x1 - x0) < 40:
                hits += 1
                break
    assert hits >= len(frames) - 6
    assert all(len(b) == 0 for b in build_detector({"type": "motion"}).detect(np.full((8, 60, 80, 3), 90, np.uint8)))


def test_motion_respects_max_boxes_and_reset():
    frames, _ = _moving_squares(n=5)
    det = build_detector(MotionDetectorConfig(max_boxes=2))
    boxes = det.detect(frames)
    assert max(len(b) for b in boxes) <= 2
    assert any(len(b) == 2 for b in boxes)
    det.reset()
    assert det.detect(frames) == boxes  # deterministic after a reset


@pytest.mark.skipif(hog_available(), reason="this OpenCV has HOGDescriptor")
def test_hog_person_without_hog_is_a_clear_error():
    with pytest.raises(DetectorUnavailable, match="opencv-python-headless<5"):
        build_detector({"type": "hog-person"})


@pytest.mark.skipif(not hog_available(), reason="OpenCV 5 has no cv2.HOGDescriptor")
def test_hog_person_runs_and_returns_boxes_per_frame():
    det = build_detector({"type": "hog-person", "max_boxes": 3})
    assert isinstance(det, HogPersonDetector)
    frames = np.random.default_rng(0).integers(0, 255, (2, 96, 64, 3), dtype=np.uint8)
    out = det.detect(frames)
    assert len(out) == 2
    for row in out:
        assert len(row) <= 3
        for x0, y0, x1, y1 in row:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 96


def test_rejects_non_uint8():
    with pytest.raises(ValueError):
        build_detector({"type": "motion"}).detect(np.zeros((2, 10, 10, 3), np.float32))


@pytest.mark.parametrize("box", [(100, 50, 110, 70), (0, 0, 12, 30), (300, 200, 320, 240), (10, 10, 300, 230)])
def test_context_box_is_a_square_with_context_inside_the_frame(box):
    x0, y0, x1, y1 = context_box(box, 320, 240, margin=0.25)
    side = x1 - x0
    assert side == y1 - y0  # square: the resize to the backbone input does not stretch it
    assert 0 <= x0 and 0 <= y0 and x1 <= 320 and y1 <= 240
    longer = max(box[2] - box[0], box[3] - box[1], 16)
    assert side == min(int(longer * 1.25), 240)
    if side < 240:  # holds the whole box whenever the frame allows
        assert x0 <= box[0] and y0 <= box[1] and x1 >= box[2] and y1 >= box[3]
