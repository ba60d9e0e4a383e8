"""The served detector: one camera's segment through Detect → Encode → Score.

Each stage is one function here. The Serve deployment of the same name calls it
(``services/scoring/serve_app.py``) and ``vigil eval`` calls the same three in-process
(:func:`score_clip`), so what is measured is what a live camera runs; there is no second
scorer.

- :func:`detect` (CPU, no weights): the camera's object boxes (a motion detector with the
  camera's running background), dense optical flow, and a crop tube per box whose context
  comes from the camera's previous frames (:class:`DetectorState`), with box speeds and
  scene cues (place and size in the view).
- :func:`encode` (the accelerator stage): CLIP/TimeSformer frame embeddings and, in the
  zero-shot model's object mode, CLIP embeddings of the boxes Detect found.
- :func:`score`: the streams, each switchable in configuration —

  - ``semantic`` and ``predictive`` (zero-shot: prompts, ``A_k``/``b_k``, top descriptions;
    DPC forecast of the segment embedding), fused by the context gate of
    :class:`~vigil.model.anomaly.AnomalyModel`;
  - ``objects``: the camera's own object normality (:class:`~vigil.model.normality.NormalityModel`:
    tube DPC forecast error, normal-memory distance, box speed, fused by its context gate),
    when the camera has a trained normality version;

  each put on one scale (0.5 = the 99th percentile of the camera's normal footage) and
  combined per frame by their maximum: a frame is as abnormal as its most alarmed stream.
  (Chosen before any measurement, as the rule an operator can reason about: every stream
  is calibrated to the same false-alarm rate on normal footage, and any one of them may
  raise an alarm.)

State across segments, kept by the Kafka partition owner that scores the camera:

- :class:`DetectorState` — grey frames, flows and the detector's background of the last
  frames (what the next segment's tubes need, so its first frames are not scored blind and
  an object that stops is still tracked against the learnt background). Heavy, so it stays in
  memory and never goes to SQL; after a rebalance it starts empty, like a camera that just
  connected.
- the score state (JSON, stored with the camera's row): the zero-shot stream's segment
  history and calibration (:class:`~vigil.model.anomaly.SegmentHistory`) and the object
  stream's smoothing tail.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import islice
from typing import Any, Iterable

import numpy as np
import torch
from scipy.special import expit

from vigil.model.attributes import ATTRIBUTES, N_ATTRIBUTES, box_attributes, clip_dwell, dwell_seconds
from vigil.model.detectors import Box, Detector, build_detector
from vigil.model.normality import NormalityConfig, NormalityModel
from vigil.model.reasons import object_reasons
from vigil.model.tubes import box_context, clip_flows, gaussian_smooth, tube_crops, work_grey

__all__ = [
    "DetectorState",
    "Observation",
    "detect",
    "encode",
    "encode_batch",
    "score",
    "new_detector_state",
    "score_clip",
    "FUSED",
    "ZERO_SHOT",
]

# calibration keys of a normality version, fitted on the camera's held-out normal clips by the
# trainer through these very functions: the smoothed object score of a frame, and the zero-shot
# model's segment score (for the zero-shot model named by ``NormalityModel.zero_shot_version``)
FUSED, ZERO_SHOT = "fused", "zero_shot"
SPEED, DWELL = ATTRIBUTES.index("speed"), ATTRIBUTES.index("dwell")


@dataclass
class DetectorState:
    """What :func:`detect` carries from one segment of a camera to the next (in memory only)."""

    fps: float
    grey: np.ndarray | None = None  # last frames at work resolution, uint8 [L, h, w]
    flow: np.ndarray | None = None  # their optical flow (flow channels only), float16 [L, h, w, 2]
    detector: Detector | None = None  # the camera's object detector (running background)
    occupancy: np.ndarray | None = None  # where objects were in the last seconds (vigil.model.attributes)
    frames_seen: int = 0


@dataclass
class Observation:
    """What Detect found in one segment; travels Detect → Encode → Score."""

    boxes: list[list[Box]]  # per frame, in pixels of the input frames
    tubes: np.ndarray | None  # uint8 [N, context+1, S, S, 3]: context crops, then the crop scored (None: not made)
    owner: np.ndarray  # int [N]: the frame of each tube
    context: np.ndarray  # float32 [N, 4]: scene cues of each box
    attributes: np.ndarray | None = None  # float32 [N, N_ATTRIBUTES]: place, size, velocity (vigil.model.attributes)

    @property
    def speeds(self) -> np.ndarray:
        """float ``[N]``: box speed in work pixels per flow gap (= :func:`~vigil.model.tubes.box_speed`)."""
        return np.zeros(0) if self.attributes is None else self.attributes[:, SPEED].astype(np.float64)


def new_detector_state(geometry: NormalityConfig, fps: float) -> DetectorState:
    det = build_detector(geometry.detector) if geometry.mode == "objects" else None
    return DetectorState(fps=float(fps), detector=det)


def segment_boxes(geometry: NormalityConfig, detector: Detector | None, grey: np.ndarray) -> list[list[Box]]:
    """Boxes of every frame of a work-resolution grey segment (the whole frame in ``frame`` mode)."""
    t, h, w = grey.shape
    if geometry.mode == "frame":
        return [[(0, 0, w, h)] for _ in range(t)]
    return detector.detect(np.repeat(grey[..., None], 3, axis=-1))


def _scale_box(box: Box, sx: float, sy: float, w: int, h: int) -> Box:
    x0, y0, x1, y1 = box
    return (max(0, int(x0 * sx)), max(0, int(y0 * sy)), min(w, int(math.ceil(x1 * sx))), min(h, int(math.ceil(y1 * sy))))


def detect(frames: np.ndarray, state: DetectorState | None, geometry: NormalityConfig,
           fps: float | None = None, tubes: bool = True) -> tuple[Observation, DetectorState]:
    """Detect stage: uint8 RGB ``[T, H, W, 3]`` + the camera's detector state → (observation, new state).

    The state is updated in place and returned; ``None`` starts a camera cold at ``fps``.
    ``tubes=False`` (a camera without an object-normality version): boxes only, no flow or tubes;
    crop tubes are cut only when ``geometry.streams`` has a stream that reads them (pred, mem).
    """
    cfg = geometry
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [T,H,W,3], got {frames.dtype} {frames.shape}")
    if state is None:
        if fps is None:
            raise ValueError("a camera's first segment needs its fps")
        state = new_detector_state(cfg, fps)
    grey = work_grey(frames, cfg.work_side)
    t, h, w = grey.shape
    if state.grey is not None and state.grey.shape[1:] != grey.shape[1:]:
        state.grey = state.flow = None  # resolution changed: a new stream
    past = state.grey if state.grey is not None else grey[:0]
    buf = np.concatenate([past, grey])
    offset = len(past)
    if cfg.mode == "objects" and state.detector is None:
        state.detector = build_detector(cfg.detector)
    work_boxes = segment_boxes(cfg, state.detector, grey)
    step, gap = cfg.tube.frames(state.fps)
    flow = None
    if tubes and cfg.tube.channels == "flow":
        have = state.flow is not None and len(state.flow) == offset  # the tail's flows are kept
        new_flow = clip_flows(buf, gap, start=offset if have else 0, preset=cfg.tube.flow_preset)
        flow = np.concatenate([state.flow, new_flow]) if have and offset else new_flow
    n = cfg.tube.context
    # crop tubes only for the streams that read them (DPC forecast, appearance memory)
    cut = tubes and bool({"pred", "mem"} & set(cfg.streams))
    crops, owner, attrs = [], [], []
    dwell, state.occupancy = clip_dwell(work_boxes, w, h, state.fps, cfg.dwell_s, state.occupancy)
    for i, frame_boxes in enumerate(work_boxes if tubes else []):
        ti = offset + i
        times = [ti - k * step for k in range(n, 0, -1)] + [ti]
        for j, box in enumerate(frame_boxes):
            if cut:
                crops.append(tube_crops(buf, times, box, cfg.tube, gap, flow=flow))
            owner.append(i)
            attrs.append(box_attributes(None if flow is None else flow[ti], box, w, h, dwell[i][j]))
    big_h, big_w = frames.shape[1:3]
    sx, sy = big_w / w, big_h / h
    boxes = [[_scale_box(b, sx, sy, big_w, big_h) for b in fb] for fb in work_boxes]
    size = cfg.tube.size
    obs = Observation(
        boxes=boxes,
        tubes=None if not cut else np.stack(crops) if crops else np.zeros((0, n + 1, size, size, 3), np.uint8),
        owner=np.asarray(owner, np.int64),
        context=box_context([b for fb in work_boxes for b in fb], w, h),
        attributes=np.asarray(attrs, np.float32).reshape(-1, N_ATTRIBUTES) if tubes else None,
    )
    keep = cfg.tube.history(state.fps)
    # the tail only for cameras whose tubes read it: a zero-shot camera's state (sent to Detect and back
    # with every segment) stays its detector's background; its first segment with tubes starts them cold
    state.grey = buf[-keep:].copy() if tubes else None
    state.flow = flow[-keep:].copy() if flow is not None else None  # None: the next tubes compute their own
    state.frames_seen += t
    return obs, state


def encode_batch(model: Any, items: list[tuple[np.ndarray, Observation | None]]) -> list[Any]:
    """Encode stage over a batch: segments of several cameras (with Detect's observations) through
    the zero-shot model's encoder in one forward pass per frame count, their crops (object mode)
    in one more. A segment's embedding is the same, up to float rounding, whatever shares its batch."""
    if not items:
        return []
    frames = [f for f, _ in items]
    obs = [o for _, o in items]
    boxes = None if any(o is None for o in obs) else [o.boxes for o in obs]
    if boxes is None and model.config.mode == "object" and any(o is not None for o in obs):
        # mixed: encode the two kinds apart (the model detects for itself where no observation came)
        return [encode(model, f, o) for f, o in items]
    return model.encode_frames(frames, boxes=boxes)


def encode(model: Any, frames: np.ndarray, obs: Observation | None) -> Any:
    """Encode stage for one segment (:func:`encode_batch` of one)."""
    return encode_batch(model, [(frames, obs)])[0]


def _object_frames(nm: NormalityModel, obs: Observation, n_frames: int, fps: float,
                   tail: list[float]) -> tuple[np.ndarray, list[float], dict[str, np.ndarray], list[dict]]:
    """Object normality per frame: the smoothed gated score (normalised scale), the new smoothing
    tail, each calibrated sub-stream's per-frame maximum, and the reasons of the segment's most
    unusual box (:func:`~vigil.model.reasons.object_reasons`)."""
    cfg = nm.config
    raw_frame = np.full(n_frames, cfg.empty_score, dtype=np.float64)
    peaks: dict[str, np.ndarray] = {}
    reasons: list[dict] = []
    if obs.attributes is not None and len(obs.attributes):
        raw = nm.raw_scores(obs.tubes, obs.speeds, obs.attributes)
        crop = nm.fuse(raw, obs.context)
        best = np.full(n_frames, -np.inf)
        np.maximum.at(best, obs.owner, crop)
        raw_frame = np.where(np.isfinite(best), best, cfg.empty_score)
        cal = {k: v for k, v in nm.calibrated(raw).items() if k in cfg.streams}
        for k, v in cal.items():
            b = np.full(n_frames, -np.inf)
            np.maximum.at(b, obs.owner, v)
            peaks[k] = np.where(np.isfinite(b), b, cfg.empty_score)
        if obs.attributes is not None and len(obs.attributes) == len(crop):
            top = int(np.argmax(crop))
            place = {k: float(v[0]) for k, v in nm.place_reference(obs.attributes[top : top + 1]).items()}
            if np.isfinite(place["dwell_median"]):
                place["dwell_s_here"] = dwell_seconds(obs.attributes[top, DWELL], cfg.dwell_s)
                place["dwell_s_usual"] = dwell_seconds(place["dwell_median"], cfg.dwell_s)
            at_top = {k: float(v[top]) for k, v in cal.items()}
            reasons = object_reasons(obs.attributes[top], at_top, place,
                                     {k: float(expit(4.0 * (v - 1.0))) for k, v in at_top.items()})
    sigma = cfg.smooth_s * fps
    r = int(math.ceil(3 * sigma)) if sigma > 0 else 0
    seq = np.concatenate([np.asarray(tail, np.float64), raw_frame])
    smoothed = gaussian_smooth(seq, sigma)[-n_frames:]
    new_tail = [float(x) for x in seq[-r:]] if r else []
    return smoothed, new_tail, peaks, reasons


def semantic_contributed(res: Any) -> bool:
    """Whether the semantic stream is part of the zero-shot score (it ran and the context gate gives
    it weight): its descriptions explain a score only then. Whether the zero-shot family carried the
    segment at all is decided in :func:`score` (an event the object streams raised on a calm plaza
    does not show "fire 0.73")."""
    if res.s_sem is None:
        return False
    return res.s_pred is None or res.gate is None or res.gate > 0.0


@torch.no_grad()
def score(zero_shot: Any, normality: NormalityModel | None, enc: Any, obs: Observation | None,
          state: dict[str, Any] | None, prompt_set: Any = None, *, fps: float,
          streams: Iterable[str] = ("semantic", "predictive", "objects")) -> tuple[dict[str, Any], dict[str, Any]]:
    """Score stage: every enabled stream of one segment, fused; returns (result, new score state).

    ``zero_shot``: the :class:`~vigil.model.anomaly.AnomalyModel` (its own ``streams`` say
    whether semantic / predictive run; None or both off in ``streams``: not run); ``normality``: the camera's trained object normality,
    or None (zero-shot defaults only); ``streams`` switches the families off by name.
    The result has the fused ``score`` (segment: the maximum of its frames), per-frame
    ``frame_scores``, each stream's segment score (``s_sem``, ``s_pred``, ``s_obj`` and the
    object sub-streams under ``streams``), the gate and the top descriptions.
    """
    from vigil.model.anomaly import SegmentHistory

    streams = set(streams)
    state = dict(state or {})
    n_frames = len(obs.boxes) if obs is not None else len(enc.frame_emb)
    zs_on = bool({"semantic", "predictive"} & streams) and zero_shot is not None and enc is not None
    out_streams: dict[str, float | None] = {}
    version_parts = []
    res = None
    # the zero-shot stream's state; a flat one is what this camera's row held before the object stream
    hist_state = state.get("zero_shot", state if "n_segments" in state else None)
    if zs_on:
        hist = SegmentHistory.from_dict(hist_state)
        res, hist = zero_shot.score(enc, hist, prompt_set)
        hist_state = hist.to_dict()
        zs_on = res.s_sem is not None or res.s_pred is not None
        out_streams.update(semantic=res.s_sem, predictive=res.s_pred)
        version_parts.append(zero_shot.version)
    obj_frames = obj_raw = None
    obj_reasons: list[dict] = []
    obj_state = state.get("objects") or {}
    obj_tail = list(obj_state.get("tail", []))
    if normality is not None and "objects" in streams and obs is not None and obs.attributes is not None:
        if obj_state.get("version") != normality.version:
            obj_tail = []  # other heads: their raw scale differs
        obj_raw, obj_tail, peaks, obj_reasons = _object_frames(normality, obs, n_frames, fps, obj_tail)
        cal = normality.calibration.get(FUSED)
        obj_frames = cal.probability(obj_raw) if cal is not None else expit(4.0 * (obj_raw - 1.0))
        for k, v in peaks.items():
            out_streams[k] = float(expit(4.0 * (v.max() - 1.0))) if len(v) else None
        version_parts.append(f"normality:{normality.version}")
    # the zero-shot score on the fusion scale: calibrated on this camera's normal clips when its
    # normality version carries that calibration (for this zero-shot model), raw otherwise
    zs = None
    if zs_on:
        zs = res.score
        zs_cal = None if normality is None else normality.calibration.get(ZERO_SHOT)
        if zs_cal is not None and normality.zero_shot_version == zero_shot.version:
            zs = float(zs_cal.probability(res.score))
    if obj_frames is not None:
        frame_scores = np.maximum(obj_frames, zs) if zs is not None else obj_frames
        seg_score = float(frame_scores.max()) if n_frames else 0.0
    elif res is not None:  # zero-shot only: exactly the zero-shot model's scores
        frame_scores = np.asarray(res.frame_scores or [res.score] * n_frames, np.float64)
        seg_score = res.score
    else:
        raise ValueError(f"no stream to score with: streams {sorted(streams)}, normality model "
                         f"{'given' if normality is not None else 'absent'}")
    # what explains the score: the reasons of the family that made it (both on a tie), and of
    # the zero-shot family only the semantic descriptions, when the semantic stream carried it
    obj_peak = None if obj_frames is None or not n_frames else float(obj_frames.max())
    descriptions: list[dict] = []
    if obj_peak is not None and (zs is None or obj_peak >= zs):
        descriptions += obj_reasons
    if res is not None and (obj_peak is None or (zs is not None and zs >= obj_peak)) and semantic_contributed(res):
        descriptions += [{"text": t, "prob": float(p), "abnormal": bool(a), "stream": "semantic"}
                         for t, p, a in res.top_descriptions]
    new_state = {"zero_shot": hist_state,
                 "objects": {"tail": obj_tail, "version": None if normality is None else normality.version}}
    result = {
        "score": min(1.0, max(0.0, seg_score)),
        "s_sem": None if res is None else res.s_sem,
        "s_pred": None if res is None else res.s_pred,
        "s_obj": obj_peak,
        "s_zero_shot": zs,
        "gate": None if res is None else res.gate,
        "frame_scores": [float(x) for x in frame_scores],
        "top_descriptions": descriptions,
        "streams": {k: (None if v is None else float(v)) for k, v in out_streams.items()},
        "crop_boxes": None if res is None else res.crop_boxes,
        "boxes": None if obs is None else [[list(map(int, b)) for b in frame] for frame in obs.boxes],  # Detect's
        "model_version": "+".join(version_parts),
        # before the fusion-scale squash: what the trainer calibrates FUSED and ZERO_SHOT on
        "raw": {"objects": None if obj_raw is None else [float(x) for x in obj_raw],
                "zero_shot": None if res is None or not zs_on else float(res.score)},
    }
    return result, new_state


def score_clip(zero_shot: Any, normality: NormalityModel | None, frames: Iterable[np.ndarray], fps: float,
               geometry: NormalityConfig, *, segment_frames: int = 16, prompt_set: Any = None,
               streams: Iterable[str] = ("semantic", "predictive", "objects")) -> np.ndarray:
    """Scores of every frame of one clip, fed through detect → encode → score as one cold camera."""
    det_state = new_detector_state(geometry, fps)
    state: dict[str, Any] = {}
    out = []
    it = iter(frames)
    while segment := list(islice(it, segment_frames)):
        seg = np.stack(segment)
        obs, det_state = detect(seg, det_state, geometry)
        enc = encode(zero_shot, seg, obs) if zero_shot is not None and {"semantic", "predictive"} & set(streams) else None
        res, state = score(zero_shot, normality, enc, obs, state, prompt_set, fps=fps, streams=streams)
        out.append(np.asarray(res["frame_scores"], np.float64))
    return np.concatenate(out) if out else np.zeros(0)
