"""Evidence clips and thumbnails from stored segments (PyAV H.264, in-memory object store)."""

from __future__ import annotations

import io
from datetime import timedelta

import av
import cv2
import numpy as np
import pytest
from sqlmodel import Session

from vigil.evidence import EvidenceError, build_evidence, evidence_prefix
from vigil.models import Event, SegmentScore
from vigil.segments import encode_segment, segment_key

FPS, T = 4.0, 16  # 4 s segments


def _store_segments(store, engine, t0, camera="cam-a", n=10, peak=(5, 7), missing=()):
    with Session(engine) as s:
        for seq in range(n):
            frames = np.full((T, 120, 160, 3), 40, np.uint8)
            frames[:, :, : 10 + seq * 10] = 90  # a bar whose width tells the segment apart
            scores = [0.1] * T
            if seq == peak[0]:
                frames[peak[1]] = 250  # the peak frame is white
                scores[peak[1]] = 0.95
            ts = t0 + timedelta(seconds=seq * T / FPS)
            te = ts + timedelta(seconds=T / FPS)
            key = segment_key(camera, seq)
            if seq not in missing:
                store.put(key, encode_segment(list(frames), meta={"fps": FPS, "seq": seq}))
            s.add(SegmentScore(segment_id=f"{camera}:{seq}", camera_id=camera, seq=seq, score=max(scores),
                               model_version="m1", object_key=key, t_start=ts, t_end=te, frame_scores=scores))
        s.commit()


def _decode(data: bytes):
    with av.open(io.BytesIO(data)) as c:
        st = c.streams.video[0]
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(st)]
        return st.codec_context.name, st.codec_context.pix_fmt, st.codec_context.profile, frames


def test_clip_and_thumbnail(engine, store, make_event, seed):
    ev = make_event(4)  # any id; times are set below
    t0 = ev.t_start
    ev.t_start, ev.t_end = t0 + timedelta(seconds=16), t0 + timedelta(seconds=24)  # segments 4 and 5
    seed([ev])
    _store_segments(store, engine, t0)
    thumb_key, clip_key = build_evidence(store, engine, ev.id, pre_roll_s=4, post_roll_s=4)
    assert clip_key.startswith("evidence/cam-a/") and clip_key.endswith("/clip.mp4")
    with Session(engine) as s:
        row = s.get(Event, ev.id)
        assert (row.thumbnail_key, row.clip_key) == (thumb_key, clip_key)
    data = store.objects[clip_key]
    assert data.find(b"moov") < data.find(b"mdat")  # faststart: index before media
    codec, pix_fmt, profile, frames = _decode(data)
    assert (codec, pix_fmt, profile) == ("h264", "yuv420p", "High")
    assert len(frames) == 4 * T  # 12 s .. 28 s = segments 3..6
    # first frame from segment 3 (bar 40 px), last from segment 6 (bar 70 px)
    bar = lambda f: int((f[60, :, 0] > 65).sum())  # noqa: E731
    assert abs(bar(frames[0]) - 40) <= 2 and abs(bar(frames[-1]) - 70) <= 2
    thumb = cv2.imdecode(np.frombuffer(store.objects[thumb_key], np.uint8), cv2.IMREAD_COLOR)
    assert thumb.shape[:2] == (120, 160) and thumb.mean() > 200  # the white peak frame


def test_missing_segments_are_skipped_and_no_frames_is_an_error(engine, store, make_event, seed):
    ev = make_event(4)
    t0 = ev.t_start
    ev.t_start, ev.t_end = t0 + timedelta(seconds=16), t0 + timedelta(seconds=24)
    seed([ev])
    _store_segments(store, engine, t0, missing={3, 6})
    _, clip_key = build_evidence(store, engine, ev.id, pre_roll_s=4, post_roll_s=4)
    assert len(_decode(store.objects[clip_key])[3]) == 2 * T
    for k in list(store.objects):
        if k.startswith("segments/"):
            store.delete(k)
    with pytest.raises(EvidenceError, match="no stored frames"):
        build_evidence(store, engine, ev.id, pre_roll_s=4, post_roll_s=4)
    with pytest.raises(EvidenceError, match="no event"):
        build_evidence(store, engine, "nope", pre_roll_s=0, post_roll_s=0)


def test_pre_and_post_roll_bound_the_clip(engine, store, make_event, seed):
    ev = make_event(4)
    t0 = ev.t_start
    ev.t_start, ev.t_end = t0 + timedelta(seconds=16), t0 + timedelta(seconds=24)
    seed([ev])
    _store_segments(store, engine, t0)
    _, clip_key = build_evidence(store, engine, ev.id, pre_roll_s=0, post_roll_s=0)
    assert len(_decode(store.objects[clip_key])[3]) == 2 * T
    _, clip_key = build_evidence(store, engine, ev.id, pre_roll_s=2, post_roll_s=1)
    assert len(_decode(store.objects[clip_key])[3]) == 2 * T + 8 + 4


def test_evidence_keys_cannot_escape_their_prefix():
    for cam, eid in [("cam-a", "../../segments/x"), ("..", ".."), ("a/b", "c\\d"), ("cam", "ok:1")]:
        p = evidence_prefix(cam, eid)
        parts = p.split("/")
        assert parts[0] == "evidence" and len(parts) == 4 and parts[3] == ""
        assert ".." not in parts and all(parts[:3])
