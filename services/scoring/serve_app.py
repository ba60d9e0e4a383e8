"""The Ray Serve scoring application: Detect (CPU) → Encode (batched) → Score, behind one ingress.

One request is one whole segment (never a frame): Serve's per-request overhead is
amortised over T frames. Every deployment is stateless; a camera's state travels with the
request and comes back with the result (the Kafka partition owner keeps it).

- ``Detect`` (CPU only): object-centric mode's boxes, a fresh detector per segment (so the
  result does not depend on which replica saw which segment before).
- ``Encode``: the backbone, ``@serve.batch``; GPUs, replicas, batch size and batch wait come
  from configuration; batch size and wait can change live (``user_config``).
- ``Score``: heads (semantic prompts, forecaster, gate) and thresholds; ``reconfigure()``
  swaps prompts, thresholds and heads in place — the new model is built beside the old one
  and swapped in one assignment, so a request is scored by either, never dropped.

Deploy from Python with :func:`build_app` (see ``deploy.py``) or with ``serve deploy
services/scoring/serve_config.yaml`` (import path ``services.scoring.serve_app:app``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from ray import serve
from ray.serve.handle import DeploymentHandle

from vigil.loopback import pin_serve_replicas_to_loopback

log = logging.getLogger(__name__)

SERVE_CONFIG = Path(__file__).with_name("serve_config.yaml")


def _load_model(backbone: str, heads: str | None, streams: list[str] | None, threads: int | None,
                mode: str | None = None):
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if threads:
        torch.set_num_threads(threads)
    from vigil.model.anomaly import AnomalyModel

    kw: dict[str, Any] = {"heads": heads}
    if streams:
        kw["streams"] = tuple(streams)
    if mode:
        kw["mode"] = mode
    return AnomalyModel.create(backbone, **kw)


class _FixedBoxes:
    """A detector that returns boxes found elsewhere (by the Detect deployment)."""

    def __init__(self, boxes: list[list[tuple[int, int, int, int]]]) -> None:
        self.boxes = boxes

    def detect(self, frames: np.ndarray) -> list[list[tuple[int, int, int, int]]]:
        return self.boxes


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class Detect:
    """Object detector for object-centric mode; CPU only, no weights for ``motion``."""

    def __init__(self, detector: dict[str, Any] | None = None) -> None:
        pin_serve_replicas_to_loopback()
        self.config = detector or {"type": "motion"}

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        if user_config.get("detector"):
            self.config = dict(user_config["detector"])

    def detect(self, frames: np.ndarray) -> list[list[tuple[int, int, int, int]]]:
        from vigil.model.detectors import build_detector

        return build_detector(self.config).detect(frames)


@serve.deployment(ray_actor_options={"num_cpus": 1})
class Encode:
    """The backbone: one forward pass per segment feeds every head."""

    def __init__(self, backbone: str, torch_threads: int | None = None, max_batch_size: int = 4,
                 batch_wait_timeout_s: float = 0.02, mode: str | None = None) -> None:
        pin_serve_replicas_to_loopback()  # before Serve opens the replica's gRPC server
        self.model = _load_model(backbone, None, None, torch_threads, mode)
        self.batch_sizes: list[int] = []
        self.busy_s = 0.0
        self.busy_cpu_s = 0.0
        self._lock = threading.Lock()
        self.encode.set_max_batch_size(max_batch_size)
        self.encode.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Batch size and batch wait change live (no restart)."""
        if user_config.get("max_batch_size"):
            self.encode.set_max_batch_size(int(user_config["max_batch_size"]))
        if user_config.get("batch_wait_timeout_s") is not None:
            self.encode.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.02)
    async def encode(self, items: list[tuple[np.ndarray, Any]]) -> list[Any]:
        t0, c0 = time.perf_counter(), time.thread_time()
        # One forward per segment inside the batch: the result must not depend on which other
        # cameras happened to share the batch (deterministic scores, identical events on replay).
        out = [self.encode_one(frames, boxes) for frames, boxes in items]
        with self._lock:
            self.batch_sizes.append(len(items))
            self.busy_s += time.perf_counter() - t0
            self.busy_cpu_s += time.thread_time() - c0  # < busy_s when the forward waits for a core
        return out

    def encode_one(self, frames: np.ndarray, boxes: list | None = None) -> Any:
        """One segment (uint8 ``[T, H, W, 3]``), with Detect's boxes in object mode."""
        dets = None if boxes is None else [_FixedBoxes(boxes)]
        return self.model.encode_frames([frames], detectors=dets)[0]

    def stats(self) -> dict[str, Any]:
        """Batch sizes formed since the last call and the seconds spent encoding (then reset)."""
        with self._lock:
            sizes, self.batch_sizes = self.batch_sizes, []
            busy, self.busy_s = self.busy_s, 0.0
            busy_cpu, self.busy_cpu_s = self.busy_cpu_s, 0.0
        import ray

        return {"batch_sizes": sizes, "busy_s": busy, "busy_cpu_s": busy_cpu, "version": self.model.version, "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id()}


@serve.deployment(ray_actor_options={"num_cpus": 0.5})
class Score:
    """Heads: semantic prompts, DPC forecast, gate; thresholds. Swapped live by reconfigure()."""

    def __init__(self, backbone: str, heads: str | None = None, streams: list[str] | None = None,
                 torch_threads: int | None = None, mode: str | None = None) -> None:
        pin_serve_replicas_to_loopback()
        self.backbone, self.streams, self.threads, self.mode = backbone, streams, torch_threads, mode
        self.heads = self.init_heads = heads
        self.model = _load_model(backbone, heads, streams, torch_threads, mode)
        self.prompt_sets: dict[str, Any] = {}
        self.thresholds: dict[str, float] = {}
        self.generation = 0

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """``{"heads": path|None, "prompt_sets": {name: PromptSet}, "thresholds": {camera|"default": x}}``.

        Everything new is built first and swapped in by assignment: a request in flight
        finishes on the old objects, the next one uses the new ones.
        """
        from vigil.model.prompts import PromptSet

        heads = user_config.get("heads") or self.init_heads  # null: the heads the app was built with
        model = self.model
        if heads != self.heads:
            model = _load_model(self.backbone, heads, self.streams, self.threads, self.mode)
        prompt_sets = {name: PromptSet.model_validate(ps) for name, ps in (user_config.get("prompt_sets") or {}).items()}
        thresholds = {str(k): float(v) for k, v in (user_config.get("thresholds") or {}).items()}
        for k, v in thresholds.items():
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"threshold for {k!r} must lie in [0, 1], got {v}")
        self.model, self.heads, self.prompt_sets, self.thresholds = model, heads, prompt_sets, thresholds
        self.generation += 1

    def _prompt_set(self, name: str | None):
        if not name:
            return None
        ps = self.prompt_sets.get(name)
        if ps is None:
            from vigil.model.prompts import load_prompt_set

            ps = self.prompt_sets[name] = load_prompt_set(name)
        return ps

    def score(self, enc: Any, state: dict[str, Any] | None, prompt_set: str | None,
              camera_id: str | None = None) -> dict[str, Any]:
        from vigil.model.anomaly import CameraState

        model = self.model  # one model for the whole request, whatever reconfigure does meanwhile
        cam_state = CameraState.from_dict(state) if state else CameraState.from_dict({})
        res, new_state = model.score(enc, cam_state, self._prompt_set(prompt_set))
        thr = self.thresholds.get(camera_id or "", self.thresholds.get("default"))
        return {
            "score": float(res.score),
            "s_sem": None if res.s_sem is None else float(res.s_sem),
            "s_pred": None if res.s_pred is None else float(res.s_pred),
            "gate": None if res.gate is None else float(res.gate),
            "frame_scores": [float(x) for x in res.frame_scores],
            "top_descriptions": [
                {"text": t, "prob": float(p), "abnormal": bool(a)} for t, p, a in res.top_descriptions
            ],
            "state": new_state.to_dict(),
            "model_version": model.version,
            "threshold": thr,
        }

    def info(self) -> dict[str, Any]:
        """Which process serves and how many configs it has taken (a restart resets both)."""
        return {"pid": os.getpid(), "generation": self.generation, "thresholds": dict(self.thresholds),
                "prompt_sets": sorted(self.prompt_sets), "model_version": self.model.version}


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Ingress:
    def __init__(self, encoder: DeploymentHandle, scorer: DeploymentHandle,
                 detector: DeploymentHandle | None = None) -> None:
        pin_serve_replicas_to_loopback()
        self.encoder = encoder
        self.scorer = scorer
        self.detector = detector

    async def score_segment(self, frames: np.ndarray, state: dict[str, Any] | None, prompt_set: str | None,
                            camera_id: str | None = None) -> dict[str, Any]:
        enc = await self.encode_segment(frames)
        return await self.scorer.score.remote(enc, state, prompt_set, camera_id)

    async def encode_segment(self, frames: np.ndarray) -> Any:
        """Detect + Encode only. Stateless, so a client may run it ahead of the segment's turn
        and pass the response to ``Score.score`` once the camera's previous segment is scored."""
        boxes = await self.detector.detect.remote(frames) if self.detector is not None else None
        return await self.encoder.encode.remote((frames, boxes))

    async def encoder_stats(self) -> dict[str, Any]:
        return await self.encoder.stats.remote()

    async def scorer_info(self) -> dict[str, Any]:
        return await self.scorer.info.remote()


def _pinned(dep: Any, *init_args: Any) -> Any:
    """Give a deployment a code version derived from this file and its constructor arguments.

    Serve's Python API otherwise stamps every ``serve.run`` with a random version, so a
    deploy that only changes ``user_config`` would restart the replicas; with a stable
    version it calls ``reconfigure()`` on the live ones (no restart, requests keep flowing),
    while a change of code or arguments still rolls the replicas.
    """
    h = hashlib.sha1(Path(__file__).read_bytes())
    h.update(repr(init_args).encode())
    dep._version = f"vigil-{h.hexdigest()[:16]}"
    return dep


def build_app(
    backbone: str,
    *,
    heads: str | None = None,
    streams: list[str] | None = None,
    mode: str | None = None,
    detector: dict[str, Any] | None = None,
    encoder_replicas: int = 1,
    scorer_replicas: int = 1,
    detector_replicas: int = 1,
    max_batch_size: int = 4,
    batch_wait_timeout_s: float = 0.02,
    max_ongoing_requests: int = 32,
    encoder_num_cpus: float = 1,
    encoder_num_gpus: float = 0,
    scorer_num_cpus: float = 0.5,
    encoder_max_replicas_per_node: int | None = None,
    torch_threads: int | None = None,
    user_config: dict[str, Any] | None = None,
):
    """The application graph. Detect is part of it only in object mode (``mode="object"``)."""
    # max_ongoing_requests caps the batch a replica can form: keep it well above the batch size.
    spread = {} if encoder_max_replicas_per_node is None else {"max_replicas_per_node": encoder_max_replicas_per_node}
    enc = Encode.options(
        num_replicas=encoder_replicas, **spread,
        max_ongoing_requests=max(max_ongoing_requests, 2 * max_batch_size),
        user_config={"max_batch_size": max_batch_size, "batch_wait_timeout_s": batch_wait_timeout_s},
        ray_actor_options={"num_cpus": encoder_num_cpus, "num_gpus": encoder_num_gpus},
    )
    enc_args = (backbone, torch_threads, max_batch_size, batch_wait_timeout_s, mode)
    enc = _pinned(enc, *enc_args).bind(*enc_args)
    sc = Score.options(
        num_replicas=scorer_replicas, max_ongoing_requests=max_ongoing_requests, user_config=user_config or {},
        ray_actor_options={"num_cpus": scorer_num_cpus},
    )
    sc_args = (backbone, heads, streams, torch_threads, mode)
    sc = _pinned(sc, *sc_args).bind(*sc_args)
    det = None
    if mode == "object":
        det = Detect.options(
            num_replicas=detector_replicas, max_ongoing_requests=max_ongoing_requests,
            user_config={"detector": detector or {"type": "motion"}}, ray_actor_options={"num_cpus": 0.25},
        )
        det = _pinned(det, detector).bind(detector)
    ing = Ingress.options(max_ongoing_requests=4 * max_ongoing_requests, ray_actor_options={"num_cpus": 0})
    return _pinned(ing, mode).bind(enc, sc, det)


def default_args() -> dict[str, Any]:
    """The ``args`` of the application in ``serve_config.yaml`` (the packaged defaults)."""
    import yaml

    cfg = yaml.safe_load(SERVE_CONFIG.read_text())
    (entry,) = cfg["applications"]
    return dict(entry.get("args") or {})


def app(args: dict[str, Any]):
    """Application builder for ``serve deploy`` / KubeRay (import path
    ``services.scoring.serve_app:app``): ``args`` from the serve config YAML, over the
    defaults in ``services/scoring/serve_config.yaml``."""
    return build_app(**{**default_args(), **(args or {})})
