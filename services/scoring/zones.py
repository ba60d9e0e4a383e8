"""A camera's zones as the worker scores them: each zone is a view of its own.

A zone's segments go through the same served detector as the camera's whole view, with the
zone's prompt set and threshold (:func:`zone_params`) and its own scoring state; with a
``loiter_s``, an unbroken occupancy of the zone longer than that opens an event on its own
(:func:`zone_occupancy`, :func:`loitering`).
"""

from __future__ import annotations

from typing import Any

from vigil.config import CameraParams
from vigil.contracts import SegmentRef
from vigil.regions import Zone

OCCUPIED_SHARE = 0.8  # a segment counts as occupied when this share of its frames has a box in the zone


def zone_params(params: CameraParams, zone: Zone) -> CameraParams:
    """The camera's params with the zone's prompt set and, when it has one, its fixed threshold."""
    upd: dict[str, Any] = {}
    if zone.prompt_set:
        upd["prompt_set"] = zone.prompt_set
    if zone.threshold is not None:
        upd.update(threshold_mode="fixed", threshold=zone.threshold,
                   release_threshold=min(params.release_threshold or 0.8 * zone.threshold, zone.threshold))
    return CameraParams.model_validate({**params.model_dump(), **upd}) if upd else params


def zone_occupancy(occupied_s: float, boxes: list[list[Any]] | None, ref: SegmentRef) -> float:
    """Seconds the zone has been occupied without a break, this segment included (0: it emptied)."""
    frames = boxes or []
    if not frames or sum(1 for b in frames if b) < OCCUPIED_SHARE * len(frames):
        return 0.0
    return float(occupied_s) + (ref.t_end - ref.t_start).total_seconds()


def loitering(result: dict[str, Any], zone: Zone, occupied_s: float) -> dict[str, Any]:
    """``result`` with a full score and a description saying so once the occupancy passes ``loiter_s``."""
    if not zone.loiter_s or occupied_s <= zone.loiter_s:
        return result
    text = f"someone in zone {zone.name} for {occupied_s:.0f} s (longer than {zone.loiter_s:g} s)"
    return {**result, "score": 1.0, "frame_scores": [1.0] * len(result.get("frame_scores") or [1.0]),
            "top_descriptions": [{"text": text, "prob": 1.0, "abnormal": True}, *(result.get("top_descriptions") or [])],
            "streams": {**(result.get("streams") or {}), "loitering": 1.0}}
