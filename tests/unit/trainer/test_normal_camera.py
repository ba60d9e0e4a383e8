"""A camera's normal period (recording, clips, held-out split) and its normality versions in the
registry: one active per camera, beside the heads, handed to Serve as s3:// references."""

from __future__ import annotations

from pathlib import Path

from datetime import UTC, datetime, timedelta

import pytest
from sqlmodel import Session, select

from services.trainer import registry
from services.trainer.normal_camera import NormalTrainingError, period_clips, split_check
from vigil.artefacts import ArtefactRef, fetch, parse_ref
from vigil.config import CameraParams, load_settings
from vigil.contracts import SegmentRef
from vigil.models import ModelVersion, NormalPeriod
from vigil.normal_period import NormalPeriodRecorder

T0 = datetime(2026, 12, 2, 22, 59, 56, tzinfo=UTC)


def _ref(seq: int, cam: str = "cam-a") -> SegmentRef:
    t = T0 + timedelta(seconds=4 * seq)
    return SegmentRef(segment_id=f"{cam}:{seq:09d}", camera_id=cam, seq=seq, t_start=t, t_end=t + timedelta(seconds=3.75),
                      fps=4.0, n_frames=16, width=320, height=240, object_key=f"segments/{cam}/{seq:09d}.npz")


def test_recorder_keeps_normal_footage_until_the_period_is_complete(engine, store):
    rec, params = NormalPeriodRecorder(engine, store), CameraParams(normal_period_s=20.0)
    statuses = []
    for seq in range(8):
        ref = _ref(seq)
        store.put(ref.object_key, f"seg{seq}".encode())
        statuses.append(rec.record(ref, params, in_event=seq == 2))
    rec.record(_ref(1), params, in_event=False)  # a re-delivered segment
    with Session(engine) as db:
        row = db.get(NormalPeriod, "cam-a")
    # 4 s a segment, the one inside an event skipped: complete at the fifth normal segment
    assert statuses == ["recording"] * 5 + ["complete", None, None]
    assert [c["seq"] for c in row.clips] == [0, 1, 3, 4, 5]
    assert row.status == "complete" and row.recorded_s == pytest.approx(20.0) and row.ended_at is not None
    assert row.hours[22] == pytest.approx(4.0) and row.hours[23] == pytest.approx(16.0), "seconds by UTC hour"
    for c in row.clips:  # copies out of retention's reach, same bytes
        assert c["key"].startswith("normal/cam-a/") and store.objects[c["key"]] == f"seg{c['seq']}".encode()


def test_recorder_records_nothing_when_the_period_is_off(engine, store):
    rec = NormalPeriodRecorder(engine, store)
    store.put(_ref(0).object_key, b"x")
    assert rec.record(_ref(0), CameraParams(normal_period_s=0), in_event=False) is None
    with Session(engine) as db:
        assert db.get(NormalPeriod, "cam-a") is None


def test_clips_follow_consecutive_segments_and_the_last_are_held_out():
    clips = [{"seq": s, "t_start": (T0 + timedelta(seconds=4 * s)).isoformat(), "key": f"k{s}"} for s in (5, 0, 1, 2, 3, 4, 7, 8)]
    groups = period_clips(clips, 3)
    assert [[c["seq"] for c in g] for g in groups] == [[0, 1, 2], [3, 4, 5], [7, 8]]  # the gap at 6 starts a clip
    train, check = split_check(groups, 0.3)
    assert [g[0]["seq"] for g in train] == [0, 3] and [g[0]["seq"] for g in check] == [7]
    with pytest.raises(NormalTrainingError, match="at least 2"):
        split_check(groups[:1], 0.3)


def _register(engine, store, cam: str, digest: str):
    return registry.register_normality(engine, store, camera_id=cam, digest=digest, backbone="vigil-micro",
                                       checkpoint=digest.encode(), lineage={"run_id": "r", "data": {"digest": "d"}},
                                       metrics={"check": {"passed": True}})


def test_normality_versions_are_active_per_camera_beside_the_heads(engine, store, tmp_path):
    s = load_settings(None, state_dir=tmp_path)
    store.put(registry.heads_key("h1"), b"heads")
    registry.register_version(engine, store, version_id="vigil-micro+heads:h1", backbone="vigil-micro",
                              heads_bytes=b"heads", lineage={}, metrics={})
    registry.activate(s, engine, store, "vigil-micro+heads:h1", serve=False)
    for cam, digest in (("cam-a", "aaa"), ("cam-b", "bbb"), ("cam-a", "ccc")):
        _register(engine, store, cam, digest)
    registry.activate(s, engine, store, "normality:aaa", serve=False)
    registry.activate(s, engine, store, "normality:bbb", serve=False)
    uc = registry.activate(s, engine, store, "normality:ccc", serve=False)  # replaces aaa for cam-a only
    with Session(engine) as db:
        active = set(db.exec(select(ModelVersion.id).where(ModelVersion.active == True)).all())  # noqa: E712
    assert active == {"vigil-micro+heads:h1", "normality:bbb", "normality:ccc"}
    assert uc["normality"] == {"cam-a": "s3://vigil/models/normality/ccc/normality.pt",
                               "cam-b": "s3://vigil/models/normality/bbb/normality.pt"}
    assert uc["heads"].endswith("h1/heads.pt") and uc["object_store"]["bucket"] == s.s3.bucket
    assert registry.serving_user_config(s, engine, store)["normality"] == uc["normality"]
    assert registry.active_version(engine).id == "vigil-micro+heads:h1", "normality rows are not heads"
    assert registry.read_lineage(store, "normality:ccc")["camera_id"] == "cam-a"
    from vigil.models import AuditEntry

    with Session(engine) as db:  # the trainer's activations are audited like an admin's
        log = [(e.actor, e.action, e.target, e.before["active"], e.after["active"])
               for e in db.exec(select(AuditEntry).order_by(AuditEntry.id))]
    assert log == [("vigil-trainer", "model.activate", "model:heads", [], ["vigil-micro+heads:h1"]),
                   ("vigil-trainer", "model.activate", "model:normality:cam-a", [], ["normality:aaa"]),
                   ("vigil-trainer", "model.activate", "model:normality:cam-b", [], ["normality:bbb"]),
                   ("vigil-trainer", "model.activate", "model:normality:cam-a", ["normality:aaa"], ["normality:ccc"])]


def test_artefact_references_parse_in_one_place(tmp_path):
    assert parse_ref("s3://b/models/x.pt") == ArtefactRef("s3", "b", "models/x.pt")
    assert parse_ref(f"file:{tmp_path}/n.pt").path == f"{tmp_path}/n.pt"
    for bad in ("s3://bucket-only", "http://host/x.pt", " "):
        with pytest.raises(ValueError):
            parse_ref(bad)
    (tmp_path / "n.pt").write_bytes(b"x")
    assert fetch(str(tmp_path / "n.pt")) == tmp_path / "n.pt"
    with pytest.raises(FileNotFoundError, match="no such file"):
        fetch(str(tmp_path / "missing.pt"))
    with pytest.raises(ValueError, match="no object store settings"):
        fetch("s3://b/k.pt")


def test_package_references_name_a_file_shipped_in_an_installed_package():
    import vigil

    ref = "package:vigil/model/weights/vigil-tiny.pt"
    assert parse_ref(ref) == ArtefactRef("package", "vigil", "model/weights/vigil-tiny.pt")
    path = fetch(ref)
    assert path.is_file() and path.samefile(Path(vigil.__file__).parent / "model/weights/vigil-tiny.pt")
    with pytest.raises(FileNotFoundError, match="package vigil has no file model/weights/none.pt"):
        fetch("package:vigil/model/weights/none.pt")
    with pytest.raises(FileNotFoundError, match="no installed package 'not_a_package'"):
        fetch("package:not_a_package/x.pt")
    with pytest.raises(ValueError, match="package:<package>/<path>"):
        parse_ref("package:vigil")


def test_train_normal_camera_says_why_it_cannot_train(engine, tmp_path, monkeypatch):
    """No period yet, or one still recording: a clear error naming the camera and what to do."""
    from services.trainer.normal_camera import train_camera

    s = load_settings(None, state_dir=tmp_path, database={"url": str(engine.url)})
    with pytest.raises(NormalTrainingError, match="camera 'cam-x' has no normal period"):
        train_camera(s, "cam-x")
    from vigil.db import session_scope

    with session_scope(engine) as db:
        db.add(NormalPeriod(camera_id="cam-x", target_s=1800, recorded_s=600))
    with pytest.raises(NormalTrainingError, match=r"still recording its normal period \(600 of 1800 s\).*--force"):
        train_camera(s, "cam-x")


def test_cli_train_normal_needs_clips_or_a_camera():
    from typer.testing import CliRunner

    from services.cli import app

    res = CliRunner().invoke(app, ["train-normal"])
    assert res.exit_code == 1 and "--camera ID" in res.output
    res = CliRunner().invoke(app, ["train-normal", "clipdir", "--camera", "cam-a"])
    assert res.exit_code == 1 and "drop CLIPS" in res.output
