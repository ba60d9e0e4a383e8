"""Ingest with fakes: segments cut at the camera's fps, bounded buffer, retries."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from services.ingest.runner import CameraIngest
from vigil.config import CameraConfig, FileSource
from vigil.contracts import SegmentRef, decode
from vigil.objectstore import ObjectStoreError
from vigil.segments import decode_segment


class FakeStore:
    def __init__(self, fail_for_s: float = 0.0):
        self.objects: dict[str, bytes] = {}
        self.down_until = time.monotonic() + fail_for_s
        self.failures = 0

    def put(self, key, data, content_type=""):
        if time.monotonic() < self.down_until:
            self.failures += 1
            raise ObjectStoreError("store down")
        self.objects[key] = data


class _Future:
    def get(self, timeout=None):
        return None


class FakeProducer:
    def __init__(self):
        self.sent = []

    def send(self, topic, key=None, value=None):
        self.sent.append((topic, key, value))
        return _Future()


def _camera(tmp_path, n_frames=100, fps=20.0, **params):
    path = tmp_path / "v.mp4"
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for i in range(n_frames):
        vw.write(np.full((48, 64, 3), i % 255, np.uint8))
    vw.release()
    return CameraConfig(id="cam", source=FileSource(path=path, realtime=False),
                        params={"fps": 4.0, "frames_per_segment": 4, **params})


def test_segments_are_sampled_stored_then_published_in_order(tmp_path):
    store, prod = FakeStore(), FakeProducer()
    ci = CameraIngest(_camera(tmp_path), store, prod, "vigil.segments.v1")
    health = ci.run()
    # 100 frames at 20 fps = 5 s -> 20 samples at 4 fps -> 5 segments of 4
    assert health.state == "finished" and health.segments == 5
    refs = [decode(SegmentRef, v) for _, _, v in prod.sent]
    assert [r.seq for r in refs] == list(range(5)) and all(k == b"cam" for _, k, _ in prod.sent)
    assert all(r.object_key in store.objects for r in refs)  # claim check: stored before published
    seg = decode_segment(store.objects[refs[1].object_key])
    assert seg.frames.shape[0] == 4
    assert abs((refs[1].t_start - refs[0].t_start).total_seconds() - 1.0) < 1e-6  # 4 frames at 4 fps


def test_a_finite_source_ends_with_its_partial_segment(tmp_path):
    store, prod = FakeStore(), FakeProducer()
    health = CameraIngest(_camera(tmp_path, n_frames=90), store, prod, "t").run()
    # 90 frames at 20 fps -> 18 samples at 4 fps -> 4 segments of 4 and the last 2 frames
    refs = [decode(SegmentRef, v) for _, _, v in prod.sent]
    assert health.segments == 5 and [r.n_frames for r in refs] == [4, 4, 4, 4, 2]
    assert decode_segment(store.objects[refs[-1].object_key]).frames.shape[0] == 2


def test_store_outage_is_retried_and_nothing_is_lost(tmp_path, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="services.ingest.runner")
    store, prod = FakeStore(fail_for_s=2.5), FakeProducer()
    ci = CameraIngest(_camera(tmp_path), store, prod, "t", buffer_segments=8)
    health = ci.run()
    assert store.failures >= 2 and health.segments == 5 and len(prod.sent) == 5 and health.dropped == 0
    lines = [r.getMessage() for r in caplog.records]
    # one line when the outage starts, one when it ends: not one per retry
    assert sum("failed" in m for m in lines) == 1 and sum("work again" in m for m in lines) == 1, lines


def test_realtime_camera_drops_oldest_when_buffer_is_full(tmp_path):
    cam = _camera(tmp_path, n_frames=200)
    cam = cam.model_copy(update={"source": cam.source.model_copy(update={"realtime": True})})
    store, prod = FakeStore(fail_for_s=3600), FakeProducer()
    ci = CameraIngest(cam, store, prod, "t", buffer_segments=2)
    th = threading.Thread(target=ci.capture, daemon=True)
    th.start()
    th.join(30)  # capture finishes (10 s of video in real time) although nothing uploads
    assert not th.is_alive()
    assert ci.health.dropped >= 5 and ci.buffer.qsize() == 2  # bounded: the newest 2 segments wait
