"""The anomaly model: one encoder pass per segment feeds the semantic and predictive streams.

::

    model = AnomalyModel.create("vigil-micro")            # zero-shot, no trained heads
    x = model.preprocess(frames)                          # uint8 [T,H,W,3] -> [T,3,S,S]
    enc = model.encode(x[None])[0]                        # EncodedSegment
    result, state = model.score(enc, state)               # SegmentResult, new SegmentHistory

Streams (each switchable, for ablations):

- ``semantic``: prompt set → cached text embeddings (optionally CoOp, optionally context-gated)
  → frame scorer ``A_k``, ``b_k`` → ``s_sem`` by majority vote over the segment's frames, and
  the top descriptions. ``mode="video"`` first runs the temporal module over the frames;
  ``mode="object"`` scores detector crops and takes each frame's maximum.
- ``predictive``: the camera's last N segment embeddings → forecaster → ``s_pred`` = forecast
  error, calibrated per camera on its first ``calib_segments`` segments (assumed normal).
  With trained DPC weights in the heads file the forecaster is :class:`vigil.model.dpc.DPCForecaster`;
  without them it is :class:`PersistenceForecaster` (forecast = mean of the recent
  embeddings), a parameter-free stand-in so the stream is meaningful before training.
- ``gate``: ``s = g * s_sem + (1 - g) * s_pred``, ``g = sigmoid(MLP(c))``.

The camera's state (history, running global embedding, calibration) is data owned by the
caller, passed in and returned, so a consumer can keep it anywhere (JSON via ``to_dict``).
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from vigil.model.backbones import Backbone, create_backbone
from vigil.model.coop import CoOpConfig, PromptLearner
from vigil.model.frame_scorer import FrameScorer, window_vote
from vigil.model.gate import FusionGate, TextGate, build_context, fuse
from vigil.model.prompts import PromptSet, TextEmbeddingCache, load_prompt_set
from vigil.model.temporal import TemporalModule
from vigil.model.video_encoder import VideoEncoder

PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

log = logging.getLogger(__name__)


def resolve_runtime(device: str = "auto", precision: str = "auto") -> tuple[str, str]:
    """``model.device`` / ``model.precision`` settings → (torch device, precision) on this process:
    ``auto`` is the GPU when one is visible (fp16 there), else the CPU (fp32)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    elif device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"model.device {device!r} but this process sees no GPU: give the Encode replica one "
                         f"(serve.encoder_num_gpus: 1) or set model.device: auto")
    if precision == "auto":
        precision = "fp16" if device.startswith("cuda") else "fp32"
    return device, precision

STREAMS = ("semantic", "predictive")
Mode = Literal["frame", "video", "object"]


class AnomalyConfig(BaseModel):
    """Everything about the model's composition that is not a weight (saved with the heads)."""

    model_config = ConfigDict(extra="forbid")

    streams: tuple[Literal["semantic", "predictive"], ...] = Field(STREAMS, min_length=1)
    mode: Mode = Field("frame", description="frame: per-frame scores; video: + temporal module; object: detector crops")
    text_gate: bool = Field(True, description="gate text embeddings by the context c (2508.18463)")
    coop: CoOpConfig | None = Field(None, description="learnable prompt context; empty = hand-written prompts only")
    vote: Literal["majority", "mean"] = "majority"
    top_k: int = Field(3, ge=1, le=20, description="top descriptions reported per segment")
    history: int = Field(8, ge=1, le=256, description="segments the forecaster sees (N)")
    calib_segments: int = Field(16, ge=2, le=100000, description="first segments of a camera used to calibrate s_pred")
    global_window: int = Field(500, ge=1, description="running mean of the camera embedding; EMA after this many")
    g0: float = Field(0.5, gt=0, lt=1, description="initial fusion weight of the semantic stream")
    fusion_gate: bool = Field(True, description="g from the context MLP; off = the constant g0 (ablation)")
    detector: dict[str, Any] = Field(default_factory=lambda: {"type": "motion"}, description="object mode detector config")
    max_crops: int = Field(20, ge=1, le=256, description="crops per frame in object mode")
    crop_context: float = Field(
        0.25, ge=0, le=2, description="object mode cuts a square around each box with this much context "
        "(vigil.model.detectors.context_box; vigil-tiny's crops are cut the same way)")
    dpc: dict[str, int] | None = Field(None, description="DPCForecaster hyper-parameters when the heads carry one")
    timesformer: bool = Field(
        False, description="give the encoder TimeSformer temporal layers (zero-init). Off by default: trained on "
        "normal clips with DPC/InfoNCE they learnt nothing and moved the text space (benchmarks/timesformer_ablation.json)")


@dataclass
class EncodedSegment:
    frame_emb: np.ndarray  # [T, D] float32, L2-normalised, CLIP joint space
    seg_emb: np.ndarray  # [D]
    crop_emb: np.ndarray | None = None  # object mode: [N, D] crop embeddings
    crop_frame: np.ndarray | None = None  # object mode: [N] frame index of each crop
    crop_boxes: list[tuple[int, int, int, int]] | None = None  # object mode: box of each crop


@dataclass
class SegmentHistory:
    history: list[list[float]] = field(default_factory=list)  # last N segment embeddings
    global_emb: list[float] | None = None  # running mean embedding of the camera
    pred_calib: dict = field(default_factory=dict)  # warm-up raw errors, then ScoreCalibration fields
    n_segments: int = 0

    def to_dict(self) -> dict:
        return {
            "history": [list(map(float, h)) for h in self.history],
            "global_emb": None if self.global_emb is None else list(map(float, self.global_emb)),
            "pred_calib": dict(self.pred_calib),
            "n_segments": int(self.n_segments),
        }

    @classmethod
    def from_dict(cls, d: dict | None) -> SegmentHistory:
        if not d:
            return cls()
        return cls(
            history=[list(h) for h in d.get("history", [])],
            global_emb=d.get("global_emb"),
            pred_calib=dict(d.get("pred_calib", {})),
            n_segments=int(d.get("n_segments", 0)),
        )


@dataclass
class SegmentResult:
    score: float  # fused, in [0, 1]
    s_sem: float | None
    s_pred: float | None
    gate: float | None
    frame_scores: list[float]
    top_descriptions: list[tuple[str, float, bool]]  # (text, prob, abnormal)
    seg_emb: np.ndarray
    vote_abnormal: bool | None = None  # majority vote of the semantic stream
    s_pred_raw: float | None = None  # forecast error before calibration
    crop_boxes: list[list[tuple[int, int, int, int]]] | None = None  # object mode: best box per frame (or [])


class PersistenceForecaster(nn.Module):
    """Parameter-free forecaster: the next embedding is the (normalised) mean of the context.

    Used in place of DPC until trained DPC weights exist; same call signature.
    """

    def __init__(self, context: int = 8, horizon: int = 1) -> None:
        super().__init__()
        self.context, self.horizon = context, horizon

    def forward(self, ctx: torch.Tensor) -> torch.Tensor:
        m = F.normalize(F.normalize(ctx[:, -self.context :], dim=-1).mean(dim=1), dim=-1)
        return m.unsqueeze(1).expand(-1, self.horizon, -1)


def _forecast_error(pred: torch.Tensor, actual: torch.Tensor) -> torch.Tensor:
    return 1.0 - F.cosine_similarity(pred, actual, dim=-1)


class AnomalyModel(nn.Module):
    """Backbone + every head. Built by :meth:`create`; see the module doc."""

    def __init__(self, backbone: Backbone, config: AnomalyConfig | None = None, prompt_set: PromptSet | None = None):
        super().__init__()
        self.backbone = backbone
        self.config = config or AnomalyConfig()
        dim = backbone.embed_dim
        self.dim = dim
        self.clip = backbone.model
        for p in self.clip.parameters():
            p.requires_grad_(False)
        self.encoder = VideoEncoder(self.clip, temporal=self.config.timesformer)
        self.scorer = FrameScorer(dim)
        self.temporal = TemporalModule(dim)
        self.text_gate = TextGate(dim)
        self.fusion = FusionGate(dim, g0=self.config.g0)
        self.coop = PromptLearner(self.clip, backbone.tokenizer, self.config.coop) if self.config.coop else None
        self.forecaster: nn.Module = PersistenceForecaster(self.config.history)
        if self.config.dpc:
            self._make_dpc(self.config.dpc)
        self.heads_digest = "zs"  # zero-shot: no trained heads loaded
        self._cache = TextEmbeddingCache()
        self.prompt_set = prompt_set or load_prompt_set("default")
        self.scorer.bind(self.prompt_set.descriptions)
        if self.coop is not None:
            self.coop.bind(self.prompt_set.descriptions)
        self.eval()

    def _make_dpc(self, hp: dict[str, int]) -> None:
        from vigil.model.dpc import DPCForecaster  # owned by the predictive-stream module

        self.forecaster = DPCForecaster(self.dim, **{k: v for k, v in hp.items() if k != "dim"})
        if self.forecaster.context > self.config.history:  # keep enough history for the forecaster
            self.config = self.config.model_copy(update={"history": self.forecaster.context})

    # ------------------------------------------------------------------ construction
    @classmethod
    def create(
        cls,
        backbone: str,
        *,
        heads: str | Path | None = None,
        streams: Sequence[str] = STREAMS,
        allow_download: bool = False,
        device: str = "cpu",
        prompt_set: PromptSet | str | None = None,
        **config: Any,
    ) -> AnomalyModel:
        """Backbone by registry reference; trained heads from ``heads`` (a file saved by
        :func:`vigil.model.heads.save_heads`) or zero-shot initial heads when empty.

        Extra keyword arguments are :class:`AnomalyConfig` fields (``mode``, ``text_gate``,
        ``coop``...); with a heads file, its saved config is used and these override it.
        """
        from vigil.model import heads as heads_io

        bb = create_backbone(backbone, allow_download=allow_download, device=device)
        ps = load_prompt_set(prompt_set) if isinstance(prompt_set, str) else prompt_set
        if heads:
            return heads_io.load_heads(heads, bb, streams=tuple(streams), prompt_set=ps, **config)
        cfg = AnomalyConfig(streams=tuple(streams), **config)
        return cls(bb, cfg, ps).to(device)

    # ------------------------------------------------------------------ identity
    @property
    def version(self) -> str:
        return f"{self.backbone.version}+heads:{self.heads_digest}"

    @property
    def image_size(self) -> int:
        return self.backbone.image_size

    @property
    def device(self) -> torch.device:
        return next(self.clip.parameters()).device

    # ------------------------------------------------------------------ runtime (not saved with the heads)
    precision: str = "fp32"  # fp32 | fp16 | bf16: the encoder's forward passes under autocast
    pin_memory: bool = False  # page-locked host batches, copied to the GPU asynchronously

    def set_runtime(self, precision: str = "fp32", pin_memory: bool = False) -> AnomalyModel:
        """How the encoder runs on this replica's device (``model.precision``, ``model.pin_memory``).

        Half precision runs the image tower under :func:`torch.autocast` (weights stay fp32:
        the heads, prompts and scores keep full precision); embeddings come out fp32 either way.
        """
        if precision not in PRECISIONS:
            raise ValueError(f"precision {precision!r}: use one of {', '.join(PRECISIONS)}")
        if precision == "fp16" and self.device.type == "cpu":
            raise ValueError("precision fp16 needs a CUDA device (model.device: cuda); on CPU use bf16 or fp32")
        self.precision, self.pin_memory = precision, bool(pin_memory and self.device.type == "cuda")
        return self

    def _autocast(self):
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        if self.pin_memory:
            return x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)

    def head_modules(self) -> dict[str, nn.Module]:
        """Every trainable head by name (what :mod:`vigil.model.heads` saves)."""
        mods: dict[str, nn.Module] = {
            "video": self.encoder,
            "scorer": self.scorer,
            "temporal": self.temporal,
            "text_gate": self.text_gate,
            "fusion": self.fusion,
        }
        if self.coop is not None:
            mods["coop"] = self.coop
        if not isinstance(self.forecaster, PersistenceForecaster):
            mods["dpc"] = self.forecaster
        return mods

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> AnomalyModel:
        super().train(mode)
        self.clip.eval()  # the CLIP towers are frozen; never dropout
        return self

    # ------------------------------------------------------------------ prompts
    def set_prompts(self, prompt_set: PromptSet) -> None:
        """Switch the default prompt set without reloading; its embeddings are computed once."""
        self.prompt_set = prompt_set
        self.text_embeddings(prompt_set)

    def bind_prompts(self, ps: PromptSet) -> None:
        """Size the per-description heads (``A_k``, ``b_k``, class-specific CoOp) for ``ps`` (training).

        Learned values of descriptions already known are kept; this replaces those
        parameter tensors, so build the optimizer afterwards.
        """
        self.scorer.bind(ps.descriptions)
        if self.coop is not None:
            self.coop.bind(ps.descriptions)
        self._cache.clear()

    def _encode_prompt_set(self, ps: PromptSet) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return {"text": self.text_features(ps).detach(), "scene": self._plain_text(ps.scene).detach()}

    def _plain_text(self, texts: list[str]) -> torch.Tensor:
        if not texts:
            return torch.zeros(0, self.dim, device=self.device)
        tok = self.backbone.tokenizer(texts).to(self.device)
        return F.normalize(self.clip.encode_text(tok).float(), dim=-1)

    def text_features(self, ps: PromptSet) -> torch.Tensor:
        """Text embeddings ``[K, D]`` of ``ps`` (CoOp when configured), with gradients to CoOp."""
        if self.coop is not None:
            return self.coop(ps.texts, ps.descriptions)
        return self._plain_text(ps.texts)

    def text_embeddings(self, ps: PromptSet | None = None) -> dict[str, torch.Tensor]:
        """Cached ``{"text": [K, D], "scene": [S, D]}`` per (model version, prompt-set version)."""
        ps = ps or self.prompt_set
        key = self.version
        if self.coop is not None:
            # CoOp weights changed in this process (training, load_state_dict) must not hit
            # embeddings cached before: the tensor's version counter moves with every in-place update.
            key = f"{key}#coop:{id(self.coop.ctx)}:{self.coop.ctx._version}"
        return self._cache.get(key, ps, self._encode_prompt_set)  # type: ignore[return-value]

    # ------------------------------------------------------------------ encoding
    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """uint8 RGB ``[T, H, W, 3]`` → ``[T, 3, S, S]`` (the backbone's own normalisation)."""
        return self.backbone.preprocess_frames(frames)

    @torch.no_grad()
    def encode(self, batch: torch.Tensor) -> list[EncodedSegment]:
        """``[B, T, 3, S, S]`` → one :class:`EncodedSegment` per segment (one visual forward pass)."""
        was_training = self.training
        self.eval()
        try:
            with self._autocast():
                frame, seg = self.encoder(self._to_device(batch))
        finally:
            self.train(was_training)
        frame_np = frame.cpu().numpy().astype(np.float32)
        seg_np = seg.cpu().numpy().astype(np.float32)
        return [EncodedSegment(frame_emb=frame_np[i], seg_emb=seg_np[i]) for i in range(len(frame_np))]

    @torch.no_grad()
    def encode_frames(self, segments: Sequence[np.ndarray], detectors: Sequence[Any] | None = None,
                      boxes: Sequence[list] | None = None) -> list[EncodedSegment]:
        """Raw uint8 segments ``[T, H, W, 3]`` (equal T) → encoded segments; in object mode with crops.

        Object mode: around each frame's boxes (at most ``max_crops``) a square with
        ``crop_context`` context is cut from the full-resolution frame, resized to the
        backbone's input and embedded by the CLIP image tower in one batch (crops have no time
        axis, so the temporal layers do not apply to them). ``crop_boxes`` keep the detector's
        boxes, which is what an analyst sees drawn. ``detectors``
        (one per segment, e.g. per camera, for stateful background models) default to a fresh
        detector per segment; ``boxes`` (per segment, per frame) are boxes found already, by the
        served Detect stage (:func:`vigil.model.stages.detect`).
        """
        # one forward pass per frame count (a batch mixes cameras; most share one T), in input order
        out: list[EncodedSegment | None] = [None] * len(segments)
        by_t: dict[int, list[int]] = {}
        for i, s in enumerate(segments):
            by_t.setdefault(len(s), []).append(i)
        for idx in by_t.values():
            batch = torch.stack([self.preprocess(segments[i]) for i in idx])
            for i, enc in zip(idx, self.encode(batch)):
                out[i] = enc
        if self.config.mode != "object":
            return out  # type: ignore[return-value]
        from vigil.model.detectors import build_detector, context_box

        # every segment's crops through the image tower in one forward pass
        crops, owner, frame_of, kept = [], [], [], []
        for i, frames in enumerate(segments):
            if boxes is not None:
                boxes_per_frame = boxes[i]
            else:
                det = detectors[i] if detectors is not None else build_detector(self.config.detector)
                boxes_per_frame = det.detect(frames)
            h, w = frames.shape[1:3]
            for t, boxes_t in enumerate(boxes_per_frame):
                for (x0, y0, x1, y1) in list(boxes_t)[: self.config.max_crops]:
                    x0, y0, x1, y1 = max(0, int(x0)), max(0, int(y0)), min(w, int(x1)), min(h, int(y1))
                    if x1 - x0 < 2 or y1 - y0 < 2:
                        continue
                    cx0, cy0, cx1, cy1 = context_box((x0, y0, x1, y1), w, h, self.config.crop_context)
                    crops.append(np.ascontiguousarray(frames[t, cy0:cy1, cx0:cx1]))
                    owner.append(i)
                    frame_of.append(t)
                    kept.append((x0, y0, x1, y1))
        if crops:
            x = self._to_device(torch.cat([self.preprocess(c[None]) for c in crops]))
            with self._autocast():
                emb = F.normalize(self.clip.encode_image(x).float(), dim=-1).cpu().numpy().astype(np.float32)
        else:
            emb = np.zeros((0, self.dim), np.float32)
        owner_np, frame_np = np.asarray(owner, np.int64), np.asarray(frame_of, np.int64)
        for i, enc in enumerate(out):
            sel = np.flatnonzero(owner_np == i)
            enc.crop_emb, enc.crop_frame = emb[sel], frame_np[sel]
            enc.crop_boxes = [kept[j] for j in sel]
        return out  # type: ignore[return-value]

    # ------------------------------------------------------------------ scoring
    def semantic_probs(
        self,
        frame_emb: torch.Tensor,
        seg_emb: torch.Tensor,
        ps: PromptSet,
        global_emb: torch.Tensor | None = None,
        text: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Differentiable semantic stream: frame embeddings ``[B, T, D]`` → probabilities ``[B, T, K]``.

        Used by :meth:`score` (cached text, no grad) and by training (``text=None``: text
        embeddings recomputed with gradients to CoOp).
        """
        if text is None:
            text = {"text": self.text_features(ps), "scene": self._plain_text(ps.scene)}
        t = text["text"]
        if self.config.mode == "video":
            frame_emb = self.temporal(frame_emb)
        if self.config.text_gate:
            c = build_context(seg_emb, text["scene"], global_emb)  # [B, 2D]
            t = self.text_gate(t, c)  # [B, K, D]
            t = t.unsqueeze(1)  # broadcast over frames
        return self.scorer(frame_emb, t, ps.descriptions)

    def forward_train(
        self, video: torch.Tensor, ps: PromptSet | None = None, global_emb: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Differentiable pass for training the heads: ``[B, T, 3, S, S]`` →

        ``frame`` ``[B, T, D]`` (after the temporal module in video mode), ``seg`` ``[B, D]``,
        ``text`` ``[K, D]`` (CoOp if configured, before gating), ``probs`` ``[B, T, K]``,
        ``s_sem`` ``[B, T]``. Gradients reach only the heads: the CLIP towers are frozen.
        Combine with :func:`vigil.model.temporal.video_loss` (``frame``, ``text``) or a
        frame-level loss on ``probs``.
        """
        ps = ps or self.prompt_set
        if self.scorer.descriptions != ps.descriptions or (
            self.coop is not None and self.coop.config.class_specific and self.coop.descriptions != ps.descriptions
        ):
            raise ValueError(
                f"the per-description heads are bound to other descriptions than prompt set {ps.name!r}; "
                f"call model.bind_prompts(prompt_set) before building the optimizer"
            )
        frame, seg = self.encoder(video.to(self.device))
        text = {"text": self.text_features(ps), "scene": self._plain_text(ps.scene).detach()}
        probs = self.semantic_probs(frame, seg, ps, global_emb, text)
        mask = torch.as_tensor(ps.abnormal_mask, dtype=probs.dtype, device=probs.device)
        frame_t = self.temporal(frame) if self.config.mode == "video" else frame
        return {"frame": frame_t, "seg": seg, "text": text["text"], "probs": probs, "s_sem": (probs * mask).sum(-1)}

    @torch.no_grad()
    def score(
        self, enc: EncodedSegment, state: SegmentHistory | None, prompt_set: PromptSet | None = None
    ) -> tuple[SegmentResult, SegmentHistory]:
        """Score one encoded segment of one camera; returns the result and the camera's new state."""
        cfg = self.config
        ps = prompt_set or self.prompt_set
        state = SegmentHistory.from_dict(state.to_dict()) if state is not None else SegmentHistory()
        dev = self.device
        seg = torch.from_numpy(np.asarray(enc.seg_emb, np.float32)).to(dev)
        glob = torch.tensor(state.global_emb, dtype=torch.float32, device=dev) if state.global_emb is not None else None
        text = self.text_embeddings(ps)
        c = build_context(seg[None], text["scene"], glob)  # [1, 2D]

        s_sem = vote_abn = None
        frame_scores: list[float] = []
        top: list[tuple[str, float, bool]] = []
        best_boxes = None
        if "semantic" in cfg.streams:
            frames = torch.from_numpy(np.asarray(enc.frame_emb, np.float32)).to(dev)
            probs = self.semantic_probs(frames[None], seg[None], ps, glob, text)[0]  # [T, K]
            if cfg.mode == "object" and enc.crop_emb is not None and len(enc.crop_emb):
                probs, best_boxes = self._object_probs(enc, probs, seg, ps, glob, text)
            v = window_vote(probs.cpu().numpy(), ps.descriptions, ps.abnormal_mask, top_k=cfg.top_k, vote=cfg.vote)
            s_sem, vote_abn, frame_scores, top = v.score, v.abnormal, v.frame_scores, v.top

        s_pred = raw = None
        if "predictive" in cfg.streams and state.history:
            hist = torch.tensor(state.history[-cfg.history :], dtype=torch.float32, device=dev)[None]
            pred = self.forecaster(hist)[:, 0]
            raw = float(_forecast_error(pred, seg[None])[0])
            s_pred = self._calibrated(state, raw)

        g = None
        if s_sem is not None and s_pred is not None:
            g = float(self.fusion(c)[0]) if cfg.fusion_gate else cfg.g0
        score = min(1.0, max(0.0, fuse(s_sem, s_pred, g)))
        self._update_state(state, enc.seg_emb)
        res = SegmentResult(
            score=score, s_sem=s_sem, s_pred=s_pred, gate=g, frame_scores=frame_scores, top_descriptions=top,
            seg_emb=np.asarray(enc.seg_emb, np.float32), vote_abnormal=vote_abn, s_pred_raw=raw, crop_boxes=best_boxes,
        )
        return res, state

    @torch.no_grad()
    def calibrate(self, normal: Sequence[EncodedSegment], state: SegmentHistory | None = None) -> SegmentHistory:
        """Calibrate ``s_pred`` of a camera on a run of its normal segments (in time order).

        Replaces the warm-up calibration: the forecast errors of ``normal`` (each predicted
        from the segments before it) fit the camera's :class:`~vigil.model.calibration.ScoreCalibration`;
        the returned state also carries their history and running global embedding.
        """
        from vigil.model.calibration import fit_calibration

        state = SegmentHistory.from_dict(state.to_dict()) if state is not None else SegmentHistory()
        raws: list[float] = []
        for enc in normal:
            if state.history:
                hist = torch.tensor(state.history[-self.config.history :], dtype=torch.float32, device=self.device)[None]
                seg = torch.from_numpy(np.asarray(enc.seg_emb, np.float32)).to(self.device)
                raws.append(float(_forecast_error(self.forecaster(hist)[:, 0], seg[None])[0]))
            self._update_state(state, enc.seg_emb)
        if len(raws) < 2:
            raise ValueError(f"calibration needs at least 3 normal segments, got {len(normal)}")
        state.pred_calib = {"model": self.version, **fit_calibration(raws).to_dict()}
        return state

    def _object_probs(self, enc, frame_probs, seg, ps, glob, text):
        """Per frame, the probabilities of its highest-scoring crop (frames without crops keep the whole frame)."""
        crops = torch.from_numpy(enc.crop_emb).to(self.device)
        t = text["text"]
        if self.config.text_gate:
            t = self.text_gate(t, build_context(seg[None], text["scene"], glob))[0]
        p_crop = self.scorer(crops, t, ps.descriptions)  # [N, K]
        s_crop = (p_crop * torch.as_tensor(ps.abnormal_mask, dtype=p_crop.dtype, device=p_crop.device)).sum(-1)
        probs = frame_probs.clone()
        boxes: list[list[tuple[int, int, int, int]]] = [[] for _ in range(probs.shape[0])]
        best = torch.full((probs.shape[0],), -1.0, device=probs.device)
        for n, fi in enumerate(enc.crop_frame.tolist()):
            if s_crop[n] > best[fi]:
                best[fi] = s_crop[n]
                probs[fi] = p_crop[n]
                boxes[fi] = [tuple(enc.crop_boxes[n])] if enc.crop_boxes else []
        return probs, boxes

    def _calibrated(self, state: SegmentHistory, raw: float) -> float | None:
        """Warm-up: collect raw errors of the first ``calib_segments`` (assumed normal), then fit."""
        from vigil.model.calibration import ScoreCalibration, fit_calibration

        cal = state.pred_calib
        if cal.get("model") != self.version:
            cal = {}  # calibrated under other heads/backbone (or never): the error scale differs, start over
        if "median" not in cal:
            warm = list(cal.get("warmup", [])) + [raw]
            if len(warm) < self.config.calib_segments:
                state.pred_calib = {"model": self.version, "warmup": warm}
                return None
            cal = {"model": self.version, **fit_calibration(warm).to_dict()}
        state.pred_calib = cal
        return float(ScoreCalibration.from_dict(cal).probability(raw))

    def _update_state(self, state: SegmentHistory, seg_emb: np.ndarray) -> None:
        emb = [float(x) for x in np.asarray(seg_emb, np.float32)]
        state.history = (state.history + [emb])[-self.config.history :]
        n = state.n_segments + 1
        if state.global_emb is None:
            state.global_emb = emb
        else:
            a = 1.0 / min(n, self.config.global_window)
            state.global_emb = [(1 - a) * g + a * e for g, e in zip(state.global_emb, emb)]
        state.n_segments = n
