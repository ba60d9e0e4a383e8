"""One training run, end to end (what ``vigil train`` does).

1. A ``training_runs`` row (status ``running``) — the dashboard and the CLI follow it.
2. Training set from the object store and feedback (:mod:`.dataset`).
3. Encoder features of every clip through the cache (:mod:`.features`), computed with the
   active (parent) version's encoder, once per (encoder version, clip).
4. Packed training data → object store; a Ray Train ``TorchTrainer`` fits the heads
   (:mod:`.loop`); checkpoints go to the object store (``training/ray/<run id>/``) and a
   killed worker makes Ray Train restart the group from the last one.
5. Candidate vs active version on held-out data (:mod:`.evaluate`); registered only if it
   passes the gate, with lineage (:mod:`.registry`); activated through Serve's
   ``reconfigure`` when asked.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from vigil.config import Settings
from vigil.db import make_engine, migrate, session_scope
from vigil.models import TrainingRun, utcnow
from vigil.objectstore import ObjectStore

from .config import TrainConfig
from .dataset import TrainingSet, build_training_set
from .evaluate import calibrated_states, evaluate, gate_decision, score_clip
from .features import ClipFeatures, FeatureCache
from .loop import HEADS_FILE, Packed

log = logging.getLogger(__name__)

TRAINING_PREFIX = "training/"


@dataclass
class TrainOutcome:
    run_id: str
    status: str  # succeeded (registered) | rejected (gate) | failed
    parent: str | None
    candidate: str | None
    registered: bool
    activated: bool
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- progress (SQL row)


def update_run(engine: Any, run_id: str, **fields: Any) -> None:
    with session_scope(engine) as db:
        row = db.get(TrainingRun, run_id)
        if row is None:
            return
        metrics = fields.pop("metrics", None)
        if metrics is not None:
            row.metrics = {**(row.metrics or {}), **metrics}
        for k, v in fields.items():
            setattr(row, k, v)
        db.add(row)


def _progress_callback(db_url: str, run_id: str):
    from ray.train import UserCallback

    class Progress(UserCallback):
        """Runs on the Ray Train controller: every epoch's report lands in the run's SQL row."""

        _engine = None

        def after_report(self, run_context, metrics, checkpoint):  # noqa: ANN001
            if not metrics:
                return
            if self._engine is None:
                self._engine = make_engine(db_url)
            m = {k: v for k, v in metrics[0].items() if isinstance(v, (int, float))}
            epoch = int(m.get("epoch", -1)) + 1
            total = int(m.get("epochs", 0)) or 1
            update_run(self._engine, run_id,
                       metrics={"progress": {"epoch": epoch, "epochs": total, "fraction": epoch / total,
                                             "loss": m.get("loss"), "resumed_from": m.get("resumed_from"),
                                             "checkpoint": checkpoint.path if checkpoint else None,
                                             "at": time.time()}})

    return Progress()


def read_progress(engine: Any, run_id: str) -> dict[str, Any]:
    with session_scope(engine) as db:
        row = db.get(TrainingRun, run_id)
        return {} if row is None else {"status": row.status, **(row.metrics or {})}


# ---------------------------------------------------------------- data packing


def camera_context(ts: TrainingSet, feats: dict[str, ClipFeatures]) -> dict[str, np.ndarray]:
    out = {}
    for cam in ts.cameras:
        clips = ts.select(split="train", source="calibration", camera=cam) or ts.select(camera=cam)
        v = np.concatenate([feats[c.clip_id].seg for c in clips]).mean(0)
        out[cam] = (v / max(np.linalg.norm(v), 1e-8)).astype(np.float32)
    return out


def pack(parent, ts: TrainingSet, feats: dict[str, ClipFeatures], cfg: TrainConfig) -> Packed:
    """Training arrays: every segment of the training clips, the parent's ``s_pred`` of each
    (gate input) and DPC windows from normal clips."""
    states = calibrated_states(parent, ts, feats)
    glob = camera_context(ts, feats)
    L = cfg.dpc_context + cfg.dpc_horizon
    rows: dict[str, list] = {k: [] for k in ("frame", "seg", "glob", "label", "weight", "s_pred", "verified")}
    windows = []
    for c in ts.select(split="train"):
        f = feats[c.clip_id]
        sp = score_clip(parent, f, states.get(c.camera_id)).s_pred
        w = cfg.data.false_positive_weight if c.source == "false_positive" else 1.0
        seg_lab = (f.labels.mean(axis=1) >= 0.5).astype(np.float32)
        rows["frame"].append(f.frame)
        rows["seg"].append(f.seg)
        rows["glob"].append(np.repeat(glob[c.camera_id][None], len(f), 0))
        rows["label"].append(seg_lab)
        rows["weight"].append(np.full(len(f), w, np.float32))
        rows["s_pred"].append(sp.astype(np.float32))
        rows["verified"].append(np.full(len(f), float(c.source != "calibration"), np.float32))
        if c.label == 0 and len(f) >= L:
            windows += [f.seg[i : i + L] for i in range(len(f) - L + 1)]
    d = f.seg.shape[1]
    return Packed(
        **{k: np.concatenate(v).astype(np.float32) for k, v in rows.items()},
        windows=np.stack(windows).astype(np.float32) if windows else np.zeros((0, L, d), np.float32),
    )


# ---------------------------------------------------------------- the run


def _s3_filesystem(settings: Settings):
    import pyarrow.fs as pafs

    s3 = settings.s3
    return pafs.S3FileSystem(
        access_key=s3.access_key, secret_key=s3.secret_key.get_secret_value(), endpoint_override=s3.endpoint,
        scheme="https" if s3.secure else "http", region=s3.region, allow_bucket_creation=False,
    )


def wait_for_worker_cpus(needed: float, timeout_s: float = 180.0) -> None:
    """Fail fast instead of waiting forever for workers the cluster cannot place.

    Ray Train waits without a deadline for its placement group; on a machine whose CPUs are
    held by, say, a Serve app, ``vigil train`` would hang silently. More CPUs than the
    cluster has is an error at once; CPUs held by others are waited for, bounded.
    """
    import ray

    total = ray.cluster_resources().get("CPU", 0.0)
    if total < needed:
        raise RuntimeError(
            f"training needs {needed:g} CPUs (train.scaling.num_workers × cpus_per_worker) but the Ray "
            f"cluster has {total:g}: lower the scaling settings or add nodes"
        )
    deadline = time.monotonic() + timeout_s
    while (free := ray.available_resources().get("CPU", 0.0)) < needed - 1e-9:
        if time.monotonic() > deadline:
            raise RuntimeError(
                f"training needs {needed:g} free CPUs but only {free:g} of {total:g} were free for "
                f"{timeout_s:.0f}s (see `ray status`; a Serve app may hold them): stop what holds them "
                "or lower train.scaling"
            )
        time.sleep(1.0)


def fit_with_ray(settings: Settings, cfg: TrainConfig, *, run_id: str, backbone: str, ps, data_key: str,
                 parent_heads_key: str | None, fail_at_epoch: int | None = None):
    """Ray Train ``TorchTrainer.fit``; returns the ``Result`` (checkpoint in the object store)."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig
    from ray.train.torch import TorchTrainer

    from .loop import train_loop_per_worker

    loop_cfg = {
        "train": cfg.model_dump(mode="json"), "s3": settings.s3.for_workers(),
        "data_key": data_key, "prompt_set": ps.model_dump(mode="json"), "backbone": backbone,
        "parent_heads_key": parent_heads_key, "fail_at_epoch": fail_at_epoch,
    }
    wait_for_worker_cpus(cfg.scaling.num_workers * cfg.scaling.cpus_per_worker)
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_cfg,
        scaling_config=cfg.scaling.ray(),
        run_config=RunConfig(
            name=run_id,
            storage_path=f"{settings.s3.bucket}/{TRAINING_PREFIX}ray",
            storage_filesystem=_s3_filesystem(settings),
            failure_config=FailureConfig(max_failures=cfg.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
            callbacks=[_progress_callback(settings.database_url, run_id)],
            worker_runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1"}},
        ),
    )
    return trainer.fit()


def run_training(
    settings: Settings, cfg: TrainConfig, *, run_id: str | None = None, echo: Callable[[str], None] = print,
    fail_at_epoch: int | None = None,
) -> TrainOutcome:
    """Train, evaluate, gate, register and (optionally) activate; see the module doc."""
    from vigil.model.prompts import load_prompt_set

    from . import registry
    from .loop import build_model

    run_id = run_id or f"train-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    store = ObjectStore(settings.s3)
    ps = load_prompt_set(cfg.prompt_set or settings.model.prompt_set)
    active = registry.active_version(engine)
    # the parent's heads only fit the backbone they were trained on: it wins over the default
    backbone = cfg.backbone or (active.backbone if active and active.backbone else settings.model.backbone)
    parent_id = active.id if active else None
    with session_scope(engine) as db:
        db.add(TrainingRun(id=run_id, status="running", base_model_version=parent_id or "zero-shot",
                           params=cfg.model_dump(mode="json")))
    echo(f"run {run_id}: parent {parent_id or 'zero-shot'}, backbone {backbone}")
    try:
        work = Path(tempfile.mkdtemp(prefix="vigil-train-"))
        parent_path = registry.local_heads(settings, store, parent_id) if parent_id else None
        from vigil.model.anomaly import AnomalyModel

        parent = AnomalyModel.create(backbone, heads=parent_path, prompt_set=ps)
        ts = build_training_set(store, engine, cfg.data)
        echo(f"training set {ts.digest}: {ts.summary()}")
        cache = FeatureCache(store, parent, cfg.data.frames_per_segment)
        t0 = time.monotonic()
        feats = {c.clip_id: cache.get(c) for c in ts.clips}
        echo(f"features: {cache.hits} cached, {cache.misses} computed ({time.monotonic() - t0:.1f}s)")
        data = pack(parent, ts, feats, cfg)
        prefix = f"{TRAINING_PREFIX}runs/{run_id}/"
        data_key = prefix + "train.npz"
        store.put(data_key, data.to_bytes())
        store.put(prefix + "dataset.json", json.dumps(ts.to_dict()).encode(), content_type="application/json")
        update_run(engine, run_id, metrics={"data": {"digest": ts.digest, "summary": ts.summary(),
                                                     "segments": int(len(data.seg)), "windows": int(len(data.windows)),
                                                     "features_cached": cache.hits, "features_computed": cache.misses}})
        echo(f"fitting heads on {len(data.seg)} segments, {len(data.windows)} DPC windows, "
             f"{cfg.scaling.num_workers} Ray Train workers")
        result = fit_with_ray(settings, cfg, run_id=run_id, backbone=backbone, ps=ps, data_key=data_key,
                              parent_heads_key=registry.heads_key(registry.digest_of(parent_id)) if parent_id else None,
                              fail_at_epoch=fail_at_epoch)
        if result.error:
            raise RuntimeError(f"training failed: {result.error}")
        with result.checkpoint.as_directory() as d:
            heads_bytes = (Path(d) / HEADS_FILE).read_bytes()
        cand_path = work / HEADS_FILE
        cand_path.write_bytes(heads_bytes)
        candidate = AnomalyModel.create(backbone, heads=cand_path, prompt_set=ps)
        thr = (lambda cam: cfg.gate.threshold) if cfg.gate.threshold is not None else (
            lambda cam: settings.params_for(cam).threshold)
        m_active = evaluate(parent, ts, feats, thr)
        m_cand = evaluate(candidate, ts, feats, thr)
        ok, reason = gate_decision(m_cand, m_active, auc_tolerance=cfg.gate.auc_tolerance,
                                   fa_tolerance=cfg.gate.fa_tolerance, miss_tolerance=cfg.gate.miss_tolerance)
        brief = lambda m: {k: m[k] for k in ("auc", "ap", "fa_per_hour", "false_alarms", "normal_hours", "misses",  # noqa: E731
                                             "abnormal_segments", "missed_events", "anomaly_events", "feedback")}
        metrics = {"candidate": brief(m_cand), "active": brief(m_active), "gate": {"passed": ok, "reason": reason},
                   "train": {k: v for k, v in (result.metrics or {}).items() if isinstance(v, (int, float))}}
        echo(f"gate: {'PASSED' if ok else 'rejected'} ({reason})")
        activated = False
        if ok:
            lineage = {"parent": parent_id, "run_id": run_id, "backbone": backbone, "prompt_set": ps.model_dump(),
                       "data": {"digest": ts.digest, "manifest": prefix + "dataset.json", "summary": ts.summary(),
                                "feature_encoder": cache.version},
                       "config": cfg.model_dump(mode="json"), "metrics": metrics,
                       "checkpoint": result.checkpoint.path}
            registry.register_version(engine, store, version_id=candidate.version, backbone=backbone,
                                      heads_bytes=heads_bytes, lineage=lineage, metrics=metrics,
                                      description=f"trained by {run_id}")
            echo(f"registered {candidate.version}")
            if cfg.activate:
                registry.activate(settings, engine, store, candidate.version, serve=_serve_running(settings))
                activated = True
                echo(f"activated {candidate.version}")
        status = "succeeded" if ok else "rejected"
        # the table's statuses are pending|running|succeeded|failed: a gate rejection is a
        # finished run whose metrics say registered=false
        update_run(engine, run_id, status="succeeded",
                   output_model_version=candidate.version if ok else None, finished_at=utcnow(),
                   metrics={**metrics, "registered": ok, "activated": activated})
        return TrainOutcome(run_id, status, parent_id, candidate.version, ok, activated, reason, metrics)
    except BaseException as exc:
        update_run(engine, run_id, status="failed", finished_at=utcnow(), metrics={"error": str(exc)[:2000]})
        raise


def _serve_running(settings: Settings) -> bool:
    """Whether the scoring app is deployed on the Ray this process is connected to."""
    try:
        from ray import serve

        return settings.serve.app_name in serve.status().applications
    except Exception:  # noqa: BLE001 (no Ray / no Serve: nothing to reconfigure)
        return False
