"""DPC: dense predictive coding over a camera's segment embeddings.

After Han, Xie & Zisserman, "Video Representation Learning by Dense Predictive Coding"
(ICCVW 2019), as used by the predictive stream of arXiv 2508.18463: a GRU aggregates the
last ``N`` embeddings of a camera and forecasts the next ``M`` (``horizon``); training uses
an InfoNCE/CPC loss whose positives are the true future embeddings and whose negatives are
every other (item, time) pair of the batch — other cameras, other times of the same camera.
At inference ``s_pred`` is the forecast error ``1 - cos(forecast, actual)``, calibrated per
camera on normal footage (:mod:`vigil.model.calibration`).

Where the papers are silent, this module defines:

- the forecaster input is the L2-normalised embedding sequence; the GRU's last hidden
  state goes through a 2-layer MLP per future step (``horizon`` heads share the GRU, a
  step embedding tells them apart), and every forecast is L2-normalised;
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["DPCForecaster", "forecast_error", "cpc_loss"]


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
