"""``vigil train-normal --camera ID``: learn one camera's normality from its recorded normal period.

The job, start to end (``train_camera``):

1. the camera's :class:`~vigil.models.NormalPeriod` (footage recorded by the scoring worker
   into ``normal/<camera>/``, :mod:`vigil.normal_period`) is cut into clips of consecutive
   segments; the last ``normality.check_fraction`` of them (by time) is held out;
2. a Ray Train job (one worker; it reads the clips from the object store itself, so it can
   run on any node) trains the camera's object normality on the rest
   (:func:`services.trainer.normality.train_normal`: DPC/InfoNCE on object tubes, memory,
   calibration of every fused stream) and reports the checkpoint;
3. the new version is checked on the held-out normal clips through the served stages: the
   fraction of their frames above its own calibration's 99th percentile must stay under
   ``normality.max_check_exceedance`` (about 0.01 when it generalises; an overfit model
   calls held-out normal footage abnormal);
4. it is registered (checkpoint and lineage in the object store, a ``normality`` row for the
   camera) and activated: every Score replica fetches it by its ``s3://`` URI through
   ``reconfigure()``, with no restart.

:class:`NormalPeriodWatcher` runs the job on its own for each camera whose period completes
(``CameraParams.normal_auto_train``).
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vigil.config import S3Settings, Settings
from vigil.db import make_engine, migrate, session_scope
from vigil.models import NormalPeriod, TrainingRun, utcnow
from vigil.normal_period import COMPLETE, FAILED, RECORDING, TRAINED, TRAINING
from vigil.objectstore import ObjectStore

log = logging.getLogger(__name__)


class NormalTrainingError(RuntimeError):
    """The camera's normality cannot be trained (no period, too little footage, a failed check)."""


@dataclass
class NormalOutcome:
    run_id: str
    camera_id: str
    version: str | None
    registered: bool
    activated: bool
    reason: str
    metrics: dict[str, Any]


def period_clips(clips: list[dict[str, Any]], clip_segments: int) -> list[list[dict[str, Any]]]:
    """Recorded segments in order, cut into clips of at most ``clip_segments`` consecutive ones
    (a gap in ``seq`` — a skipped event, a restart — starts a new clip)."""
    ordered = sorted(clips, key=lambda c: (c["t_start"], c["seq"]))
    out: list[list[dict[str, Any]]] = []
    for c in ordered:
        cur = out[-1] if out else None
        if cur is not None and len(cur) < clip_segments and c["seq"] == cur[-1]["seq"] + 1:
            cur.append(c)
        else:
            out.append([c])
    return out


def split_check(clips: list[Any], fraction: float) -> tuple[list[Any], list[Any]]:
    """(train, check): the last ``fraction`` of the clips (at least one) are held out."""
    if len(clips) < 2:
        raise NormalTrainingError(f"the normal period has {len(clips)} clip(s); training and its check need at least 2")
    n_check = min(len(clips) - 1, max(1, round(fraction * len(clips))))
    return clips[:-n_check], clips[-n_check:]


def materialise(store: ObjectStore, clip: list[dict[str, Any]], out: Path) -> Path:
    """Write a clip's segments as a folder of lossless frames (what ``train_normal`` reads):
    the pixels the scorer decoded from the same objects."""
    import cv2

    from vigil.segments import decode_segment

    out.mkdir(parents=True, exist_ok=True)
    i = 0
    for c in clip:
        for f in decode_segment(store.get(c["key"])).frames:
            cv2.imwrite(str(out / f"{i:06d}.png"), cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2BGR))
            i += 1
    return out


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """The Ray Train worker: fetch the training clips, train, report the checkpoint."""
    import os

    import ray.train
    from ray.train import Checkpoint

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vigil.model.anomaly import AnomalyModel

    from .normality import train_normal

    store = ObjectStore(S3Settings.in_worker(config["s3"]))
    work = Path(tempfile.mkdtemp(prefix="vigil-normal-"))
    dirs = [materialise(store, clip, work / f"clip{i:04d}") for i, clip in enumerate(config["train_clips"])]
    zero_shot = AnomalyModel.create(config["backbone"])
    out = work / "out"
    streams = config.get("streams")  # None: the served defaults
    train_normal(dirs, out, fps=config["fps"], steps=config["steps"], seed=config["seed"],
                 threads=config["threads"], zero_shot=zero_shot, progress=False,
                 config={"streams": streams} if streams else None)
    meta = json.loads((out / "normality.json").read_text())
    ray.train.report({"final_loss": meta.get("final_loss") or 0.0, "tubes": meta.get("tubes", 0)},
                     checkpoint=Checkpoint.from_directory(str(out)))


def _fit_with_ray(settings: Settings, run_id: str, loop_cfg: dict[str, Any]):
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    from .run import TRAINING_PREFIX, _s3_filesystem, wait_for_worker_cpus

    cpus = settings.normality.cpus
    wait_for_worker_cpus(cpus)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_cfg,
        scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": cpus}),  # the controller takes no CPU
        run_config=RunConfig(
            name=run_id, storage_path=f"{settings.s3.bucket}/{TRAINING_PREFIX}ray",
            storage_filesystem=_s3_filesystem(settings),
            worker_runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}},
        ),
    )
    return trainer.fit()


def check_exceedance(model: Any, zero_shot: Any, dirs: list[Path], fps: float) -> dict[str, Any]:
    """The new version on held-out normal clips through the served stages: the fraction of
    frames whose object score lies above its calibration's 99th percentile."""
    from vigil.model import stages

    from .normality import served_scores

    objects, _ = served_scores(model, dirs, fps, zero_shot)
    if not objects:
        raise NormalTrainingError("the held-out normal clips gave no object scores (no frames?)")
    q99 = model.calibration[stages.FUSED].q99
    x = np.asarray(objects, dtype=np.float64)
    return {"frames": int(x.size), "exceedance": float(np.mean(x > q99)), "q99": float(q99),
            "median": float(np.median(x)), "p99": float(np.quantile(x, 0.99))}


def _update_period(engine: Any, camera_id: str, **fields: Any) -> None:
    with session_scope(engine) as db:
        row = db.get(NormalPeriod, camera_id)
        for k, v in fields.items():
            setattr(row, k, v)
        row.updated_at = utcnow()
        db.add(row)


def train_camera(settings: Settings, camera_id: str, *, steps: int | None = None, activate: bool = True,
                 force: bool = False, seed: int = 0, echo: Callable[[str], None] = print) -> NormalOutcome:
    """Train, check, register and (``activate``) serve ``camera_id``'s normality; see the module doc.

    ``force``: train on a period still recording (what it has so far)."""
    from vigil.model.anomaly import AnomalyModel
    from vigil.model.normality import NormalityModel

    from . import registry
    from .run import _serve_running, update_run

    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    with session_scope(engine) as db:
        period = db.get(NormalPeriod, camera_id)
        if period is None:
            raise NormalTrainingError(
                f"camera {camera_id!r} has no normal period: its first camera params normal_period_s seconds of "
                "scored footage are recorded once it streams (is normal_period_s 0, or the camera id wrong?)")
        if period.status == RECORDING and not force:
            raise NormalTrainingError(
                f"camera {camera_id!r} is still recording its normal period ({period.recorded_s:.0f} of "
                f"{period.target_s:.0f} s); wait, or pass --force to train on what it has")
        if period.status == TRAINING and not force:
            raise NormalTrainingError(f"camera {camera_id!r} is being trained by run {period.run_id}")
        db.expunge(period)
    store = ObjectStore(settings.s3)
    cfg = settings.normality
    steps = steps or cfg.steps
    run_id = f"normal-{camera_id}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    clips = period_clips(period.clips, cfg.clip_segments)
    train, check = split_check(clips, cfg.check_fraction)
    keys = [c["key"] for clip in clips for c in clip]
    digest = hashlib.sha256("\n".join(keys).encode()).hexdigest()[:16]
    parent = registry.active_normality(engine).get(camera_id)
    backbone = settings.model.backbone
    with session_scope(engine) as db:
        db.add(TrainingRun(id=run_id, status="running", base_model_version=parent.id if parent else "zero-shot",
                           params={"kind": "normality", "camera_id": camera_id, "steps": steps, "seed": seed,
                                   "train_clips": len(train), "check_clips": len(check), "data_digest": digest}))
    status_before = period.status
    _update_period(engine, camera_id, status=TRAINING, run_id=run_id, error=None)
    echo(f"run {run_id}: camera {camera_id}, {len(train)} training clips + {len(check)} held out "
         f"({period.recorded_s:.0f} s recorded), {steps} steps, parent {parent.id if parent else 'zero-shot'}")
    try:
        t0 = time.monotonic()
        result = _fit_with_ray(settings, run_id, {
            "s3": settings.s3.for_workers(),
            "train_clips": train, "fps": period.fps or 4.0, "steps": steps, "seed": seed,
            "threads": cfg.torch_threads, "backbone": backbone, "streams": cfg.streams,
        })
        if result.error:
            raise NormalTrainingError(f"training failed: {result.error}")
        with result.checkpoint.as_directory() as d:
            checkpoint = (Path(d) / "normality.pt").read_bytes()
            meta = json.loads((Path(d) / "normality.json").read_text())
        train_s = time.monotonic() - t0
        work = Path(tempfile.mkdtemp(prefix="vigil-normal-check-"))
        (work / "normality.pt").write_bytes(checkpoint)
        candidate = NormalityModel.load(work / "normality.pt")
        zero_shot = AnomalyModel.create(backbone)
        dirs = [materialise(store, clip, work / f"check{i:04d}") for i, clip in enumerate(check)]
        chk = check_exceedance(candidate, zero_shot, dirs, period.fps or 4.0)
        ok = chk["exceedance"] <= cfg.max_check_exceedance
        reason = (f"{chk['exceedance']:.3f} of {chk['frames']} held-out normal frames above the calibration's "
                  f"99th percentile ({'≤' if ok else '>'} {cfg.max_check_exceedance})")
        echo(f"check: {'PASSED' if ok else 'refused'}: {reason}")
        metrics = {"check": {**chk, "passed": ok, "max_exceedance": cfg.max_check_exceedance, "clips": len(check)},
                   "train": {"seconds": round(train_s, 1), "final_loss": meta.get("final_loss"), "tubes": meta.get("tubes"),
                             "steps": steps}}
        version = registry.normality_version_id(candidate.version)
        activated = False
        if ok:
            lineage = {
                "parent": parent.id if parent else None, "run_id": run_id, "backbone": backbone,
                "data": {"digest": digest, "camera_id": camera_id, "recorded_s": period.recorded_s,
                         "hours_utc": period.hours, "started_at": period.started_at, "ended_at": period.ended_at,
                         "train_clips": [[c["key"] for c in clip] for clip in train],
                         "check_clips": [[c["key"] for c in clip] for clip in check]},
                "config": {"normality": cfg.model_dump(mode="json"), "model": candidate.config.model_dump(mode="json")},
                "metrics": metrics, "checkpoint": result.checkpoint.path,
            }
            registry.register_normality(engine, store, camera_id=camera_id, digest=candidate.version, backbone=backbone,
                                        checkpoint=checkpoint, lineage=lineage, metrics=metrics,
                                        description=f"camera {camera_id}: trained by {run_id}")
            echo(f"registered {version}")
            if activate:
                registry.activate(settings, engine, store, version, serve=_serve_running(settings))
                activated = True
                echo(f"activated {version} for camera {camera_id}")
        update_run(engine, run_id, status="succeeded", output_model_version=version if ok else None,
                   finished_at=utcnow(), metrics={**metrics, "registered": ok, "activated": activated})
        _update_period(engine, camera_id, status=TRAINED if ok else FAILED, model_version=version if ok else None,
                       error=None if ok else f"check refused the new version: {reason}")
        return NormalOutcome(run_id, camera_id, version if ok else None, ok, activated, reason, metrics)
    except BaseException as exc:
        update_run(engine, run_id, status="failed", finished_at=utcnow(), metrics={"error": str(exc)[:2000]})
        # a period that was complete stays trainable; the error says why the run failed
        _update_period(engine, camera_id, status=FAILED if status_before != RECORDING else RECORDING,
                       error=str(exc)[:2000])
        raise


class NormalPeriodWatcher:
    """Trains each camera whose normal period is complete (and whose params ask for it), one at a time."""

    def __init__(self, settings: Settings, *, steps: int | None = None, echo: Callable[[str], None] | None = None) -> None:
        self.settings, self.steps = settings, steps
        self.echo = echo or log.info
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="normal-period-watcher", daemon=True)
        self.outcomes: list[NormalOutcome] = []
        self.errors: dict[str, str] = {}

    def start(self) -> NormalPeriodWatcher:
        self.thread.start()
        return self

    def due(self) -> list[str]:
        from sqlmodel import Session, select

        engine = make_engine(self.settings.database_url)
        with Session(engine) as db:
            cams = db.exec(select(NormalPeriod.camera_id).where(NormalPeriod.status == COMPLETE)).all()
        return [c for c in cams if self.settings.params_for(c).normal_auto_train]

    def run_once(self) -> int:
        n = 0
        for cam in self.due():
            if self.stop.is_set():
                break
            try:
                self.outcomes.append(train_camera(self.settings, cam, steps=self.steps, echo=self.echo))
                n += 1
            except Exception as exc:  # noqa: BLE001  recorded on the period row; the next camera still trains
                self.errors[cam] = str(exc)
                log.error("camera %s: automatic normality training failed: %s", cam, exc)
        return n

    def run(self) -> None:
        while not self.stop.wait(self.settings.normality.watch_interval_s):
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001  (SQL briefly unreachable): try again next round
                log.warning("normal-period watcher: %s", exc)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)
