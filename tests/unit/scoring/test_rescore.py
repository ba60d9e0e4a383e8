"""vigil rescore: stored segments scored again through the worker's path, rows overwritten with
the new model version, events kept by id or superseded, deterministic, live state untouched."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlmodel import Session, select

from fakes import FakeConsumer, FakeProducer, FakeScorer, FakeStore, put_segment
from services.scoring.rescore import RescoreError, rescore
from services.scoring.sink import Sink
from services.scoring.worker import ScoringWorker
from vigil.contracts import EventMessage
from vigil.models import CameraState, Event, EventOutbox, SegmentScore

LEVELS = [40, 200, 200, 40, 40, 150, 40, 40, 40, 40]  # live: events at seq 1-2 and seq 5
T0 = datetime(2026, 1, 1, tzinfo=UTC)


class SquaredScorer(FakeScorer):
    """Another model: score = (brightness)^2, so the medium-bright segment 5 falls under 0.5."""

    def __call__(self, frames, *a, **kw):  # noqa: ANN001, ANN002, ANN003
        r = super().__call__(frames, *a, **kw)
        sq = float((np.asarray(frames).mean() / 255.0) ** 2)
        return {**r, "score": sq, "s_sem": sq, "frame_scores": [sq] * len(frames), "model_version": "fake-2"}


@pytest.fixture
def scored(settings, engine):
    consumer, store = FakeConsumer(1), FakeStore()
    for seq, level in enumerate(LEVELS):
        put_segment(consumer, store, "a", seq, level, partition=0)
    w = ScoringWorker(settings, score_fn=FakeScorer(), sink=Sink(engine), store=store, producer=FakeProducer(),
                      consumer=consumer)
    th = threading.Thread(target=w.run, daemon=True)
    th.start()
    deadline = time.monotonic() + 20
    while not consumer.all_committed() and time.monotonic() < deadline:
        time.sleep(0.02)
    w.stop.set()
    th.join(10)
    w.close()
    assert consumer.all_committed()
    return store


def _rescorer(settings, engine, store, scorer):
    return ScoringWorker(settings, score_fn=scorer, sink=Sink(engine), store=store, producer=None, consumer=None)


def _snapshot(engine):
    with Session(engine) as s:
        rows = {r.segment_id: (round(r.score, 6), r.model_version) for r in s.exec(select(SegmentScore))}
        events = {e.id: (e.status, tuple(e.segment_ids), round(e.peak_score, 6), e.model_version)
                  for e in s.exec(select(Event))}
    return rows, events


def test_rescoring_with_another_model_overwrites_rows_keeps_found_events_and_supersedes_the_rest(
        settings, engine, scored):
    rows, events = _snapshot(engine)
    assert set(events) == {"ev:a.000001", "ev:a.000005"} and {v for _, v in rows.values()} == {"fake-1"}
    with Session(engine) as s:
        live_state = s.get(CameraState, "a").model_dump()
    w = _rescorer(settings, engine, scored, SquaredScorer())
    rep = rescore(w, "a", T0, T0 + timedelta(seconds=len(LEVELS)), progress=False)
    assert rep.segments == len(LEVELS) and rep.model_versions == ["fake-2"]
    assert rep.events == ["ev:a.000001"] and rep.kept == ["ev:a.000001"] and rep.superseded == ["ev:a.000005"]
    rows2, events2 = _snapshot(engine)
    assert rows2["a.000005"] == (round((150 / 255) ** 2, 6), "fake-2")  # overwritten, not skipped
    assert events2["ev:a.000001"][0] == "closed" and events2["ev:a.000001"][3] == "fake-2"
    assert events2["ev:a.000005"][0] == "superseded"  # kept, never deleted
    with Session(engine) as s:
        assert s.get(CameraState, "a").model_dump() == live_state  # the live camera's state is not re-scoring's
        last = s.exec(select(EventOutbox).where(EventOutbox.event_id == "ev:a.000005")
                      .order_by(EventOutbox.version.desc())).first()
    msg = EventMessage.model_validate(last.payload)
    assert (msg.kind, msg.superseded) == ("end", True)
    # deterministic: the same range and model give the same rows and events again
    rep2 = rescore(_rescorer(settings, engine, scored, SquaredScorer()), "a", T0, T0 + timedelta(seconds=10),
                   progress=False)
    assert _snapshot(engine) == (rows2, events2) and rep2.events == rep.events and rep2.superseded == []


def test_rescore_refuses_an_empty_or_backwards_range(settings, engine, scored):
    w = _rescorer(settings, engine, scored, FakeScorer())
    with pytest.raises(RescoreError, match="no stored segments"):
        rescore(w, "nobody", T0, T0 + timedelta(hours=1), progress=False)
    with pytest.raises(RescoreError, match="must be after"):
        rescore(w, "a", T0, T0, progress=False)


def test_a_segment_whose_object_is_gone_keeps_its_row(settings, engine, scored):
    del scored.objects["segments/a/000003.npz"]
    rep = rescore(_rescorer(settings, engine, scored, SquaredScorer()), "a", T0, T0 + timedelta(seconds=10),
                  progress=False)
    assert rep.missing == ["a.000003"] and rep.segments == len(LEVELS) - 1
    rows, _ = _snapshot(engine)
    assert rows["a.000003"][1] == "fake-1"


def test_the_command_names_a_bad_time_before_connecting_anywhere():
    from typer.testing import CliRunner

    from services.cli import app

    r = CliRunner().invoke(app, ["rescore", "--camera", "a", "--from", "yesterday", "--to", "2026-12-04T10:00:00"])
    assert r.exit_code == 2 and "--from/--to" in r.output and "yesterday" in r.output
