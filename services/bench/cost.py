"""CPU milliseconds per segment, stage by stage: the model, and the fixed path around it.

Three sources, all measured in the same window of a ``vigil bench`` run:

- the stage counters (:data:`vigil.metrics.STAGE_CPU_SECONDS`): CPU of the thread that ran each
  stage of ingest and of the scoring consumer in this process (segment encode, S3 put/get,
  Kafka produce/poll/commit, segment decode, this side of the Serve call, the SQL write);
- the Serve replicas' own counters: CPU inside Detect / Encode / Score's stage functions (the
  model); a replica's process CPU beyond it is its Serve hop (deserialise, route, serialise);
- the per-process CPU of everything else (the S3 server, the broker, Ray's own processes,
  Kafka clients' network threads).
"""

from __future__ import annotations

from typing import Any

# stage counters that are not the fixed path: what a camera costs before ingest sees a frame
SOURCE_STAGES = ("camera_read",)
MODEL_STAGES = ("detect", "encode", "score")


def _process_stage(name: str) -> str | None:
    """The fixed-path stage a process (or a thread of the bench process) belongs to."""
    if name.startswith("ray::ServeReplica:") and name.endswith(":Ingress"):
        return "serve_hop_ingress"
    for stage in ("Detect", "Encode", "Score"):
        if name.startswith("ray::ServeReplica:") and name.endswith(f":{stage}"):
            return f"serve_process_{stage.lower()}"
    if name == "weed" or name.startswith("minio"):
        return "s3_server"
    if name.startswith("tansu") or "kafka" in name and not name.startswith("vigil/"):
        return "kafka_broker"
    if name.startswith("vigil/") and ("network-thread" in name or name.startswith("vigil/kafka-io")):
        return "kafka_client_io"
    if name.startswith("vigil/bench-"):
        return "bench"  # the measurement itself (memory sampler): neither the model nor the path
    if name.startswith("vigil/"):
        return None  # the bench process's stage threads: their stages are counted by the counters
    if name.startswith(("raylet", "gcs_server", "ray::")) or name in ("python", "python3"):
        return "ray_system"
    return "other"


def cost_per_segment(*, segments: int, wall_s: float, cores_by_process: dict[str, float],
                     stage_cpu_s: dict[str, float], replica_cpu_s: dict[str, float]) -> dict[str, Any]:
    """``{"model": {stage: ms}, "fixed_path": {stage: ms}, "source": {...}, totals}`` per scored segment.

    ``cores_by_process``: cores used per process / bench thread over ``wall_s`` (``_cpu_delta``);
    ``stage_cpu_s``: the stage counters' CPU seconds over the window; ``replica_cpu_s``: CPU
    seconds inside Detect / Encode / Score's stage functions (keys ``detect``, ``encode``, ``score``).
    """
    if segments <= 0:
        return {}
    per = 1000.0 / segments
    model = {k: replica_cpu_s.get(k, 0.0) * per for k in MODEL_STAGES}
    fixed: dict[str, float] = {}
    source: dict[str, float] = {}
    for k, v in stage_cpu_s.items():
        (source if k in SOURCE_STAGES else fixed)[k] = v * per
    threads_counted = sum(stage_cpu_s.values())
    bench_threads = 0.0
    for name, cores in cores_by_process.items():
        stage = _process_stage(name)
        cpu_ms = cores * wall_s * per
        if stage == "bench":
            continue
        if stage is None:
            bench_threads += cores * wall_s
        elif stage.startswith("serve_process_"):
            which = stage.removeprefix("serve_process_")
            fixed[f"serve_hop_{which}"] = fixed.get(f"serve_hop_{which}", 0.0) + max(0.0, cpu_ms - model[which])
        else:
            fixed[stage] = fixed.get(stage, 0.0) + cpu_ms
    # what the bench process's threads spent outside every counted stage (queues, futures, logging)
    fixed["unattributed_in_process"] = max(0.0, bench_threads - threads_counted) * per
    fixed = {k: round(v, 2) for k, v in sorted(fixed.items(), key=lambda kv: -kv[1])}
    return {
        "segments": segments,
        "model": {k: round(v, 2) for k, v in model.items()},
        "model_total": round(sum(model.values()), 2),
        "fixed_path": fixed,
        "fixed_path_total": round(sum(fixed.values()), 2),
        "source": {k: round(v, 2) for k, v in source.items()},
    }
