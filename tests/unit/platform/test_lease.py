"""vigil.lease: one holder at a time, a dead holder's lease taken over after its time."""

from __future__ import annotations

import threading
import time

from vigil.db import make_engine, migrate
from vigil.lease import Lease


def _engine(tmp_path):
    url = f"sqlite:///{tmp_path / 'lease.db'}"
    migrate(url)
    return make_engine(url)


def test_one_holder_renews_others_wait_until_it_expires_or_is_released(tmp_path):
    engine = _engine(tmp_path)
    a, b = Lease(engine, "evidence", "a", ttl_s=0.5), Lease(engine, "evidence", "b", ttl_s=0.5)
    assert a.hold() and not b.hold()
    assert a.hold() and not b.hold()  # renewed
    time.sleep(0.7)  # a died: no renewal
    assert b.hold() and not a.hold()
    b.release()
    assert a.hold()
    assert Lease(engine, "other-job", "b").hold()  # leases are per name


def test_of_several_evidence_maintainers_only_the_lease_holder_sweeps(tmp_path, monkeypatch):
    from services.scoring import evidence_maintainer as em
    from vigil.config import Settings

    engine = _engine(tmp_path)
    swept: list[int] = []
    monkeypatch.setattr(em, "sweep", lambda store, eng, s: swept.append(threading.get_ident()) or 0)
    ms = [em.EvidenceMaintainer(None, engine, Settings(state_dir=tmp_path), interval_s=0.02) for _ in range(3)]
    for m in ms:
        m.start()
    time.sleep(0.5)
    for m in ms:
        m.stop.set()
        m.thread.join(5)
    sweepers = {m.thread.ident for m in ms} & set(swept)
    assert len(swept) >= 5 and len(sweepers) == 1, (len(swept), sweepers)
