"""Object normality: what is usual for this camera's objects, learned from its own normal footage.

Every box Detect finds is scored by up to six streams, each calibrated on the camera's normal
footage (0 = median of normal, 1 = its 99th percentile: the crop streams on held-out clips, the
attribute streams on every normal clip, never against their own clip's boxes); the first two read
the box's crop tube (:mod:`vigil.model.tubes`), the others its attributes
(:mod:`vigil.model.attributes`):

- ``pred``: DPC forecast error of the crop given its tube's context (:mod:`vigil.model.dpc`);
  the encoder (a registry backbone's visual tower, trained from scratch) embeds each crop;
  InfoNCE negatives are the other tubes of the batch and the other target steps of the tube;
- ``mem``: distance of the crop's embedding to a memory of normal crop embeddings;
- ``motion``: the box's speed (robust percentile of optical-flow magnitude), no learning;
- ``attr``: distance of the box's velocity attributes (mean flow and its orientation
  histogram, :mod:`vigil.model.attributes`) to the nearest normal boxes of this camera;
- ``place_speed``: the box's speed over the speed normal objects reach *at that place in the
  view* (perspective: far people are small and slow) — the 90th percentile of the speeds of
  the ``place_k`` normal boxes nearest to it in the view;
- ``dwell``: how long the box's place has been occupied (:func:`~vigil.model.attributes.clip_dwell`):
  an object that stays where objects only pass (loitering, a person dancing in place).

A context gate (:class:`vigil.model.gate.ContextGate`) mixes them with weights
``softmax(MLP(c))`` from the crop's scene cues (place and size in the view); it is fitted on
held-out normal tubes against the same tubes sped up 3× (synthetic anomalies made from
normal footage; no real anomaly is seen). A speed-up cannot show an object that stays, so the
streams of ``max_streams`` (dwell) stay out of the mix and may raise a box's score alone.
The served defaults and the evidence for them: ``benchmarks/avenue.json``,
``benchmarks/ucsd_ped2.json``, ``benchmarks/attribute_study.json``. Training:
``services/trainer/normality.py``; serving: :mod:`vigil.model.stages`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor, nn

from vigil.model.attributes import ATTRIBUTES, N_ATTRIBUTES, PLACE_DIM, attribute_features
from vigil.model.memory import knn_distance
from vigil.model.calibration import ScoreCalibration
from vigil.model.dpc import DPCForecaster, forecast_error
from vigil.model.gate import ContextGate
from vigil.model.tubes import TubeConfig, crops_to_tensor

__all__ = ["NormalityConfig", "NormalityModel", "STREAMS"]

SPEED, H, DWELL = ATTRIBUTES.index("speed"), ATTRIBUTES.index("h"), ATTRIBUTES.index("dwell")


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
    gate: Literal["fixed", "context", "max"] = Field(
        "context",
        description="fixed: the even mix of the calibrated streams; context: weights softmax(MLP(c)) "
        "from the crop's scene cues (place and size in the view), fitted on held-out normal clips "
        "against synthetic speed-ups of them (no real anomaly is ever seen); max: the most alarmed "
        "calibrated stream (any stream may raise an alarm)",
    )
    streams: list[Literal["pred", "mem", "motion", "attr", "place_speed", "dwell"]] = Field(
        default_factory=lambda: ["motion", "attr", "place_speed"],
        description="pred: DPC forecast error; mem: distance to normal crop memory; motion: calibrated box speed; "
        "attr: distance of the box's velocity attributes to the camera's normal boxes; place_speed: the box's "
        "speed over the speed normal objects reach at that place in the view; dwell: how long the box's place "
        "has been occupied",
    )
    max_streams: list[Literal["pred", "mem", "motion", "attr", "place_speed", "dwell"]] = Field(
        default_factory=lambda: ["dwell"],
        description="streams kept out of the gate's mix, each able to raise a crop's score alone: the gate is "
        "fitted on sped-up normal footage, which cannot show what they find (an object that stays is not a "
        "speed-up)",
    )
    dwell_s: float = Field(5.0, gt=0, le=600, description="time constant of the occupancy map dwell reads (seconds)")
    attr_k: int = Field(5, ge=1, le=64, description="normal boxes averaged by the attribute stream")
    attr_place_weight: float = Field(
        0.0, ge=0, le=10, description="weight of place and size against velocity in the attribute space "
        "(0: velocity alone, wherever it happens)",
    )
    place_k: int = Field(100, ge=1, le=10000, description="normal boxes nearest in the view that define a place's speeds")
    place_quantile: float = Field(0.9, gt=0, le=1, description="quantile of their speeds a box's speed is divided by")
    smooth_s: float = Field(0.5, ge=0, le=30, description="Gaussian smoothing of frame scores (sigma, seconds)")
    empty_score: float = Field(-1.0, description="calibrated score of a frame without boxes")


STREAMS = ("pred", "mem", "motion", "attr", "place_speed", "dwell")
MIN_SPEED = 0.5  # work pixels per flow gap: the slowest motion box_speed counts (slower places divide by this)


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
        self.gate = ContextGate(streams=len(STREAMS))
        self.register_buffer("memory", torch.zeros(0, self.dim))
        # the attribute stream's normal boxes: raw attribute vectors (explanations read them) and
        # their standardisation in the feature space the density works in
        self.register_buffer("attr_bank", torch.zeros(0, N_ATTRIBUTES))
        self.register_buffer("attr_mean", torch.zeros(0))
        self.register_buffer("attr_std", torch.zeros(0))
        self.calibration: dict[str, ScoreCalibration] = {}
        self.version = "untrained"  # a loaded checkpoint: the digest of its file
        self.zero_shot_version: str | None = None  # the zero-shot model calibration["zero_shot"] was fitted for

    # ------------------------------------------------------------------ embedding
    def embed(self, crops: np.ndarray | Tensor, batch: int = 2048) -> Tensor:
        """uint8 crops ``[B, S, S, 3]`` (or a prepared tensor ``[B, 3, S, S]``) → unit embeddings ``[B, D]``."""
        x = crops_to_tensor(crops) if isinstance(crops, np.ndarray) else crops
        outs = [self.encoder(x[i : i + batch]) for i in range(0, len(x), batch)] or [torch.zeros(0, self.dim)]
        return F.normalize(torch.cat(outs), dim=-1)

    # ------------------------------------------------------------------ raw stream scores
    # ------------------------------------------------------------------ attributes
    def attribute_space(self, attrs: np.ndarray) -> Tensor:
        """Raw attribute vectors ``[B, N_ATTRIBUTES]`` → standardised features of the attribute density."""
        f = torch.from_numpy(attribute_features(attrs, 1.0))
        f = (f - self.attr_mean.double()) / self.attr_std.double()
        return torch.cat([f[:, :-PLACE_DIM], self.config.attr_place_weight * f[:, -PLACE_DIM:]], dim=1)

    def fit_attributes(self, attrs: np.ndarray) -> None:
        """The camera's normal boxes (raw attribute vectors) become the attribute stream's bank."""
        a = np.asarray(attrs, np.float32).reshape(-1, N_ATTRIBUTES)
        f = attribute_features(a, 1.0)
        self.attr_mean = torch.from_numpy(f.mean(0)).float()
        self.attr_std = torch.from_numpy(f.std(0) + 1e-3).float()
        self.attr_bank = torch.from_numpy(a)

    def _bank_views(self) -> tuple[Tensor, Tensor]:
        """(the bank in the attribute space, its moving boxes), computed once per bank and place weight:
        Score asks for them on every segment."""
        key = (self.attr_bank.data_ptr(), len(self.attr_bank), self.config.attr_place_weight)
        if getattr(self, "_bank_cache", (None,))[0] != key:
            space = self.attribute_space(self.attr_bank.numpy()) if len(self.attr_bank) else torch.zeros(0)
            self._bank_cache = (key, space, self.attr_bank[self.attr_bank[:, SPEED] > 0])
        return self._bank_cache[1], self._bank_cache[2]

    def attribute_distance(self, attrs: np.ndarray, exclude: Tensor | None = None) -> np.ndarray:
        """Mean distance of each box's attributes to its ``attr_k`` nearest normal boxes (0 without a bank)."""
        attrs = np.asarray(attrs, np.float32).reshape(-1, N_ATTRIBUTES)
        if len(self.attr_bank) == 0 or len(attrs) == 0:
            return np.zeros(len(attrs))
        bank, _ = self._bank_views()
        q = self.attribute_space(attrs)
        k = min(self.config.attr_k, len(bank))
        out = []
        for i in range(0, len(q), 2048):
            d = torch.cdist(q[i : i + 2048], bank)
            if exclude is not None:
                d = d.masked_fill(exclude[i : i + 2048], float("inf"))
            out.append(d.topk(k, dim=1, largest=False).values.mean(1))
        return torch.cat(out).numpy()

    def place_reference(self, attrs: np.ndarray, exclude: Tensor | None = None) -> dict[str, np.ndarray]:
        """What normal moving objects do at each box's place: over the ``place_k`` normal boxes nearest
        to it in the view, the ``place_quantile`` of their speeds (``speed_q``), their median speed,
        height and dwell (``speed_median``, ``h_median``, ``dwell_median``), each ``[B]``."""
        attrs = np.asarray(attrs, np.float32).reshape(-1, N_ATTRIBUTES)
        _, bank = self._bank_views()  # moving normal boxes
        if len(bank) == 0 or len(attrs) == 0:
            nan = np.full(len(attrs), np.nan)
            return {"speed_q": nan, "speed_median": nan, "h_median": nan, "dwell_median": nan}
        k = min(self.config.place_k, len(bank))
        q = torch.from_numpy(attrs[:, :2])
        out: dict[str, list[Tensor]] = {"speed_q": [], "speed_median": [], "h_median": [], "dwell_median": []}
        for i in range(0, len(q), 1024):
            d = torch.cdist(q[i : i + 1024], bank[:, :2])
            if exclude is not None:
                d = d.masked_fill(exclude[i : i + 1024][:, self.attr_bank[:, SPEED] > 0], float("inf"))
            idx = d.topk(k, dim=1, largest=False).indices
            speeds, heights = bank[idx, SPEED], bank[idx, H]
            out["speed_q"].append(torch.quantile(speeds, self.config.place_quantile, dim=1))
            out["speed_median"].append(speeds.median(dim=1).values)
            out["h_median"].append(heights.median(dim=1).values)
            out["dwell_median"].append(bank[idx, DWELL].median(dim=1).values)
        return {key: torch.cat(v).double().numpy() for key, v in out.items()}

    def place_speed(self, attrs: np.ndarray, exclude: Tensor | None = None) -> np.ndarray:
        """The ``place_speed`` stream's raw score: each box's speed over its place's reference speed."""
        attrs = np.asarray(attrs, np.float32).reshape(-1, N_ATTRIBUTES)
        ref = self.place_reference(attrs, exclude)["speed_q"]
        return attrs[:, SPEED].astype(np.float64) / np.maximum(np.nan_to_num(ref, nan=MIN_SPEED), MIN_SPEED)

    @torch.no_grad()
    def raw_scores(self, tubes: np.ndarray | None, speed: np.ndarray | None = None,
                   attributes: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Tubes uint8 ``[B, context+1, S, S, 3]`` (context, then the crop scored) → raw stream scores ``[B]``.

        ``pred``: DPC forecast error; ``mem``: distance to the normal memory; ``motion``: the
        boxes' speeds (``speed``, from :func:`box_speed`) when given; ``attr``: the attribute
        density (``attributes``, from :func:`~vigil.model.attributes.box_attributes`) when given
        and the ``attr`` stream is on.
        """
        extra = {} if speed is None else {"motion": np.asarray(speed, np.float64)}
        if attributes is not None and "attr" in self.config.streams:
            extra["attr"] = self.attribute_distance(attributes)
        if attributes is not None and "place_speed" in self.config.streams:
            extra["place_speed"] = self.place_speed(attributes)
        if attributes is not None and "dwell" in self.config.streams:
            extra["dwell"] = np.asarray(attributes, np.float64).reshape(-1, N_ATTRIBUTES)[:, DWELL]
        if tubes is None:  # no crops were cut (no stream of this camera reads them)
            return extra
        b, n = tubes.shape[:2]
        if b == 0:
            return {"pred": np.zeros(0), "mem": np.zeros(0), **extra}
        z = self.embed(tubes.reshape(b * n, *tubes.shape[2:])).reshape(b, n, self.dim)
        pred = self.forecaster(z[:, :-1])[:, 0]
        out = {"pred": forecast_error(pred, z[:, -1]).numpy()}
        out["mem"] = self.memory_distance(z[:, -1]).numpy()
        return {**out, **extra}

    def memory_distance(self, z: Tensor, exclude: Tensor | None = None) -> Tensor:
        """The appearance-memory stream (:func:`vigil.model.memory.knn_distance`) against this camera's bank."""
        return knn_distance(z, self.memory, self.config.memory_k, exclude)

    def calibrated(self, raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: self.calibration[k].normalise(v) for k, v in raw.items() if k in self.calibration}

    def fuse(self, raw: dict[str, np.ndarray], context: np.ndarray | None = None) -> np.ndarray:
        """Calibrated streams → one crop score (0 ≈ typical normal, 1 ≈ worst 1 % of normal).

        The streams outside ``max_streams`` are mixed by the gate; each of ``max_streams`` may
        raise the crop's score alone (the maximum). A configured stream the observation did not
        carry (``pred``/``mem`` without crop tubes) is left out.
        """
        cfg = self.config
        cal = self.calibrated(raw)
        n = len(next(iter(raw.values()))) if raw else 0
        mixed = [k for k in cfg.streams if k in cal and k not in cfg.max_streams]
        alone = [k for k in cfg.streams if k in cal and k in cfg.max_streams]
        out = np.full(n, -np.inf) if not mixed else None
        if len(mixed) == 1:
            out = cal[mixed[0]]
        elif mixed:
            z = np.stack([cal[k] for k in mixed], axis=1)
            if cfg.gate == "max":
                out = z.max(axis=1)
            else:
                if cfg.gate == "context" and context is not None:
                    with torch.no_grad():
                        w = self.gate(torch.from_numpy(np.asarray(context, np.float32)),
                                      [STREAMS.index(k) for k in mixed]).double().numpy()
                else:
                    w = np.full((1, len(mixed)), 1.0 / len(mixed))
                out = (w * z).sum(axis=1)
        for k in alone:
            out = np.maximum(out, cal[k])
        if out is None or not np.isfinite(out).all():
            raise ValueError(f"no configured object stream {cfg.streams} among the observed {sorted(cal)}")
        return out

    def extra_state(self) -> dict[str, Any]:
        return {
            "config": self.config.model_dump(),
            "dim": self.dim,
            "calibration": {k: v.to_dict() for k, v in self.calibration.items()},
            "zero_shot_version": self.zero_shot_version,
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
        import hashlib
        import io

        data = Path(path).read_bytes()
        ck = torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)
        extra = ck["extra"]
        config = dict(extra["config"])
        # checkpoints written before the preset was configurable were trained on ultrafast flow
        config["tube"] = {"flow_preset": "ultrafast", **config.get("tube", {})}
        model = cls(NormalityConfig(**config))
        sd = ck["state_dict"]
        model.gate = ContextGate(streams=sd["gate.mlp.2.weight"].shape[0])  # versions before ``attr``: 3 streams
        for name in ("memory", "attr_bank", "attr_mean", "attr_std"):
            if name in sd:
                setattr(model, name, torch.zeros_like(sd[name]))
            else:  # a version trained before this buffer existed: its stream is off
                sd[name] = getattr(model, name)
        model.load_state_dict(sd)
        model.calibration = {k: ScoreCalibration.from_dict(v) for k, v in extra["calibration"].items()}
        model.zero_shot_version = extra.get("zero_shot_version")
        model.version = hashlib.sha256(data).hexdigest()[:12]
        return model.eval()
