"""Deploy the Serve scoring app on the configured Ray and get a scoring function for the worker."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from vigil.config import Settings

log = logging.getLogger(__name__)


def default_score_config() -> dict[str, Any]:
    """Score's ``user_config`` from serve_config.yaml (thresholds, prompt sets, heads)."""
    import yaml

    from .serve_app import SERVE_CONFIG

    cfg = yaml.safe_load(SERVE_CONFIG.read_text())
    for d in cfg["applications"][0].get("deployments") or []:
        if d["name"] == "Score":
            return dict(d.get("user_config") or {})
    return {}


def _app_kwargs(settings: Settings, heads: str | None, streams: list[str] | None,
                user_config: dict[str, Any] | None, mode: str | None) -> dict[str, Any]:
    sv = settings.serve
    return dict(
        heads=heads, streams=streams or sv.streams, mode=mode,
        encoder_replicas=sv.encoder_replicas, scorer_replicas=sv.scorer_replicas, detector_replicas=sv.detector_replicas,
        max_batch_size=sv.max_batch_size, batch_wait_timeout_s=sv.batch_wait_timeout_s,
        max_ongoing_requests=sv.max_ongoing_requests, encoder_num_cpus=sv.encoder_num_cpus,
        encoder_num_gpus=sv.encoder_num_gpus, torch_threads=settings.model.torch_threads,
        device=settings.model.device, precision=settings.model.precision, pin_memory=settings.model.pin_memory,
        user_config={**default_score_config(), **(user_config or {})},
    )


def start_serve() -> None:
    """Start Serve on the connected Ray cluster (no-op when running) without an HTTP proxy: the
    worker calls the app through handles, and a proxy is one more actor whose health check can
    kill it on a saturated machine."""
    from ray import serve

    serve.start(
        proxy_location="Disabled",
        http_options={"host": "127.0.0.1"},
        logging_config={"enable_access_log": False, "log_level": "WARNING"},
    )


def deploy_scoring_app(settings: Settings, *, heads: str | None = None, streams: list[str] | None = None,
                       user_config: dict[str, Any] | None = None, mode: str | None = None,
                       timeout_s: float = 300.0):
    """(Re)deploy the app on the running Ray cluster; returns the ingress handle once it is RUNNING."""
    from ray.serve.api import _run  # serve.run without its unbounded wait (see below)

    from .serve_app import build_app

    start_serve()
    app = build_app(settings.model.backbone, **_app_kwargs(settings, heads, streams, user_config, mode))
    name = settings.serve.app_name
    log.info("deploying Serve app %s (backbone %s)", name, settings.model.backbone)
    # serve.run waits for RUNNING without a deadline: a replica the cluster cannot place
    # (CPUs taken by another app) would hang the caller forever. Deploy, then wait bounded.
    handle = _run(app, name=name, route_prefix=None, _blocking=False)
    wait_until_running(name, timeout_s)
    return handle


def wait_until_running(name: str, timeout_s: float) -> None:
    """Wait for app ``name`` to be RUNNING; a failed deploy or the deadline raises with Serve's reasons."""
    import time

    from ray import serve

    deadline = time.monotonic() + timeout_s
    while True:
        app = serve.status().applications.get(name)
        state = str(app.status) if app else "NOT_STARTED"
        if state.endswith("RUNNING"):
            return
        if state.endswith("DEPLOY_FAILED") or time.monotonic() > deadline:
            reasons = "; ".join(
                f"{d}: {str(st.status).rsplit('.', 1)[-1]} {st.message}".strip()
                for d, st in (app.deployments.items() if app else []) if not str(st.status).endswith("HEALTHY")
            )
            raise RuntimeError(
                f"Serve app {name!r} is {state.rsplit('.', 1)[-1]} after {timeout_s:.0f}s"
                f"{': ' + reasons if reasons else ''}. Free Ray resources (ray status; serve.delete an "
                "unused app) or lower serve.encoder_num_cpus / replicas in the config."
            )
        time.sleep(0.5)


def reconfigure_scoring_app(settings: Settings, user_config: dict[str, Any], *, heads: str | None = None,
                            streams: list[str] | None = None, mode: str | None = None):
    """Change Score's ``user_config`` (prompts, thresholds, heads) of the running app.

    Only the user_config differs from the running deployment, so Serve calls
    ``Score.reconfigure`` on the live replicas (no restart); requests keep flowing.
    """
    return deploy_scoring_app(settings, heads=heads, streams=streams, user_config=user_config, mode=mode)


def get_scoring_handle(settings: Settings):
    from ray import serve

    return serve.get_app_handle(settings.serve.app_name)


class ServedStages:
    """One segment through the app's Detect → Encode → Score, composed by the caller.

    The frames go into Ray's object store once (:func:`ray.put`); Detect and Encode read them
    there. Detect's result reaches Encode and Score as a Serve response (by reference): it
    does not come back to the caller before they run. Only Score's result and the camera's new
    detector state come back. Detect computes flows and tubes only for a camera that has an
    object-normality version (its score state names it; on a camera's first segment Score is
    asked), so zero-shot cameras pay for boxes only.
    """

    def __init__(self, handle: Any) -> None:
        from ray import serve

        app = handle.app_name
        self.front = handle
        self.detect = serve.get_deployment_handle("Detect", app)
        self.encode = serve.get_deployment_handle("Encode", app)
        self.score = serve.get_deployment_handle("Score", app)

    def submit(self, frames, state, prompt_set, camera_id=None, detector_state=None, fps=None) -> SegmentCall:  # noqa: ANN001
        import ray

        obj_state = (state or {}).get("objects")
        if obj_state is None:  # the camera's first segment (or its state was rebuilt): ask Score once
            objects = self.score.has_normality.remote(camera_id).result(timeout_s=60)
        else:
            objects = bool(obj_state.get("version"))
        frames_ref = ray.put(frames)
        detected = self.detect.detect.remote(frames_ref, detector_state, fps, objects)
        enc = self.encode.encode.remote(frames_ref, detected)
        return SegmentCall(self.score.score.remote(enc, state, prompt_set, camera_id, detected, fps), detected)

    def stats(self) -> dict[str, Any]:
        """Encode's batch sizes since the last call, and the stages' CPU (the worker exports them)."""
        return self.front.encoder_stats.remote().result(timeout_s=30)


class SegmentCall:
    """A segment in flight through the app: ``result()`` is Score's result with the camera's new
    detector state under ``detector_state``."""

    def __init__(self, scored: Any, detected: Any) -> None:
        self.scored, self.detected = scored, detected

    def result(self, timeout_s: float) -> dict[str, Any]:
        t_end = time.monotonic() + timeout_s
        res = self.scored.result(timeout_s=timeout_s)
        _obs, res["detector_state"] = self.detected.result(timeout_s=max(0.01, t_end - time.monotonic()))
        return res

    def cancel(self) -> None:
        for r in (self.scored, self.detected):
            r.cancel()


def handle_score_fn(handle: Any, timeout_s: float = 120.0):
    """Adapt the app's handle to the worker's
    ``score_fn(frames, state, prompt_set, camera_id, detector_state, fps)``: one composed call
    per segment (:class:`ServedStages`); the result carries the camera's new score state and
    detector state."""
    stages = ServedStages(handle)

    def score(frames, state, prompt_set, camera_id=None, detector_state=None, fps=None):  # noqa: ANN001, ANN202
        return stages.submit(frames, state, prompt_set, camera_id, detector_state, fps).result(timeout_s)

    score.stats = stages.stats  # type: ignore[attr-defined]
    return score


class RebindableScoreFn:
    """The worker's score function on whichever Serve handle is current. Before the embedded
    Ray head is started again :meth:`unbind` parks new calls (they wait for the new app rather
    than reach a handle of the old cluster); once the app is deployed again :meth:`bind` points
    the worker at it. A call that fails, or is still waiting on the old handle when the handle
    changes, is cancelled in Serve's router: left there, its routing would retry for ever and
    touch the old driver, which makes Ray end the whole process at shutdown. Such a call raises
    ConnectionError, which the worker counts as transient and retries on the new app."""

    def __init__(self, handle: Any, timeout_s: float = 120.0, poll_s: float = 1.0,
                 stages: Any = ServedStages) -> None:
        self._stages_of = stages  # handle -> what submits a segment (ServedStages)
        self.timeout_s, self.poll_s = timeout_s, poll_s
        self.generation = 0
        self._bound = threading.Condition()
        self.handle: Any = None
        self.bind(handle)

    def bind(self, handle: Any) -> None:
        with self._bound:
            self.handle = handle
            self.stages = self._stages_of(handle)
            self.generation += 1
            self._bound.notify_all()

    def unbind(self) -> None:
        with self._bound:
            self.handle = None
            self.generation += 1

    def __call__(self, frames, state, prompt_set, camera_id=None, detector_state=None, fps=None):  # noqa: ANN001, ANN204
        deadline = time.monotonic() + self.timeout_s
        with self._bound:
            if not self._bound.wait_for(lambda: self.handle is not None, timeout=self.timeout_s):
                raise ConnectionError(f"no scoring app for {self.timeout_s:.0f} s (Ray restarting)")
            gen, stages = self.generation, self.stages
        response = stages.submit(frames, state, prompt_set, camera_id, detector_state, fps)
        done = False
        try:
            while True:
                try:
                    result = response.result(timeout_s=min(self.poll_s, max(0.01, deadline - time.monotonic())))
                    done = True
                    return result
                except TimeoutError:
                    if self.generation != gen:
                        raise ConnectionError("the scoring app is being deployed again (Ray restarted); "
                                              "retrying on it") from None
                    if time.monotonic() >= deadline:
                        raise
        finally:
            if not done:
                try:
                    response.cancel()
                except Exception:  # noqa: BLE001  best effort: the router may be gone with its cluster
                    pass

    def stats(self) -> Any:
        return self.handle.encoder_stats.remote().result(timeout_s=30)
