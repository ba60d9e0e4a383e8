"""Settings of a heads-training run (``vigil train``): one typed tree, unknown keys refused.

Read from the YAML file given to ``vigil train --train-config`` (all keys optional), then
overridden by the command's options. The Ray Train ``ScalingConfig`` comes from
:attr:`TrainConfig.scaling` (CPU workers here, GPUs on a cluster).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ScalingSettings(_Strict):
    num_workers: int = Field(2, ge=1, le=1024, description="Ray Train workers (one DDP rank each)")
    use_gpu: bool = Field(False, description="one GPU per worker")
    cpus_per_worker: float = Field(1.0, gt=0, description="CPUs reserved per worker")
    torch_threads: int = Field(1, ge=1, le=256, description="intra-op threads in each worker")

    def ray(self) -> Any:
        from ray.train import ScalingConfig

        return ScalingConfig(
            num_workers=self.num_workers, use_gpu=self.use_gpu, resources_per_worker={"CPU": self.cpus_per_worker}
        )


class LossWeights(_Strict):
    """Weights of the terms of the training objective (see :mod:`services.trainer.objective`)."""

    frame: float = Field(1.0, ge=0, description="frame-level hinge on s_sem (false positives pushed under the margin)")
    vid: float = Field(0.1, ge=0, description="VadCLIP L_vid = L_ali + 0.1 L_cts (temporal module, CoOp)")
    cpc: float = Field(1.0, ge=0, description="DPC InfoNCE on sequences of normal segment embeddings")
    gate: float = Field(0.5, ge=0, description="hinge on the fused score g*s_sem + (1-g)*s_pred")
    anchor: float = Field(0.01, ge=0, description="L2 pull of every head towards the parent version (keeps zero-shot)")


class DataSettings(_Strict):
    frames_per_segment: int = Field(16, ge=1, le=256, description="T: clips are cut into segments of T frames")
    holdout_every: int = Field(
        3, ge=2, le=1000, description="every n-th normal calibration clip of a camera is held out for evaluation"
    )
    use_confirmed_anomalies: bool = Field(
        False, description="train on analyst-confirmed anomalies too (opt-in: the model is no longer zero-shot)"
    )
    cameras: list[str] | None = Field(None, description="only these cameras; empty = every camera with clips")
    false_positive_weight: float = Field(4.0, gt=0, description="sample weight of a false-positive segment")


class GateSettings(_Strict):
    """Evaluation gate: the candidate is registered only when it beats the active version."""

    auc_tolerance: float = Field(0.0, ge=0, le=1, description="AUC may drop at most this much")
    fa_tolerance: float = Field(0.0, ge=0, description="false alarms/hour may rise at most this much")
    miss_tolerance: int = Field(
        0, ge=0, description="held-out abnormal segments under the threshold may rise at most this much"
    )
    threshold: float | None = Field(
        None, ge=0, le=1, description="alarm threshold; empty = each camera's params.threshold"
    )


class TrainConfig(_Strict):
    backbone: str | None = Field(None, description="backbone registry name; empty = settings.model.backbone")
    prompt_set: str | None = Field(None, description="prompt set; empty = settings.model.prompt_set")
    mode: Literal["frame", "video"] = Field("frame", description="video: train the temporal module too")
    coop: bool = Field(True, description="learn a CoOp prompt context (class-specific, length n_ctx)")
    coop_n_ctx: int = Field(4, ge=1, le=64, description="CoOp context length (the paper: 16)")
    dpc_hidden: int = Field(64, ge=8, le=4096)
    dpc_context: int = Field(4, ge=1, le=64)
    dpc_horizon: int = Field(1, ge=1, le=8)
    dpc_min_windows: int = Field(
        64, ge=2, description="train the DPC forecaster only with at least this many windows of normal segments"
    )
    epochs: int = Field(30, ge=1, le=10000)
    batch_size: int = Field(16, ge=1, le=4096)
    lr: float = Field(3e-3, gt=0, le=1)
    weight_decay: float = Field(0.0, ge=0)
    margin: float = Field(0.45, ge=0, le=1, description="hinge margin: normal segments are pushed under it")
    seed: int = 0
    max_failures: int = Field(2, ge=0, description="worker-group restarts from the last checkpoint")
    activate: bool = Field(True, description="activate a version that passes the gate (Serve reconfigure)")
    scaling: ScalingSettings = Field(default_factory=ScalingSettings)
    losses: LossWeights = Field(default_factory=LossWeights)
    data: DataSettings = Field(default_factory=DataSettings)
    gate: GateSettings = Field(default_factory=GateSettings)


def load_train_config(path: str | Path | None = None, **overrides: Any) -> TrainConfig:
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        if not p.is_file():
            raise ValueError(f"training config {p} does not exist")
        data = yaml.safe_load(p.read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"training config {p} must hold a mapping")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**data)
