"""``vigil bench``: N SynthCity cameras through the real embedded stack, against the bare detector.

One run measures, on the same machine and model:

1. **bare** throughput of the served detector: the same stage functions (Detect with the
   camera's state, Encode with the same backbone and threads, Score) in a tight in-process
   loop — the limit of this machine (named "bare encoder" in records before the served
   detector became one). Measured before and after the end-to-end run (the machine is
   shared; both are reported, their mean is the reference).
2. **end to end**: cameras → ingest (JPEG, S3, Kafka) → scoring worker (prefetch/decode,
   Serve Detect/Encode/Score, SQL sink, offsets) on the real embedded stack (Tansu, SeaweedFS,
   SQLite, Ray on loopback). Throughput is frames in rows committed per second over the
   busy window; latency is segment end → committed row (``scored_at - t_end``).

The cameras' frames are rendered before the clock starts and replayed in real time from
image folders (a real camera's pixels cost the scoring machine nothing); camera starts
are staggered over one segment so their segments do not all end at the same instant.
``load`` sets the offered frame rate as a fraction of the bare throughput measured first
(``load=0.5``: half load; ``load>=1.2``: saturation).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import subprocess
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from services.bench.cost import cost_per_segment

log = logging.getLogger(__name__)


@dataclass
class BenchResult:
    bare_fps: float
    e2e_fps: float
    ratio: float
    latency_p50_s: float
    latency_p95_s: float
    latency_p99_s: float
    segment_compute_s: float
    latency_p95_over_compute: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d


# ---------------------------------------------------------------- inputs


def render_cameras(n: int, n_frames: int, out_dir: Path, *, width: int = 320, height: int = 240,
                   fps: float = 4.0, seed0: int = 1_000_000) -> list[Path]:
    """Render ``n`` SynthCity cameras (held-out seeds, scenes round-robin) into JPEG folders."""
    import cv2

    from vigil.synthcity import SCENES, SynthCamera

    dirs = []
    for i in range(n):
        d = out_dir / f"cam{i:02d}"
        d.mkdir(parents=True, exist_ok=True)
        cam = SynthCamera(SCENES[i % len(SCENES)], seed0 + i, width=width, height=height, fps=fps,
                          anomaly_rate=0.1, warmup_s=2.0)
        for k, (frame, _info) in zip(range(n_frames), cam.frames()):
            cv2.imwrite(str(d / f"{k:06d}.jpg"), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR),
                        [cv2.IMWRITE_JPEG_QUALITY, 95])
        dirs.append(d)
    return dirs


def _sample_segments(folder: Path, n: int, t: int) -> list[np.ndarray]:
    import cv2

    files = sorted(folder.glob("*.jpg"))[: n * t]
    frames = [cv2.cvtColor(cv2.imread(str(f)), cv2.COLOR_BGR2RGB) for f in files]
    return [np.stack(frames[i * t:(i + 1) * t]) for i in range(len(frames) // t)]


# ---------------------------------------------------------------- bare encoder


def bare_encoder_fps(model: Any, segments: list[np.ndarray], *, batch_size: int, seconds: float = 20.0,
                     warmup: int = 1, fps: float = 4.0) -> dict[str, float]:
    """Frames/s of the served detector's bare loop for about ``seconds``: ``batch_size`` cameras
    through the very stage functions the Serve deployments run (:mod:`vigil.model.stages`: Detect
    with each camera's state carried along, Encode of all their segments as one batch, Score), in
    one process, with nothing around them — the limit the end-to-end rate is compared with.
    ``segments`` are one clip's, in order; camera ``k`` starts ``k`` segments into it, and each
    pass over the clip starts a camera cold."""
    import torch

    from services.scoring.serve_app import geometry_config
    from vigil.model import stages

    geometry = geometry_config()
    n = len(segments)

    def step(i: int, cams: list[list[Any]]) -> int:
        """Segment ``i`` of every camera through Detect → Encode (one batch) → Score; frames done."""
        items = []
        for k, cam in enumerate(cams):
            j = (i + k) % n
            if j == 0:
                cam[0] = cam[1] = None  # the clip starts again: a new camera stream
            obs, cam[0] = stages.detect(segments[j], cam[0], geometry, fps=fps, tubes=False)  # zero-shot: boxes only
            items.append((segments[j], obs))
        for cam, enc, (seg, obs) in zip(cams, stages.encode_batch(model, items), items):
            _res, cam[1] = stages.score(model, None, enc, obs, cam[1], fps=fps)
        return sum(len(seg) for seg, _ in items)

    with torch.no_grad():
        cams: list[list[Any]] = [[None, None] for _ in range(batch_size)]  # per camera: detector state, score state
        for i in range(warmup):
            step(i, cams)
        frames = n_seg = 0
        t0 = time.perf_counter()
        i = warmup
        while time.perf_counter() - t0 < seconds or n_seg == 0:
            frames += step(i, cams)
            n_seg += batch_size
            i += 1
        dt = time.perf_counter() - t0
    return {"fps": frames / dt, "segment_s": dt / n_seg, "segments": n_seg, "seconds": dt}


def _bare_process(backbone: str, threads: int | None, segments: list[np.ndarray], batch_size: int, seconds: float,
                  barrier: Any, out: Any) -> None:
    """One encoder process of the parallel bare reference (spawned: a fresh torch per process)."""
    model = _load_bare_model(backbone, threads)
    model.encode_frames([segments[0]])  # warm before the common start
    barrier.wait()
    out.put(bare_encoder_fps(model, segments, batch_size=batch_size, seconds=seconds))


def parallel_bare_fps(backbone: str, threads: int | None, segments: list[np.ndarray], *, replicas: int,
                      batch_size: int, seconds: float) -> dict[str, float]:
    """The machine's limit for an Encode layout of ``replicas`` replicas × ``threads`` threads:
    that many bare loops in separate processes, started together; their frames/s summed.
    With one replica it is the in-process loop itself."""
    if replicas == 1:
        model = _load_bare_model(backbone, threads)
        try:
            return bare_encoder_fps(model, segments, batch_size=batch_size, seconds=seconds)
        finally:
            del model
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, out = ctx.Barrier(replicas), ctx.Queue()
    procs = [ctx.Process(target=_bare_process, args=(backbone, threads, segments, batch_size, seconds, barrier, out),
                         daemon=True) for _ in range(replicas)]
    for p in procs:
        p.start()
    try:
        parts = [out.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    fps = sum(r["fps"] for r in parts)
    return {"fps": fps, "segment_s": float(np.mean([r["segment_s"] for r in parts])),
            "segments": sum(r["segments"] for r in parts), "seconds": max(r["seconds"] for r in parts)}


def _load_bare_model(backbone: str, threads: int | None):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if threads:
        torch.set_num_threads(threads)
    from vigil.model.anomaly import AnomalyModel

    return AnomalyModel.create(backbone)


# ---------------------------------------------------------------- resources


class _MemorySampler(threading.Thread):
    """Peak RSS of this process and all its children (Ray workers, broker, S3), sampled at 2 Hz."""

    def __init__(self) -> None:
        super().__init__(daemon=True, name="bench-sampler")  # the bench's own cost: kept out of the fixed path
        self.stop = threading.Event()
        self.peak_mb = 0.0
        self.peak_by_name: dict[str, float] = {}

    def run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.stop.wait(0.5):
            total = 0.0
            by: Counter[str] = Counter()
            try:
                procs = [me, *me.children(recursive=True)]
            except psutil.Error:
                continue
            for p in procs:
                try:
                    rss, label = p.memory_info().rss / 2**20, _label(p)
                except psutil.Error:
                    continue
                total += rss
                by[label] += rss
            if total > self.peak_mb:
                self.peak_mb, self.peak_by_name = total, dict(by)


class BenchLoadError(ValueError):
    """The requested load cannot be offered with these cameras."""


def _max_camera_fps() -> float:
    """The highest segment fps the camera config accepts (``CameraParams.fps``)."""
    from annotated_types import Le

    from vigil.config import CameraParams

    return float(next(m.le for m in CameraParams.model_fields["fps"].metadata if isinstance(m, Le)))


def _label(p: Any) -> str:
    """A process's short name for the per-process tables (Ray actors by their ``ray::`` title)."""
    return _short(p, " ".join(p.cmdline()[:1])[-40:] or p.name())


def _short(p: Any, name: str) -> str:
    try:
        title = p.name()
    except Exception:  # noqa: BLE001
        title = name
    if "ray::" in title or "ray::" in name:
        # Ray retitles an actor while it runs a method ("ray::…:Ingress.handle_request…"):
        # without the method, both snapshots name the same process the same way
        return re.sub(r"\.\w+$", "", title.split(" ")[0])
    return title[:30]


def _cpu_snapshot() -> dict[str, float]:
    """CPU seconds (user + system) so far of every process of the run, by short name, and of
    this process's threads by thread name (cameras, worker, ...): the difference of two
    snapshots says where the machine's cores went."""
    import psutil

    out: Counter[str] = Counter()
    me = psutil.Process()
    try:
        procs = [me, *me.children(recursive=True)]
    except psutil.Error:
        procs = [me]
    for p in procs[1:]:
        try:
            t = p.cpu_times()
            out[_label(p)] += t.user + t.system
        except psutil.Error:
            continue
    names = {th.native_id: th.name.split(" ")[0].rstrip("-0123456789") or th.name for th in threading.enumerate()}
    live = 0.0
    for th in me.threads():
        out[f"vigil/{names.get(th.id, 'other')}"] += th.user_time + th.system_time
        live += th.user_time + th.system_time
    # threads that have ended (the cameras, once their footage is streamed) leave the thread
    # list but not the process total: without this their CPU vanished from the record
    t = me.cpu_times()
    out["vigil/ended threads"] = max(0.0, t.user + t.system - live)
    return dict(out)


def _cpu_delta(a: dict[str, float], b: dict[str, float], wall: float) -> dict[str, float]:
    """Cores used per process over the window (CPU seconds / wall seconds), largest first."""
    d = {k: (b.get(k, 0.0) - a.get(k, 0.0)) / max(1e-9, wall) for k in b}
    return {k: round(v, 3) for k, v in sorted(d.items(), key=lambda kv: -kv[1]) if v >= 0.005}


def _host_cpu() -> Any:
    import psutil

    return psutil.cpu_times()


def _steal_share(a: Any, b: Any) -> float | None:
    """Share of the machine's CPU time the hypervisor gave to other guests between two
    :func:`_host_cpu` readings (a shared VM's noise: it slows bare and end-to-end alike, but
    not evenly over time, so it is reported per phase)."""
    total = sum(b) - sum(a)
    steal = getattr(b, "steal", 0.0) - getattr(a, "steal", 0.0)
    return round(steal / total, 3) if total > 0 else None


def _ingest_totals(health: list[Any]) -> dict[str, int]:
    return {"frames_read": sum(h.frames for h in health), "segments_published": sum(h.segments for h in health),
            "segments_dropped": sum(h.dropped for h in health)}


def _encoder_cpus(replicas: int) -> float:
    """Ray CPUs reserved per Encode replica so that all replicas plus Score (0.5) fit the node."""
    cpus = max(2, os.cpu_count() or 2)
    return 1.0 if replicas == 1 else round(min(1.0, (cpus - 0.5) / replicas), 3)


def _stage_totals() -> dict[str, tuple[float, float]]:
    from vigil import metrics

    out = {}
    for m in metrics.STAGE_SECONDS.collect():
        sums = {s.labels["stage"]: s.value for s in m.samples if s.name.endswith("_sum")}
        counts = {s.labels["stage"]: s.value for s in m.samples if s.name.endswith("_count")}
        out = {k: (sums[k], counts.get(k, 0.0)) for k in sums}
    return out


def _stage_cpu() -> dict[str, float]:
    """CPU seconds so far of every fixed-path stage counted in this process (ingest, worker)."""
    from vigil import metrics

    out: dict[str, float] = {}
    for m in metrics.STAGE_CPU_SECONDS.collect():
        for smp in m.samples:
            if smp.name.endswith("_total"):
                out[smp.labels["stage"]] = smp.value
    return out


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True,
                              cwd=Path(__file__).resolve().parents[2]).stdout.strip()
    except Exception:  # noqa: BLE001
        return None


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q)) if xs else float("nan")


# ---------------------------------------------------------------- the run


def run_bench(
    cameras: int,
    seconds: float,
    model: str,
    json_out: Path | None = None,
    *,
    load: float | None = None,
    fps: float = 4.0,
    frames_per_segment: int = 16,
    batch_size: int = 4,
    threads: int | None = 2,
    replicas: int = 1,
    bare_seconds: float = 20.0,
    drain_s: float | None = None,
    warmup_segments: int | None = None,
    state_dir: Path | None = None,
    width: int = 320,
    height: int = 240,
    echo: Any = print,
) -> BenchResult:
    """Run the benchmark; returns the result and writes it as JSON to ``json_out``."""
    import tempfile

    from infra.embedded import EmbeddedStack
    from services.ingest.runner import IngestService
    from services.scoring.deploy import deploy_scoring_app, handle_score_fn
    from services.scoring.sink import Sink
    from services.scoring.worker import ScoringWorker
    from vigil.bus import ensure_topics, make_consumer, make_producer
    from vigil.config import CameraConfig, FramesSource, load_settings
    from vigil.db import make_engine
    from vigil.models import SegmentScore
    from vigil.objectstore import ObjectStore

    t_all = time.perf_counter()
    work = Path(state_dir or tempfile.mkdtemp(prefix="vigil-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    T = frames_per_segment

    # 1. bare encoder, first half of the reference
    echo(f"bench: {model}, {cameras} cameras, T={T}, batch {batch_size}, "
         f"{replicas} encoder replica(s) x {threads} thread(s)")
    probe = render_cameras(1, 4 * T, work / "probe", width=width, height=height, fps=fps, seed0=1_050_000)
    probe_segs = _sample_segments(probe[0], 4, T)
    h0 = _host_cpu()
    bare1 = parallel_bare_fps(model, threads, probe_segs, replicas=replicas, batch_size=batch_size,
                              seconds=bare_seconds)
    steal = {"bare_before": _steal_share(h0, _host_cpu())}
    echo(f"bare detector (before): {bare1['fps']:.1f} frames/s, {bare1['segment_s']:.3f} s per segment")
    if load is not None:
        fps = max(0.05, load * bare1["fps"] / cameras)
        echo(f"offered load {load:.2f} x bare -> {fps:.2f} fps per camera")
        max_fps = _max_camera_fps()
        if fps > max_fps:  # fail before rendering and starting the stack, with the way out
            raise BenchLoadError(
                f"--load {load} of the bare {bare1['fps']:.0f} frames/s over {cameras} cameras is {fps:.1f} fps "
                f"per camera, above the {max_fps:g} fps a camera may run at: use --cameras "
                f"{math.ceil(load * bare1['fps'] / max_fps)} or more")
    import gc

    gc.collect()

    # 2. cameras: rendered now, replayed in real time from image folders
    n_frames = int(seconds * fps) + T
    dirs = render_cameras(cameras, n_frames, work / "frames", width=width, height=height, fps=fps)
    seg_s = T / fps
    settings = load_settings(
        None, state_dir=work / "state",
        model={"backbone": model, "torch_threads": threads},
        serve={"max_batch_size": batch_size, "max_ongoing_requests": max(32, 4 * batch_size),
               "encoder_replicas": replicas, "encoder_num_cpus": _encoder_cpus(replicas)},
        kafka={"partitions": max(4, cameras)},
        ray={"num_cpus": max(2, os.cpu_count() or 2)},
        camera_defaults={"fps": fps, "frames_per_segment": T, "max_side": max(width, height)},
        cameras=[CameraConfig(id=f"cam{i:02d}", source=FramesSource(path=d, fps=fps, realtime=True))
                 for i, d in enumerate(dirs)],
    )
    if any(c.params.frames_per_segment != T or c.params.fps != fps for c in settings.cameras):
        raise RuntimeError("bench cameras did not take the bench's fps / frames per segment")
    import cv2

    # this process now plays ingest and the consumer, which run OpenCV single-threaded
    # (vigil.segments.single_threaded_codec); the bare loop after the run gets the threads back
    cv2_threads = cv2.getNumThreads()
    mem = _MemorySampler()
    mem.start()
    stack = EmbeddedStack(settings)
    s = stack.start()
    result: BenchResult | None = None
    try:
        ensure_topics(s.kafka)
        engine = make_engine(s.database_url)
        t0 = time.perf_counter()
        handle = deploy_scoring_app(s)
        score_fn = handle_score_fn(handle, timeout_s=600)
        score_fn.stats()  # waits for the replicas; resets their counters
        echo(f"Serve app up in {time.perf_counter() - t0:.1f}s")
        worker = ScoringWorker(
            s, score_fn=score_fn, sink=Sink(engine), store=ObjectStore(s.s3),
            producer=make_producer(s.kafka, "bench-scoring"),
            consumer=make_consumer(s.kafka, group="bench", client_id="bench"),
            max_inflight=max(32, 2 * cameras), max_parallel=max(8, cameras), stats_fn=lambda: {},
        )
        # warm every replica's first forward (allocations, lazy init) outside the measurement
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2 * replicas) as pool:
            list(pool.map(lambda seg: score_fn(seg, None, None, "bench-warmup"), probe_segs[:1] * (2 * replicas)))
        wth = threading.Thread(target=worker.run, name="worker", daemon=True)
        wth.start()
        joined = time.monotonic() + 60
        while not worker.consumer.assignment() and time.monotonic() < joined:
            time.sleep(0.2)  # the consumer joins its group before the cameras start
        stages0, stage_cpu0 = _stage_totals(), _stage_cpu()
        score_fn.stats()
        replica_cpu = {"detect": 0.0, "encode": 0.0, "score": 0.0}

        def take_stats() -> None:
            nonlocal busy_s
            st = score_fn.stats()
            batch_sizes.extend(st["batch_sizes"])
            busy_s += st["busy_s"]
            replica_cpu["encode"] += st.get("busy_cpu_s", 0.0)
            for k in ("detect", "score"):
                replica_cpu[k] += (st.get(k) or {}).get("cpu_s", 0.0)

        ingest_producer = make_producer(s.kafka, "bench-ingest")
        ingest = IngestService(s, ObjectStore(s.s3), ingest_producer, buffer_segments=64)
        # staggered starts: camera i begins i/N of a segment later
        t_ingest = time.time()
        cpu0, h0 = _cpu_snapshot(), _host_cpu()
        ingest.start(stagger_s=seg_s / cameras)
        batch_sizes: list[int] = []
        busy_s = 0.0
        expected = cameras * (n_frames // T)
        deadline = time.monotonic() + seconds + seg_s + (drain_s if drain_s is not None else seconds)
        while time.monotonic() < deadline:
            time.sleep(2.0)
            take_stats()
            from sqlmodel import Session, func, select

            with Session(engine) as db:
                n = db.exec(select(func.count()).select_from(SegmentScore)).one()
            ingest_totals = _ingest_totals(ingest.health())
            echo(f"  t={time.time() - t_ingest:5.0f}s read {ingest_totals['frames_read']} frames, published "
                 f"{ingest_totals['segments_published']} segments, scored {n}")
            if ingest.join(timeout=0) and n >= ingest_totals["segments_published"]:
                break
        take_stats()
        cpu1, t_cpu1, stage_cpu1 = _cpu_snapshot(), time.time(), _stage_cpu()
        replica_cpu_window = dict(replica_cpu)
        steal["e2e"] = _steal_share(h0, _host_cpu())
        ingest_totals = _ingest_totals(ingest.health())
        ingest.shutdown(10)
        worker.stop.set()
        wth.join(60)
        take_stats()
        stages1 = _stage_totals()
        t_end = time.time()

        from sqlmodel import Session, select

        with Session(engine) as db:
            rows = sorted(db.exec(select(SegmentScore.scored_at, SegmentScore.t_end, SegmentScore.segment_id)).all())
        worker.close()
        for producer in (worker.producer, ingest_producer):  # before the broker stops: no reconnect storm
            producer.close(timeout=5)
        mem.stop.set()

        # 3. bare encoder again (the second half of the reference), with the stack idle
        cv2.setNumThreads(cv2_threads)
        h0 = _host_cpu()
        bare2 = parallel_bare_fps(model, threads, probe_segs, replicas=replicas, batch_size=batch_size,
                                  seconds=bare_seconds)
        steal["bare_after"] = _steal_share(h0, _host_cpu())
        echo(f"bare detector (after): {bare2['fps']:.1f} frames/s")
    finally:
        mem.stop.set()
        stack.stop()

    def ts(d: datetime) -> float:
        return (d if d.tzinfo else d.replace(tzinfo=UTC)).timestamp()

    skip = warmup_segments if warmup_segments is not None else min(cameras, max(0, len(rows) // 10))
    used = rows[skip:]
    # from the capture of the segment's last frame (its t_end is one frame period later)
    lat = [ts(sa) - (ts(te) - 1.0 / fps) for sa, te, _ in used]
    if len(used) >= 2:
        # busy window: from the commit before the first counted row to the last commit
        w0 = ts(rows[skip - 1][0]) if skip > 0 else ts(rows[0][0]) - seg_s
        w1 = ts(used[-1][0])
        e2e_fps = len(used) * T / max(1e-9, w1 - w0)
    else:
        e2e_fps = float("nan")
    bare_fps = (bare1["fps"] + bare2["fps"]) / 2
    seg_compute = (bare1["segment_s"] + bare2["segment_s"]) / 2  # one segment on one replica
    stage = {}
    for k, (sm, ct) in stages1.items():
        s0, c0 = stages0.get(k, (0.0, 0.0))
        if ct - c0 > 0:
            stage[k] = {"mean_s": (sm - s0) / (ct - c0), "count": int(ct - c0)}
    p95 = _pct(lat, 95)
    wall = t_end - t_ingest
    cores = _cpu_delta(cpu0, cpu1, t_cpu1 - t_ingest)
    cost = cost_per_segment(
        segments=len(rows), wall_s=t_cpu1 - t_ingest, cores_by_process=cores,
        stage_cpu_s={k: v - stage_cpu0.get(k, 0.0) for k, v in stage_cpu1.items() if v - stage_cpu0.get(k, 0.0) > 0},
        replica_cpu_s=replica_cpu_window)
    result = BenchResult(
        bare_fps=round(bare_fps, 3), e2e_fps=round(e2e_fps, 3), ratio=round(e2e_fps / bare_fps, 4),
        latency_p50_s=round(_pct(lat, 50), 3), latency_p95_s=round(p95, 3), latency_p99_s=round(_pct(lat, 99), 3),
        segment_compute_s=round(seg_compute, 4), latency_p95_over_compute=round(p95 / seg_compute, 3),
        extra={
            "model": model, "cameras": cameras, "seconds": seconds, "fps_per_camera": round(fps, 4),
            "offered_fps": round(fps * cameras, 3), "load": None if load is None else load,
            "offered_over_bare": round(fps * cameras / bare_fps, 3),
            "frames_per_segment": T, "frame_size": [width, height], "batch_size": batch_size,
            "torch_threads": threads, "encoder_replicas": replicas,
            "bare_fps_before": round(bare1["fps"], 3), "bare_fps_after": round(bare2["fps"], 3),
            "latency_from": "capture of the segment's last frame (t_end - 1/fps) to its committed row",
            "segments_expected": expected, "ingest": ingest_totals, "segments_scored": len(rows), "segments_counted": len(used),
            "warmup_segments_skipped": skip,
            "stage_seconds": stage,
            "encoder_busy_s": round(busy_s, 2),
            # CPU of the Encode process while encoding over the wall time: cores the forward passes kept busy
            "encoder_cpu_over_busy": round(replica_cpu["encode"] / max(1e-9, busy_s), 3), "encoder_utilisation": round(busy_s / max(1e-9, wall), 3),
            # the encoder's own rate inside its Serve replica during the run (same load as e2e)
            "encode_fps_in_replica": round(len(rows) * T / max(1e-9, busy_s), 3),
            "batch_size_hist": {str(k): v for k, v in sorted(Counter(batch_sizes).items())},
            "cores_by_process": cores,
            # CPU ms per scored segment: the model's stages and every stage of the fixed path around it
            "cpu_ms_per_segment": cost,
            "peak_rss_mb": round(mem.peak_mb, 1),
            "peak_rss_mb_by_process": {k: round(v, 1) for k, v in sorted(mem.peak_by_name.items(), key=lambda kv: -kv[1])[:8]},
            "host": {"cpus": os.cpu_count(), "loadavg_before": [round(x, 2) for x in load_before],
                     "loadavg_after": [round(x, 2) for x in os.getloadavg()], "gpu": None,
                     "cpu_steal_share": steal},
            "git_commit": _git_commit(), "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_s": round(time.perf_counter() - t_all, 1),
        },
    )
    out = result.to_dict()
    echo(json.dumps({k: out[k] for k in ("bare_fps", "e2e_fps", "ratio", "latency_p95_s", "segment_compute_s",
                                          "latency_p95_over_compute", "segments_scored")}))
    if cost:
        echo(f"CPU ms per segment: model {cost['model_total']} {cost['model']}; fixed path {cost['fixed_path_total']} "
             f"{cost['fixed_path']}")
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(out, indent=2))
    return result
