from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest
from pydantic import SecretStr

from services.ingest.sources import SourceError, describe, open_source, redact
from vigil.config import FileSource, FramesSource, StreamSource


def _video(path, n=12, fps=10.0):
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for i in range(n):
        vw.write(np.full((48, 64, 3), i * 10, np.uint8))
    vw.release()
    return path


def test_file_source_reads_all_frames_with_media_time(tmp_path):
    frames = list(open_source(FileSource(path=_video(tmp_path / "v.mp4"), realtime=False), threading.Event()))
    assert len(frames) == 12 and frames[0][1].shape == (48, 64, 3)
    assert [round(t, 3) for t, _ in frames[:3]] == [0.0, 0.1, 0.2]


def test_file_source_loops(tmp_path):
    stop = threading.Event()
    it = open_source(FileSource(path=_video(tmp_path / "v.mp4"), loop=True, realtime=False), stop)
    times = [next(it)[0] for _ in range(30)]
    assert times == sorted(times) and len(set(times)) == 30  # time keeps running across loops
    stop.set()


def test_unreadable_video_is_a_clear_error(tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x01 this is no video" * 100)
    with pytest.raises(SourceError, match="broken.mp4"):
        list(open_source(FileSource(path=bad, realtime=False), threading.Event()))
    with pytest.raises(SourceError, match="does not exist"):
        list(open_source(FileSource(path=tmp_path / "nope.mp4"), threading.Event()))


def test_frames_folder(tmp_path):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i:03d}.jpg"), np.full((20, 30, 3), 50 * i, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    frames = list(open_source(FramesSource(path=tmp_path, fps=5), threading.Event()))
    assert [round(t, 2) for t, _ in frames] == [0.0, 0.2, 0.4]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="holds no images"):
        list(open_source(FramesSource(path=empty), threading.Event()))


def test_unreachable_stream_gives_up_after_max_reconnects_without_leaking_credentials():
    src = StreamSource(type="rtsp", url=SecretStr("rtsp://admin:hunter2@127.0.0.1:9/stream"),
                       reconnect_initial_s=0.05, reconnect_max_s=0.1, max_reconnects=2)
    with pytest.raises(SourceError) as e:
        list(open_source(src, threading.Event()))
    assert "unreachable after 3 attempts" in str(e.value) and "hunter2" not in str(e.value)
    assert "hunter2" not in describe(src)


def test_redact():
    assert redact("rtsp://u:p@cam.local:554/s?x=1") == "rtsp://***@cam.local:554/s?x=1"
    assert redact("http://cam/stream") == "http://cam/stream"
