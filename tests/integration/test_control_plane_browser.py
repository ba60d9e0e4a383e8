"""The control plane end to end in headless Chromium: what an admin does in the dashboard is
read back through the API.

Real parts as in ``test_dashboard_browser``: SeaweedFS and SQLite, the API under uvicorn, the
dashboard under ``streamlit run``, Debian's Chromium driven by Playwright. An admin signs in,
adds a file camera, sees its card on Live, draws a mask with the lasso on a recent frame of it,
edits its context's prompt set, activates another model version and finds every change in the
audit log. Screenshots go to ``artifacts/screenshots/cp-*.png``.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from sqlmodel import Session

from tests.integration.test_dashboard_browser import (
    ADMIN, CHROMIUM, CHROMIUM_FLAGS, SHOTS, _Api, _need_browser, _settle, _Streamlit, s3_settings,  # noqa: F401
)

pytestmark = pytest.mark.integration

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
LASSO = [(0.2, 0.2), (0.6, 0.2), (0.6, 0.6), (0.2, 0.6), (0.2, 0.25)]  # fractions of the drawn frame


def _seed(engine) -> None:  # noqa: ANN001
    from vigil.models import Camera, ModelVersion

    with Session(engine) as s:
        s.add(Camera(id="gate", name="North gate", source_type="synthetic", context="campus"))
        s.add(ModelVersion(id="vigil-tiny+heads:zs", backbone="vigil-tiny", active=True, created_at=T0,
                           activated_at=T0))
        s.add(ModelVersion(id="vigil-tiny+heads:ft1", backbone="vigil-tiny", created_at=T0 + timedelta(days=1),
                           description="heads from feedback"))
        s.commit()


def _stored_segment(store, engine, camera: str) -> None:  # noqa: ANN001
    """A recent segment of the camera in S3 (what ingest would have stored): its snapshot."""
    from vigil.models import SegmentScore
    from vigil.segments import encode_segment, segment_key

    frames = np.full((8, 180, 320, 3), 70, np.uint8)
    frames[:, 40:100, 80:180] = (230, 230, 240)  # a bright "screen" in the upper left
    store.put(segment_key(camera, 0), encode_segment(list(frames), meta={"fps": 4.0}))
    now = datetime.now(UTC)
    with Session(engine) as s:
        s.add(SegmentScore(segment_id=f"{camera}:0", camera_id=camera, seq=0, score=0.1, model_version="m1",
                           object_key=segment_key(camera, 0), t_start=now - timedelta(seconds=2), t_end=now,
                           frame_scores=[0.1] * 8))
        s.commit()


def _admin_key(api: str) -> str:
    hdr = {"X-API-Key": ADMIN}
    u = httpx.post(f"{api}/users", json={"name": "ops", "role": "admin"}, headers=hdr, timeout=10)
    assert u.status_code == 201, u.text
    return httpx.post(f"{api}/users/{u.json()['id']}/keys", json={}, headers=hdr, timeout=10).json()["key"]


def _lasso(page, points) -> None:  # noqa: ANN001
    """Drag the lasso through ``points`` (fractions of the plot area) on the mask canvas."""
    area = page.locator(".js-plotly-plot .nsewdrag").first
    box = area.bounding_box()
    assert box, "the mask canvas has no drawing area"
    xy = [(box["x"] + fx * box["width"], box["y"] + fy * box["height"]) for fx, fy in points]
    page.mouse.move(*xy[0])
    page.mouse.down()
    for x, y in xy[1:]:
        page.mouse.move(x, y, steps=8)
    page.mouse.up()


def test_add_camera_draw_mask_edit_prompt_activate_model_and_audit(s3_settings, tmp_path):  # noqa: F811
    _need_browser()
    from playwright.sync_api import expect, sync_playwright

    from services.api.main import create_app
    from vigil.db import make_engine
    from vigil.objectstore import ObjectStore

    SHOTS.mkdir(parents=True, exist_ok=True)
    store = ObjectStore(s3_settings.s3, retry_for_s=10)
    engine = make_engine(s3_settings.database_url)
    _seed(engine)
    app = create_app(s3_settings, engine=engine, store=store)
    t_begin = time.monotonic()
    with _Api(app) as api, _Streamlit(s3_settings, api, tmp_path / "streamlit.log") as dash, sync_playwright() as pw:
        key = _admin_key(api)
        hdr = {"X-API-Key": key}
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1250})
            page.set_default_timeout(30_000)
            expect.set_options(timeout=30_000)  # a fresh clone's first page runs import and compile the app
            page.goto(dash)
            expect(page.get_by_label("API key", exact=True)).to_be_visible(timeout=60_000)
            page.get_by_label("API key", exact=True).fill(key)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_text("ops · admin")).to_be_visible()

            # add a file camera on the Cameras page
            page.get_by_role("link", name="Cameras").click()
            expect(page.get_by_role("heading", name="Cameras", exact=True)).to_be_visible()
            page.get_by_label("Id", exact=True).fill("door")
            page.get_by_label("Name", exact=True).first.fill("Front door")
            page.get_by_test_id("stSelectbox").filter(has_text="Source type").first.click()
            page.get_by_role("option", name="file", exact=True).click()
            page.get_by_label("Source URL or path", exact=True).first.fill("/srv/videos/door.mp4?loop=true")
            page.get_by_label("Context", exact=True).first.fill("campus")
            page.get_by_role("button", name="Add camera").click()
            expect(page.get_by_text("Camera door added.")).to_be_visible()
            _settle(page)
            page.screenshot(path=str(SHOTS / "cp-01-camera-added.png"), full_page=True)
            cam = httpx.get(f"{api}/cameras/door", headers=hdr, timeout=10).json()
            assert (cam["name"], cam["source_type"], cam["context"], cam["has_source_uri"]) == (
                "Front door", "file", "campus", True)

            # its card on Live
            page.get_by_role("link", name="Live").click()
            expect(page.get_by_text("Front door")).to_be_visible()
            _settle(page)
            page.screenshot(path=str(SHOTS / "cp-02-live-card.png"), full_page=True)

            # draw a mask on a recent frame of it
            _stored_segment(store, engine, "door")
            page.get_by_role("link", name="Masks & thresholds").click()
            expect(page.get_by_role("heading", name="Masks & thresholds")).to_be_visible()
            expect(page.get_by_role("combobox", name="Camera")).to_be_visible()  # door, the first camera
            expect(page.locator(".js-plotly-plot").first).to_be_visible()  # the Masks tab's canvas
            _settle(page)
            _lasso(page, LASSO)
            expect(page.get_by_role("button", name="Add mask")).to_be_visible()
            page.get_by_label("Mask name").fill("screen")
            _settle(page)
            page.screenshot(path=str(SHOTS / "cp-03-mask-drawn.png"), full_page=True)
            page.get_by_role("button", name="Add mask").click()
            expect(page.get_by_text("Mask screen added to door")).to_be_visible()
            expect(page.get_by_text("screen · ", exact=False)).to_be_visible()
            _settle(page)
            page.screenshot(path=str(SHOTS / "cp-04-mask-saved.png"), full_page=True)
            masks = httpx.get(f"{api}/cameras/door", headers=hdr, timeout=10).json()["masks"]
            assert [m["name"] for m in masks] == ["screen"], masks
            xs, ys = zip(*masks[0]["polygon"])
            assert 0.1 <= min(xs) <= 0.3 and 0.5 <= max(xs) <= 0.7, masks  # where the lasso went
            assert 0.1 <= min(ys) <= 0.3 and 0.5 <= max(ys) <= 0.7, masks

            # edit the campus context's prompt set
            page.get_by_role("link", name="Prompts").click()
            expect(page.get_by_role("heading", name="Prompts", exact=True)).to_be_visible()
            abnormal = page.get_by_label("Abnormal descriptions (one a line)")
            abnormal.fill("a person cycling on the walkway\na person falling")
            abnormal.blur()
            _settle(page)
            page.get_by_role("button", name="Save as new version").click()
            expect(page.get_by_text("version 1 by ops", exact=False)).to_be_visible()  # (its toast may be gone)
            _settle(page)
            page.screenshot(path=str(SHOTS / "cp-05-prompt-saved.png"), full_page=True)
            ps = httpx.get(f"{api}/contexts/campus/prompt-sets/default", headers=hdr, timeout=10).json()
            assert ps["abnormal"] == ["a person cycling on the walkway", "a person falling"], ps

            # activate the other model version
            page.get_by_role("link", name="Models").click()
            expect(page.get_by_text("Active version: vigil-tiny+heads:zs")).to_be_visible()
            page.get_by_role("button", name="Activate").click()
            expect(page.get_by_text("Active version: vigil-tiny+heads:ft1")).to_be_visible()
            _settle(page)
            page.screenshot(path=str(SHOTS / "cp-06-model-activated.png"), full_page=True)
            active = [m["id"] for m in httpx.get(f"{api}/models", headers=hdr, timeout=10).json() if m["active"]]
            assert active == ["vigil-tiny+heads:ft1"]

            # every change in the audit log, by this admin
            page.get_by_role("link", name="Audit log").click()
            expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
            expect(page.get_by_test_id("stDataFrame")).to_be_visible()
            _settle(page)
            page.screenshot(path=str(SHOTS / "cp-07-audit-log.png"), full_page=True)
        finally:
            browser.close()
        log = httpx.get(f"{api}/audit", headers=hdr, timeout=10).json()
    assert [(e["action"], e["target"], e["actor"]) for e in log][::-1] == [
        ("camera.create", "camera:door", "ops"), ("camera.masks", "camera:door", "ops"),
        ("prompt_set.save", "prompt_set:campus/default", "ops"), ("model.activate", "model:heads", "ops")]
    print(f"control plane through the dashboard in {time.monotonic() - t_begin:.0f} s")
