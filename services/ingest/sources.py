"""Camera sources: each yields ``(t_seconds, frame_rgb)`` at the camera's native rate.

``t`` is media time from the start of the stream. Pacing (real time or as fast as
possible) lives here because only the source knows its native clock. Stream URLs may
carry credentials and are only ever logged through :func:`redact`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from vigil.config import CameraSource, FileSource, FramesSource, StreamSource, SyntheticSource

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff"}


class SourceError(RuntimeError):
    """The camera source cannot deliver frames; the message names the source and what to check."""


def redact(url: str) -> str:
    """``rtsp://user:pass@host/x`` → ``rtsp://***@host/x``."""
    parts = urlsplit(url)
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        parts = parts._replace(netloc=f"***@{host}")
    return urlunsplit(parts)


class _Pacer:
    def __init__(self, realtime: bool) -> None:
        self.realtime = realtime
        self.t0 = time.monotonic()

    def wait_until(self, t: float, stop: threading.Event) -> None:
        if self.realtime:
            delay = self.t0 + t - time.monotonic()
            if delay > 0:
                stop.wait(delay)


def _bgr_to_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)


def file_frames(src: FileSource, stop: threading.Event) -> Iterator[tuple[float, np.ndarray]]:
    path = Path(src.path)
    if not path.is_file():
        raise SourceError(f"video file {path} does not exist")
    pacer = _Pacer(src.realtime)
    offset = 0.0
    while not stop.is_set():
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise SourceError(f"cannot open video file {path}: not a video OpenCV/FFmpeg can read")
        fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        if not 0 < fps < 1000:
            fps = 25.0
        n = 0
        try:
            while not stop.is_set():
                ok, frame = cap.read()
                if not ok:
                    break
                t = offset + n / fps
                pacer.wait_until(t, stop)
                yield t, _bgr_to_rgb(frame)
                n += 1
        finally:
            cap.release()
        if n == 0:
            raise SourceError(f"video file {path} has no decodable frames (corrupt or unsupported codec)")
        if not src.loop:
            return
        offset += n / fps


def folder_frames(src: FramesSource, stop: threading.Event) -> Iterator[tuple[float, np.ndarray]]:
    folder = Path(src.path)
    if not folder.is_dir():
        raise SourceError(f"frames folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SourceError(f"frames folder {folder} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    pacer = _Pacer(src.realtime)
    offset = 0.0
    while not stop.is_set():
        for i, f in enumerate(files):
            if stop.is_set():
                return
            img = cv2.imread(str(f), cv2.IMREAD_COLOR)
            if img is None:
                log.warning("skipping unreadable image %s", f)
                continue
            t = offset + i / src.fps
            pacer.wait_until(t, stop)
            yield t, _bgr_to_rgb(img)
        if not src.loop:
            return
        offset += len(files) / src.fps


def stream_frames(src: StreamSource, stop: threading.Event,
                  on_retry: Callable[[str], None] | None = None) -> Iterator[tuple[float, np.ndarray]]:
    """Frames of a live stream; reconnects with backoff. ``on_retry(reason)`` is told of each
    reconnect (the reason never holds the URL)."""
    url = src.url.get_secret_value()
    shown = redact(url)
    delay = src.reconnect_initial_s
    attempts = 0
    t0 = time.monotonic()
    while not stop.is_set():
        cap = cv2.VideoCapture(url, cv2.CAP_FFMPEG)
        got = 0
        if cap.isOpened():
            while not stop.is_set():
                ok, frame = cap.read()
                if not ok:
                    break
                got += 1
                yield time.monotonic() - t0, _bgr_to_rgb(frame)
        cap.release()
        if stop.is_set():
            return
        if got:
            delay, attempts = src.reconnect_initial_s, 0  # it worked for a while: start backoff afresh
        attempts += 1
        if src.max_reconnects is not None and attempts > src.max_reconnects:
            raise SourceError(f"camera stream {shown} unreachable after {attempts} attempts; check the URL and network")
        log.warning("stream %s lost or unreachable; reconnecting in %.1fs (attempt %d)", shown, delay, attempts)
        if on_retry is not None:
            on_retry("stream lost after frames" if got else "stream unreachable")
        stop.wait(delay)
        delay = min(delay * 2, src.reconnect_max_s)


def synthetic_frames(src: SyntheticSource, stop: threading.Event) -> Iterator[tuple[float, np.ndarray]]:
    from vigil.synthcity import SynthCamera

    cam = SynthCamera(src.scene, src.seed, width=src.width, height=src.height, fps=src.fps,
                      anomaly_rate=src.anomaly_rate)
    pacer = _Pacer(src.realtime)
    for i, (frame, _info) in enumerate(cam.frames()):
        if stop.is_set():
            return
        t = i / src.fps
        pacer.wait_until(t, stop)
        yield t, frame


def open_source(src: CameraSource, stop: threading.Event,
                on_retry: Callable[[str], None] | None = None) -> Iterator[tuple[float, np.ndarray]]:
    match src:
        case FileSource():
            return file_frames(src, stop)
        case FramesSource():
            return folder_frames(src, stop)
        case StreamSource():
            return stream_frames(src, stop, on_retry)
        case SyntheticSource():
            return synthetic_frames(src, stop)
    raise SourceError(f"unknown source type {type(src).__name__}")


def scrub(message: str, src: CameraSource) -> str:
    """``message`` without the source's URL or path (health is shown to every viewer)."""
    if isinstance(src, StreamSource):
        url = src.url.get_secret_value()
        spots = [url, redact(url)]
    elif isinstance(src, (FileSource, FramesSource)):
        spots = [str(src.path), str(src.path.resolve())]
    else:
        spots = []
    for spot in sorted(spots, key=len, reverse=True):
        message = message.replace(spot, "<source>")
    return message


def describe(src: CameraSource) -> str:
    """Where a source reads from, safe to log and store in public views."""
    if isinstance(src, StreamSource):
        return redact(src.url.get_secret_value())
    if isinstance(src, SyntheticSource):
        return f"synthetic:{src.scene}#{src.seed}"
    return str(src.path)
