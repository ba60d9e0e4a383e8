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


def test_cameras_list_never_shows_source_urls_and_says_health_is_missing(admin, cameras, without_route):
    without_route("/cameras/{camera_id}/health")
    at = page_test("cameras", admin).run()
    assert not at.exception, at.exception
    df = at.dataframe[0].value
    assert list(df["id"]) == ["cam-a", "cam-b", "cam-c"]
    assert list(df["enabled"]) == [True, True, False] and list(df["health"]) == ["n/a"] * 3
    assert "secret" not in df.to_csv()
    assert any("GET /cameras/{id}/health" in c.value for c in at.caption)


def test_cameras_health_from_the_api(admin, cameras, seed, http):
    if "/cameras/{camera_id}/health" not in http.app.openapi()["paths"]:
        pytest.skip("this API has no GET /cameras/{id}/health")
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
