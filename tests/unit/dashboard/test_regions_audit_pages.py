"""Masks & thresholds and the audit log, against the real API app."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np

from services.dashboard.charts import mask_canvas, polygon_from_selection
from tests.unit.dashboard.dash_helpers import page_test, segment_scores
from vigil.segments import encode_segment

SQUARE = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]


def _recent_segment(seed, store, camera="cam-a"):
    (row,) = segment_scores(camera, datetime.now(UTC) - timedelta(seconds=10), 1)
    frames = np.zeros((4, 48, 64, 3), np.uint8)
    frames[:, 10:30, 20:40] = 200
    store.put(row.object_key, encode_segment(list(frames), quality=90, meta={}))
    seed(row)


def test_a_selection_becomes_a_polygon_in_fractions_of_the_frame():
    lasso = {"lasso": [{"x": [0.1, 0.6, 0.6, 0.1], "y": [0.2, 0.2, 1.3, 0.8]}], "box": []}
    assert polygon_from_selection(lasso) == [[0.1, 0.2], [0.6, 0.2], [0.6, 1.0], [0.1, 0.8]]
    box = {"lasso": [], "box": [{"x": [0.2, 0.4], "y": [0.1, 0.3]}]}
    assert polygon_from_selection(box) == [[0.2, 0.1], [0.4, 0.1], [0.4, 0.3], [0.2, 0.3]]
    long = {"lasso": [{"x": list(np.linspace(0, 1, 500)), "y": list(np.linspace(0, 1, 500) ** 2)}]}
    assert len(polygon_from_selection(long)) == 60
    assert polygon_from_selection({"lasso": [], "box": []}) is None and polygon_from_selection(None) is None


def test_the_canvas_shows_the_frame_the_masks_and_what_was_just_drawn():
    fig = mask_canvas(None, [{"name": "tree", "polygon": SQUARE}], drawn=[[0.6, 0.6], [0.9, 0.6], [0.9, 0.9]])
    names = [t.name for t in fig.data]
    assert names == ["grid", "tree", "drawn"] and fig.layout.dragmode == "lasso"
    assert list(fig.layout.yaxis.range) == [1, 0]  # y down, as in the image


def test_masks_page_shows_a_recent_frame_and_the_cameras_masks(admin, cameras, seed, store, http):
    _recent_segment(seed, store)
    http.put("/cameras/cam-a/masks", json={"masks": [{"name": "screen", "polygon": SQUARE}]},
             headers={"X-API-Key": admin._key})
    at = page_test("regions", admin).run()
    assert not at.exception, at.exception
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    kinds = [(t["type"], t.get("name")) for t in spec["data"]]
    assert kinds[0][0] == "image" and ("scatter", "screen") in kinds
    assert any("**screen** · 4 corners" in m.value for m in at.markdown)
    at.selectbox(key="regions-camera").set_value("cam-b").run()
    assert any("No recent frame" in i.value for i in at.info)  # cam-b never streamed


def test_thresholds_form_saves_the_cameras_tuning(admin, cameras, http):
    at = page_test("regions", admin).run()
    at.selectbox[1].set_value("fixed")
    at.number_input[0].set_value(0.7)
    at.button[-1].click().run()  # the form's submit
    assert not at.exception, at.exception
    cam = http.get("/cameras/cam-a", headers={"X-API-Key": admin._key}).json()
    assert cam["tuning"] == {"threshold_mode": "fixed", "threshold": 0.7}
    assert any("Thresholds of cam-a saved" in s.value for s in at.success)


def test_a_viewer_sees_masks_but_cannot_edit(user_client, cameras):
    viewer = user_client("viewer")
    at = page_test("regions", viewer).run()
    assert not at.exception, at.exception
    assert any("needs the analyst role" in c.value for c in at.caption)


def test_audit_page_lists_changes_for_admins_only(admin, cameras, http, user_client):
    http.put("/cameras/cam-a/tuning", json={"threshold": 0.6}, headers={"X-API-Key": admin._key})
    at = page_test("audit", admin).run()
    assert not at.exception, at.exception
    df = at.dataframe[0].value
    assert list(df["action"]) == ["camera.tuning"] and list(df["target"]) == ["camera:cam-a"]
    assert df["change"][0] == 'tuning: {} → {"threshold": 0.6}'
    analyst = user_client("analyst")
    at = page_test("audit", analyst).run()
    assert any("for admins" in i.value for i in at.info)


def test_zones_tab_lists_the_cameras_zones(admin, cameras, http):
    zone = {"name": "walkway", "polygon": SQUARE, "prompt_set": "walkway", "threshold": 0.4, "loiter_s": 60}
    assert http.put("/cameras/cam-a/zones", json={"zones": [zone]}, headers={"X-API-Key": admin._key}).status_code == 200
    at = page_test("regions", admin).run()
    assert not at.exception, at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "**walkway** · prompt set walkway · threshold 0.40 · occupied longer than 60 s opens an event" in text
    spec = json.loads(at.get("plotly_chart")[1].proto.spec)  # the zones tab's canvas
    assert any(t.get("name") == "zone walkway" for t in spec["data"])


def test_events_page_filters_by_zone(admin, cameras, seed, http):
    from tests.unit.dashboard.dash_helpers import make_event

    http.put("/cameras/cam-a/zones", json={"zones": [{"name": "walkway", "polygon": SQUARE}]},
             headers={"X-API-Key": admin._key})
    events = [make_event(i) for i in range(3)]
    events[1].zone = "walkway"
    seed(*events)
    at = page_test("events", admin).run()
    assert not at.exception, at.exception
    zones = next(m for m in at.multiselect if m.label == "Zones")
    assert zones.options == ["whole view (no zone)", "walkway"]
    zones.set_value(["walkway"])
    next(b for b in at.button if b.label == "Apply filters").click().run()
    df = at.dataframe[0].value
    assert list(df["zone"]) == ["walkway"] and list(df["id"]) == [events[1].id]


def test_removing_a_zone_saves_the_list_without_it(admin, cameras, http):
    hdr = {"X-API-Key": admin._key}
    zones = [{"name": "walkway", "polygon": SQUARE}, {"name": "bench", "polygon": SQUARE}]
    http.put("/cameras/cam-a/zones", json={"zones": zones}, headers=hdr)
    at = page_test("regions", admin).run()
    next(b for b in at.button if b.key == "zones-rm-cam-a-0").click().run()
    assert not at.exception, at.exception
    assert [z["name"] for z in http.get("/cameras/cam-a", headers=hdr).json()["zones"]] == ["bench"]
    assert any(s.value == "Zone walkway removed from cam-a." for s in at.success)
