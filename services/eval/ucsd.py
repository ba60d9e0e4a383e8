"""`vigil eval ucsd|avenue|shanghaitech`: train on a dataset's normal clips (or load a
checkpoint), score every test frame with the served detector — the very Detect → Encode →
Score functions the Serve deployments call (:mod:`vigil.model.stages`), segment by segment,
with the camera state carried along — and write the frame-level metrics.

- ``auc``: pooled frame-level ROC AUC over all test frames, on the scores exactly as the
  live scorer emits them (no per-video normalisation — a live camera cannot do that).
- ``auc_video_norm``: the same after per-video min-max normalisation, as many papers report.
- ``ap``: pooled average precision (abnormal = positive).

The same protocol serves every one-class layout with normal training clips and frame labels
(:data:`READERS`: UCSD Ped1/Ped2, CUHK Avenue, ShanghaiTech); clips are read segment by
segment, so long videos never sit in memory whole.

Each test clip is scored as one camera stream starting cold (fresh detector background,
empty DPC context, empty smoothing tail). Segments are ``segment_frames`` consecutive
frames at the source frame rate, so every test frame gets a score.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from vigil.datasets import read_avenue, read_shanghaitech, read_ucsd

READERS = {"ucsd": read_ucsd, "avenue": read_avenue, "shanghaitech": read_shanghaitech}


def frame_metrics(scores: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> dict[str, float]:
    """Pooled ROC AUC and AP, and the AUC after per-video min-max normalisation."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.concatenate(labels).astype(int)
    s = np.concatenate(scores).astype(np.float64)
    norm = []
    for v in scores:
        v = np.asarray(v, dtype=np.float64)
        rng = v.max() - v.min()
        norm.append((v - v.min()) / rng if rng > 0 else np.zeros_like(v))
    return {
        "auc": float(roc_auc_score(y, s)),
        "auc_video_norm": float(roc_auc_score(y, np.concatenate(norm))),
        "ap": float(average_precision_score(y, s)),
    }


DEFAULT_ZERO_SHOT = "vigil-tiny"  # the served default backbone (services/scoring/serve_config.yaml)
ALL_STREAMS = ("semantic", "predictive", "objects")


def zero_shot_model(backbone: str | None):
    """The served zero-shot model for ``backbone`` (None: no zero-shot streams)."""
    if not backbone:
        return None
    from vigil.model.anomaly import AnomalyModel

    return AnomalyModel.create(backbone)


def run_dataset_eval(
    root: str | Path,
    json_out: str | Path | None = None,
    checkpoint: str | Path | None = None,
    clips: Sequence[str] | None = None,
    steps: int | None = None,
    *,
    train_clips: Sequence[str] | None = None,
    config: dict[str, Any] | None = None,
    seed: int = 0,
    work_dir: str | Path | None = None,
    segment_frames: int = 16,
    fps: float | None = None,
    ablation: bool = False,
    progress: bool = True,
    threads: int | None = 1,
    dataset: str = "ucsd",
    backbone: str | None = DEFAULT_ZERO_SHOT,
    through_stack: bool = False,
    settings: Any = None,
    train_minutes: float | None = None,
    at_fps: float | None = None,
) -> dict[str, Any]:
    """Evaluate on a dataset root (``dataset``: a key of :data:`READERS`); returns the metrics
    and writes them to ``json_out`` when given.

    ``checkpoint``: a trained ``normality.pt``; without it a model is trained on the
    training clips (``train_clips`` names a subset, ``steps`` the number of steps, ``config``
    overrides :class:`~vigil.model.dpc.NormalityConfig`) into ``work_dir`` (a temporary
    folder by default). ``clips`` names a subset of test clips. ``ablation`` also scores
    the same model with each stream alone and with the fixed (even) gate. ``fps``: the
    footage's frame rate (default: the dataset's own, e.g. 10 for UCSD, 25 for Avenue).
    ``backbone``: the zero-shot model served beside the camera's normality (the served
    default); None scores the object streams alone.

    ``through_stack``: the test clips become cameras of the real stack (ingest → object store +
    Kafka → Serve → SQL) and the metrics come from the SQL rows (:mod:`services.eval.stack`);
    ``settings`` of a running stack (endpoints resolved), or a fresh embedded stack is started
    in the work folder. The zero-shot backbone is then the stack's ``model.backbone``.

    ``at_fps``: train and score the footage as a camera at this rate would have recorded it
    (e.g. the live default, 4): every clip, normal and test, is resampled first
    (:func:`~vigil.datasets.base.resample_clip`) and the labels with it.
    """
    import torch

    from services.trainer.normality import train_normal
    from vigil.model.normality import NormalityModel
    from vigil.model.stages import score_clip

    if threads:
        torch.set_num_threads(threads)
    if dataset not in READERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {sorted(READERS)}")
    read = READERS[dataset]
    root = Path(root)
    test = read(root, "testing")
    source_fps = float(fps or test[0].fps)
    if clips is not None:
        wanted = set(clips)
        test = [c for c in test if c.name in wanted]
        if not test:
            raise ValueError(f"no test clip of {root} is named in {sorted(wanted)}")
    train_seconds = None
    tmp = None
    if work_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix=f"vigil-{dataset}-")
        work_dir = tmp.name
    fps = source_fps
    if at_fps is not None:
        test = _resampled(test, source_fps, at_fps, Path(work_dir) / f"at_{at_fps:g}fps" / "testing", progress)
        fps = float(at_fps)
    if through_stack:
        from vigil.config import load_settings

        if ablation:
            raise ValueError("--ablation runs offline only (a stream switched off is another served app)")
        settings = settings or load_settings(None, state_dir=Path(work_dir) / "stack",
                                             model={"backbone": backbone or DEFAULT_ZERO_SHOT})
        backbone = settings.model.backbone
    zero_shot = zero_shot_model(backbone)
    if checkpoint is None:
        training = read(root, "training")
        if train_clips is not None:
            training = [c for c in training if c.name in set(train_clips)]
        if at_fps is not None:
            training = _resampled(training, source_fps, at_fps, Path(work_dir) / f"at_{at_fps:g}fps" / "training",
                                  progress)
        kwargs: dict[str, Any] = {} if steps is None else {"steps": steps}
        if train_minutes is not None:  # a live camera's normal period: the first minutes of normal footage
            kwargs["max_seconds"] = 60.0 * train_minutes
        t0 = time.perf_counter()
        checkpoint = train_normal(
            [c.source for c in training], work_dir, fps=fps, seed=seed, config=config,
            progress=progress, threads=threads, zero_shot=zero_shot, **kwargs,
        )
        train_seconds = time.perf_counter() - t0
    model = NormalityModel.load(checkpoint)
    meta = torch.load(checkpoint, map_location="cpu", weights_only=False).get("meta", {})
    if train_seconds is None:
        train_seconds = meta.get("train_seconds")

    base = (list(model.config.streams), model.config.gate)
    served = ALL_STREAMS if zero_shot is not None else ("objects",)
    # name: (served streams, object sub-streams, object gate)
    variants: dict[str, tuple[tuple[str, ...], list[str], str]] = {"main": (served, base[0], base[1])}
    if ablation:
        variants["objects_only"] = (("objects",), base[0], base[1])
        if zero_shot is not None:
            variants["zero_shot_only"] = (("semantic", "predictive"), base[0], base[1])
        if len(base[0]) > 1:
            variants.update({f"{k}_only": (("objects",), [k], base[1]) for k in base[0]})
            variants.update({f"without_{k}": (served, [j for j in base[0] if j != k], base[1]) for k in base[0]})
            variants["fixed_gate"] = (("objects",), base[0], "fixed")
            variants["max_gate"] = (served, base[0], "max")
            if base[1] != "context":
                variants["context_gate"] = (served, base[0], "context")
    labels = [c.labels for c in test]
    result: dict[str, Any] = {}
    for name, (streams, sub, gate) in variants.items():
        model.config.streams, model.config.gate = sub, gate
        t0 = time.perf_counter()
        if through_stack:
            stack_run = _through_stack(settings, test, checkpoint, fps, segment_frames, progress)
            scores = stack_run["scores"]
        else:
            scores = [score_clip(zero_shot, model, c.iter_frames(), fps, model.config, segment_frames=segment_frames,
                                 streams=streams) for c in test]
        seconds = time.perf_counter() - t0
        m = frame_metrics(scores, labels)
        if name == "main":
            per_clip = {}
            for c, s in zip(test, scores):
                entry = {"frames": int(len(s)), "abnormal": int(c.labels.sum()), "mean_score": float(np.mean(s))}
                if 0 < c.labels.sum() < len(c.labels):
                    from sklearn.metrics import roc_auc_score

                    entry["auc"] = float(roc_auc_score(c.labels, s))
                per_clip[c.name] = entry
            result = {
                "dataset": root.name,
                "path": "stack" if through_stack else "offline",
                **m,
                "frames": int(sum(len(s) for s in scores)),
                "train_seconds": train_seconds,
                "train_minutes": train_minutes,
                "train_frames": meta.get("train_frames"),
                "score_fps": float(sum(len(s) for s in scores) / seconds),
                "per_clip": per_clip,
                "segment_frames": segment_frames,
                "fps": fps,
                "source_fps": source_fps,
                "streams": list(streams),
                "model_version": "+".join(
                    ([zero_shot.version] if zero_shot is not None else []) + [f"normality:{model.version}"]),
                **({"stack": {k: v for k, v in stack_run.items() if k != "scores"}} if through_stack else {}),
                "checkpoint_meta": {k: v for k, v in meta.items() if k != "clips"},
                "config": model.config.model_dump(),
                "scores": {c.name: [round(float(x), 5) for x in s] for c, s in zip(test, scores)},
            }
        else:
            result.setdefault("ablation", {})[name] = {"streams": list(streams), "object_streams": sub, "gate": gate, **m}
    model.config.streams, model.config.gate = base
    if json_out is not None:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(result, indent=2))
    if tmp is not None:
        tmp.cleanup()
    return result


def _resampled(clips: Sequence[Any], source_fps: float, at_fps: float, out: Path, progress: bool) -> list[Any]:
    from dataclasses import replace

    from tqdm.auto import tqdm

    from vigil.datasets.base import resample_clip

    return [resample_clip(replace(c, fps=source_fps), at_fps, out / c.name)
            for c in tqdm(clips, desc=f"resampling to {at_fps:g} fps", unit="clip", disable=not progress)]


def _through_stack(settings: Any, test: Sequence[Any], checkpoint: Any, fps: float, segment_frames: int,
                   progress: bool) -> dict[str, Any]:
    """The test clips through a running stack, or through a fresh embedded one (stopped after)."""
    from services.eval.stack import score_through_stack

    if settings.kafka.bootstrap_servers and settings.s3.endpoint and settings.ray.address:
        return score_through_stack(settings, test, checkpoint, fps=fps, segment_frames=segment_frames, progress=progress)
    from infra.embedded import EmbeddedStack

    with EmbeddedStack(settings) as resolved:
        try:
            return score_through_stack(resolved, test, checkpoint, fps=fps, segment_frames=segment_frames,
                                       progress=progress)
        finally:
            import ray

            ray.shutdown()


def run_ucsd_eval(root: str | Path, json_out: str | Path | None = None, **kwargs: Any) -> dict[str, Any]:
    """:func:`run_dataset_eval` on a UCSD Ped1/Ped2 root."""
    return run_dataset_eval(root, json_out, dataset="ucsd", **kwargs)
