"""SynthCity: procedural surveillance footage with frame labels and captions.

Six scene types (``SCENES``: street with a crossing, plaza, campus walkway, parking lot,
shop floor, subway platform), day or night, drawn from a seed with numpy and OpenCV only
(no assets). Agents — pedestrians, cyclists, cars, shopping carts, trains — move with
plausible scripted motion under a perspective camera with lighting and sensor noise.
Anomalies (``ANOMALY_TYPES``) are staged on top of each scene's normal traffic, and
normality is per scene (``SCENE_RULES``): cycling is normal on a street, an anomaly on a
campus walkway.

    cam = SynthCamera("plaza", seed=3, anomaly_rate=0.1)
    for frame, info in cam.frames():        # endless; info.label, info.anomaly_type, info.caption
        ...
    clip = render_clip("campus_walkway", seed=7, n_frames=200, anomalies=["cycling", "falling"])
    clip.frames, clip.labels, clip.types, clip.captions

Seeds: the layout and camera geometry are a function of the seed, so training and
evaluation use disjoint seed ranges (``TRAIN_SEEDS``, ``EVAL_SEEDS``), and choices of the
model's design are made on a third (``DEV_SEEDS``), never on the benchmark's cameras.
"""

from .events import PHRASES
from .generator import AnomalySpec, Clip, FrameInfo, ObjectCaption, SynthCamera, World, object_captions, render_clip, run_world
from .scenes import ANOMALY_TYPES, SCENE_RULES, SCENES, SceneRule

TRAIN_SEEDS = range(0, 100_000)  # layouts/cameras vigil-tiny may train on
EVAL_SEEDS = range(1_000_000, 1_100_000)  # held out: benchmark layouts/cameras
DEV_SEEDS = range(500_000, 600_000)  # held out from both: design choices (modes, heads) are made here

__all__ = [
    "SCENES", "ANOMALY_TYPES", "SCENE_RULES", "SceneRule", "PHRASES", "SynthCamera", "render_clip", "run_world",
    "Clip", "FrameInfo", "AnomalySpec", "World", "ObjectCaption", "object_captions", "TRAIN_SEEDS", "EVAL_SEEDS", "DEV_SEEDS",
]
