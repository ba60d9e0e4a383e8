"""`vigil up` runs retention on its own schedule (issue 25): an expired segment stored in the
stack's real S3 and SQL is deleted, object and row, while a fresh one stays."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, select

from tests.integration.util import wait_until

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_vigil_up_deletes_expired_segments_on_its_schedule(tmp_path):
    from infra.embedded import read_stack_file, with_endpoints
    from vigil.clock import utcnow
    from vigil.config import load_settings
    from vigil.db import make_engine
    from vigil.models import SegmentScore
    from vigil.objectstore import ObjectStore

    cfg = tmp_path / "up.yaml"
    cfg.write_text(yaml.safe_dump({"retention": {"every_s": 1, "segment_days": 3}}))
    log = open(tmp_path / "up.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([sys.executable, "-m", "services.cli", "up", "--no-ray", "--config", str(cfg),
                             "--state-dir", str(tmp_path / "st")], cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until(lambda: (read_stack_file(tmp_path / "st") or {}).get("s3"), 90, "the stack up")
        s = with_endpoints(load_settings(cfg, state_dir=tmp_path / "st"), read_stack_file(tmp_path / "st"))
        store, engine = ObjectStore(s.s3), make_engine(s.database_url)
        now = utcnow()
        with Session(engine) as db:
            for sid, age in (("old", 10), ("new", 1)):
                key = f"segments/cam/{sid}.npz"
                store.put(key, b"npz")
                db.add(SegmentScore(segment_id=sid, camera_id="cam", seq=0 if sid == "old" else 1, score=0.1,
                                    model_version="m", object_key=key, t_start=now - timedelta(days=age, seconds=4),
                                    t_end=now - timedelta(days=age)))
            db.commit()

        def old_gone() -> bool:
            with Session(engine) as db:
                return db.get(SegmentScore, "old") is None

        wait_until(old_gone, 30, "the expired segment deleted by the schedule")
        assert not store.exists("segments/cam/old.npz")
        with Session(engine) as db:
            assert [r.segment_id for r in db.exec(select(SegmentScore))] == ["new"]
        assert store.exists("segments/cam/new.npz")
        os.killpg(proc.pid, signal.SIGINT)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out = (tmp_path / "up.log").read_text()
    assert "retention: a cleanup pass every 1 s" in out and "retention pass: " in out, out[-2000:]
