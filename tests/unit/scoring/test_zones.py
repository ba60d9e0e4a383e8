"""A zone's params, occupancy and loitering, and its view of the frames."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from services.scoring.zones import loitering, zone_occupancy, zone_params
from vigil.config import CameraParams
from vigil.contracts import SegmentRef
from vigil.regions import MASK_GREY, Mask, Zone, zone_frames

LEFT = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]


def _ref(seconds: float = 2.0) -> SegmentRef:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    return SegmentRef(segment_id="c.0", camera_id="c", seq=0, t_start=t0, t_end=t0 + timedelta(seconds=seconds),
                      fps=4, n_frames=8, width=16, height=16, object_key="k")


def test_zone_params_take_its_prompt_set_and_fixed_threshold():
    base = CameraParams(threshold_mode="calibrated", prompt_set="default")
    p = zone_params(base, Zone(name="walk", polygon=LEFT, prompt_set="walkway", threshold=0.3))
    assert (p.prompt_set, p.threshold_mode, p.threshold) == ("walkway", "fixed", 0.3) and p.release <= 0.3
    assert zone_params(base, Zone(name="z", polygon=LEFT)) == base


def test_occupancy_adds_up_while_someone_is_there_and_resets_when_the_zone_empties():
    ref = _ref(2.0)
    busy, half = [[[0, 0, 1, 1]]] * 8, [[[0, 0, 1, 1]]] * 4 + [[]] * 4
    assert zone_occupancy(0.0, busy, ref) == 2.0 and zone_occupancy(6.0, busy, ref) == 8.0
    assert zone_occupancy(6.0, half, ref) == 0.0 and zone_occupancy(6.0, None, ref) == 0.0
    zone = Zone(name="bench", polygon=LEFT, loiter_s=7)
    res = {"score": 0.2, "frame_scores": [0.2] * 8, "top_descriptions": [], "streams": {}}
    assert loitering(res, zone, 6.0) is res
    hot = loitering(res, zone, 8.0)
    assert hot["score"] == 1.0 and hot["streams"]["loitering"] == 1.0 and hot["frame_scores"] == [1.0] * 8
    assert hot["top_descriptions"][0]["text"] == "someone in zone bench for 8 s (longer than 7 s)"


def test_zone_frames_cut_to_the_zone_and_paint_outside_and_masks_grey():
    frames = np.full((2, 40, 60, 3), 10, np.uint8)
    z = Zone(name="tri", polygon=[[0, 0], [0.5, 0], [0, 1]])
    out = zone_frames(frames, z, [Mask(polygon=[[0, 0], [0.1, 0], [0.1, 0.1], [0, 0.1]])])
    assert out.shape[1] <= 40 and out.shape[2] <= 31 and out.shape[1] % 2 == 0 and out.shape[2] % 2 == 0
    assert out[0, 0, 0, 0] == MASK_GREY  # under the mask
    assert out[0, 20, 2, 0] == 10  # inside the triangle
    assert out[0, 38, out.shape[2] - 1, 0] == MASK_GREY  # outside it
    with pytest.raises(ValueError):
        Zone(name="bad name", polygon=LEFT)
