"""Training sets from the object store and analyst feedback.

Two kinds of clips, both in the stored-segment format (:mod:`vigil.segments`):

- **normal calibration clips** of a camera, ``clips/<camera>/normal/<clip_id>.npz`` (any number
  of frames; cut into segments of T frames). Every ``holdout_every``-th clip of a camera (in
  key order) is held out: it serves only to measure false alarms per hour and to evaluate.
- **event clips with feedback**: an event's stored segments (``events.segment_ids`` →
  ``segment_scores.object_key``), labelled by the latest feedback on the event.
  ``false_positive`` → a normal training example (weighted); ``true_positive`` (a confirmed
  anomaly) → held out for evaluation only, so the model stays zero-shot, unless
  ``data.use_confirmed_anomalies`` opts in (then every ``holdout_every``-th one is still held out).

The manifest (:class:`TrainingSet`) is plain data with a content digest: it is the data
lineage of a model version.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from vigil.models import Event, Feedback, SegmentScore
from vigil.objectstore import ObjectStore
from vigil.segments import CONTENT_TYPE, encode_segment

from .config import DataSettings

log = logging.getLogger(__name__)

CLIPS_PREFIX = "clips/"
Source = Literal["calibration", "false_positive", "confirmed_anomaly"]


def calibration_key(camera_id: str, clip_id: str) -> str:
    return f"{CLIPS_PREFIX}{camera_id}/normal/{clip_id}.npz"


def put_calibration_clip(
    store: ObjectStore, camera_id: str, clip_id: str, frames: np.ndarray, *, fps: float,
    labels: list[int] | np.ndarray | None = None, quality: int = 85,
) -> str:
    """Store a normal calibration clip of a camera (uint8 RGB ``[N, H, W, 3]``); returns its key.

    ``labels`` (per frame, optional) are kept in the clip's meta: a calibration clip is
    assumed normal, but labelled footage (e.g. SynthCity) can be checked by evaluation.
    """
    meta: dict[str, Any] = {"camera_id": camera_id, "clip_id": clip_id, "fps": float(fps), "kind": "calibration"}
    if labels is not None:
        meta["labels"] = [int(x) for x in labels]
    key = calibration_key(camera_id, clip_id)
    store.put(key, encode_segment(frames, quality=quality, meta=meta), content_type=CONTENT_TYPE)
    return key


@dataclass(frozen=True)
class ClipRef:
    """One clip of a training set: the objects that make it up, in time order."""

    clip_id: str
    camera_id: str
    keys: tuple[str, ...]
    source: Source
    label: int  # 0 normal, 1 abnormal (whole clip; frame labels in a clip's meta win)
    split: Literal["train", "eval"]
    event_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["keys"] = list(self.keys)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ClipRef:
        return cls(**{**d, "keys": tuple(d["keys"])})


@dataclass
class TrainingSet:
    clips: list[ClipRef] = field(default_factory=list)

    def select(self, *, split: str | None = None, source: str | None = None, camera: str | None = None) -> list[ClipRef]:
        return [c for c in self.clips if (split is None or c.split == split) and (source is None or c.source == source)
                and (camera is None or c.camera_id == camera)]

    @property
    def cameras(self) -> list[str]:
        return sorted({c.camera_id for c in self.clips})

    def to_dict(self) -> dict[str, Any]:
        return {"clips": [c.to_dict() for c in self.clips], "digest": self.digest}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainingSet:
        return cls([ClipRef.from_dict(c) for c in d["clips"]])

    @property
    def digest(self) -> str:
        payload = json.dumps(sorted((c.to_dict() for c in self.clips), key=lambda c: c["clip_id"]), sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def summary(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for c in self.clips:
            out[f"{c.source}/{c.split}"] += 1
        return dict(sorted(out.items()))


def _calibration_clips(store: ObjectStore, cfg: DataSettings) -> list[ClipRef]:
    by_cam: dict[str, list[str]] = defaultdict(list)
    for key in store.list(CLIPS_PREFIX):
        parts = key[len(CLIPS_PREFIX):].split("/")
        if len(parts) == 3 and parts[1] == "normal" and key.endswith(".npz"):
            by_cam[parts[0]].append(key)
    out = []
    for cam, keys in sorted(by_cam.items()):
        if cfg.cameras and cam not in cfg.cameras:
            continue
        keys.sort()
        for i, key in enumerate(keys):
            held_out = len(keys) > 1 and i % cfg.holdout_every == cfg.holdout_every - 1
            clip_id = f"cal:{cam}:{key.rsplit('/', 1)[1].removesuffix('.npz')}"
            out.append(ClipRef(clip_id, cam, (key,), "calibration", 0, "eval" if held_out else "train"))
    return out


def _feedback_clips(engine: Engine, store: ObjectStore, cfg: DataSettings) -> list[ClipRef]:
    with Session(engine) as db:
        fb = db.exec(select(Feedback).order_by(Feedback.created_at, Feedback.id)).all()
        latest: dict[str, Feedback] = {}
        for f in fb:  # the latest word of an analyst on an event wins
            latest[f.event_id] = f
        events = {e.id: e for e in db.exec(select(Event).where(Event.id.in_(list(latest)))).all()} if latest else {}
        seg_ids = [s for e in events.values() for s in e.segment_ids]
        keys = dict(db.exec(select(SegmentScore.segment_id, SegmentScore.object_key)
                            .where(SegmentScore.segment_id.in_(seg_ids))).all()) if seg_ids else {}
    out: list[ClipRef] = []
    n_confirmed = 0
    for event_id in sorted(latest):
        f, ev = latest[event_id], events.get(event_id)
        if ev is None or ev.purge_started_at is not None:
            continue  # deleted or being purged by retention
        if cfg.cameras and ev.camera_id not in cfg.cameras:
            continue
        objs = tuple(keys[s] for s in ev.segment_ids if s in keys)
        objs = tuple(k for k in objs if store.exists(k))
        if not objs:
            log.warning("event %s has feedback but none of its segments is stored any more; skipped", event_id)
            continue
        if f.label == "false_positive":
            out.append(ClipRef(f"fp:{event_id}", ev.camera_id, objs, "false_positive", 0, "train", event_id))
        elif f.label == "true_positive":
            split = "eval"
            if cfg.use_confirmed_anomalies:
                split = "eval" if n_confirmed % cfg.holdout_every == cfg.holdout_every - 1 else "train"
            n_confirmed += 1
            out.append(ClipRef(f"tp:{event_id}", ev.camera_id, objs, "confirmed_anomaly", 1, split, event_id))
    return out


def build_training_set(store: ObjectStore, engine: Engine, cfg: DataSettings) -> TrainingSet:
    """Every usable clip: calibration clips (train / held out) and event clips with feedback."""
    ts = TrainingSet(_calibration_clips(store, cfg) + _feedback_clips(engine, store, cfg))
    if not ts.select(split="train"):
        raise ValueError(
            "no training clips: store normal calibration clips under clips/<camera>/normal/ "
            "or mark events as false positives"
        )
    return ts
