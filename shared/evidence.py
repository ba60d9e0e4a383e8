"""Evidence for an event: a JPEG thumbnail and a browser-playable clip with pre- and post-roll.

The clip is H.264 (High, yuv420p) in MP4 with ``+faststart`` (the index up front, so a
browser starts playing before the download ends), encoded with PyAV's bundled libx264;
OpenCV's own FFmpeg has no H.264 encoder and its mp4v output does not play in browsers.

Frames come from the stored segments of the event's camera whose time span overlaps
``[t_start - pre_roll_s, t_end + post_roll_s]``; frames outside that window are dropped.
The thumbnail is the highest-scoring frame of the highest-scoring segment inside the event.
Objects are written first, the event row last, so a row never names an object that is not
there; re-running overwrites the same keys (idempotent).
"""

from __future__ import annotations

import hashlib
import logging
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from vigil.models import Event, SegmentScore
from vigil.objectstore import ObjectMissing
from vigil.clock import as_utc
from vigil.segments import SegmentDecodeError, decode_segment

log = logging.getLogger(__name__)

CLIP_CONTENT_TYPE = "video/mp4"
THUMB_CONTENT_TYPE = "image/jpeg"
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class EvidenceError(RuntimeError):
    """No evidence can be built (unknown event, no stored frames); the message says which."""


def evidence_prefix(camera_id: str, event_id: str) -> str:
    """``evidence/<camera>/<event>/``; ids are reduced to safe characters (plus a short hash
    when that changed them), so no id can climb out of the prefix."""
    def safe(s: str) -> str:
        clean = _SAFE.sub("_", s).strip(".") or "_"
        if clean != s:
            clean = f"{clean[:80]}-{hashlib.sha256(s.encode()).hexdigest()[:8]}"
        return clean

    return f"evidence/{safe(camera_id)}/{safe(event_id)}/"


@dataclass
class _Frames:
    frames: list[np.ndarray]
    fps: float
    thumb: np.ndarray


def _collect(store, segs: list[SegmentScore], ev: Event, start: datetime, end: datetime) -> _Frames:  # noqa: ANN001
    frames: list[np.ndarray] = []
    fps_seen: list[float] = []
    best: tuple[float, np.ndarray] | None = None
    ev_start, ev_end = as_utc(ev.t_start), as_utc(ev.t_end)
    for seg in segs:
        try:
            decoded = decode_segment(store.get(seg.object_key))
        except ObjectMissing:
            log.warning("evidence for %s: segment %s is missing from the object store", ev.id, seg.segment_id)
            continue
        except SegmentDecodeError as exc:
            log.warning("evidence for %s: segment %s is unreadable: %s", ev.id, seg.segment_id, exc)
            continue
        n = len(decoded.frames)
        s0, s1 = as_utc(seg.t_start), as_utc(seg.t_end)
        step = (s1 - s0) / n if n else timedelta(0)
        fps = decoded.meta.get("fps")
        if isinstance(fps, (int, float)) and fps > 0:
            fps_seen.append(float(fps))
        elif step.total_seconds() > 0:
            fps_seen.append(1.0 / step.total_seconds())
        for i, f in enumerate(decoded.frames):
            t = s0 + step * i
            if start <= t < end or (step.total_seconds() == 0 and start <= s0 < end):
                frames.append(f)
        # thumbnail: best frame of the best segment inside the event
        if s1 > ev_start and s0 <= ev_end:
            fs = list(seg.frame_scores or [])
            i = int(np.argmax(fs)) if len(fs) == n and n else n // 2
            key = float(seg.score)
            if best is None or key > best[0]:
                best = (key, decoded.frames[i])
    if not frames:
        raise EvidenceError(f"event {ev.id}: no stored frames between {start.isoformat()} and {end.isoformat()}")
    thumb = best[1] if best is not None else frames[len(frames) // 2]
    return _Frames(frames=frames, fps=float(np.median(fps_seen)) if fps_seen else 4.0, thumb=thumb)


def _even_size(h: int, w: int, max_side: int) -> tuple[int, int]:
    scale = min(1.0, max_side / max(h, w))
    return max(2, int(h * scale) // 2 * 2), max(2, int(w * scale) // 2 * 2)


def encode_clip(frames: list[np.ndarray], fps: float, *, max_side: int = 1280, crf: int = 23) -> bytes:
    """RGB uint8 frames → H.264 yuv420p MP4 with the moov atom first (plays in browsers)."""
    h, w = _even_size(*frames[0].shape[:2], max_side)
    rate = Fraction(fps).limit_denominator(1001)
    # +faststart rewrites the file to move the index first: it needs a real file, not BytesIO
    with tempfile.TemporaryDirectory(prefix="vigil-clip-") as tmp:
        path = Path(tmp) / "clip.mp4"
        _write_mp4(path, frames, rate, w, h, crf)
        return path.read_bytes()


def _write_mp4(path: Path, frames: list[np.ndarray], rate: Fraction, w: int, h: int, crf: int) -> None:
    with av.open(str(path), mode="w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height = w, h
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "profile": "high"}
        for i, f in enumerate(frames):
            if f.shape[0] != h or f.shape[1] != w:
                f = cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA)
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")
            vf.pts = i
            vf.time_base = 1 / rate
            for packet in stream.encode(vf):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def encode_thumbnail(frame: np.ndarray, *, max_side: int = 640, quality: int = 85) -> bytes:
    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        frame = cv2.resize(frame, (int(w * scale), int(h * scale)), interpolation=cv2.INTER_AREA)
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise EvidenceError("JPEG encoding of the thumbnail failed")
    return jpg.tobytes()


def build_evidence(
    store, engine: Engine, event_id: str, *, pre_roll_s: float = 4.0, post_roll_s: float = 4.0,  # noqa: ANN001
    max_side: int = 1280,
) -> tuple[str, str]:
    """Write the thumbnail and clip of ``event_id`` and record their keys on the event row.

    Returns ``(thumbnail_key, clip_key)``. Raises :class:`EvidenceError` when the event is
    unknown or none of its camera's segments in the window can be read. Call it when the
    event ends and again once the post-roll segments have been stored, if they were not yet.
    """
    if pre_roll_s < 0 or post_roll_s < 0:
        raise ValueError("pre_roll_s and post_roll_s must be >= 0")
    with Session(engine) as s:
        ev = s.get(Event, event_id)
        if ev is None:
            raise EvidenceError(f"no event {event_id!r}")
        start = as_utc(ev.t_start) - timedelta(seconds=pre_roll_s)
        end = as_utc(ev.t_end) + timedelta(seconds=post_roll_s)
        segs = list(s.exec(
            select(SegmentScore)
            .where(SegmentScore.camera_id == ev.camera_id, SegmentScore.zone.is_(None), SegmentScore.t_end > start,
                   SegmentScore.t_start < end)
            .order_by(SegmentScore.seq)
        ))
        s.expunge_all()
    got = _collect(store, segs, ev, start, end)
    prefix = evidence_prefix(ev.camera_id, ev.id)
    thumb_key, clip_key = prefix + "thumb.jpg", prefix + "clip.mp4"
    store.put(clip_key, encode_clip(got.frames, got.fps, max_side=max_side), content_type=CLIP_CONTENT_TYPE)
    store.put(thumb_key, encode_thumbnail(got.thumb), content_type=THUMB_CONTENT_TYPE)
    with Session(engine) as s:
        row = s.get(Event, event_id)
        if row is None:  # deleted meanwhile (retention): do not leave orphans behind
            for k in (clip_key, thumb_key):
                store.delete(k)
            raise EvidenceError(f"event {event_id!r} was deleted while its evidence was built")
        row.thumbnail_key, row.clip_key = thumb_key, clip_key
        s.add(row)
        s.commit()
    log.info("evidence for %s: %d frames at %.2f fps -> %s", event_id, len(got.frames), got.fps, clip_key)
    return thumb_key, clip_key
