"""Reasons an analyst reads: why the object streams found a box unusual, in words.

Each object stream that fired on the segment's most unusual box (its calibrated score at or
above 1, i.e. beyond the worst 1 % of the camera's normal boxes) gives one sentence, measured
against what normal objects do *at that place in the view* (:meth:`NormalityModel.place_reference`):

- ``place_speed`` / ``motion``: "moving 3.1× faster than objects usually move here";
- ``attr``: the direction and speed of the motion, when that pattern is rare here;
- ``mem``: "looks unlike the objects seen here in normal footage";
- ``pred``: "moves unlike its own last seconds" (the forecast missed);
- ``dwell``: "has stayed here about 40 s where objects usually stay 3 s";

and, beside any of them, the object's size when it is at least twice the usual height there.
A stream that did not fire gives no reason, so a calm scene is never explained by a stream
that stayed quiet.
"""

from __future__ import annotations

import math

import numpy as np

from vigil.model.attributes import ATTRIBUTES

__all__ = ["FIRED", "object_reasons"]

FIRED = 1.0  # calibrated score of the worst 1 % of normal: a stream at or above it fired
_SIZE_RATIO = 2.0
_COMPASS = ("right", "down-right", "down", "down-left", "left", "up-left", "up", "up-right")


def _direction(vx: float, vy: float) -> str:
    """Image direction of a flow vector (y grows downwards)."""
    return _COMPASS[int(round(math.atan2(vy, vx) / (math.pi / 4))) % 8]


def object_reasons(attrs: np.ndarray, calibrated: dict[str, float], place: dict[str, float],
                   probability: dict[str, float]) -> list[dict]:
    """Sentences for one box: ``attrs`` its attribute vector, ``calibrated`` its streams' calibrated
    scores, ``place`` its :meth:`~vigil.model.normality.NormalityModel.place_reference` values,
    ``probability`` each stream's score on the fusion scale. Returns description dicts
    (``text``, ``prob``, ``abnormal``, ``stream``), strongest first."""
    a = {k: float(v) for k, v in zip(ATTRIBUTES, attrs)}
    fired = {k: v for k, v in calibrated.items() if v is not None and np.isfinite(v) and v >= FIRED}
    out = []
    usual = place.get("speed_median")
    speed_text = None
    if usual is not None and np.isfinite(usual) and usual > 0 and a["speed"] > 0:
        ratio = a["speed"] / usual
        speed_text = (f"moving {ratio:.1f}× faster than objects usually move here" if ratio >= 1
                      else f"moving at {ratio:.1f}× the usual speed here")
    for stream in sorted(fired, key=fired.get, reverse=True):
        if stream in ("place_speed", "motion") and speed_text:
            text = speed_text
        elif stream == "attr":
            text = (f"moving {_direction(a['vx'], a['vy'])} in a way rarely seen here" if a["speed"] > 0
                    else "still where objects usually move")
        elif stream == "mem":
            text = "looks unlike the objects seen here in normal footage"
        elif stream == "pred":
            text = "moves unlike its own last seconds"
        elif stream == "dwell":
            stayed, usual_stay = place.get("dwell_s_here"), place.get("dwell_s_usual")
            text = (f"has stayed here about {stayed:.0f} s where objects usually stay {usual_stay:.0f} s"
                    if stayed is not None and usual_stay is not None else "stays where objects only pass")
        else:
            continue
        if any(d["text"] == text for d in out):
            continue
        out.append({"text": text, "prob": float(probability.get(stream, 0.0)), "abnormal": True, "stream": stream})
    h_usual = place.get("h_median")
    if out and h_usual is not None and np.isfinite(h_usual) and h_usual > 0 and a["h"] / h_usual >= _SIZE_RATIO:
        out.append({"text": f"{a['h'] / h_usual:.1f}× taller than objects usually are in this part of the view",
                    "prob": out[0]["prob"], "abnormal": True, "stream": "size"})
    return out
