"""The scorer follows SQL: activation, prompt-set edits and camera contexts reach Score's config."""

from __future__ import annotations

import pytest

from services.scoring.control_plane import ServingReconciler
from vigil.config import CameraParams, Settings
from vigil.db import make_engine, migrate, session_scope
from vigil.models import Camera, PromptSetRow


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'vigil.db'}"
    migrate(url)
    eng = make_engine(url)
    yield eng
    eng.dispose()


def _set(context, name, version, abnormal, deleted=False):
    return PromptSetRow(context=context, name=name, version=version, content_hash=f"h{version}", created_by="t",
                        normal=["people walking"], abnormal=abnormal, deleted=deleted)


def test_edits_and_activation_in_sql_reach_score_once_each(engine, tmp_path):
    serving = {"heads": None}
    applied = []
    rec = ServingReconciler(Settings(state_dir=tmp_path), engine, lambda: dict(serving), applied.append,
                            applied={"heads": None})
    with session_scope(engine) as db:
        db.add(Camera(id="cam-campus", source_type="file", context="campus"))
        db.add(Camera(id="cam-lobby", source_type="file", context="lobby"))
        db.add(_set("campus", "default", 1, ["fighting"]))
        db.add(_set("campus", "default", 2, ["fighting", "a bicycle on the walkway"]))
        db.add(_set("lobby", "default", 1, ["running"]))
        db.add(_set("lobby", "default", 2, ["running"], deleted=True))  # deleted: the packaged set again
    assert rec.poll() and not rec.poll()  # applied once; nothing new the second time
    uc = applied[-1]
    assert set(uc["prompt_sets"]) == {"campus/default"}
    assert uc["prompt_sets"]["campus/default"]["abnormal"] == ["fighting", "a bicycle on the walkway"]
    params = CameraParams()
    assert rec.prompt_set_for("cam-campus", params) == "campus/default"
    assert rec.prompt_version("cam-campus", params) == 2
    assert rec.prompt_set_for("cam-lobby", params) == "default"  # its context's set was deleted
    assert rec.prompt_set_for("not-in-sql", CameraParams(context="campus")) == "campus/default"
    assert rec.prompt_set_for("cam-campus", CameraParams(prompt_set="night")) == "night"  # no SQL set of that name

    with session_scope(engine) as db:
        db.get(Camera, "cam-lobby").context = "campus"  # an analyst moves the camera to another context
        db.add(_set("campus", "default", 3, ["fighting"]))
    assert rec.poll() and applied[-1]["prompt_sets"]["campus/default"]["abnormal"] == ["fighting"]
    assert rec.prompt_set_for("cam-lobby", params) == "campus/default" and rec.prompt_version("cam-lobby", params) == 3

    serving["heads"] = "/models/abc/heads.pt"  # "Activate" flipped the registry's flag
    assert rec.poll() and applied[-1]["heads"] == "/models/abc/heads.pt" and len(applied) == 3


def test_a_failed_apply_is_retried_and_the_old_sets_stay_in_use(engine, tmp_path):
    calls = []

    def apply(uc):
        calls.append(uc)
        if len(calls) == 1:
            raise TimeoutError("Serve did not answer")

    rec = ServingReconciler(Settings(state_dir=tmp_path), engine, dict, apply, applied={})
    with session_scope(engine) as db:
        db.add(_set("default", "default", 1, ["fighting"]))
    with pytest.raises(TimeoutError):
        rec.poll()
    assert rec.prompt_set_for("cam", CameraParams()) == "default"  # the replicas lack the new set yet
    assert rec.poll() and len(calls) == 2 and rec.prompt_set_for("cam", CameraParams()) == "default/default"


def test_masks_tuning_and_context_from_sql_reach_the_worker(engine, tmp_path, caplog):
    settings = Settings(state_dir=tmp_path, camera_defaults={"threshold": 0.5})
    rec = ServingReconciler(settings, engine, dict, lambda uc: None, applied={})
    square = [[0.1, 0.1], [0.5, 0.1], [0.5, 0.5], [0.1, 0.5]]
    with session_scope(engine) as db:
        db.add(Camera(id="tuned", source_type="file", context="lobby", masks=[{"name": "screen", "polygon": square}],
                      tuning={"threshold_mode": "fixed", "threshold": 0.8, "release_threshold": 0.6}))
        db.add(Camera(id="broken", source_type="file", tuning={"release_threshold": 0.9}))  # above the 0.5 threshold
        db.add(Camera(id="plain", source_type="file"))
    rec.poll()
    p = rec.params_for("tuned")
    assert (p.threshold_mode, p.threshold, p.release, p.context) == ("fixed", 0.8, 0.6, "lobby")
    assert [m.name for m in rec.masks_for("tuned")] == ["screen"] and rec.masks_for("plain") == []
    assert rec.params_for("plain") == settings.params_for("plain")
    assert rec.params_for("broken") == settings.params_for("broken")  # refused, with a log line saying why
    assert "tuning does not fit" in caplog.text
