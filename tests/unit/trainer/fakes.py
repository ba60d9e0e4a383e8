"""In-memory stand-ins and SynthCity scenarios for the trainer's unit tests."""

from __future__ import annotations

import fnmatch
from datetime import UTC, datetime, timedelta

import numpy as np

from vigil.objectstore import ObjectMissing


class MemoryStore:
    """The subset of :class:`vigil.objectstore.ObjectStore` the trainer uses, in memory."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.gets: list[str] = []
        self.bucket = "vigil"

    def put(self, key: str, data: bytes, content_type: str = "") -> None:
        self.objects[key] = bytes(data)

    def get(self, key: str) -> bytes:
        self.gets.append(key)
        try:
            return self.objects[key]
        except KeyError:
            raise ObjectMissing(key) from None

    def exists(self, key: str) -> bool:
        return key in self.objects

    def copy(self, src: str, dst: str) -> None:
        self.objects[dst] = self.get(src)

    def list(self, prefix: str) -> list[str]:
        return sorted(k for k in self.objects if k.startswith(prefix))

    def delete(self, key: str) -> None:
        self.objects.pop(key, None)


def add_event(db, store, *, camera_id: str, event_id: str, segments: list[np.ndarray], label: str,
              first_seq: int, fps: float, score: float = 0.9, model_version: str = "zs") -> list[str]:
    """Store ``segments`` as scored segments of ``camera_id``, one event over them, and feedback."""
    from vigil.models import Event, Feedback, SegmentScore
    from vigil.segments import encode_segment

    t0 = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=first_seq * 10)
    ids = []
    for i, frames in enumerate(segments):
        seq = first_seq + i
        sid = f"{camera_id}:{seq}"
        key = f"segments/{camera_id}/{seq:09d}.npz"
        store.put(key, encode_segment(frames, meta={"camera_id": camera_id, "seq": seq, "fps": fps}))
        ts = t0 + timedelta(seconds=i * len(frames) / fps)
        db.add(SegmentScore(segment_id=sid, camera_id=camera_id, seq=seq, score=score, model_version=model_version,
                            object_key=key, t_start=ts, t_end=ts + timedelta(seconds=len(frames) / fps),
                            frame_scores=[score] * len(frames)))
        ids.append(sid)
    db.add(Event(id=event_id, camera_id=camera_id, peak_score=score, model_version=model_version, t_start=t0,
                 t_end=t0 + timedelta(seconds=10), first_seq=first_seq, last_seq=first_seq + len(segments) - 1,
                 segment_ids=ids))
    db.add(Feedback(event_id=event_id, camera_id=camera_id, author="analyst", label=label))
    return ids
