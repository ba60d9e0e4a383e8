"""The scoring consumer: Kafka segments → Serve app → SQL sink (rows, events, outbox) → offsets.

Assembled from small steps (decode, fetch, score, sink, publish), each testable alone,
run as a pipeline with bounded in-flight work:

- The main thread alone owns the Kafka consumer: it polls, hands records to the pipeline,
  commits offsets and exports the lag. It keeps polling (so the group membership stays
  alive however slow the model is); when ``max_inflight`` records are in the pipeline it
  **pauses** its partitions (backpressure, no unbounded queue) and resumes them at half.
- Fetch + decode of a segment starts as soon as it is polled, on a small pool, so it
  overlaps the scoring of the segments before it (prefetch, bounded by ``max_inflight``).
- Each camera is a lane: its records are scored in order, one at a time (its state is a
  chain: Detect needs the previous segment's frames, Score its history); cameras run in
  parallel, so Serve can batch across cameras.

Delivery is at-least-once with an idempotent sink: a partition's offset is committed only
up to its first record that is not yet durable (scored and stored, or dead-lettered). Event
messages are not produced here: the sink writes them to the outbox with the rows, and the
relay (:mod:`services.scoring.relay`) publishes them once the broker takes them. A transient failure (object store, Serve,
database) stops the failed camera's lane, waits for the other lanes to finish the segment
they are on, commits what is durable, drops the camera state (the sink is the truth) and
rewinds every partition to its committed offset; what was already stored is skipped on the
way back.

The consumer that owns a camera's partition keeps the camera's state in memory: the event
tracker and score state (loaded from the sink when first seen, stored with every row) and
the detector state (recent frames, flows, background; memory only, so after a rebalance or a
rewind the camera's next segment starts Detect cold). All of it is dropped on rebalance.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from kafka import ConsumerRebalanceListener, TopicPartition
from kafka.structs import OffsetAndMetadata

from vigil import metrics
from vigil.clock import utcnow
from vigil.config import CameraParams, Settings
from vigil.contracts import ContractError, DeadLetter, SegmentRef, decode
from vigil.events import EventTracker
from vigil.normal_period import NormalPeriodRecorder
from vigil.objectstore import ObjectMissing, ObjectStore
from vigil.regions import Zone, apply_masks, zone_frames
from vigil.segments import SegmentDecodeError, decode_segment, single_threaded_codec

from . import telemetry
from .control_plane import CameraControl, ConfiguredControl
from .sink import zone_key
from .zones import loitering, zone_occupancy, zone_params
from .sink import Sink

log = logging.getLogger(__name__)


class Poison(Exception):
    """A message that can never be processed: it goes to the dead-letter topic."""


@dataclass
class _CameraRuntime:
    tracker: EventTracker
    model_state: dict[str, Any]
    detector_state: Any = None  # opaque, from Detect, memory only


@dataclass
class _Item:
    """One polled record on its way through the pipeline."""

    rec: Any
    tp: TopicPartition
    camera: str
    polled_at: float
    ref: SegmentRef | None = None
    undecodable: str | None = None  # why the payload is not a SegmentRef
    fetch: Future | None = None  # prefetched frames (or the exception fetching raised)
    done: bool = False


@dataclass
class _Lane:
    """One camera's records, scored in order by at most one pool thread at a time."""

    queue: deque[_Item] = field(default_factory=deque)
    running: bool = False
    failed: bool = False  # a transient failure: nothing more runs in order until the rewind


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, worker: ScoringWorker) -> None:
        self.worker = worker

    def on_partitions_revoked(self, revoked):  # noqa: ANN001
        # Finish the segments being scored, commit what is durable, forget the rest (the next
        # owner gets it from the committed offsets) and the camera state (rebuilt from the sink).
        self.worker._quiesce()
        try:
            self.worker._commit_durable()
        except Exception as exc:  # noqa: BLE001  uncommitted records are re-read by the next owner
            log.warning("commit on revoke failed (%s: %s)", type(exc).__name__, exc)
        self.worker._drop_pipeline()

    def on_partitions_assigned(self, assigned):  # noqa: ANN001
        log.info("assigned partitions %s", sorted(tp.partition for tp in assigned))


ScoreFn = Callable[..., dict[str, Any]]  # (frames, state, prompt_set, camera_id=, detector_state=, fps=) -> result


def params_with_threshold(params: CameraParams, threshold: float | None) -> CameraParams:
    """The camera's params with a threshold set live on the Serve app (Score's user_config)."""
    if threshold is None or threshold == params.threshold:
        return params
    release = params.release_threshold
    upd = {"threshold": float(threshold),
           "release_threshold": None if release is None else min(release, float(threshold))}
    return CameraParams.model_validate({**params.model_dump(), **upd})


TRANSIENT, DETERMINISTIC = "transient", "deterministic"
# failures that repeat whatever the retry (a bad value, a name that does not exist, a bug); Ray
# re-raises a replica's exception as a subclass of its own type, so these match across Serve
_DETERMINISTIC = (ValueError, TypeError, KeyError, IndexError, AttributeError, NotImplementedError, ArithmeticError)


def _raised_inside_ray(exc: BaseException) -> bool:
    """The exception comes from Ray's own code (its client state, not a replica's answer): Ray
    restarting under the caller raises AttributeError and the like from its internals."""
    if any(c.__name__ == "RayTaskError" for c in type(exc).__mro__):
        return False  # a replica's own exception, re-raised: judged by its type
    tb = exc.__traceback__
    last = None
    while tb is not None:
        last, tb = tb, tb.tb_next
    return last is not None and f"{os.sep}ray{os.sep}" in last.tb_frame.f_code.co_filename


def failure_kind(exc: BaseException) -> str:
    """``deterministic`` for a failure that will repeat, ``transient`` for one that may pass
    (timeouts, connections, a dead replica, an unreachable store or database, Ray itself
    restarting)."""
    if isinstance(exc, (TimeoutError, ConnectionError, OSError)) or _raised_inside_ray(exc):
        return TRANSIENT
    return DETERMINISTIC if isinstance(exc, _DETERMINISTIC) else TRANSIENT


class ScoringWorker:
    def __init__(
        self,
        settings: Settings,
        *,
        score_fn: ScoreFn,
        sink: Sink,
        store: ObjectStore,
        producer: Any,
        consumer: Any,
        max_parallel: int = 8,
        max_inflight: int = 32,
        prefetch_threads: int = 2,
        stats_fn: Callable[[], dict[str, Any]] | None = None,
        recorder: NormalPeriodRecorder | None = None,
        control: CameraControl | None = None,
    ) -> None:
        self.settings = settings
        # a camera's prompt set, thresholds and masks: the control plane's (from SQL), else the configuration's
        self.control: CameraControl = control or ConfiguredControl(settings)
        # each camera's normal period (footage its normality is learnt from); None = record nothing
        self.recorder = recorder
        self.score_fn = score_fn
        self.sink = sink
        self.store = store
        self.producer = producer
        self.consumer = consumer
        self.max_inflight = max(1, max_inflight)
        self.stats_fn = stats_fn or getattr(score_fn, "stats", None)
        self.cameras: dict[str, _CameraRuntime] = {}
        self.pool = ThreadPoolExecutor(max_parallel, thread_name_prefix="score")
        self.fetch_pool = ThreadPoolExecutor(max(1, prefetch_threads), thread_name_prefix="fetch")
        self.stop = threading.Event()
        self.processed = 0  # records whose offsets were committed
        self._lock = threading.Lock()
        self._inflight: dict[TopicPartition, deque[_Item]] = defaultdict(deque)
        self._n_inflight = 0
        self._lanes: dict[str, _Lane] = defaultdict(_Lane)
        self._failures: list[tuple[str, BaseException]] = []
        self._attempts: dict[tuple[str, int, int], int] = {}  # (topic, partition, offset) -> failed attempts
        self._halt = False  # lanes stop after their current record
        self._paused = False
        self._committed: dict[TopicPartition, int] = {}
        self._last_lag = 0.0
        self._last_stats = 0.0

    def subscribe(self) -> None:
        self.consumer.subscribe([self.settings.kafka.segments_topic], listener=_Rebalance(self))

    # ------------------------------------------------------------ steps
    def _camera(self, camera_id: str, params: CameraParams | None = None) -> _CameraRuntime:
        """The runtime of a camera (or of a zone of it: ``<camera>~<zone>`` and the zone's params)."""
        rt = self.cameras.get(camera_id)
        if rt is None:
            params = params or self.control.params_for(camera_id)
            row = self.sink.load_camera_state(camera_id)
            if row is not None and row.tracker:
                tracker = EventTracker.from_dict(row.tracker)
                tracker.retune(params)
                model_state = row.model_state
            else:
                tracker, model_state = EventTracker.for_camera(camera_id, params), {}
            rt = self.cameras.setdefault(camera_id, _CameraRuntime(tracker, model_state))
        return rt

    def _fetch_frames(self, ref: SegmentRef):
        try:
            with metrics.stage("s3_get", wall="fetch"):
                data = self.store.get(ref.object_key)
        except ObjectMissing:
            raise Poison(f"segment object {ref.object_key} is missing from the object store") from None
        try:
            with metrics.stage("segment_decode", wall="decode"):
                seg = decode_segment(data)
        except SegmentDecodeError as exc:
            raise Poison(f"segment object {ref.object_key}: {exc}") from None
        return seg.frames

    def _prefetch(self, ref: SegmentRef):
        """Runs on the fetch pool ahead of scoring: the frames, or None when the segment is already stored."""
        if self.sink.is_scored(ref.segment_id):
            return None
        return self._fetch_frames(ref)

    def _dead_letter(self, rec: Any, reason: str, attempts: int | None = None) -> None:
        dl = DeadLetter.wrap(
            rec.value or b"", reason, source_topic=rec.topic, partition=rec.partition, offset=rec.offset,
            key=rec.key.decode(errors="replace") if rec.key else None, attempts=attempts,
        )
        self.producer.send(self.settings.kafka.dlq_topic, key=rec.key, value=dl.encode()).get(timeout=30)
        self.sink.record_dead_letter(dl)  # listed by the API, which can replay it
        metrics.DEAD_LETTERS.labels(reason.split(":", 1)[0][:40]).inc()
        log.warning("dead-lettered %s[%s]@%s: %s", rec.topic, rec.partition, rec.offset, reason)

    def _process_record(self, rec: Any, prefetched: Future | None = None) -> None:
        """Score and store one record (or dead-letter it). Raises on transient failures."""
        try:
            ref = decode(SegmentRef, rec.value)
        except ContractError as exc:
            self._dead_letter(rec, f"undecodable SegmentRef: {exc}")
            return
        try:
            if prefetched is not None:
                frames = prefetched.result()
                # already stored when prefetched, or since (a duplicate in the same window)
                if frames is None or self.sink.is_scored(ref.segment_id):
                    metrics.DUPLICATES.inc()
                    return
            else:
                if self.sink.is_scored(ref.segment_id):
                    metrics.DUPLICATES.inc()
                    return
                frames = self._fetch_frames(ref)
        except Poison as exc:
            self._dead_letter(rec, str(exc))
            return
        params = self.control.params_for(ref.camera_id)
        masks = self.control.masks_for(ref.camera_id)
        # a camera's zones first, then its whole view: a re-delivered segment (the camera's row is the
        # "scored" mark) redoes only what was not stored, each view's commit being idempotent on its own
        for zone in self.control.zones_for(ref.camera_id):
            zparams = zone_params(params, zone)
            self._score_view(ref, zone_frames(frames, zone, masks), zparams,
                             self.control.prompt_set_for(ref.camera_id, zparams), zone)
        frames = apply_masks(frames, masks)  # before Detect, Encode and Score
        self._score_view(ref, frames, params, self.control.prompt_set_for(ref.camera_id, params), None)

    def rescore_segment(self, ref: SegmentRef, runtime: _CameraRuntime) -> list[Any]:
        """``vigil rescore``: score a stored segment's whole view again through the same path as
        a live one, on ``runtime`` (the re-scoring's own tracker and model state, not the live
        camera's), overwriting its row; returns the event transitions it made."""
        self.cameras[ref.camera_id] = runtime
        frames = apply_masks(self._fetch_frames(ref), self.control.masks_for(ref.camera_id))
        params = self.control.params_for(ref.camera_id)
        return self._score_view(ref, frames, params, self.control.prompt_set_for(ref.camera_id, params), None,
                                rescore=True)

    def _score_view(self, ref: SegmentRef, frames: Any, params: CameraParams, prompt_set: str,
                    zone: Zone | None, *, rescore: bool = False) -> list[Any]:
        """Score one view of a segment (the camera's whole view, or one zone of it), then store its
        row, events, their outbox messages and its state in one transaction. Returns the event
        transitions it made."""
        key = ref.camera_id if zone is None else zone_key(ref.camera_id, zone.name)
        rt = self._camera(key, params)
        with metrics.stage("serve_call", wall="score"):  # CPU: this side of the call (the replicas' is theirs)
            result = self.score_fn(frames, rt.model_state, prompt_set, camera_id=key,
                                   detector_state=rt.detector_state, fps=ref.fps)
        detector_state = result.pop("detector_state", None)
        t0, c0 = time.perf_counter(), time.thread_time()
        occupancy = None
        if zone is not None and zone.loiter_s:
            occupancy = zone_occupancy(rt.model_state.get("occupied_s", 0.0), result.get("boxes"), ref)
            result = loitering(result, zone, occupancy)
        params = params_with_threshold(params, result.get("threshold"))
        # Work on a copy: if the commit fails, the in-memory state must not run ahead of SQL.
        tracker = EventTracker.from_dict(rt.tracker.to_dict())
        tracker.retune(params)
        transitions = tracker.update(
            segment_id=ref.segment_id if zone is None else zone_key(ref.segment_id, zone.name), seq=ref.seq,
            t_start=ref.t_start, t_end=ref.t_end, score=result["score"], top_descriptions=result.get("top_descriptions"),
            scorer=result.get("model_version"),
        )
        state = dict(result.get("state") or {})
        if occupancy is not None:
            state["occupied_s"] = occupancy
        result["state"] = state
        if not self.sink.commit(ref, result, tracker, transitions, params, zone=None if zone is None else zone.name,
                                rescore=rescore):
            metrics.DUPLICATES.inc()
            return []
        rt.tracker, rt.model_state, rt.detector_state = tracker, state, detector_state
        metrics.STAGE_SECONDS.labels("sink").observe(time.perf_counter() - t0)
        metrics.STAGE_CPU_SECONDS.labels("sql_write").inc(time.thread_time() - c0)
        if rescore:
            return transitions
        if zone is None:
            if self.recorder is not None:
                try:
                    self.recorder.record(ref, params, in_event=tracker.open is not None)
                except Exception as exc:  # noqa: BLE001  a clip fewer in the normal period, never a lost score
                    log.warning("camera %s: segment %s not recorded into its normal period: %s",
                                ref.camera_id, ref.segment_id, exc)
            metrics.SEGMENTS_SCORED.inc()
            metrics.FRAMES_SCORED.inc(ref.n_frames)
            metrics.E2E_LATENCY.observe(max(0.0, (utcnow() - ref.t_end).total_seconds()))
        for tr in transitions:  # their messages went into the outbox with the rows; the relay publishes them
            metrics.EVENTS_EMITTED.labels(tr.kind).inc()
        return transitions

    # ------------------------------------------------------------ pipeline
    def submit(self, rec: Any) -> None:
        """Put one polled record into the pipeline (prefetch now, score in its camera's lane)."""
        tp = TopicPartition(rec.topic, rec.partition)
        key = rec.key.decode(errors="replace") if rec.key else f"__nokey-{rec.partition}"
        item = _Item(rec, tp, key, time.monotonic())
        try:
            item.ref = decode(SegmentRef, rec.value)
            item.fetch = self.fetch_pool.submit(self._prefetch, item.ref)
        except ContractError as exc:
            item.undecodable = str(exc)
        with self._lock:
            self._inflight[tp].append(item)
            self._n_inflight += 1
            lane = self._lanes[key]
            lane.queue.append(item)
            start = not lane.running and not lane.failed
            lane.running = lane.running or start
        telemetry.INFLIGHT.set(self._n_inflight)
        if start:
            self.pool.submit(self._run_lane, key, lane)

    def _run_lane(self, camera: str, lane: _Lane) -> None:
        while True:
            with self._lock:
                if self._halt or not lane.queue:
                    lane.running = False
                    return
                item = lane.queue.popleft()
            metrics.STAGE_SECONDS.labels("queue").observe(time.monotonic() - item.polled_at)
            try:
                if item.undecodable is not None:
                    self._dead_letter(item.rec, f"undecodable SegmentRef: {item.undecodable}")
                else:
                    self._process_record(item.rec, item.fetch)
                    if self._attempts:
                        self._attempts.pop((item.rec.topic, item.rec.partition, item.rec.offset), None)
            except Exception as exc:  # noqa: BLE001  retried (the loop rewinds) until its budget is spent
                if not self._give_up(camera, item, exc):
                    with self._lock:
                        self._failures.append((camera, exc))
                        lane.running, lane.failed = False, True
                    return
            with self._lock:
                item.done = True

    def _give_up(self, camera: str, item: _Item, exc: Exception) -> bool:
        """Count the failure against the record's budget; once spent, dead-letter it (True: the
        partition moves on). A failure that will repeat gets a small budget, one that may pass a
        large one; the attempts survive the rewind that retries it."""
        kind = failure_kind(exc)
        where = (item.rec.topic, item.rec.partition, item.rec.offset)
        n = self._attempts[where] = self._attempts.get(where, 0) + 1
        budget = self.settings.retry.deterministic_attempts if kind == DETERMINISTIC else self.settings.retry.transient_attempts
        metrics.SCORING_ERRORS.labels(kind).inc()
        if n < budget:
            log.warning("camera %s: scoring failed, %s (%s: %s); attempt %d of %d", camera, kind,
                        type(exc).__name__, exc, n, budget)
            return False
        try:
            self._dead_letter(item.rec, f"{kind} failure, given up after {n} attempts: {type(exc).__name__}: {exc}",
                              attempts=n)
        except Exception as dl_exc:  # noqa: BLE001  the broker is down too: retry the whole record later
            log.warning("camera %s: dead-lettering failed too (%s); will retry", camera, dl_exc)
            return False
        self._attempts.pop(where, None)
        with self._lock:
            item.done = True
        return True

    def _quiesce(self, timeout_s: float = 600.0, *, poll: bool = False) -> None:
        """Stop every lane after its current record and wait until none runs.

        With ``poll`` (the main loop, not a rebalance callback) the consumer keeps polling its
        paused partitions meanwhile, so a slow model call cannot cost the group membership
        (``max_poll_interval_ms``). Anything such a poll returns is re-read after the rewind.
        """
        with self._lock:
            self._halt = True
        if poll:
            parts = list(self.consumer.assignment())
            if parts:
                self.consumer.pause(*parts)
                self._paused = True
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with self._lock:
                if not any(lane.running for lane in self._lanes.values()):
                    break
            if poll:
                self._poll_paused()
            else:
                time.sleep(0.01)
        with self._lock:
            self._halt = False

    def _poll_paused(self) -> None:
        """Poll only to stay in the group; a record it returns anyway (a partition assigned
        meanwhile, so not paused) is put back: seek to it and pause that partition."""
        batch = self.consumer.poll(timeout_ms=100, max_records=1)
        for tp, recs in batch.items():
            if recs:
                self.consumer.seek(tp, recs[0].offset)
                self.consumer.pause(tp)
                self._paused = True

    def _durable_offsets(self) -> dict[TopicPartition, int]:
        """Per partition, the offset after its longest prefix of durable records (pops them)."""
        out: dict[TopicPartition, int] = {}
        n = 0
        with self._lock:
            for tp, q in self._inflight.items():
                while q and q[0].done:
                    out[tp] = q.popleft().rec.offset + 1
                    n += 1
            self._n_inflight -= n
        self.processed += n
        telemetry.INFLIGHT.set(self._n_inflight)
        return out

    def _commit_durable(self) -> None:
        offsets = self._durable_offsets()
        if not offsets:
            return
        with metrics.stage("kafka_commit", wall="commit"):
            self.producer.flush(30)  # events and dead letters durable before the offsets move
            self.consumer.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in offsets.items()})
        self._committed.update(offsets)

    def _drop_pipeline(self) -> None:
        """Forget everything not yet committed (lanes are idle) and the camera state."""
        with self._lock:
            for f in (it.fetch for q in self._inflight.values() for it in q):
                if f is not None:
                    f.cancel()
            self._inflight.clear()
            self._lanes.clear()
            self._n_inflight = 0
            self._failures.clear()
        self.cameras.clear()  # reload state from SQL: it is the truth after a partial batch
        telemetry.INFLIGHT.set(0)

    def _recover(self) -> None:
        """After a transient failure: settle, commit what is durable, rewind the rest."""
        self._quiesce(poll=True)
        try:
            self._commit_durable()
        except Exception as exc:  # noqa: BLE001  e.g. the group rebalanced: the next owner re-reads
            log.warning("commit during recovery failed (%s: %s)", type(exc).__name__, exc)
        self._drop_pipeline()
        try:
            self._rewind(sorted(self.consumer.assignment(), key=lambda t: t.partition))
            self.producer.flush(30)
        except Exception as exc:  # noqa: BLE001  the loop tries again
            log.warning("rewind failed (%s: %s)", type(exc).__name__, exc)
        # back off (doubling with the attempts of the most-tried record), still polling the
        # (paused) partitions so the group keeps this member
        r = self.settings.retry
        tries = max(self._attempts.values(), default=1)
        t_end = time.monotonic() + min(r.backoff_max_s, r.backoff_initial_s * 2 ** (tries - 1))
        while time.monotonic() < t_end and not self.stop.is_set():
            self._poll_paused()

    def _rewind(self, partitions: list[TopicPartition]) -> None:
        self.cameras.clear()
        assigned = set(self.consumer.assignment())
        for tp in partitions:
            if tp not in assigned:
                continue
            committed = self.consumer.committed(tp)
            if committed is None:
                self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)

    def _backpressure(self) -> None:
        parts = list(self.consumer.assignment())
        if not parts:
            return
        if self._n_inflight >= self.max_inflight and not self._paused:
            self.consumer.pause(*parts)
            self._paused = True
        elif self._n_inflight <= self.max_inflight // 2 and self._paused:
            self.consumer.resume(*parts)
            self._paused = False
        elif self._paused:
            self.consumer.pause(*parts)  # a rebalance hands out unpaused partitions
        telemetry.PAUSED.set(1 if self._paused else 0)

    def step(self, poll_timeout_ms: int = 200) -> int:
        """One turn of the loop: settle failures, commit, poll more (if there is room). Returns records polled."""
        if self._failures:
            self._recover()
            return 0
        self._commit_durable()
        self._backpressure()
        room = self.max_inflight - self._n_inflight
        with metrics.stage("kafka_poll"):
            batch = self.consumer.poll(timeout_ms=poll_timeout_ms, max_records=max(1, room))
        n = 0
        for tp in sorted(batch, key=lambda t: t.partition):
            for rec in batch[tp]:
                self.submit(rec)
                n += 1
        with metrics.stage("telemetry"):
            self._export_lag()
            self._export_stats()
        return n

    def process_batch(self, batch: dict[TopicPartition, list[Any]]) -> None:
        """Process one poll's records to the end; commit offsets of what is durable."""
        for tp in sorted(batch, key=lambda t: t.partition):
            for rec in batch[tp]:
                self.submit(rec)
        while True:
            with self._lock:
                idle = not any(lane.running for lane in self._lanes.values())
            if idle:
                break
            time.sleep(0.005)
        if self._failures:
            self._recover()
        else:
            self._commit_durable()

    def _export_lag(self) -> None:
        now = time.monotonic()
        if now - self._last_lag < 5:
            return
        self._last_lag = now
        try:
            parts = list(self.consumer.assignment())
            if not parts:
                return
            ends = self.consumer.end_offsets(parts)
            for tp in parts:
                done = self._committed.get(tp)
                if done is None:
                    done = self.consumer.committed(tp) or 0
                metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(0, ends[tp] - done))
        except Exception:  # noqa: BLE001  lag is best effort
            log.debug("lag export failed", exc_info=True)

    def _export_stats(self) -> None:
        if self.stats_fn is None or time.monotonic() - self._last_stats < 5:
            return
        self._last_stats = time.monotonic()
        try:
            for b in self.stats_fn().get("batch_sizes", []):
                telemetry.BATCH_SIZE.observe(b)
        except Exception:  # noqa: BLE001  stats are best effort
            log.debug("encoder stats failed", exc_info=True)

    def run(self, *, idle_exit_s: float | None = None) -> None:
        """Consume until :attr:`stop` is set (or nothing arrives for ``idle_exit_s``)."""
        single_threaded_codec()
        self.subscribe()
        idle_since = time.monotonic()
        while not self.stop.is_set():
            try:
                n = self.step(poll_timeout_ms=100 if self._n_inflight else 500)
            except Exception as exc:  # noqa: BLE001  never die silently: settle and rewind
                metrics.SCORING_ERRORS.labels("loop").inc()
                log.warning("consumer loop failed (%s: %s); rewinding", type(exc).__name__, exc)
                with self._lock:
                    self._failures.append(("__loop__", exc))
                continue
            if n or self._n_inflight:
                idle_since = time.monotonic()
            elif idle_exit_s is not None and time.monotonic() - idle_since > idle_exit_s:
                break
        self._quiesce(timeout_s=60)
        try:
            self._commit_durable()
        except Exception:  # noqa: BLE001  uncommitted records are re-delivered: at-least-once
            log.warning("final commit failed", exc_info=True)

    def close(self) -> None:
        self.stop.set()
        self.pool.shutdown(wait=True)
        self.fetch_pool.shutdown(wait=True, cancel_futures=True)
        try:
            self.consumer.close(autocommit=False)
        except Exception:  # noqa: BLE001
            pass
