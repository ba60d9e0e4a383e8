"""VideoEncoder: the open_clip ViT visual tower as a TimeSformer (divided space-time attention).

Every residual block of CLIP's visual transformer gets a temporal attention layer in front
of its (spatial) self-attention, as in TimeSformer's "divided space-time" scheme (Bertasius
et al., 2021): for each token position, attention across the T frames of the segment, then
CLIP's own attention across the tokens of each frame, then CLIP's MLP.

Choices where the papers are silent or do not fit CLIP:

- The temporal layer's output projection (``temporal_fc``) starts at zero, and so does the
  learned time embedding: at initialisation the encoder *is* per-frame CLIP, so its
  outputs stay in CLIP's joint text space (tested: max abs difference <= 1e-5).
- TimeSformer excludes its single class token from temporal attention; CLIP keeps one class
  token per frame and pools it, so here the class token of each frame takes part in
  temporal attention like every patch token (one token position = one temporal sequence).
- Time embedding: added once, before the first block (after ``ln_pre``), like TimeSformer.
- Segment embedding: the L2-normalised mean of the L2-normalised frame embeddings (the
  papers pool frames for the video-level score; CLIP-space mean pooling keeps it comparable
  to text embeddings).
- While every temporal projection is exactly zero (untrained), the temporal layers are
  skipped: the result is identical and costs nothing extra.

Only the temporal layers (and the time embedding) are trainable; the CLIP tower is frozen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TemporalAttention(nn.Module):
    """Pre-norm multi-head attention over time for every token position; zero-init output."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.temporal_fc = nn.Linear(width, width)
        nn.init.zeros_(self.temporal_fc.weight)
        nn.init.zeros_(self.temporal_fc.bias)

    def is_identity(self) -> bool:
        return bool(torch.count_nonzero(self.temporal_fc.weight) == 0 and torch.count_nonzero(self.temporal_fc.bias) == 0)

    def forward(self, x: torch.Tensor, frames: int) -> torch.Tensor:
        """``x``: ``[B*T, L, W]`` (batch-first) → same shape, temporal residual added."""
        bt, length, width = x.shape
        b = bt // frames
        xt = x.reshape(b, frames, length, width).permute(0, 2, 1, 3).reshape(b * length, frames, width)
        h = self.ln(xt)
        h = self.attn(h, h, h, need_weights=False)[0]
        h = self.temporal_fc(h)
        h = h.reshape(b, length, frames, width).permute(0, 2, 1, 3).reshape(bt, length, width)
        return x + h


class VideoEncoder(nn.Module):
    """Per-frame embeddings ``[B, T, D]`` and segment embeddings ``[B, D]`` from ``[B, T, 3, S, S]``."""

    def __init__(self, clip_model: nn.Module, max_frames: int = 256, temporal: bool = True) -> None:
        """``temporal=False``: per-frame CLIP only, no temporal layers at all (the served default,
        see :class:`~vigil.model.anomaly.AnomalyConfig` ``timesformer``)."""
        super().__init__()
        visual = clip_model.visual
        if not hasattr(visual, "transformer") or not hasattr(visual, "_embeds"):
            raise TypeError(f"VideoEncoder needs an open_clip VisionTransformer, got {type(visual).__name__}")
        self.visual = visual
        tr = visual.transformer
        width = tr.width
        heads = max(1, width // 64)  # open_clip's own rule for ViT configs
        self.temporal = nn.ModuleList(TemporalAttention(width, heads) for _ in tr.resblocks) if temporal else None
        self.time_embed = nn.Parameter(torch.zeros(max_frames, width)) if temporal else None
        self.max_frames = max_frames
        for p in self.visual.parameters():
            p.requires_grad_(False)

    # -- parameters that belong to this head (saved with the heads, trained)
    def head_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("visual.")}

    def load_head_state_dict(self, sd: dict[str, torch.Tensor]) -> None:
        if self.temporal is None and sd:
            raise KeyError("this heads file has trained TimeSformer temporal layers, but the encoder was built "
                           "without them: create the model with timesformer=True to use them")
        missing, unexpected = self.load_state_dict(sd, strict=False)
        missing = [k for k in missing if not k.startswith("visual.")]
        if missing or unexpected:
            raise KeyError(f"video encoder head state mismatch: missing {missing[:5]}, unexpected {unexpected[:5]}")

    def temporal_is_identity(self) -> bool:
        if self.temporal is None:
            return True
        return bool(torch.count_nonzero(self.time_embed) == 0) and all(t.is_identity() for t in self.temporal)

    def train(self, mode: bool = True) -> VideoEncoder:
        super().train(mode)
        self.visual.eval()  # frozen tower: no dropout / patch dropout ever
        return self

    def forward(self, video: torch.Tensor, *, force_temporal: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``video`` ``[B, T, 3, S, S]`` → (frame embeddings ``[B, T, D]``, segment ``[B, D]``), L2-normalised."""
        if video.ndim != 5:
            raise ValueError(f"expected [B, T, 3, S, S], got {tuple(video.shape)}")
        b, t = video.shape[:2]
        if t > self.max_frames:
            raise ValueError(f"{t} frames exceed the encoder's max_frames={self.max_frames}")
        v = self.visual
        x = v._embeds(video.reshape(b * t, *video.shape[2:]))  # [B*T, L, W], ln_pre applied
        use_temporal = self.temporal is not None and (force_temporal or self.training or not self.temporal_is_identity())
        tr = v.transformer
        if use_temporal:
            length, width = x.shape[1:]
            x = (x.reshape(b, t, length, width) + self.time_embed[:t].to(x.dtype)[None, :, None, :]).reshape(
                b * t, length, width
            )
        batch_first = getattr(tr, "batch_first", True)
        for i, blk in enumerate(tr.resblocks):
            if use_temporal:
                x = self.temporal[i](x, t)
            if batch_first:
                x = blk(x)
            else:
                x = blk(x.transpose(0, 1)).transpose(0, 1)
        pooled, _ = v._pool(x)
        if v.proj is not None:
            pooled = pooled @ v.proj
        frame = F.normalize(pooled.float(), dim=-1).reshape(b, t, -1)
        seg = F.normalize(frame.mean(dim=1), dim=-1)
        return frame, seg
