"""Event detail: clip, timeline (with and without the scores endpoint), descriptions, feedback."""

from __future__ import annotations

from datetime import timedelta

from tests.unit.dashboard.dash_helpers import T0, make_event, page_test, segment_scores

EID = "cam-a:000000001"


def _seed_event(seed):
    seed(make_event(1, score=0.8, clip_key="evidence/cam-a/e/clip.mp4", thumbnail_key="evidence/cam-a/e/thumb.jpg"))


def test_shows_clip_metrics_descriptions(admin, cameras, seed):
    _seed_event(seed)
    at = page_test("event_detail", admin, query={"event": EID}).run()
    assert not at.exception, at.exception
    video = at.get("video")[0].proto
    assert video.url.startswith("http://s3.test/vigil/evidence/cam-a/e/clip.mp4?")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Peak score"] == "0.80" and metrics["Semantic"] == "0.85" and metrics["Predictive"] == "0.70"
    df = at.dataframe[0].value
    assert list(df["description"]) == ["fighting between people", "people walking"]
    assert list(df["kind"]) == ["abnormal", "normal"]


def test_timeline_without_stored_segment_scores_says_so(admin, cameras, seed):
    _seed_event(seed)
    at = page_test("event_detail", admin, query={"event": EID}).run()
    assert any("No segment scores stored around this event" in i.value for i in at.info), (
        at.exception, [e.value for e in at.error], [i.value for i in at.info])
    fig = at.get("plotly_chart")[0].proto.spec
    assert '"semantic"' in fig and '"predictive"' in fig and '"fused"' in fig  # the peak bars


def test_timeline_with_scores_endpoint_has_three_curves_and_threshold(admin, cameras, seed):
    _seed_event(seed)
    seed(*segment_scores("cam-a", T0 + timedelta(seconds=20), 20, peak_at=10))
    at = page_test("event_detail", admin, query={"event": EID}).run()
    assert not at.exception, at.exception
    assert not at.info
    import json

    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    names = [t["name"] for t in spec["data"]]
    assert names == ["semantic", "predictive", "fused"]
    fused = spec["data"][2]["y"]
    assert max(fused) == 0.8 and min(fused) == 0.2 and len(fused) == 21  # 20 steps, closed at the last end
    shapes = spec["layout"]["shapes"]
    threshold = admin.camera_scores("cam-a")["threshold"]
    assert threshold is not None
    assert any(s.get("y0") == threshold and s.get("y1") == threshold for s in shapes)  # the threshold the API reported
    assert any(s.get("type") == "rect" for s in shapes)  # the event's span


def test_analyst_feedback_with_note_reaches_the_api(user_client, cameras, seed):
    _seed_event(seed)
    analyst = user_client("analyst")
    at = page_test("event_detail", analyst, query={"event": EID}).run()
    at.text_area[0].input("two people fighting near the gate")
    next(b for b in at.button if b.label == "False positive").click()
    at.run()
    assert not at.exception, at.exception
    assert at.success[0].value == "Feedback saved."
    fb = analyst.feedback(EID)
    assert [(f["label"], f["note"], f["author"]) for f in fb] == [
        ("false_positive", "two people fighting near the gate", "analyst-user")]
    assert any("false positive" in m.value and "analyst-user" in m.value for m in at.markdown)


def test_viewer_cannot_give_feedback(user_client, cameras, seed):
    _seed_event(seed)
    at = page_test("event_detail", user_client("viewer"), query={"event": EID}).run()
    assert not at.exception
    assert not [b for b in at.button if b.label in {"True positive", "False positive"}]
    assert any("analyst role" in c.value for c in at.caption)


def test_unknown_and_missing_event(admin, cameras):
    at = page_test("event_detail", admin, query={"event": "cam-a:404"}).run()
    assert "no such event" in at.error[0].value
    at = page_test("event_detail", admin).run()
    assert "No event selected" in at.info[0].value


def test_review_acknowledge_assign_then_resolve_as_duplicate(user_client, cameras, seed, http, admin):
    _seed_event(seed)
    analyst = user_client("analyst")
    at = page_test("event_detail", analyst, query={"event": EID}).run()
    assert any("not reviewed yet" in m.value for m in at.markdown)
    next(b for b in at.button if b.label == "Acknowledge and assign to me").click().run()
    assert not at.exception, at.exception
    assert at.success[0].value == "Acknowledged; assigned to analyst-user."
    assert any("acknowledged · assigned to analyst-user" in m.value for m in at.markdown)
    assert not [b for b in at.button if b.label == "Acknowledge and assign to me"]  # it is theirs now
    next(b for b in at.button if b.label == "Duplicate").click().run()
    ev = http.get(f"/events/{EID}", headers={"X-API-Key": admin._key}).json()
    assert (ev["review_status"], ev["resolution"], ev["assignee"]) == ("resolved", "duplicate", "analyst-user")
    assert analyst.feedback(EID) == []  # a duplicate is not training feedback
    assert any("resolved: duplicate" in m.value for m in at.markdown)


def test_notifications_of_the_event_show_per_version_and_channel(admin, cameras, seed):
    from vigil.models import Delivery

    _seed_event(seed)
    at = page_test("event_detail", admin, query={"event": EID}).run()
    assert any("No notification rule matched" in c.value for c in at.caption)
    seed(Delivery(event_id=EID, version=1, kind="new", camera_id="cam-a", channel="soc", rule="all",
                  status="delivered", attempts=2, message={}, latency_s=1.25, last_error="HTTP 503: busy"),
         Delivery(event_id=EID, version=1, kind="new", camera_id="cam-a", channel="vms", rule="all",
                  status="dead_letter", attempts=12, message={}, last_error="not connected"))
    at = page_test("event_detail", admin, query={"event": EID}).run()
    assert not at.exception, at.exception
    df = at.dataframe[-1].value
    assert list(zip(df["channel"], df["status"], df["attempts"])) == [("soc", "delivered", 2), ("vms", "dead_letter", 12)]
    assert df["latency s"][0] == 1.2 and df["last error"][0] == "HTTP 503: busy"


def test_object_reasons_show_with_the_stream_that_gave_them(admin, cameras, seed):
    reasons = [{"text": "moving 3.1× faster than objects usually move here", "prob": 0.93, "abnormal": True,
                "stream": "place_speed"},
               {"text": "has stayed here about 40 s where objects usually stay 2 s", "prob": 0.71, "abnormal": True,
                "stream": "dwell"}]
    seed(make_event(1, score=0.9, top_descriptions=reasons))
    at = page_test("event_detail", admin, query={"event": EID}).run()
    assert not at.exception, at.exception
    df = at.dataframe[0].value
    assert list(df["description"]) == [r["text"] for r in reasons]
    assert list(df["stream"]) == ["speed here", "time in place"]
