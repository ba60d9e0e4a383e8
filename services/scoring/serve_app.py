"""The Ray Serve scoring application: Detect (CPU) → Encode (batched) → Score.

The three deployments run the three stages of the served detector, the functions of
:mod:`vigil.model.stages` that ``vigil eval`` calls in-process: what is measured is what a
camera runs. One request is one whole segment (never a frame): Serve's per-request overhead
is amortised over T frames. Every deployment is stateless; a camera's state travels with the
request and comes back with the result (the Kafka partition owner keeps it): the detector
state (recent frames, flows, background; in memory) and the score state (JSON, in SQL).

- ``Detect`` (CPU only): boxes from the camera's own running background, optical flow and
  object tubes whose context reaches into the camera's previous segment.
- ``Encode``: the backbone, ``@serve.batch``; GPUs, replicas, batch size and batch wait come
  from configuration; batch size and wait can change live (``user_config``).
- ``Score``: every stream (semantic prompts, forecaster, gate; the camera's object normality
  when it has a trained version) and thresholds; ``reconfigure()`` swaps prompts, thresholds,
  heads and per-camera normality versions in place — the new model is built beside the old
  one and swapped in one assignment, so a request is scored by either, never dropped.

One segment is one composed call from the consumer (:class:`services.scoring.deploy.ServedStages`):
its frames are put into Ray's object store once and read by Detect and Encode from there;
Detect's result goes to Encode and Score by reference (Serve's response passing), never back
through the caller first. The ``Ingress`` front only answers statistics and state.

Deploy from Python with :func:`build_app` (see ``deploy.py``) or with ``serve deploy
services/scoring/serve_config.yaml`` (import path ``services.scoring.serve_app:app``).
"""

from __future__ import annotations

import asyncio
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


def _load_normality(ref: str, camera_id: str, geometry: Any, s3: dict[str, Any] | None = None):
    """A camera's object-normality version from its checkpoint (an artefact reference:
    ``s3://bucket/key`` from the registry, or a local ``normality.pt``), refused when it was
    trained on another object geometry than Detect serves (its tubes would not match)."""
    from vigil.artefacts import fetch
    from vigil.model.normality import NormalityModel

    try:
        path = fetch(ref, s3)
    except (FileNotFoundError, KeyError) as exc:
        raise FileNotFoundError(f"normality version for camera {camera_id!r}: no checkpoint at {ref!r} ({exc}); "
                                f"train one with `vigil train-normal`") from None
    model = NormalityModel.load(path)
    keys = ("mode", "detector", "tube", "work_side")
    got, served = model.config.model_dump(include=set(keys)), geometry.model_dump(include=set(keys))
    if got != served:
        diff = sorted(k for k in keys if got[k] != served[k])
        raise ValueError(f"normality version {ref!r} for camera {camera_id!r} was trained with other {', '.join(diff)} "
                         f"than the Detect deployment serves ({ {k: served[k] for k in diff} }); retrain it, or set "
                         f"the app's detector/objects config to match")
    return model


def _load_model(backbone: str, heads: str | None, streams: list[str] | None, threads: int | None,
                mode: str | None = None, object_store: dict[str, Any] | None = None,
                runtime: dict[str, Any] | None = None):
    """The model with ``heads``: an artefact reference (``s3://`` from the registry, fetched
    on this replica's node and cached by content hash; or a local path). ``runtime``
    (``device``, ``precision``, ``pin_memory`` of the model settings) places the encoder;
    without it the model runs on the CPU in fp32 (Score's heads)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if threads:
        torch.set_num_threads(threads)
    from vigil.model.anomaly import AnomalyModel, resolve_runtime

    from vigil.artefacts import fetch

    rt = dict(runtime or {})
    device, precision = resolve_runtime(rt.get("device", "cpu"), rt.get("precision", "fp32"))
    kw: dict[str, Any] = {"heads": str(fetch(heads, object_store)) if heads else None, "device": device}
    if streams:
        kw["streams"] = tuple(streams)
    if mode:
        kw["mode"] = mode
    return AnomalyModel.create(backbone, **kw).set_runtime(precision, rt.get("pin_memory", False))


def observation(detected: Any) -> Any:
    """The observation in Detect's result ``(observation, detector state)`` (or given alone)."""
    return detected[0] if isinstance(detected, tuple) else detected


class StageCpu:
    """CPU seconds of a replica's process while it is inside its stage function (``with``; calls
    may overlap: the clock runs while any is active), taken and reset by :meth:`take`. Process
    time, not thread time: torch and OpenCV compute on worker threads of their own. The replica's
    process CPU beyond it is the cost of its Serve hop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cpu_s = 0.0
        self.busy_s = 0.0
        self.calls = 0
        self._active = 0
        self._c0 = self._t0 = 0.0

    def __enter__(self) -> None:
        with self._lock:
            if self._active == 0:
                self._c0, self._t0 = time.process_time(), time.perf_counter()
            self._active += 1

    def __exit__(self, *exc: Any) -> None:
        with self._lock:
            self._active -= 1
            self.calls += 1
            if self._active == 0:
                self.cpu_s += time.process_time() - self._c0
                self.busy_s += time.perf_counter() - self._t0

    def take(self) -> dict[str, Any]:
        with self._lock:
            out = {"cpu_s": self.cpu_s, "busy_s": self.busy_s, "calls": self.calls}
            self.cpu_s = self.busy_s = 0.0
            self.calls = 0
        return out


FAMILIES = ("semantic", "predictive", "objects")


def stream_families(streams: list[str] | None) -> tuple[tuple[str, ...], list[str] | None]:
    """The app's ``streams`` setting → (families Score runs, the zero-shot model's own streams).

    ``objects`` is the camera's object normality (when it has a version); ``semantic`` and
    ``predictive`` are the zero-shot model's. Unset: all of them."""
    families = tuple(streams) if streams else FAMILIES
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown stream(s) {unknown} in the scoring app's streams; known: {', '.join(FAMILIES)}")
    zero_shot = [f for f in families if f != "objects"]
    return families, (zero_shot or None)


def geometry_config(detector: dict[str, Any] | None = None, objects: dict[str, Any] | None = None):
    """The object geometry Detect serves (detector, tubes, work size): the normality defaults
    with the app's overrides; a camera's normality version must have been trained on the same."""
    from vigil.model.normality import NormalityConfig

    cfg = dict(objects or {})
    if detector:
        cfg["detector"] = dict(detector)
    return NormalityConfig(**cfg)


@serve.deployment(ray_actor_options={"num_cpus": 0.25})
class Detect:
    """The Detect stage (:func:`vigil.model.stages.detect`); CPU only, no weights for ``motion``."""

    def __init__(self, detector: dict[str, Any] | None = None) -> None:
        pin_serve_replicas_to_loopback()
        self.geometry = geometry_config(detector)
        self.cpu = StageCpu()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        if user_config.get("detector") or user_config.get("objects"):
            self.geometry = geometry_config(user_config.get("detector"), user_config.get("objects"))

    def detect(self, frames: np.ndarray, state: Any = None, fps: float | None = None,
               objects: bool = True) -> tuple[Any, Any]:
        """(Observation, the camera's new detector state); ``objects=False``: boxes only (no flow, no tubes)."""
        from vigil.model import stages

        with self.cpu:
            return stages.detect(frames, state, self.geometry, fps=fps or 4.0, tubes=objects)

    def stats(self) -> dict[str, Any]:
        return self.cpu.take()


@serve.deployment(ray_actor_options={"num_cpus": 1})
class Encode:
    """The backbone: one forward pass per batch of segments feeds every head."""

    def __init__(self, backbone: str, torch_threads: int | None = None, max_batch_size: int = 4,
                 batch_wait_timeout_s: float = 0.02, mode: str | None = None, heads: str | None = None,
                 runtime: dict[str, Any] | None = None) -> None:
        pin_serve_replicas_to_loopback()  # before Serve opens the replica's gRPC server
        # the heads file carries the video head (the encoder's temporal layers): Encode runs it
        self.backbone, self.threads, self.mode, self.runtime = backbone, torch_threads, mode, runtime
        self.heads = self.init_heads = heads
        self.model = _load_model(backbone, heads, None, torch_threads, mode, runtime=runtime)
        self.batch_sizes: list[int] = []
        self.cpu = StageCpu()
        self._lock = threading.Lock()
        self.encode.set_max_batch_size(max_batch_size)
        self.encode.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Batch size, batch wait and the heads (their video head) change live (no restart)."""
        heads = user_config.get("heads") or self.init_heads
        if heads != self.heads:
            self.model = _load_model(self.backbone, heads, None, self.threads, self.mode, user_config.get("object_store"),
                                     runtime=self.runtime)
            self.heads = heads
        if user_config.get("max_batch_size"):
            self.encode.set_max_batch_size(int(user_config["max_batch_size"]))
        if user_config.get("batch_wait_timeout_s") is not None:
            self.encode.set_batch_wait_timeout_s(float(user_config["batch_wait_timeout_s"]))

    @serve.batch(max_batch_size=4, batch_wait_timeout_s=0.02)
    async def encode(self, frames: list[np.ndarray], detected: list[Any]) -> list[Any]:
        """Every segment of the batch (several cameras; each with Detect's result for it) in one
        forward pass (:func:`vigil.model.stages.encode_batch`); a segment's embedding does not
        depend on what shares its batch beyond float rounding (tested to 1e-4), so replays give
        the same events."""
        from vigil.model import stages

        items = [(f, observation(d)) for f, d in zip(frames, detected)]
        with self.cpu:
            out = stages.encode_batch(self.model, items)
        with self._lock:
            self.batch_sizes.append(len(items))
        return out

    def encode_one(self, frames: np.ndarray, obs: Any = None) -> Any:
        """One segment alone (uint8 ``[T, H, W, 3]``, Detect's observation), outside the batcher."""
        from vigil.model import stages

        return stages.encode(self.model, frames, obs)

    def stats(self) -> dict[str, Any]:
        """Batch sizes formed since the last call and the seconds spent encoding (then reset)."""
        with self._lock:
            sizes, self.batch_sizes = self.batch_sizes, []
        cpu = self.cpu.take()
        import ray

        # busy_cpu_s: the process's CPU while encoding (every torch thread); over busy_s it says how
        # many cores the forward passes kept busy
        return {"batch_sizes": sizes, "busy_s": cpu["busy_s"], "busy_cpu_s": cpu["cpu_s"], "version": self.model.version,
                "pid": os.getpid(),
                "node_id": ray.get_runtime_context().get_node_id()}


@serve.deployment(ray_actor_options={"num_cpus": 0.5})
class Score:
    """Heads: semantic prompts, DPC forecast, gate; thresholds. Swapped live by reconfigure()."""

    def __init__(self, backbone: str, heads: str | None = None, streams: list[str] | None = None,
                 torch_threads: int | None = None, mode: str | None = None) -> None:
        pin_serve_replicas_to_loopback()
        self.families, zero_shot_streams = stream_families(streams)  # each stream can be switched off
        self.backbone, self.streams, self.threads, self.mode = backbone, zero_shot_streams, torch_threads, mode
        self.heads = self.init_heads = heads
        self.model = _load_model(backbone, heads, zero_shot_streams, torch_threads, mode)
        self.prompt_sets: dict[str, Any] = {}
        self.thresholds: dict[str, float] = {}
        self.normality: dict[str, Any] = {}  # camera id -> its NormalityModel
        self.normality_refs: dict[str, str] = {}
        self.generation = 0
        self.cpu = StageCpu()

    def reconfigure(self, user_config: dict[str, Any]) -> None:
        """``{"heads": path|None, "prompt_sets": {name: PromptSet}, "thresholds": {camera|"default": x},
        "normality": {camera: artefact ref}, "object_store": S3 settings (to fetch s3:// refs)}``.

        Everything new is built first and swapped in by assignment: a request in flight
        finishes on the old objects, the next one uses the new ones.
        """
        from vigil.model.prompts import PromptSet

        heads = user_config.get("heads") or self.init_heads  # null: the heads the app was built with
        model = self.model
        if heads != self.heads:
            model = _load_model(self.backbone, heads, self.streams, self.threads, self.mode,
                                user_config.get("object_store"))
        prompt_sets = {name: PromptSet.model_validate(ps) for name, ps in (user_config.get("prompt_sets") or {}).items()}
        thresholds = {str(k): float(v) for k, v in (user_config.get("thresholds") or {}).items()}
        for k, v in thresholds.items():
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"threshold for {k!r} must lie in [0, 1], got {v}")
        refs = {str(k): str(v) for k, v in (user_config.get("normality") or {}).items() if v}
        geometry = geometry_config(user_config.get("detector"), user_config.get("objects"))
        loaded = {self.normality_refs[cam]: m for cam, m in self.normality.items()}  # one copy per checkpoint
        normality = {}
        for cam, ref in refs.items():
            if ref not in loaded:
                loaded[ref] = _load_normality(ref, cam, geometry, user_config.get("object_store"))
            normality[cam] = loaded[ref]
        self.model, self.heads, self.prompt_sets, self.thresholds = model, heads, prompt_sets, thresholds
        self.normality, self.normality_refs = normality, refs
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
              camera_id: str | None = None, detected: Any = None, fps: float | None = None) -> dict[str, Any]:
        """The Score stage (:func:`vigil.model.stages.score`) for one camera's segment; ``detected``
        is Detect's result for it (or its observation alone)."""
        from vigil.model import stages

        obs = observation(detected)
        # one model for the whole request, whatever reconfigure does meanwhile
        model, normality, ps = self.model, self.normality.get(camera_id or ""), self._prompt_set(prompt_set)
        with self.cpu:
            res, new_state = stages.score(model, normality, enc, obs, state, ps, fps=fps or 4.0, streams=self.families)
        res["prompt_set"] = f"{prompt_set}@{ps.version}" if ps is not None else None
        res.pop("raw", None)
        res["state"] = new_state
        res["threshold"] = self.thresholds.get(camera_id or "", self.thresholds.get("default"))
        return res

    def stats(self) -> dict[str, Any]:
        return self.cpu.take()

    def has_normality(self, camera_id: str | None) -> bool:
        """Whether this camera is scored by an object-normality version of its own."""
        return "objects" in self.families and (camera_id or "") in self.normality

    def info(self) -> dict[str, Any]:
        """Which process serves and how many configs it has taken (a restart resets both)."""
        return {"pid": os.getpid(), "generation": self.generation, "thresholds": dict(self.thresholds),
                "prompt_sets": sorted(self.prompt_sets), "model_version": self.model.version,
                "normality": {cam: m.version for cam, m in self.normality.items()}}


@serve.deployment(ray_actor_options={"num_cpus": 0})
class Ingress:
    """The application's front: the handles of its stages, their statistics and state. Segments
    do not pass through it: the consumer calls Detect, Encode and Score itself
    (:class:`services.scoring.deploy.ServedStages`), so a segment's frames cross one process
    boundary fewer and no relay process spends CPU on them."""

    def __init__(self, encoder: DeploymentHandle, scorer: DeploymentHandle, detector: DeploymentHandle) -> None:
        pin_serve_replicas_to_loopback()
        self.encoder = encoder
        self.scorer = scorer
        self.detector = detector

    async def encoder_stats(self) -> dict[str, Any]:
        """Encode's batch sizes and busy time since the last call, with the CPU seconds Detect and
        Score spent in their stage functions (the rest of a replica's CPU is its Serve hop)."""
        encode, detect, score = await asyncio.gather(
            self.encoder.stats.remote(), self.detector.stats.remote(), self.scorer.stats.remote())
        return {**encode, "detect": detect, "score": score}

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
    device: str = "auto",
    precision: str = "auto",
    pin_memory: bool = True,
    user_config: dict[str, Any] | None = None,
):
    """The application: Detect, Encode and Score (called in that order by the consumer, see
    :class:`services.scoring.deploy.ServedStages`) behind the Ingress front. ``device``, ``precision`` and
    ``pin_memory`` place the Encode replicas' backbone (``model.*`` settings; auto = the GPU
    its ``encoder_num_gpus`` gives it, fp16 there)."""
    # max_ongoing_requests caps the batch a replica can form: keep it well above the batch size.
    spread = {} if encoder_max_replicas_per_node is None else {"max_replicas_per_node": encoder_max_replicas_per_node}
    enc = Encode.options(
        num_replicas=encoder_replicas, **spread,
        max_ongoing_requests=max(max_ongoing_requests, 2 * max_batch_size),
        user_config={"max_batch_size": max_batch_size, "batch_wait_timeout_s": batch_wait_timeout_s,
                     # the heads Score serves, their video head run here
                     **{k: v for k, v in (user_config or {}).items() if k in ("heads", "object_store")}},
        ray_actor_options={"num_cpus": encoder_num_cpus, "num_gpus": encoder_num_gpus},
    )
    runtime = {"device": device, "precision": precision, "pin_memory": pin_memory}
    enc_args = (backbone, torch_threads, max_batch_size, batch_wait_timeout_s, mode, heads, runtime)
    enc = _pinned(enc, *enc_args).bind(*enc_args)
    # Score checks a camera's normality version against the geometry Detect serves: give it Detect's detector
    sc_config = {**({"detector": detector} if detector else {}), **(user_config or {})}
    sc = Score.options(
        num_replicas=scorer_replicas, max_ongoing_requests=max_ongoing_requests, user_config=sc_config,
        ray_actor_options={"num_cpus": scorer_num_cpus},
    )
    sc_args = (backbone, heads, streams, torch_threads, mode)
    sc = _pinned(sc, *sc_args).bind(*sc_args)
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
