"""Fakes for the scoring worker: an in-memory consumer/producer/store and a deterministic scorer."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, namedtuple
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from kafka import TopicPartition

from vigil.config import load_settings
from vigil.contracts import SegmentRef
from vigil.db import make_engine, migrate
from vigil.objectstore import ObjectMissing, ObjectStoreError
from vigil.segments import encode_segment

Record = namedtuple("Record", "topic partition offset key value")
TOPIC = "vigil.segments.v1"


class FakeConsumer:
    """Partitions as lists; positions, pause/resume, commit, seek like kafka-python's consumer."""

    def __init__(self, n_partitions: int = 2) -> None:
        self.parts = {TopicPartition(TOPIC, p): [] for p in range(n_partitions)}
        self.pos = {tp: 0 for tp in self.parts}
        self.commits: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.ever_paused = False
        self.listener = None
        self.lock = threading.Lock()
        self.fail_commits = 0  # CommitFailedError-like failures to raise (a rebalance took the group)

    def append(self, partition: int, key: bytes | None, value: bytes) -> None:
        tp = TopicPartition(TOPIC, partition)
        with self.lock:
            self.parts[tp].append(Record(TOPIC, partition, len(self.parts[tp]), key, value))

    def subscribe(self, topics, listener=None):  # noqa: ANN001
        self.listener = listener
        if listener:
            listener.on_partitions_assigned(list(self.parts))

    def assignment(self):
        return set(self.parts)

    def poll(self, timeout_ms: int = 0, max_records: int = 500):
        out = {}
        with self.lock:
            for tp, recs in self.parts.items():
                if tp in self.paused:
                    continue
                take = recs[self.pos[tp]: self.pos[tp] + max_records - sum(len(v) for v in out.values())]
                if take:
                    out[tp] = take
                    self.pos[tp] += len(take)
        if not out:
            time.sleep(min(timeout_ms, 20) / 1000)
        return out

    def commit(self, offsets=None):  # noqa: ANN001
        if self.fail_commits > 0:
            self.fail_commits -= 1
            raise RuntimeError("CommitFailedError (fake): the group has rebalanced")
        for tp, om in offsets.items():
            assert om.offset >= self.commits.get(tp, 0), "offsets must never move backwards"
            self.commits[tp] = om.offset

    def committed(self, tp):  # noqa: ANN001
        return self.commits.get(tp)

    def seek(self, tp, offset):  # noqa: ANN001
        self.pos[tp] = offset

    def seek_to_beginning(self, *tps):  # noqa: ANN002
        for tp in tps:
            self.pos[tp] = 0

    def pause(self, *tps):  # noqa: ANN002
        self.paused |= set(tps)
        self.ever_paused = True

    def resume(self, *tps):  # noqa: ANN002
        self.paused -= set(tps)

    def end_offsets(self, tps):  # noqa: ANN001
        return {tp: len(self.parts[tp]) for tp in tps}

    def position(self, tp):  # noqa: ANN001
        return self.pos[tp]

    def close(self, autocommit=False):  # noqa: ANN001
        pass

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.parts.values())

    def all_committed(self) -> bool:
        return all(self.commits.get(tp, 0) == len(recs) for tp, recs in self.parts.items())


class _Done:
    def get(self, timeout=None):  # noqa: ANN001
        return None


class _Refused:
    """What kafka-python's future does when the broker does not acknowledge."""

    def get(self, timeout=None):  # noqa: ANN001
        from kafka.errors import KafkaTimeoutError

        raise KafkaTimeoutError("broker did not acknowledge (fake)")


class FakeProducer:
    """Records what is sent. ``fail_next``: that many sends are refused at once (the broker is
    down); ``unacked_next``: that many reach the topic but their acknowledgement is lost."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.flushes = 0
        self.fail_next = 0
        self.unacked_next = 0

    def send(self, topic, key=None, value=None):  # noqa: ANN001
        if self.fail_next > 0:
            from kafka.errors import KafkaConnectionError

            self.fail_next -= 1
            raise KafkaConnectionError("no broker (fake)")
        self.sent.append((topic, key, value))
        if self.unacked_next > 0:
            self.unacked_next -= 1
            return _Refused()
        return _Done()

    def flush(self, timeout=None):  # noqa: ANN001
        self.flushes += 1

    def on(self, topic: str) -> list[bytes]:
        return [v for t, _k, v in self.sent if t == topic]


class FakeStore:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.fail_next = 0  # transient failures to raise before succeeding
        self.gets: list[tuple[str, float]] = []
        self.lock = threading.Lock()

    def get(self, key: str) -> bytes:
        with self.lock:
            self.gets.append((key, time.monotonic()))
            if self.fail_next > 0:
                self.fail_next -= 1
                raise ObjectStoreError("object store unavailable (fake)")
        if key not in self.objects:
            raise ObjectMissing(key)
        return self.objects[key]


class FakeScorer:
    """Deterministic: score = mean pixel / 255; the state counts segments. Records call order."""

    def __init__(self, delay_s: float = 0.0, threshold: float | None = None) -> None:
        self.delay_s = delay_s
        self.threshold = threshold
        self.calls: list[tuple[str | None, int, float, float]] = []  # camera, n_segments before, start, end
        self.detector_seen: list[tuple[str | None, int]] = []  # camera, segments its detector state had seen
        self.fail_next = 0
        self.fail_after: int | None = None  # fail once, on the call after this many answered
        self.lock = threading.Lock()
        self.concurrent = 0
        self.max_concurrent = 0

    def __call__(self, frames, state, prompt_set, camera_id=None, detector_state=None, fps=None):  # noqa: ANN001
        t0 = time.monotonic()
        with self.lock:
            self.concurrent += 1
            self.max_concurrent = max(self.max_concurrent, self.concurrent)
            fail = self.fail_next > 0 or self.fail_after == len(self.calls)
            if self.fail_next > 0:
                self.fail_next -= 1
            elif fail:
                self.fail_after = None
        try:
            if fail:
                raise TimeoutError("Serve did not answer (fake)")
            time.sleep(self.delay_s)
            n = int((state or {}).get("n_segments", 0))
            score = float(np.asarray(frames).mean() / 255.0)
            with self.lock:
                self.calls.append((camera_id, n, t0, time.monotonic()))
                self.detector_seen.append((camera_id, int((detector_state or {}).get("segments", 0))))
            return {"score": score, "s_sem": score, "s_pred": None, "s_obj": score / 2, "gate": None,
                    "streams": {"semantic": score, "motion": score / 2},
                    "frame_scores": [score] * len(frames), "top_descriptions": [],
                    "state": {"n_segments": n + 1}, "model_version": "fake-1", "threshold": self.threshold,
                    # like Detect's: what the camera's previous segment left (here: how many came before)
                    "detector_state": {"segments": int((detector_state or {}).get("segments", 0)) + 1}}
        finally:
            with self.lock:
                self.concurrent -= 1


def put_segment(consumer: FakeConsumer, store: FakeStore, camera: str, seq: int, level: int,
                partition: int | None = None, n_frames: int = 2) -> SegmentRef:
    """A real segment object (JPEG npz) of constant brightness ``level`` plus its record."""
    t0 = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=seq)
    ref = SegmentRef(segment_id=f"{camera}.{seq:06d}", camera_id=camera, seq=seq, t_start=t0,
                     t_end=t0 + timedelta(seconds=1), fps=2, n_frames=n_frames, width=16, height=16,
                     object_key=f"segments/{camera}/{seq:06d}.npz")
    frames = [np.full((16, 16, 3), level, np.uint8) for _ in range(n_frames)]
    store.objects[ref.object_key] = encode_segment(frames)
    part = partition if partition is not None else (hash(camera) % len(consumer.parts))
    consumer.append(part, camera.encode(), ref.encode())
    return ref


@pytest.fixture
def settings(tmp_path):
    return load_settings(None, state_dir=tmp_path, camera_defaults={"threshold": 0.5, "min_event_segments": 1, "threshold_mode": "fixed"})


@pytest.fixture
def engine(settings):
    migrate(settings.database_url)
    return make_engine(settings.database_url)
