"""Models (versions, metrics, activation, training runs with progress) and Cameras (CRUD, health)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.dashboard.views.models import progress_of
from tests.unit.dashboard.dash_helpers import page_test, segment_scores
from vigil.models import ModelVersion, TrainingRun

T = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


@pytest.fixture
def model_rows(seed):
    seed(ModelVersion(id="m1", backbone="vigil-tiny", active=True, created_at=T, activated_at=T,
                      metrics={"auc": {"ucsd_ped2": 0.81}, "ms_per_frame": 3.2}),
         ModelVersion(id="m2", backbone="vigil-tiny", created_at=T + timedelta(days=1), metrics={"auc": {"ucsd_ped2": 0.86}},
                      description="heads trained on feedback"),
         TrainingRun(id="run-1", status="succeeded", base_model_version="m1", output_model_version="m2",
                     params={"epochs": 4}, metrics={"epoch": 4, "loss": 0.21}, started_at=T,
                     finished_at=T + timedelta(hours=1)),
         TrainingRun(id="run-2", status="running", base_model_version="m2", params={"epochs": 8},
                     metrics={"epoch": 2, "loss": 0.4}, started_at=T + timedelta(days=2)))


def test_versions_metrics_and_runs(user_client, model_rows):
    at = page_test("models", user_client("viewer")).run()
    assert not at.exception, at.exception
    assert "Active version: **m1**" in at.markdown[0].value
    versions, runs = at.dataframe[0].value, at.dataframe[1].value
    assert list(versions["version"]) == ["m2", "m1"]
    assert list(versions["auc.ucsd_ped2"]) == [0.86, 0.81]
    assert dict(zip(runs["run"], runs["progress"])) == {"run-2": 0.25, "run-1": 1.0}
    assert not [b for b in at.button if b.label == "Activate"]
    assert any("admin role" in c.value for c in at.caption)


def test_admin_activates_a_version(admin, model_rows):
    at = page_test("models", admin).run()
    assert at.selectbox[0].options == ["m2"]
    next(b for b in at.button if b.label == "Activate").click()
    at.run()
    assert not at.exception, at.exception
    assert {m["id"]: m["active"] for m in admin.models()} == {"m1": False, "m2": True}
    assert "Active version: **m2**" in at.markdown[0].value


def test_progress_of():
    assert progress_of({"status": "running", "metrics": {"progress": 0.4}}) == 0.4
    assert progress_of({"status": "running", "metrics": {"epoch": 3}, "params": {"epochs": 12}}) == 0.25
    assert progress_of({"status": "failed", "metrics": {}}) == 1.0
    assert progress_of({"status": "pending"}) == 0.0
    assert progress_of({"status": "running", "metrics": {}}) is None


def test_cameras_list_never_shows_source_urls(admin, cameras):
    at = page_test("cameras", admin).run()
    assert not at.exception, at.exception
    df = at.dataframe[0].value
    assert list(df["id"]) == ["cam-a", "cam-b", "cam-c"]
    assert list(df["enabled"]) == [True, True, False] and list(df["health"]) == ["no segments yet"] * 3
    assert list(df["source health"]) == ["not ingested"] * 3
    assert "secret" not in df.to_csv() and "10.0.0.5" not in df.to_csv()


def test_cameras_health_from_the_api(admin, cameras, seed):
    now = datetime.now(UTC)
    rows = segment_scores("cam-a", now - timedelta(seconds=40), 10)
    for r in rows:
        r.scored_at = now
    seed(*rows)
    at = page_test("cameras", admin).run()
    assert not at.exception, at.exception
    health = dict(zip(at.dataframe[0].value["id"], at.dataframe[0].value["health"]))
    assert health["cam-a"].startswith("running, last segment ")
    assert health["cam-b"] == "no segments yet"
    assert not any("/health" in c.value for c in at.caption)


def test_cameras_say_which_model_scores_each_and_its_normal_period(admin, cameras, seed):
    from vigil.models import ModelVersion, NormalPeriod

    seed(ModelVersion(id="normality:abc123", kind="normality", camera_id="cam-a", backbone="vigil-tiny", active=True,
                      activated_at=datetime.now(UTC)),
         NormalPeriod(camera_id="cam-a", status="trained", target_s=1800, recorded_s=1804, model_version="normality:abc123"),
         NormalPeriod(camera_id="cam-b", status="recording", target_s=1800, recorded_s=600))
    at = page_test("cameras", admin).run()
    assert not at.exception, at.exception
    df = at.dataframe[0].value
    scored_by, period = dict(zip(df["id"], df["scored by"])), dict(zip(df["id"], df["normal period"]))
    assert scored_by == {"cam-a": "own normality normality:abc123", "cam-b": "zero-shot defaults",
                         "cam-c": "zero-shot defaults"}
    assert period == {"cam-a": "trained", "cam-b": "recording, 10 of 30 min", "cam-c": "not recorded"}


def test_admin_adds_edits_disables_deletes(admin, cameras):
    at = page_test("cameras", admin).run()
    at.text_input[0].input("cam-new")
    at.text_input[1].input("Loading dock")
    at.selectbox[0].set_value("rtsp")
    at.text_input[2].input("rtsp://u:p@10.1.1.1/s")
    at.text_input[3].input("dock")
    next(b for b in at.button if b.label == "Add camera").click()
    at.run()
    assert not at.exception, at.exception
    assert at.success[0].value == "Camera cam-new added."
    cam = next(c for c in admin.cameras() if c["id"] == "cam-new")
    assert (cam["name"], cam["source_type"], cam["context"], cam["has_source_uri"]) == ("Loading dock", "rtsp", "dock", True)

    at.selectbox(key="cam-edit-id").set_value("cam-new").run()
    next(b for b in at.button if b.label == "Disable").click()
    at.run()
    assert not next(c for c in admin.cameras() if c["id"] == "cam-new")["enabled"]

    at.selectbox(key="cam-edit-id").set_value("cam-new").run()
    delete = next(b for b in at.button if b.label == "Delete")
    assert delete.disabled  # needs the confirmation
    at.checkbox(key="cam-del-ok-cam-new").check().run()
    next(b for b in at.button if b.label == "Delete").click()
    at.run()
    assert "cam-new" not in [c["id"] for c in admin.cameras()]


def test_duplicate_camera_is_reported(admin, cameras):
    at = page_test("cameras", admin).run()
    at.text_input[0].input("cam-a")
    next(b for b in at.button if b.label == "Add camera").click()
    at.run()
    assert "409" in at.error[0].value


def test_viewer_sees_no_camera_forms(user_client, cameras):
    at = page_test("cameras", user_client("viewer")).run()
    assert not at.exception
    assert not at.text_input and any("admin role" in c.value for c in at.caption)


def _source_rows(now):
    from vigil.models import SourceStatus

    return (SourceStatus(camera_id="cam-a", ingest_id="box:1", state="streaming", connected=True, fps=3.96, frames=400,
                         segments=25, reconnects=2, last_frame_at=now, last_segment_at=now, reported_at=now),
            SourceStatus(camera_id="cam-b", ingest_id="box:1", state="reconnecting", connected=False, frames=10,
                         reconnects=7, last_error="stream unreachable", reported_at=now),
            SourceStatus(camera_id="cam-c", ingest_id="box:0", state="streaming", connected=True, fps=4.0,
                         reported_at=now - timedelta(minutes=5)))


def test_cameras_show_the_ingest_side_of_each_camera(admin, cameras, seed):
    seed(*_source_rows(datetime.now(UTC)))
    at = page_test("cameras", admin).run()
    assert not at.exception, at.exception
    df = at.dataframe[0].value
    src, err = dict(zip(df["id"], df["source health"])), dict(zip(df["id"], df["last error"]))
    assert src["cam-a"] == "connected, 4.0 fps, 2 reconnects"
    assert src["cam-b"] == "reconnecting, 7 reconnects" and err["cam-b"] == "stream unreachable"
    assert src["cam-c"].startswith("ingest not reporting since ")


def test_live_cards_show_whether_the_camera_is_connected(admin, cameras, seed):
    seed(*_source_rows(datetime.now(UTC)))
    at = page_test("live", admin).run()
    assert not at.exception, at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "camera: connected, 4.0 fps, 2 reconnects" in text and "camera: reconnecting, 7 reconnects" in text
    assert any(c.value == "last error: stream unreachable" for c in at.caption)
