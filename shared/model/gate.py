"""Context gate: scene context ``c``, context-gated text (arXiv 2508.18463) and stream fusion.

- Context ``c = [scene cue ; camera global embedding]`` (``2D`` values). The scene cue is the
  similarity-weighted mean of the scene-prompt text embeddings,
  ``sum_s softmax_s(100 * <seg, scene_s>) * scene_s``; the global embedding is the camera's
  running mean segment embedding (zeros before the first segment).
  *Chosen here:* 2508.18463 conditions on a scene descriptor without fixing its form; a
  fixed-size cue in CLIP space (instead of a vector of S similarities) lets users change
  the number of scene prompts without invalidating trained gates.
- *Differs from the paper's code:* 2508.18463 takes the scene context from a Places365
  ResNet-18 (projected to 128-d); those weights are not available offline, and the issue
  asks for scene-prompt similarities, so the scene cue comes from CLIP itself (one encoder
  pass, no second network).
- Text gating ``t' = normalize(t + SiLU(W c + b))`` (the paper's code writes the same gate as
  ``t + sigmoid(x) * x`` with ``x = W c + b``, without the final normalisation). *Chosen here:* ``W`` and ``b`` start at
  zero, so an untrained gate leaves the zero-shot text embeddings unchanged.
- Fusion ``s = g * s_sem + (1 - g) * s_pred`` with ``g = sigmoid(MLP(c))`` (two layers, hidden
  64, ReLU). *Chosen here:* the last layer starts at zero weight and bias ``logit(g0)``,
  ``g0 = 0.5`` by default; when a stream is off or not yet available (no history, no
  calibration) the other stream's score is used alone.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def scene_cue(seg_emb: torch.Tensor, scene_text: torch.Tensor | None, scale: float = 100.0) -> torch.Tensor:
    """``[..., D]`` similarity-weighted scene text embedding (zeros without scene prompts)."""
    if scene_text is None or scene_text.shape[0] == 0:
        return torch.zeros_like(seg_emb)
    w = (scale * seg_emb @ scene_text.T).softmax(dim=-1)
    return w @ scene_text


def build_context(
    seg_emb: torch.Tensor, scene_text: torch.Tensor | None, global_emb: torch.Tensor | None
) -> torch.Tensor:
    """``c`` ``[..., 2D]`` = [scene cue ; global embedding]."""
    g = torch.zeros_like(seg_emb) if global_emb is None else global_emb.to(seg_emb).expand_as(seg_emb)
    return torch.cat([scene_cue(seg_emb, scene_text), g], dim=-1)


class TextGate(nn.Module):
    """``t' = normalize(t + SiLU(W c + b))``; ``W``, ``b`` zero-init (identity at start)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.proj = nn.Linear(2 * dim, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, t: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        """``t`` ``[K, D]``, ``c`` ``[2D]`` or ``[B, 2D]`` → ``[K, D]`` or ``[B, K, D]``."""
        shift = F.silu(self.proj(c))
        if shift.ndim == 2:
            return F.normalize(t.unsqueeze(0) + shift.unsqueeze(1), dim=-1)
        return F.normalize(t + shift, dim=-1)


class FusionGate(nn.Module):
    """``g = sigmoid(MLP(c))``; starts at ``g0`` for every context."""

    def __init__(self, dim: int, hidden: int = 64, g0: float = 0.5) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.constant_(self.mlp[2].bias, math.log(g0 / (1 - g0)))

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.mlp(c)).squeeze(-1)


def fuse(s_sem: float | None, s_pred: float | None, g: float | None) -> float:
    """``g * s_sem + (1 - g) * s_pred``; a missing stream leaves the other alone; both missing → 0."""
    if s_sem is None and s_pred is None:
        return 0.0
    if s_pred is None:
        return float(s_sem)
    if s_sem is None:
        return float(s_pred)
    g = 0.5 if g is None else g
    return float(g * s_sem + (1.0 - g) * s_pred)


class ContextGate(nn.Module):
    """Stream weights from the crop's scene cues: ``w = softmax(MLP(c))`` over the streams.

    With two streams this is the paper's ``s = g·s_a + (1-g)·s_b``, ``g = sigmoid(MLP(c))``
    (arXiv 2508.18463); a softmax extends it to the three streams here. The last layer
    starts at zero, so an unfitted gate is the even mix.
    """

    def __init__(self, dim: int = 4, hidden: int = 16, streams: int = 3) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, streams))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, c: torch.Tensor, active: list[int] | None = None) -> torch.Tensor:
        logits = self.mlp(c)
        if active is not None:
            logits = logits[:, active]
        return torch.softmax(logits, dim=-1)
