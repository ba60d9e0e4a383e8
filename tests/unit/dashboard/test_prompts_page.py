"""Prompts: edit a context's descriptions, preview them on an event's clip, save a new version."""

from __future__ import annotations

import io
from fractions import Fraction
from urllib.parse import urlparse

import numpy as np
import pytest

from services.dashboard import preview
from services.dashboard.client import ApiClient
from tests.unit.dashboard.dash_helpers import make_event, page_test

CLIP = "evidence/cam-a/e/clip.mp4"


def h264(frames: np.ndarray, fps: int = 4) -> bytes:
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="mp4") as out:
        st = out.add_stream("libx264", rate=fps)
        st.width, st.height, st.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        st.time_base = Fraction(1, fps)
        for f in frames:
            for pkt in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(pkt)
        for pkt in st.encode():
            out.mux(pkt)
    return buf.getvalue()


def moving_box(n: int = 24) -> np.ndarray:
    frames = np.full((n, 96, 128, 3), 70, np.uint8)
    for i in range(n):
        frames[i, 30:60, 4 * i:4 * i + 16] = (240, 200, 30)
    return frames


@pytest.fixture
def clip_event(seed, store, monkeypatch):
    store.put(CLIP, h264(moving_box()))
    seed(make_event(1, clip_key=CLIP))
    # presigned URLs of the fake store point nowhere: serve them from it
    monkeypatch.setattr(ApiClient, "fetch_url", lambda self, url: store.objects[urlparse(url).path.removeprefix("/vigil/")])
    return "cam-a:000000001"


def test_sample_clip_spreads_frames_over_the_clip():
    frames = preview.sample_clip(h264(moving_box(24)), n_frames=16)
    assert frames.shape == (16, 96, 128, 3) and frames.dtype == np.uint8
    xs = [int(np.argmax(f[45, :, 0] > 150)) for f in frames]  # the box's left edge
    assert xs[0] < 8 and xs[-1] > 80 and xs == sorted(xs)
    with pytest.raises(preview.PreviewError):
        preview.sample_clip(b"not a video")


def test_preview_matches_the_scoring_path():
    """The preview's semantic score is the model's own ``score`` for the same frames and set."""
    from vigil.model.prompts import PromptSet

    model = preview.load_model("vigil-micro")
    ps = PromptSet(name="t", normal=["people walking", "an empty street"], abnormal=["a fight", "a car crash"])
    frames = preview.sample_clip(h264(moving_box()))
    p = preview.preview(model, frames, ps)
    res, _ = model.score(model.encode_frames([frames])[0], None, ps)
    assert p.s_sem == pytest.approx(res.s_sem, abs=1e-6)
    assert p.vote_abnormal == res.vote_abnormal
    assert sum(r["mean_prob"] for r in p.rows) == pytest.approx(1.0, abs=1e-4)
    assert sum(r["argmax_frames"] for r in p.rows) == 16
    assert {r["description"] for r in p.rows if r["in_top"]} == {t[0] for t in res.top_descriptions}
    assert all(r["kind"] == "abnormal" for r in p.rows if r["fires"])
    assert any(r["fires"] for r in p.rows) == (res.vote_abnormal and any(t[2] for t in res.top_descriptions))


def test_edit_preview_and_save_new_version(user_client, cameras, clip_event):
    analyst = user_client("analyst")
    at = page_test("prompts", analyst, timeout=120).run()
    assert not at.exception, at.exception
    at.selectbox(key="pr-context").set_value("campus")
    at.run()
    assert at.selectbox(key="pr-set-campus").value == "+ new set"  # campus has no set yet
    k = "campus/default/None"
    at.text_area(key=f"pr-n-{k}").input("people walking\nan empty walkway")
    at.text_area(key=f"pr-a-{k}").input("a person riding a bicycle\na fight\na person falling")
    at.run()
    assert at.selectbox(key="pr-ev-campus").value == clip_event

    next(b for b in at.button if b.label == "Preview").click()
    at.run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    table = at.dataframe[0].value
    assert set(table["description"]) == {"people walking", "an empty walkway", "a person riding a bicycle", "a fight",
                                         "a person falling"}
    assert {m.label for m in at.metric} >= {"Semantic score (edited)", "Window vote", "Would fire"}

    next(b for b in at.button if b.label == "Save as new version").click()
    at.run()
    assert not at.exception, at.exception
    saved = analyst.prompt_sets("campus")
    assert [(s["name"], s["version"], s["abnormal"], s["created_by"]) for s in saved] == [
        ("default", 1, ["a person riding a bicycle", "a fight", "a person falling"], "analyst-user")]
    assert at.selectbox(key="pr-set-campus").value == "default"
    assert any("version 1 by analyst-user" in c.value for c in at.caption)
    assert any(c.value == "No changes to save." for c in at.caption)


def test_invalid_set_is_refused_before_saving(user_client, cameras):
    at = page_test("prompts", user_client("analyst")).run()
    k = "campus/default/None"
    at.selectbox(key="pr-context").set_value("campus").run()
    at.text_area(key=f"pr-a-{k}").input("a fight\na fight")
    at.run()
    assert "duplicate descriptions" in at.error[0].value
    assert next(b for b in at.button if b.label == "Save as new version").disabled


def test_viewer_cannot_save(user_client, cameras):
    at = page_test("prompts", user_client("viewer")).run()
    assert not at.exception
    assert not [b for b in at.button if b.label == "Save as new version"]
    assert any("analyst role" in c.value for c in at.caption)
