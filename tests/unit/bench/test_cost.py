"""CPU per segment by stage: what is the model, what is the fixed path around it."""

from __future__ import annotations

import threading
import time

import pytest

from services.bench.cost import cost_per_segment
from services.scoring.serve_app import StageCpu


def test_replica_cpu_beyond_its_stage_is_its_hop_and_sources_are_apart():
    cost = cost_per_segment(
        segments=100, wall_s=10.0,
        cores_by_process={
            "ray::ServeReplica:vigil-scoring:Encode": 0.8,  # 8 s of CPU, 6 s of it inside the forward passes
            "ray::ServeReplica:vigil-scoring:Detect": 0.3,
            "ray::ServeReplica:vigil-scoring:Ingress": 0.2,
            "weed": 0.1, "tansu-v0.6.0": 0.05, "raylet": 0.05,
            "vigil/bench-ingest-network-thread": 0.02,
            "vigil/ended threads": 0.4, "vigil/score_": 0.1,  # 5 s in the bench process's own threads
            "vigil/bench-sampler": 0.3,  # the bench measuring itself: neither model nor path
        },
        stage_cpu_s={"segment_encode": 1.0, "segment_decode": 1.0, "camera_read": 2.0, "sql_write": 0.5},
        replica_cpu_s={"encode": 6.0, "detect": 2.5, "score": 0.0},
    )
    assert cost["model"] == {"detect": 25.0, "encode": 60.0, "score": 0.0}
    fixed = cost["fixed_path"]
    assert fixed["serve_hop_encode"] == 20.0 and fixed["serve_hop_detect"] == 5.0
    assert fixed["serve_hop_ingress"] == 20.0 and fixed["s3_server"] == 10.0 and fixed["kafka_broker"] == 5.0
    assert fixed["ray_system"] == 5.0 and fixed["kafka_client_io"] == 2.0
    assert fixed["segment_encode"] == 10.0 and fixed["sql_write"] == 5.0
    assert "camera_read" not in fixed and cost["source"] == {"camera_read": 20.0}
    # the bench threads' 5 s less the 4.5 s their stages counted
    assert fixed["unattributed_in_process"] == 5.0
    assert cost["fixed_path_total"] == pytest.approx(sum(fixed.values()))


def test_stage_cpu_counts_overlapping_calls_once_and_other_threads_of_the_process():
    cpu = StageCpu()

    def spin(s: float) -> None:
        t = time.perf_counter()
        while time.perf_counter() - t < s:
            pass

    def call() -> None:
        with cpu:
            spin(0.2)

    threads = [threading.Thread(target=call) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = cpu.take()
    assert got["calls"] == 2
    assert 0.15 <= got["busy_s"] <= 0.6  # one busy window, not two added up
    assert got["cpu_s"] >= 0.15  # both threads' CPU while any call was active (process time)
    assert cpu.take() == {"cpu_s": 0.0, "busy_s": 0.0, "calls": 0}
