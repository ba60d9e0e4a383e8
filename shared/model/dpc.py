"""DPC: dense predictive coding over a camera's segment embeddings.

After Han, Xie & Zisserman, "Video Representation Learning by Dense Predictive Coding"
(ICCVW 2019), as used by the predictive stream of arXiv 2508.18463: a GRU aggregates the
last ``N`` embeddings of a camera and forecasts the next ``M`` (``horizon``); training uses
an InfoNCE/CPC loss whose positives are the true future embeddings and whose negatives are
every other (item, time) pair of the batch — other cameras, other times of the same camera.
At inference ``s_pred`` is the forecast error ``1 - cos(forecast, actual)``, calibrated per
camera on normal footage (:class:`ScoreCalibration`).

Where the papers are silent, this module defines:

- the forecaster input is the L2-normalised embedding sequence; the GRU's last hidden
  state goes through a 2-layer MLP per future step (``horizon`` heads share the GRU, a
  step embedding tells them apart), and every forecast is L2-normalised;
- calibration maps a raw error to ``(e - median) / (q99 - median)`` measured on normal
  footage (robust to a few outliers in the "normal" period), optionally squashed to
  (0, 1) by a logistic, so that ~1.0 means "as bad as the worst 1 % of normal".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DPCForecaster", "forecast_error", "cpc_loss", "ScoreCalibration", "fit_calibration"]


class DPCForecaster(nn.Module):
    """GRU aggregator + per-step prediction heads: ``[B, N, D]`` context → ``[B, horizon, D]``."""

    def __init__(self, dim: int, hidden: int = 256, context: int = 8, horizon: int = 1) -> None:
        super().__init__()
        if dim < 1 or hidden < 1 or context < 1 or horizon < 1:
            raise ValueError("dim, hidden, context and horizon must be positive")
        self.dim, self.hidden, self.context, self.horizon = dim, hidden, context, horizon
        self.inp = nn.Linear(dim, hidden)
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.step = nn.Embedding(horizon, hidden)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, ctx: Tensor) -> Tensor:
        """``ctx`` ``[B, N, D]`` (any N ≥ 1; only the last ``context`` are used) → unit forecasts."""
        if ctx.ndim != 3 or ctx.shape[-1] != self.dim:
            raise ValueError(f"expected context [B, N, {self.dim}], got {tuple(ctx.shape)}")
        ctx = F.normalize(ctx[:, -self.context :], dim=-1)
        _, h = self.gru(torch.tanh(self.inp(ctx)))  # h: [1, B, H]
        h = h[-1].unsqueeze(1) + self.step.weight.unsqueeze(0)  # [B, horizon, H]
        return F.normalize(self.head(h), dim=-1)


def forecast_error(pred: Tensor, actual: Tensor) -> Tensor:
    """``1 - cos(pred, actual)`` per row: ``[B, D]`` × ``[B, D]`` → ``[B]`` in [0, 2]."""
    return 1.0 - F.cosine_similarity(pred, actual, dim=-1)


def cpc_loss(pred: Tensor, target: Tensor, tau: float = 0.07) -> Tensor:
    """InfoNCE over all (item, step) pairs: ``pred``, ``target`` ``[B, M, D]`` → scalar.

    Each forecast's positive is its own target; the negatives are the targets of every
    other item of the batch (other cameras / clips) and of the other future steps of the
    same item (other times), exactly the dense negative set of DPC.
    """
    if pred.shape != target.shape or pred.ndim != 3:
        raise ValueError(f"pred and target must both be [B, M, D], got {tuple(pred.shape)} and {tuple(target.shape)}")
    b, m, d = pred.shape
    p = F.normalize(pred.reshape(b * m, d), dim=-1)
    t = F.normalize(target.reshape(b * m, d), dim=-1)
    logits = p @ t.t() / tau
    return F.cross_entropy(logits, torch.arange(b * m, device=pred.device))


@dataclass
class ScoreCalibration:
    """Per-camera map from a raw score to a calibrated one, fitted on normal footage."""

    median: float
    q99: float
    mean: float
    std: float
    n: int

    def normalise(self, raw: np.ndarray | Tensor | float) -> np.ndarray:
        """``(raw - median) / (q99 - median)``: 0 = typical normal, 1 = the worst 1 % of normal."""
        scale = max(self.q99 - self.median, 1e-6)
        return (np.asarray(raw, dtype=np.float64) - self.median) / scale

    def probability(self, raw: np.ndarray | Tensor | float, steepness: float = 4.0) -> np.ndarray:
        """Logistic squash of :meth:`normalise` into (0, 1); 0.5 at the 99th percentile of normal."""
        from scipy.special import expit  # the logistic without overflow for far-out errors

        return expit(steepness * (self.normalise(raw) - 1.0))

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ScoreCalibration:
        return cls(**{k: d[k] for k in ("median", "q99", "mean", "std", "n")})


def fit_calibration(raw_scores: np.ndarray | Tensor | list[float]) -> ScoreCalibration:
    """Fit a :class:`ScoreCalibration` on raw scores of normal footage (at least 2 values)."""
    x = np.asarray(raw_scores, dtype=np.float64).ravel()
    x = x[np.isfinite(x)]
    if x.size < 2:
        raise ValueError("calibration needs at least 2 finite scores of normal footage")
    return ScoreCalibration(
        median=float(np.median(x)),
        q99=float(np.quantile(x, 0.99)),
        mean=float(x.mean()),
        std=float(x.std() + 1e-12),
        n=int(x.size),
    )


# =====================================================================================
# Object-centric DPC: tubes of motion crops, their encoder, and the per-camera scorer.
#
# A *tube* is the same (enlarged, square) box cut out of the frames at times
# ``t0 - context*step, …, t0 - step`` (the context) and ``t0, t0 + step, …`` (the targets).
# Each crop holds the grey frame and the optical flow into it (or three grey frames), so
# the encoder sees appearance *and* motion. The encoder (a registry backbone's visual
# tower, trained from scratch) embeds each crop; the forecaster predicts the targets'
# embeddings from the context's. InfoNCE negatives are the other tubes of the batch (other
# places, other clips) and the other target steps of the same tube (same place, other
# time). Steps and gaps are given in seconds, so the same defaults serve a 10 fps camera
# and a 4 fps segment sampler alike.
#
# A crop is scored by up to three streams, each calibrated on held-out normal clips
# (0 = median of normal, 1 = its 99th percentile):
#   pred    DPC forecast error of the crop given its tube's context (the predictive stream);
#   mem     distance of the crop's embedding to a memory of normal crop embeddings;
#   motion  the box's speed (robust percentile of optical-flow magnitude), no learning.
# A context gate mixes them with weights softmax(MLP(c)) from the crop's scene cues (place
# and size in the view); it is fitted on held-out normal tubes against the same tubes
# sped up 3× (synthetic anomalies made from normal footage; no real anomaly is seen).
# A frame's score is the maximum over its crops, smoothed over time.
# =====================================================================================

import math
from dataclasses import field
from typing import Any, Literal

import cv2
from pydantic import BaseModel, ConfigDict, Field


class TubeConfig(BaseModel):
    """Geometry of the crop tubes (shared by training and scoring)."""

    model_config = ConfigDict(extra="forbid")

    size: int = Field(64, ge=16, le=512, description="crop side in pixels (the backbone's input size)")
    context: int = Field(4, ge=1, le=32, description="context crops the forecaster aggregates")
    horizon: int = Field(2, ge=1, le=8, description="future crops forecast in training (scoring uses the first)")
    step_s: float = Field(0.2, gt=0, le=5, description="seconds between the crops of a tube")
    gap_s: float = Field(0.2, gt=0, le=5, description="seconds between the three grey frames of one crop")
    enlarge: float = Field(1.25, ge=1.0, le=4.0, description="the square crop's side over the box's longer side")
    min_side: int = Field(16, ge=4, le=512, description="smallest crop side in work-resolution pixels")
    channels: Literal["flow", "grey"] = Field(
        "flow", description="flow: grey + optical flow (x, y); grey: three grey frames gap apart"
    )
    flow_gain: float = Field(8.0, gt=0, le=64, description="uint8 levels per work-frame pixel of motion")
    flow_preset: Literal["ultrafast", "fast", "medium"] = Field(
        "medium",
        description="OpenCV DIS optical-flow preset; medium: ~10 ms per 360x240 frame on one CPU core, "
        "and the most accurate on normal footage (benchmarks/flow_presets.json)",
    )

    def frames(self, fps: float) -> tuple[int, int]:
        """(step, gap) in frames at ``fps``; at least one frame each."""
        return max(1, round(self.step_s * fps)), max(1, round(self.gap_s * fps))

    def history(self, fps: float) -> int:
        """Past frames a scorer must keep to build the tube of a frame."""
        step, gap = self.frames(fps)
        return self.context * step + 2 * gap


def square_box(box: tuple[int, int, int, int], enlarge: float, min_side: int, w: int, h: int) -> tuple[int, int, int]:
    """Square window (x0, y0, side) around ``box``, enlarged, clipped to lie inside the frame."""
    x0, y0, x1, y1 = box
    side = int(round(max(x1 - x0, y1 - y0) * enlarge))
    side = min(max(side, min_side), w, h)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    sx = int(round(min(max(cx - side / 2, 0), w - side)))
    sy = int(round(min(max(cy - side / 2, 0), h - side)))
    return sx, sy, side


_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}
_DIS: dict[str, Any] = {}


def frame_flow(prev: np.ndarray, cur: np.ndarray, preset: str = "medium") -> np.ndarray:
    """Dense optical flow ``prev → cur`` (grey uint8 ``[H, W]``) in pixels, float16 ``[H, W, 2]`` (DIS)."""
    if preset not in _DIS:
        if preset not in _DIS_PRESETS:
            raise ValueError(f"unknown optical-flow preset {preset!r}; choose one of {sorted(_DIS_PRESETS)}")
        _DIS[preset] = cv2.DISOpticalFlow_create(_DIS_PRESETS[preset])
    return _DIS[preset].calc(prev, cur, None).astype(np.float16)


def clip_flows(grey: np.ndarray, gap: int, start: int = 0, preset: str = "medium") -> np.ndarray:
    """Flow of every frame of ``grey[start:]`` from the frame ``gap`` earlier (clamped at 0)."""
    out = np.empty((len(grey) - start, *grey.shape[1:], 2), np.float16)
    for i, t in enumerate(range(start, len(grey))):
        out[i] = frame_flow(grey[max(t - gap, 0)], grey[t], preset)
    return out


def tube_crops(
    grey: np.ndarray,
    times: list[int],
    box: tuple[int, int, int, int],
    cfg: TubeConfig,
    gap: int,
    flip: bool = False,
    flow: Any = None,
) -> np.ndarray:
    """Crops of one box at ``times`` (indices into ``grey`` ``[L, H, W]`` uint8, clamped) → uint8 ``[n, S, S, 3]``.

    ``channels="grey"``: the grey frames ``τ-2·gap, τ-gap, τ``. ``channels="flow"``: the grey
    frame ``τ`` and the optical flow into it from ``τ-gap`` (``flow[τ]``, an array
    ``[L, H, W, 2]`` or a callable ``τ → [H, W, 2]``) in work-frame pixels (absolute speed:
    measured on Ped2, speed relative to the box size separated anomalies far worse, because
    motion boxes often hold a group), ``128 + flow_gain·v``.
    """
    n_frames, h, w = grey.shape
    if tuple(box) == (0, 0, w, h):  # frame mode: the whole frame, aspect not kept
        sx, sy, sw, sh = 0, 0, w, h
    else:
        sx, sy, side = square_box(box, cfg.enlarge, cfg.min_side, w, h)
        sw = sh = side
    size = cfg.size
    out = np.empty((len(times), size, size, 3), dtype=np.uint8)
    for i, t in enumerate(times):
        t = min(max(t, 0), n_frames - 1)
        if cfg.channels == "flow":
            f = flow(t) if callable(flow) else flow[t]
            g = cv2.resize(grey[t, sy : sy + sh, sx : sx + sw], (size, size), interpolation=cv2.INTER_AREA)
            v = cv2.resize(f[sy : sy + sh, sx : sx + sw].astype(np.float32), (size, size), interpolation=cv2.INTER_AREA)
            v[..., 0] *= cfg.flow_gain * (-1 if flip else 1)
            v[..., 1] *= cfg.flow_gain
            out[i, ..., 0] = g
            out[i, ..., 1:] = np.clip(128 + v, 0, 255).astype(np.uint8)
        else:
            idx = [min(max(t - k * gap, 0), n_frames - 1) for k in (2, 1, 0)]
            stack = np.stack([grey[j, sy : sy + sh, sx : sx + sw] for j in idx], axis=-1)
            out[i] = cv2.resize(stack, (size, size), interpolation=cv2.INTER_AREA)
    if flip:
        out = out[:, :, ::-1].copy()
    return out


CROP_MEAN, CROP_STD = 0.45, 0.25


def crops_to_tensor(crops: np.ndarray) -> Tensor:
    """uint8 ``[..., S, S, 3]`` → float ``[..., 3, S, S]``, normalised."""
    x = torch.from_numpy(np.ascontiguousarray(crops)).float().div_(255.0).sub_(CROP_MEAN).div_(CROP_STD)
    return x.movedim(-1, -3)


class NormalityConfig(BaseModel):
    """Everything that defines a camera's normality model (saved with the checkpoint)."""

    model_config = ConfigDict(extra="forbid")

    backbone: str = Field("vigil-micro", description="registry backbone whose visual tower encodes the crops")
    mode: Literal["objects", "frame"] = Field(
        "objects", description="objects: detector boxes (object-centric); frame: the whole frame as one box"
    )
    detector: dict[str, Any] = Field(default_factory=lambda: {"type": "motion"}, description="detector config")
    tube: TubeConfig = Field(default_factory=TubeConfig)
    hidden: int = Field(256, ge=8, le=4096, description="forecaster GRU width")
    work_side: int = Field(360, ge=64, le=4096, description="frames are downscaled to this longest side")
    memory_k: int = Field(3, ge=1, le=64, description="neighbours averaged by the normal-memory score")
    memory_size: int = Field(20000, ge=16, description="normal crop embeddings kept in memory")
    gate: Literal["fixed", "context"] = Field(
        "context",
        description="fixed: the even mix of the calibrated streams; context: weights softmax(MLP(c)) "
        "from the crop's scene cues (place and size in the view), fitted on held-out normal clips "
        "against synthetic speed-ups of them (no real anomaly is ever seen)",
    )
    streams: list[Literal["pred", "mem", "motion"]] = Field(
        default_factory=lambda: ["pred", "mem", "motion"],
        description="pred: DPC forecast error; mem: distance to normal crop memory; motion: calibrated box speed",
    )
    smooth_s: float = Field(0.5, ge=0, le=30, description="Gaussian smoothing of frame scores (sigma, seconds)")
    empty_score: float = Field(-1.0, description="calibrated score of a frame without boxes")


CONTEXT_DIM = 4


def box_context(boxes: list[tuple[int, int, int, int]], w: int, h: int) -> np.ndarray:
    """Scene cues of crops: normalised centre x, centre y, width, height → float32 ``[B, 4]``."""
    if not boxes:
        return np.zeros((0, CONTEXT_DIM), np.float32)
    b = np.asarray(boxes, dtype=np.float32)
    return np.stack(
        [(b[:, 0] + b[:, 2]) / (2 * w), (b[:, 1] + b[:, 3]) / (2 * h), (b[:, 2] - b[:, 0]) / w, (b[:, 3] - b[:, 1]) / h],
        axis=1,
    )


STREAMS = ("pred", "mem", "motion")


class ContextGate(nn.Module):
    """Stream weights from the crop's scene cues: ``w = softmax(MLP(c))`` over the streams.

    With two streams this is the paper's ``s = g·s_a + (1-g)·s_b``, ``g = sigmoid(MLP(c))``
    (arXiv 2508.18463); a softmax extends it to the three streams here. The last layer
    starts at zero, so an unfitted gate is the even mix.
    """

    def __init__(self, dim: int = CONTEXT_DIM, hidden: int = 16, streams: int = len(STREAMS)) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, streams))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, c: Tensor, active: list[int] | None = None) -> Tensor:
        logits = self.mlp(c)
        if active is not None:
            logits = logits[:, active]
        return torch.softmax(logits, dim=-1)


def box_speed(flow: np.ndarray, box: tuple[int, int, int, int], moving: float = 0.5) -> float:
    """Robust speed of the object in a box: 75th percentile of |flow| over its moving pixels (px per gap)."""
    x0, y0, x1, y1 = box
    mag = np.linalg.norm(flow[y0:y1, x0:x1].astype(np.float32), axis=-1)
    mv = mag[mag > moving]
    return float(np.percentile(mv, 75)) if mv.size > 10 else 0.0


class NormalityModel(nn.Module):
    """Crop encoder (a registry backbone's visual tower) + DPC forecaster + normal memory + calibration."""

    def __init__(self, config: NormalityConfig | None = None, encoder: nn.Module | None = None, dim: int | None = None):
        super().__init__()
        self.config = config or NormalityConfig()
        if encoder is None:
            from vigil.model.backbones import create_backbone

            bb = create_backbone(self.config.backbone)
            if bb.image_size != self.config.tube.size:
                raise ValueError(
                    f"backbone {self.config.backbone} takes {bb.image_size}px images; set tube.size={bb.image_size}"
                )
            encoder, dim = bb.model.visual, bb.embed_dim
        self.encoder = encoder
        self.dim = int(dim)
        t = self.config.tube
        self.forecaster = DPCForecaster(self.dim, hidden=self.config.hidden, context=t.context, horizon=t.horizon)
        self.gate = ContextGate()
        self.register_buffer("memory", torch.zeros(0, self.dim))
        self.calibration: dict[str, ScoreCalibration] = {}

    # ------------------------------------------------------------------ embedding
    def embed(self, crops: np.ndarray | Tensor, batch: int = 2048) -> Tensor:
        """uint8 crops ``[B, S, S, 3]`` (or a prepared tensor ``[B, 3, S, S]``) → unit embeddings ``[B, D]``."""
        x = crops_to_tensor(crops) if isinstance(crops, np.ndarray) else crops
        outs = [self.encoder(x[i : i + batch]) for i in range(0, len(x), batch)] or [torch.zeros(0, self.dim)]
        return F.normalize(torch.cat(outs), dim=-1)

    # ------------------------------------------------------------------ raw stream scores
    @torch.no_grad()
    def raw_scores(self, tubes: np.ndarray, speed: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Tubes uint8 ``[B, context+1, S, S, 3]`` (context, then the crop scored) → raw stream scores ``[B]``.

        ``pred``: DPC forecast error; ``mem``: distance to the normal memory; ``motion``: the
        boxes' speeds (``speed``, from :func:`box_speed`) when given.
        """
        b, n = tubes.shape[:2]
        extra = {} if speed is None else {"motion": np.asarray(speed, np.float64)}
        if b == 0:
            return {"pred": np.zeros(0), "mem": np.zeros(0), **extra}
        z = self.embed(tubes.reshape(b * n, *tubes.shape[2:])).reshape(b, n, self.dim)
        pred = self.forecaster(z[:, :-1])[:, 0]
        out = {"pred": forecast_error(pred, z[:, -1]).numpy()}
        out["mem"] = self.memory_distance(z[:, -1]).numpy()
        return {**out, **extra}

    def memory_distance(self, z: Tensor, exclude: Tensor | None = None) -> Tensor:
        """Mean cosine distance to the ``memory_k`` nearest normal embeddings (``exclude``: bool ``[B, M]``)."""
        if len(self.memory) == 0:
            return torch.zeros(len(z))
        k = min(self.config.memory_k, len(self.memory))
        out = []
        for i in range(0, len(z), 4096):
            sim = z[i : i + 4096] @ self.memory.t()
            if exclude is not None:
                sim = sim.masked_fill(exclude[i : i + 4096], -2.0)
            out.append(1.0 - sim.topk(k, dim=1).values.mean(1))
        return torch.cat(out)

    def calibrated(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: self.calibration[k].normalise(v) for k, v in raw.items() if k in self.calibration}

    def fuse(self, raw: dict[str, np.ndarray], context: np.ndarray | None = None) -> np.ndarray:
        """Calibrated streams → one crop score via the gate (0 ≈ typical normal, 1 ≈ worst 1 % of normal)."""
        cfg = self.config
        cal = self.calibrated(raw)
        if len(cfg.streams) == 1:
            return cal[cfg.streams[0]]
        streams = list(cfg.streams)
        z = np.stack([cal[k] for k in streams], axis=1)
        if cfg.gate == "context" and context is not None:
            with torch.no_grad():
                w = self.gate(torch.from_numpy(np.asarray(context, np.float32)), [STREAMS.index(k) for k in streams])
            w = w.double().numpy()
        else:
            w = np.full((1, len(streams)), 1.0 / len(streams))
        return (w * z).sum(axis=1)

    def extra_state(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(),
            "dim": self.dim,
            "calibration": {k: v.to_dict() for k, v in self.calibration.items()},
        }

    def save(self, path: str | Path, **meta: Any) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(path.suffix + ".tmp")
        torch.save({"state_dict": self.state_dict(), "extra": self.extra_state(), "meta": meta}, tmp)
        tmp.replace(path)  # atomic: a crash never leaves a half-written checkpoint
        return path

    @classmethod
    def load(cls, path: str | Path) -> NormalityModel:
        ck = torch.load(Path(path), map_location="cpu", weights_only=False)
        extra = ck["extra"]
        config = dict(extra["config"])
        # checkpoints written before the preset was configurable were trained on ultrafast flow
        config["tube"] = {"flow_preset": "ultrafast", **config.get("tube", {})}
        model = cls(NormalityConfig(**config))
        model.memory = torch.zeros_like(ck["state_dict"]["memory"])
        model.load_state_dict(ck["state_dict"])
        model.calibration = {k: ScoreCalibration.from_dict(v) for k, v in extra["calibration"].items()}
        return model.eval()


# ------------------------------------------------------------------ per-camera scoring


@dataclass
class CameraScoringState:
    """What a camera's scorer carries from one segment to the next."""

    fps: float
    grey: np.ndarray | None = None  # last frames at work resolution, uint8 [L, h, w]
    flow: np.ndarray | None = None  # their optical flow (flow channels only), float16 [L, h, w, 2]
    detector: Any = None  # the camera's detector instance (running background)
    tail: np.ndarray = field(default_factory=lambda: np.zeros(0))  # recent raw frame scores, for smoothing
    frames_seen: int = 0
    last_boxes: list = field(default_factory=list)


def work_grey(frames: np.ndarray, work_side: int) -> np.ndarray:
    """uint8 RGB ``[T, H, W, 3]`` → uint8 grey ``[T, h, w]`` with longest side ≤ ``work_side``."""
    h, w = frames.shape[1:3]
    scale = min(1.0, work_side / max(h, w))
    out = []
    for f in frames:
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
        if scale < 1.0:
            g = cv2.resize(g, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        out.append(g)
    return np.stack(out)


def segment_boxes(model_cfg: NormalityConfig, detector: Any, grey: np.ndarray) -> list[list[tuple[int, int, int, int]]]:
    """Boxes of every frame of a segment (whole frame in ``frame`` mode)."""
    t, h, w = grey.shape
    if model_cfg.mode == "frame":
        return [[(0, 0, w, h)] for _ in range(t)]
    return detector.detect(np.repeat(grey[..., None], 3, axis=-1))


def gaussian_smooth(x: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0 or len(x) < 2:
        return x
    r = max(1, int(math.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-r, r + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(x, r, mode="edge")
    return np.convolve(padded, k, mode="valid")


def new_scoring_state(model: NormalityModel, fps: float) -> CameraScoringState:
    from vigil.model.detectors import build_detector

    det = build_detector(model.config.detector) if model.config.mode == "objects" else None
    return CameraScoringState(fps=float(fps), detector=det)


@torch.no_grad()
def score_segment(
    model: NormalityModel, frames: np.ndarray, state: CameraScoringState
) -> tuple[np.ndarray, CameraScoringState]:
    """One segment of a camera: uint8 RGB ``[T, H, W, 3]`` + state → (frame scores ``[T]``, new state).

    A frame's score is the maximum over its boxes of the gated, calibrated crop scores
    (``empty_score`` without boxes), smoothed over time with the camera's recent scores.
    The state is updated in place and returned.
    """
    cfg = model.config
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames [T,H,W,3], got {frames.dtype} {frames.shape}")
    grey = work_grey(frames, cfg.work_side)
    if state.grey is not None and state.grey.shape[1:] != grey.shape[1:]:
        state.grey = state.flow = None  # resolution changed: a new stream
    past = state.grey if state.grey is not None else grey[:0]
    buf = np.concatenate([past, grey])
    offset = len(past)
    boxes = segment_boxes(cfg, state.detector, grey)
    step, gap = cfg.tube.frames(state.fps)
    flow = None
    if cfg.tube.channels == "flow":
        new_flow = clip_flows(buf, gap, start=offset, preset=cfg.tube.flow_preset)
        flow = new_flow if state.flow is None or offset == 0 else np.concatenate([state.flow, new_flow])
    n = cfg.tube.context
    tubes, owner, speeds = [], [], []
    for i, frame_boxes in enumerate(boxes):
        t = offset + i
        times = [t - k * step for k in range(n, 0, -1)] + [t]
        for box in frame_boxes:
            tubes.append(tube_crops(buf, times, box, cfg.tube, gap, flow=flow))
            owner.append(i)
            speeds.append(box_speed(flow[t], box) if flow is not None else 0.0)
    raw_frame = np.full(len(grey), cfg.empty_score, dtype=np.float64)
    if tubes:
        ctx = box_context([b for fb in boxes for b in fb], grey.shape[2], grey.shape[1])
        crop_scores = model.fuse(model.raw_scores(np.stack(tubes), np.asarray(speeds)), ctx)
        best = np.full(len(grey), -np.inf)
        np.maximum.at(best, np.asarray(owner), crop_scores)
        raw_frame = np.where(np.isfinite(best), best, cfg.empty_score)
    sigma = cfg.smooth_s * state.fps
    r = int(math.ceil(3 * sigma)) if sigma > 0 else 0
    seq = np.concatenate([state.tail, raw_frame])
    scores = gaussian_smooth(seq, sigma)[-len(raw_frame) :]
    state.tail = seq[-r:] if r else seq[:0]
    keep = cfg.tube.history(state.fps)
    state.grey = buf[-keep:].copy()
    state.flow = flow[-keep:].copy() if flow is not None else None
    state.frames_seen += len(grey)
    state.last_boxes = boxes
    return scores.astype(np.float32), state
