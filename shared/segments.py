"""The stored form of a segment: T JPEG frames in one ``.npz`` object.

Compact (JPEG, ~10-30 KB a frame at 320 px) and fast to decode (OpenCV, ~1 ms a frame),
with no pickle: ``np.load(allow_pickle=False)`` cannot execute code from a hostile object.
Layout: ``jpeg`` = all JPEG byte strings concatenated (uint8), ``offsets`` = int64 [T+1],
``meta`` = UTF-8 JSON (camera, seq, fps, timestamps) for humans and tools.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

CONTENT_TYPE = "application/x-vigil-segment+npz"


def single_threaded_codec() -> None:
    """OpenCV single-threaded in an I/O process (ingest, the scoring consumer): its images are
    small and its parallelism is across cameras, and OpenCV's thread pool spun on the cores the
    model needs (issue 26: 0.3 of 2 cores for camera reads and segment codecs)."""
    cv2.setNumThreads(1)


class SegmentDecodeError(ValueError):
    """A stored segment object that cannot be decoded (truncated, foreign, empty)."""


def segment_key(camera_id: str, seq: int) -> str:
    return f"segments/{camera_id}/{seq:09d}.npz"


def encode_segment(frames_rgb: list[np.ndarray] | np.ndarray, *, quality: int = 85, meta: dict[str, Any] | None = None) -> bytes:
    if len(frames_rgb) == 0:
        raise ValueError("a segment needs at least one frame")
    blobs = []
    for f in frames_rgb:  # frame by frame: a stream may change resolution mid-segment
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(f, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ValueError(f"JPEG encoding failed for a frame of shape {f.shape}")
        blobs.append(buf.ravel())
    offsets = np.zeros(len(blobs) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([b.size for b in blobs])
    out = io.BytesIO()
    np.savez(
        out,
        jpeg=np.concatenate(blobs),
        offsets=offsets,
        meta=np.frombuffer(json.dumps(meta or {}, default=str).encode(), dtype=np.uint8),
    )
    return out.getvalue()


@dataclass
class DecodedSegment:
    frames: np.ndarray  # uint8 [T, H, W, 3] RGB
    meta: dict[str, Any]


def decode_segment(data: bytes) -> DecodedSegment:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            jpeg, offsets, meta_raw = z["jpeg"], z["offsets"], z["meta"]
        meta = json.loads(meta_raw.tobytes() or b"{}")
    except Exception as exc:  # zipfile/ValueError/KeyError/JSON: all mean "not a segment"
        raise SegmentDecodeError(f"not a Vigil segment object: {exc}") from None
    frames = []
    for a, b in zip(offsets[:-1], offsets[1:]):
        img = cv2.imdecode(jpeg[a:b], cv2.IMREAD_COLOR_RGB)  # RGB straight from the decoder: no conversion pass
        if img is None:
            raise SegmentDecodeError(f"frame {len(frames)} of the segment is not a decodable JPEG")
        frames.append(img)
    if not frames:
        raise SegmentDecodeError("segment object holds no frames")
    return DecodedSegment(frames=np.stack(frames), meta=meta)
