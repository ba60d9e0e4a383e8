"""The scoring worker's pipeline on fakes: order, exactly-once rows, offsets, DLQ, retries, backpressure."""

from __future__ import annotations

import threading
import time

import pytest
from sqlmodel import Session, select

from fakes import FakeConsumer, FakeProducer, FakeScorer, FakeStore, put_segment
from services.scoring.relay import OutboxRelay
from services.scoring.sink import Sink
from services.scoring.worker import ScoringWorker, params_with_threshold
from vigil.contracts import DeadLetter, EventMessage, SegmentRef, decode
from vigil.models import DeadLetterRow, Event, SegmentScore


def _worker(settings, engine, consumer, store, scorer, producer=None, **kw):
    return ScoringWorker(settings, score_fn=scorer, sink=Sink(engine), store=store,
                         producer=producer or FakeProducer(), consumer=consumer, **kw)


def _run_until(worker, cond, timeout=20.0):
    th = threading.Thread(target=worker.run, daemon=True)
    th.start()
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and not cond():
            time.sleep(0.02)
        assert cond(), "condition not reached in time"
    finally:
        worker.stop.set()
        th.join(10)
        worker.close()


def _rows(engine):
    with Session(engine) as s:
        return list(s.exec(select(SegmentScore)))


def _feed(consumer, store, cams=("a", "b", "c"), n=6, level=lambda c, i: 40):
    for i in range(n):
        for j, c in enumerate(cams):
            put_segment(consumer, store, c, i, level(c, i), partition=j % len(consumer.parts))


def test_every_segment_once_in_camera_order_and_offsets_committed(settings, engine):
    consumer, store, scorer = FakeConsumer(2), FakeStore(), FakeScorer(delay_s=0.005)
    _feed(consumer, store)
    w = _worker(settings, engine, consumer, store, scorer)
    _run_until(w, consumer.all_committed)
    rows = _rows(engine)
    assert len(rows) == 18 and len({r.segment_id for r in rows}) == 18
    for cam in "abc":  # each camera's state is a chain: segment k saw k segments before it
        assert [n for c, n, *_ in scorer.calls if c == cam] == list(range(6))
    assert w.processed == 18
    assert scorer.max_concurrent > 1, "cameras must be scored in parallel"


def test_transient_failures_rewind_and_store_each_segment_once(settings, engine):
    consumer, store, scorer = FakeConsumer(2), FakeStore(), FakeScorer()
    _feed(consumer, store, n=5)
    store.fail_next = 2
    scorer.fail_next = 2
    w = _worker(settings, engine, consumer, store, scorer)
    _run_until(w, consumer.all_committed, timeout=30)
    rows = _rows(engine)
    assert len(rows) == 15 and len({r.segment_id for r in rows}) == 15
    for cam in "abc":  # after a rewind the state is reloaded from the sink: still a chain
        ok = [n for c, n, *_ in scorer.calls if c == cam]
        assert sorted(set(ok)) == list(range(5)) and ok == sorted(ok)


def test_poison_goes_to_dead_letter_with_payload_and_offsets_move(settings, engine):
    consumer, store, scorer, producer = FakeConsumer(1), FakeStore(), FakeScorer(), FakeProducer()
    put_segment(consumer, store, "a", 0, 40, partition=0)
    consumer.append(0, b"a", b"not json")
    ref = put_segment(consumer, store, "a", 1, 40, partition=0)
    del store.objects[ref.object_key]
    store.objects["segments/a/000002.npz"] = b"garbage"
    put_segment(consumer, store, "a", 2, 40, partition=0)
    store.objects["segments/a/000002.npz"] = b"garbage"
    put_segment(consumer, store, "a", 3, 40, partition=0)
    w = _worker(settings, engine, consumer, store, scorer, producer)
    _run_until(w, consumer.all_committed)
    dls = [decode(DeadLetter, v) for v in producer.on(settings.kafka.dlq_topic)]
    assert len(dls) == 3
    reasons = " | ".join(d.reason for d in dls)
    assert "not JSON" in reasons and "missing" in reasons and "not a Vigil segment" in reasons
    assert b"not json" in {d.payload for d in dls}
    assert {r.segment_id for r in _rows(engine)} == {"a.000000", "a.000003"}
    with Session(engine) as s:  # the same three in SQL, for the API's list and replay
        kept = s.exec(select(DeadLetterRow).order_by(DeadLetterRow.offset)).all()
    assert [(k.offset, k.reason) for k in kept] == [(d.offset, d.reason) for d in sorted(dls, key=lambda d: d.offset)]


def test_backpressure_bounds_inflight_and_pauses(settings, engine):
    consumer, store, scorer = FakeConsumer(2), FakeStore(), FakeScorer(delay_s=0.02)
    _feed(consumer, store, cams=("a", "b"), n=15)
    w = _worker(settings, engine, consumer, store, scorer, max_inflight=4)
    seen = []
    orig = w.submit

    def spy(rec):
        orig(rec)
        seen.append(w._n_inflight)

    w.submit = spy
    _run_until(w, consumer.all_committed, timeout=30)
    assert max(seen) <= 4, f"in-flight went to {max(seen)} with max_inflight=4"
    assert consumer.ever_paused
    assert len(_rows(engine)) == 30


def test_fetch_of_next_segment_overlaps_scoring(settings, engine):
    consumer, store, scorer = FakeConsumer(1), FakeStore(), FakeScorer(delay_s=0.1)
    _feed(consumer, store, cams=("a",), n=4)
    w = _worker(settings, engine, consumer, store, scorer)
    _run_until(w, consumer.all_committed)
    first_score_end = scorer.calls[0][3]
    fetched = sorted(t for _k, t in store.gets)
    assert len(fetched) >= 2 and fetched[1] < first_score_end, "segment 2 must be fetched while 1 is scored"


def test_detector_state_carries_from_segment_to_segment_per_camera(settings, engine):
    """Detect's state (frames, flows, background) comes back with each result and goes with the
    camera's next segment, per camera; a rewind after a failure starts the camera cold again."""
    consumer, store, scorer = FakeConsumer(1), FakeStore(), FakeScorer()
    _feed(consumer, store, cams=("a", "b"), n=3)
    w = _worker(settings, engine, consumer, store, scorer)
    _run_until(w, consumer.all_committed)
    for cam in ("a", "b"):
        assert [k for c, k in scorer.detector_seen if c == cam] == [0, 1, 2]
    assert "detector_state" not in (_rows(engine)[0].model_dump())

    consumer, store, scorer = FakeConsumer(1), FakeStore(), FakeScorer()
    _feed(consumer, store, cams=("c",), n=5)
    scorer.fail_after = 3  # the 4th call fails: a transient error, the worker rewinds
    _run_until(_worker(settings, engine, consumer, store, scorer), consumer.all_committed)
    assert [k for _c, k in scorer.detector_seen] == [0, 1, 2, 0, 1], "after the rewind: cold, then carried"


def test_duplicate_delivery_is_skipped(settings, engine):
    consumer, store, scorer = FakeConsumer(1), FakeStore(), FakeScorer()
    put_segment(consumer, store, "a", 0, 40, partition=0)
    put_segment(consumer, store, "a", 1, 40, partition=0)
    consumer.append(0, b"a", consumer.parts[next(iter(consumer.parts))][0].value)  # seq 0 again
    w = _worker(settings, engine, consumer, store, scorer)
    _run_until(w, consumer.all_committed)
    assert len(_rows(engine)) == 2 and len(scorer.calls) == 2


def test_threshold_from_serve_config_opens_events(settings, engine):
    consumer, store, producer = FakeConsumer(1), FakeStore(), FakeProducer()
    _feed(consumer, store, cams=("a",), n=3, level=lambda c, i: 60)  # score ~0.24 < camera threshold 0.5
    w = _worker(settings, engine, consumer, store, FakeScorer(threshold=0.1), producer)
    _run_until(w, consumer.all_committed)
    with Session(engine) as s:
        events = list(s.exec(select(Event)))
    assert len(events) == 1 and events[0].camera_id == "a"
    OutboxRelay(engine, producer, settings.kafka.events_topic).publish_pending()
    msgs = [decode(EventMessage, v) for v in producer.on(settings.kafka.events_topic)]
    assert msgs and msgs[0].kind == "new" and msgs[0].version == 1


def test_events_and_rows_carry_every_stream_at_the_peak(settings, engine):
    consumer, store = FakeConsumer(1), FakeStore()
    levels = [140, 160, 200, 60]  # an event opens on the first segment; its peak moves to the third
    _feed(consumer, store, cams=("a",), n=4, level=lambda c, i: levels[i])
    _run_until(_worker(settings, engine, consumer, store, FakeScorer()), consumer.all_committed)
    with Session(engine) as s:
        (ev,) = list(s.exec(select(Event)))
        rows = sorted(s.exec(select(SegmentScore)), key=lambda r: r.seq)
    peak = 200 / 255
    assert ev.peak_score == pytest.approx(peak, abs=2 / 255)
    assert ev.peak_s_sem == pytest.approx(ev.peak_score) and ev.peak_s_obj == pytest.approx(ev.peak_score / 2)
    assert ev.peak_streams == pytest.approx({"semantic": ev.peak_score, "motion": ev.peak_score / 2})
    assert rows[2].s_obj == pytest.approx(rows[2].score / 2) and rows[2].streams["motion"] == pytest.approx(rows[2].s_obj)


def test_no_events_without_threshold_override(settings, engine):
    consumer, store = FakeConsumer(1), FakeStore()
    _feed(consumer, store, cams=("a",), n=3, level=lambda c, i: 60)
    w = _worker(settings, engine, consumer, store, FakeScorer())
    _run_until(w, consumer.all_committed)
    with Session(engine) as s:
        assert not list(s.exec(select(Event)))


def test_params_with_threshold_keeps_release_below(settings):
    p = settings.camera_defaults.model_copy(update={"release_threshold": 0.4})
    q = params_with_threshold(p, 0.3)
    assert q.threshold == 0.3 and q.release_threshold == 0.3
    assert params_with_threshold(p, None) is p
    with pytest.raises(ValueError):
        params_with_threshold(p, 1.5)


def test_revoke_commits_durable_and_forgets_the_rest(settings, engine):
    consumer, store, scorer = FakeConsumer(1), FakeStore(), FakeScorer(delay_s=0.05)
    _feed(consumer, store, cams=("a",), n=6)
    w = _worker(settings, engine, consumer, store, scorer)
    w.subscribe()
    w.step()
    time.sleep(0.12)  # ~2 of 6 scored
    consumer.listener.on_partitions_revoked(list(consumer.parts))
    n_rows = len(_rows(engine))
    tp = next(iter(consumer.parts))
    assert 1 <= n_rows < 6 and consumer.commits[tp] == n_rows
    assert w._n_inflight == 0 and not w.cameras
    w.close()


def test_commit_failures_do_not_kill_the_loop(settings, engine):
    consumer, store, scorer = FakeConsumer(2), FakeStore(), FakeScorer()
    _feed(consumer, store, n=4)
    consumer.fail_commits = 3
    w = _worker(settings, engine, consumer, store, scorer)
    _run_until(w, consumer.all_committed, timeout=30)
    assert len(_rows(engine)) == 12


def test_slow_failure_keeps_polling_while_lanes_settle(settings, engine):
    """While a lane is stuck in a slow model call, recovery keeps polling (group membership)."""
    consumer, store, scorer = FakeConsumer(2), FakeStore(), FakeScorer(delay_s=2.0)
    _feed(consumer, store, cams=("a", "b"), n=2)
    scorer.fail_next = 1
    polls = []
    orig = consumer.poll

    def counting(timeout_ms=0, max_records=500):
        polls.append(time.monotonic())
        return orig(timeout_ms, max_records)

    consumer.poll = counting
    w = _worker(settings, engine, consumer, store, scorer)
    _run_until(w, consumer.all_committed, timeout=30)
    gaps = [b - a for a, b in zip(polls, polls[1:])]
    # a lane sits 2 s in a model call; the loop must keep polling meanwhile (busy CI: generous bound)
    assert max(gaps) < 1.5, f"the consumer went {max(gaps):.2f}s without polling"
    assert len(_rows(engine)) == 4


def test_revoke_with_failing_commit_still_forgets_the_pipeline(settings, engine):
    consumer, store, scorer = FakeConsumer(1), FakeStore(), FakeScorer(delay_s=0.05)
    _feed(consumer, store, cams=("a",), n=4)
    w = _worker(settings, engine, consumer, store, scorer)
    w.subscribe()
    w.step()
    consumer.fail_commits = 1
    consumer.listener.on_partitions_revoked(list(consumer.parts))
    assert w._n_inflight == 0 and not w._inflight and not w.cameras
    w.close()


class _FailsOn:
    """A scorer that raises ``exc`` every time for the segment of brightness ``level``, else scores."""

    def __init__(self, level: int, exc: Exception) -> None:
        self.inner, self.level, self.exc, self.tries = FakeScorer(), level, exc, 0

    def __call__(self, frames, state, prompt_set, camera_id=None, detector_state=None, fps=None):  # noqa: ANN001
        import numpy as np

        if abs(float(np.asarray(frames).mean()) - self.level) < 0.5:
            self.tries += 1
            raise self.exc
        return self.inner(frames, state, prompt_set, camera_id, detector_state, fps)


@pytest.mark.parametrize("exc, kind, budget", [
    (ValueError("unknown prompt set 'nope'"), "deterministic", 2),  # would repeat: a small budget
    (ConnectionError("Serve unreachable"), "transient", 4),  # may pass: retried longer, then given up too
])
def test_a_record_that_keeps_failing_is_dead_lettered_and_the_partition_moves_on(settings, engine, exc, kind, budget):
    s = settings.model_copy(update={"retry": settings.retry.model_copy(update={
        "transient_attempts": 4, "deterministic_attempts": 2, "backoff_initial_s": 0.01, "backoff_max_s": 0.05})})
    consumer, store, producer = FakeConsumer(1), FakeStore(), FakeProducer()
    _feed(consumer, store, cams=("a", "b"), n=4, level=lambda c, i: 90 if (c, i) == ("b", 1) else 40)
    scorer = _FailsOn(90, exc)
    w = _worker(s, engine, consumer, store, scorer, producer)
    _run_until(w, consumer.all_committed, timeout=30)
    (dl,) = [decode(DeadLetter, v) for v in producer.on(s.kafka.dlq_topic)]
    assert dl.attempts == budget == scorer.tries and dl.reason.startswith(f"{kind} failure, given up after {budget}")
    assert decode(SegmentRef, dl.payload).segment_id == "b.000001", "the original record, to replay"
    # every other segment scored once, the camera's later segments included
    assert sorted(r.segment_id for r in _rows(engine)) == sorted(
        f"{c}.{i:06d}" for c in "ab" for i in range(4) if (c, i) != ("b", 1))


def test_failures_are_told_apart():
    from services.scoring.worker import failure_kind

    assert [failure_kind(e) for e in (ValueError("x"), KeyError("k"), TypeError("t"))] == ["deterministic"] * 3
    assert [failure_kind(e) for e in (TimeoutError(), ConnectionRefusedError(), RuntimeError("store down"))] == ["transient"] * 3


def _raised_in(filename: str, exc_type: type) -> BaseException:
    code = compile("raise exc_type('from inside')", filename, "exec")
    try:
        exec(code, {"exc_type": exc_type})  # noqa: S102  (a frame whose file is ``filename``)
    except exc_type as exc:
        return exc
    raise AssertionError("not raised")


def test_an_error_from_rays_own_code_is_transient_a_replicas_is_judged_by_type():
    from services.scoring.worker import failure_kind

    # Ray restarting under the worker: AttributeError from its client internals
    inside = _raised_in("/venv/lib/python3.11/site-packages/ray/_private/worker.py", AttributeError)
    assert failure_kind(inside) == "transient"
    assert failure_kind(_raised_in("/srv/vigil/shared/model/score.py", AttributeError)) == "deterministic"

    class RayTaskError(Exception):  # Ray re-raises a replica's exception as a subclass of RayTaskError and its type
        pass

    class ReplicaValueError(RayTaskError, ValueError):
        pass

    assert failure_kind(_raised_in("/venv/lib/python3.11/site-packages/ray/_private/worker.py",
                                   ReplicaValueError)) == "deterministic"


def test_masks_and_tuning_from_the_control_plane_apply_before_scoring(settings, engine):
    from services.scoring.control_plane import ConfiguredControl
    from vigil.regions import MASK_GREY, Mask

    class Control(ConfiguredControl):
        def params_for(self, camera_id):
            return super().params_for(camera_id).model_copy(update={"threshold_mode": "fixed", "threshold": 0.45})

        def masks_for(self, camera_id):
            return [Mask(polygon=[[0, 0], [1, 0], [1, 1], [0, 1]])] if camera_id == "a" else []

    consumer, store, scorer = FakeConsumer(1), FakeStore(), FakeScorer()
    _feed(consumer, store, cams=("a", "b"), n=3, level=lambda c, i: 200)
    w = _worker(settings, engine, consumer, store, scorer, control=Control(settings))
    _run_until(w, consumer.all_committed)
    scores = {(r.camera_id, r.seq): r.score for r in _rows(engine)}
    assert all(scores[("a", i)] == pytest.approx(MASK_GREY / 255) for i in range(3))  # Score saw the masked frames
    assert all(scores[("b", i)] == pytest.approx(200 / 255) for i in range(3))
    with Session(engine) as s:  # both above the tuned 0.45: each camera opened its event
        assert {e.camera_id for e in s.exec(select(Event))} == {"a", "b"}


def test_zones_are_scored_on_their_own_with_their_threshold_and_loitering_time(settings, engine):
    from services.scoring.control_plane import ConfiguredControl
    from vigil.regions import Zone

    half = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
    zones = [Zone(name="walk", polygon=half, threshold=0.3),  # under the camera's fixed 0.5
             Zone(name="bench", polygon=half, threshold=0.95, loiter_s=2.5)]

    class Control(ConfiguredControl):
        def zones_for(self, camera_id):
            return zones if camera_id == "a" else []

    class Scorer(FakeScorer):  # someone is in every frame (Detect's boxes)
        def __call__(self, frames, *args, **kw):
            res = super().__call__(frames, *args, **kw)
            res["boxes"] = [[[1, 1, 4, 4]] for _ in range(len(frames))]
            return res

    consumer, store, scorer = FakeConsumer(1), FakeStore(), Scorer()
    _feed(consumer, store, cams=("a",), n=5, level=lambda c, i: 100)  # 100/255 = 0.39: no camera event
    w = _worker(settings, engine, consumer, store, scorer, control=Control(settings))
    _run_until(w, consumer.all_committed)
    rows = _rows(engine)
    by_zone = {z: sorted(r.seq for r in rows if r.zone == z) for z in (None, "walk", "bench")}
    assert by_zone == {None: [0, 1, 2, 3, 4], "walk": [0, 1, 2, 3, 4], "bench": [0, 1, 2, 3, 4]}
    assert {r.segment_id for r in rows if r.zone == "walk"} == {f"a.{i:06d}~walk" for i in range(5)}
    assert {r.camera_id for r in rows} == {"a"}
    # the zone was scored on its own view: outside its polygon painted grey, so brighter than the camera's
    assert all(r.score > 0.39 for r in rows if r.zone == "walk")
    with Session(engine) as s:
        events = list(s.exec(select(Event)))
    assert {(e.camera_id, e.zone) for e in events} == {("a", "walk"), ("a", "bench")}, "no whole-view event"
    bench = next(e for e in events if e.zone == "bench")
    assert bench.first_seq == 2 and bench.id.endswith("~bench")  # occupied 3 s > 2.5 s at the third segment
    text = bench.top_descriptions[0]["text"]
    assert text.startswith("someone in zone bench for ") and text.endswith("(longer than 2.5 s)"), text
    OutboxRelay(engine, w.producer, settings.kafka.events_topic).publish_pending()
    msgs = [decode(EventMessage, v) for v in w.producer.on(settings.kafka.events_topic)]
    assert {(m.camera_id, m.zone) for m in msgs} == {("a", "walk"), ("a", "bench")}
