"""An event's evidence clip, built from stored segments in a real S3 server (SeaweedFS),
served through the running API's short-lived presigned URL, plays in headless Chromium."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlmodel import Session

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--autoplay-policy=no-user-gesture-required"]
ADMIN = "browser-test-admin-key"


def _need_browser():
    if not Path(CHROMIUM).exists():
        pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        pytest.skip("playwright is not installed (pip install playwright; no `playwright install` needed)")


class _Server:
    """uvicorn in a thread on a free loopback port."""

    def __init__(self, app) -> None:  # noqa: ANN001
        import uvicorn

        from infra.embedded import free_port

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the API server did not start")
            time.sleep(0.05)
        return f"http://127.0.0.1:{self.port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def s3_settings(tmp_path_factory):
    """SeaweedFS on loopback (no broker, no Ray), a SQLite store migrated to head."""
    from infra.embedded import EmbeddedStack, StackError
    from vigil.config import load_settings

    state = tmp_path_factory.mktemp("vigil-evidence")
    base = load_settings(None, state_dir=state, database={"url": f"sqlite:///{state / 'vigil.db'}"},
                         kafka={"bootstrap_servers": "127.0.0.1:9"}, api={"admin_key": ADMIN})
    st = EmbeddedStack(base, with_ray=False)
    try:
        resolved = st.start()
    except StackError as exc:
        pytest.skip(f"embedded S3 (SeaweedFS) could not start: {exc}")
    yield resolved
    st.stop()


@pytest.mark.parametrize("public", [False, True], ids=["internal-endpoint", "public-endpoint"])
def test_evidence_clip_plays_in_headless_chromium(s3_settings, tmp_path, public):
    """``public``: the store's internal endpoint is 127.0.0.1:PORT, as the API reaches it; the
    browser's page and the store are under another host name (``localhost``, set as
    ``s3.public_endpoint``), as behind an ingress: the URL is signed for that name and plays."""
    _need_browser()
    from urllib.parse import urlsplit

    from playwright.sync_api import sync_playwright

    from services.api.main import create_app
    from vigil.db import make_engine
    from vigil.evidence import build_evidence
    from vigil.models import Event, SegmentScore
    from vigil.objectstore import ObjectStore
    from vigil.segments import encode_segment, segment_key

    store = ObjectStore(s3_settings.s3, retry_for_s=10)
    engine = make_engine(s3_settings.database_url)
    t0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    with Session(engine) as s:
        for seq in range(6):
            frames = np.zeros((16, 180, 320, 3), np.uint8)
            for i in range(16):
                x = (seq * 16 + i) * 3 % 300
                frames[i, 70:110, x:x + 20] = (255, 200, 0)
            store.put(segment_key("gate", seq), encode_segment(list(frames), meta={"fps": 4.0}))
            ts = t0 + timedelta(seconds=4 * seq)
            s.merge(SegmentScore(segment_id=f"gate:{seq}", camera_id="gate", seq=seq, score=0.2 + 0.1 * seq,
                               model_version="m1", object_key=segment_key("gate", seq), t_start=ts,
                               t_end=ts + timedelta(seconds=4), frame_scores=[0.5] * 16))
        s.merge(Event(id="gate:000000002", camera_id="gate", t_start=t0 + timedelta(seconds=8),
                    t_end=t0 + timedelta(seconds=16), first_seq=2, last_seq=3, peak_score=0.8, model_version="m1",
                    status="closed", created_at=t0, updated_at=t0,
                    top_descriptions=[{"text": "a person running", "prob": 0.7, "abnormal": True}]))
        s.commit()
    thumb_key, clip_key = build_evidence(store, engine, "gate:000000002", pre_roll_s=4, post_roll_s=4)
    assert store.exists(clip_key) and store.exists(thumb_key)

    internal = urlsplit(f"http://{s3_settings.s3.endpoint}")
    api_settings = s3_settings
    if public:
        api_settings = s3_settings.model_copy(update={"s3": s3_settings.s3.model_copy(
            update={"public_endpoint": f"localhost:{internal.port}"})})
    app = create_app(api_settings, engine=engine, store=ObjectStore(api_settings.s3, retry_for_s=10),
                     presign_expires_s=120)
    with _Server(app) as base:
        if public:
            base = base.replace("127.0.0.1", "localhost")  # the page is not on the store's internal host
        detail = httpx.get(f"{base}/events/gate:000000002", headers={"X-API-Key": ADMIN}, timeout=10).json()
        clip_url, thumb_url = detail["clip_url"], detail["thumbnail_url"]
        assert clip_url and thumb_url and detail["urls_expire_in_s"] == 120
        assert urlsplit(clip_url).hostname == ("localhost" if public else internal.hostname), clip_url
        r = httpx.get(clip_url, timeout=10)
        assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
        # the bucket is private: the same object without the signature is refused
        assert httpx.get(clip_url.split("?")[0], timeout=10).status_code == 403

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
            try:
                page = browser.new_page()
                page.goto(f"{base}/health")
                page.set_content(
                    f'<video id="v" src="{clip_url}" muted playsinline preload="auto"></video>'
                    f'<img id="t" src="{thumb_url}">'
                )
                page.wait_for_function("document.getElementById('v').readyState === 4", timeout=30_000)
                info = page.evaluate("""async () => {
                    const v = document.getElementById('v');
                    await v.play();
                    await new Promise(r => setTimeout(r, 700));
                    const t = document.getElementById('t');
                    return {w: v.videoWidth, h: v.videoHeight, dur: v.duration, cur: v.currentTime,
                            err: v.error && v.error.message, tw: t.naturalWidth};
                }""")
                page.screenshot(path=str(tmp_path / "evidence.png"))
            finally:
                browser.close()
    assert info["err"] is None
    assert (info["w"], info["h"]) == (320, 180)
    assert 15.5 <= info["dur"] <= 16.5  # 8 s event + 4 s pre-roll + 4 s post-roll
    assert info["cur"] > 0  # it played
    assert info["tw"] == 320
    shutil.rmtree(tmp_path, ignore_errors=True)
