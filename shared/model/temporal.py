"""Temporal module of video mode and its training loss (after VadCLIP, Wu et al., AAAI 2024).

- A one-layer local transformer over windows of 16 frame embeddings (attention masked to
  the window), then a GCN with two adjacencies: feature similarity ``softmax(cos(x_i, x_j))``
  and distance ``exp(-|i - j| / sigma)``, ``sigma = 1``; the two GCN branches are concatenated
  and projected back to ``D``.
- Top-k alignment: per video and description, the mean of the top ``k`` frame-text
  similarities (``k = floor(T / 16) + 1``), divided by ``tau = 0.07`` → video-level logits;
  ``L_ali`` is their cross-entropy with the video label.
- ``L_cts`` pushes normal and abnormal text embeddings apart:
  mean over (normal, abnormal) pairs of ``max(0, cos(t_n, t_a))``.
- ``L_vid = L_ali + 0.1 * L_cts``.

*Chosen here* (VadCLIP is silent or differs): both residual branches (local transformer
and GCN) end in a zero-initialised projection, so at initialisation the module is the
identity and frame embeddings stay in CLIP's joint space (zero-shot scores unchanged);
VadCLIP thresholds the similarity adjacency at 0.7 before the softmax - optional here
(``sim_threshold``), off by default as the issue specifies a plain softmax. With several
normal descriptions the video label is a description index; :func:`binary_alignment_loss`
is the weakly supervised normal/abnormal variant (probability mass of the abnormal group).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def local_window_mask(t: int, window: int, device: torch.device | None = None) -> torch.Tensor:
    """Boolean ``[T, T]`` mask, True where attention is *blocked* (different windows)."""
    w = torch.arange(t, device=device) // window
    return w[:, None] != w[None, :]


class TemporalModule(nn.Module):
    def __init__(
        self,
        dim: int,
        heads: int | None = None,
        window: int = 16,
        sigma: float = 1.0,
        gcn_hidden: int | None = None,
        sim_threshold: float | None = None,
    ) -> None:
        super().__init__()
        heads = heads or max(1, dim // 64)
        self.window, self.sigma, self.sim_threshold = window, sigma, sim_threshold
        # local transformer (pre-norm)
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.attn_out = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        # GCN
        h = gcn_hidden or dim
        self.ln3 = nn.LayerNorm(dim)
        self.w_sim = nn.Linear(dim, h, bias=False)
        self.w_dis = nn.Linear(dim, h, bias=False)
        self.gcn_out = nn.Linear(2 * h, dim)
        for lin in (self.attn_out, self.mlp[2], self.gcn_out):
            nn.init.zeros_(lin.weight)
            nn.init.zeros_(lin.bias)

    def adjacency(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Similarity ``[B, T, T]`` (row softmax of cosine) and distance ``[T, T]`` adjacencies."""
        xn = F.normalize(x, dim=-1)
        sim = xn @ xn.transpose(1, 2)
        if self.sim_threshold is not None:
            sim = torch.where(sim > self.sim_threshold, sim, torch.zeros_like(sim))
        t = x.shape[1]
        pos = torch.arange(t, device=x.device, dtype=x.dtype)
        dis = torch.exp(-(pos[:, None] - pos[None, :]).abs() / self.sigma)
        return sim.softmax(dim=-1), dis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, T, D]`` (or ``[T, D]``) → same shape, L2-normalised."""
        squeeze = x.ndim == 2
        if squeeze:
            x = x.unsqueeze(0)
        t = x.shape[1]
        h = self.ln1(x)
        h = self.attn(h, h, h, attn_mask=local_window_mask(t, self.window, x.device), need_weights=False)[0]
        x = x + self.attn_out(h)
        x = x + self.mlp(self.ln2(x))
        a_sim, a_dis = self.adjacency(x)
        h = self.ln3(x)
        g = F.gelu(torch.cat([a_sim @ self.w_sim(h), a_dis @ self.w_dis(h)], dim=-1))
        x = F.normalize(x + self.gcn_out(g), dim=-1)
        return x.squeeze(0) if squeeze else x


def topk_alignment_logits(frame_emb: torch.Tensor, text: torch.Tensor, k: int | None = None, tau: float = 0.07) -> torch.Tensor:
    """``frame_emb`` ``[B, T, D]``, ``text`` ``[K, D]`` (or ``[B, K, D]``) → video logits ``[B, K]``."""
    f = F.normalize(frame_emb, dim=-1)
    t = F.normalize(text, dim=-1)
    sim = torch.einsum("btd,kd->btk", f, t) if t.ndim == 2 else torch.einsum("btd,bkd->btk", f, t)
    k = k or (frame_emb.shape[1] // 16 + 1)
    k = min(k, frame_emb.shape[1])
    return sim.topk(k, dim=1).values.mean(dim=1) / tau


def alignment_loss(frame_emb: torch.Tensor, text: torch.Tensor, labels: torch.Tensor, k: int | None = None, tau: float = 0.07) -> torch.Tensor:
    """``L_ali``: cross-entropy of the top-k video logits with description-index labels ``[B]``."""
    return F.cross_entropy(topk_alignment_logits(frame_emb, text, k, tau), labels)


def binary_alignment_loss(
    frame_emb: torch.Tensor, text: torch.Tensor, abnormal_mask: torch.Tensor, is_abnormal: torch.Tensor,
    k: int | None = None, tau: float = 0.07,
) -> torch.Tensor:
    """Weak labels: BCE of the abnormal probability mass of the top-k video logits."""
    p = topk_alignment_logits(frame_emb, text, k, tau).softmax(dim=-1)
    p_abn = (p * abnormal_mask.to(p)).sum(-1).clamp(1e-6, 1 - 1e-6)
    return F.binary_cross_entropy(p_abn, is_abnormal.to(p))


def contrastive_text_loss(text: torch.Tensor, abnormal_mask: torch.Tensor) -> torch.Tensor:
    """``L_cts``: mean ``max(0, cos(t_n, t_a))`` over normal × abnormal pairs."""
    t = F.normalize(text, dim=-1)
    mask = abnormal_mask.to(torch.bool)
    return (t[~mask] @ t[mask].T).clamp(min=0).mean()


def video_loss(
    frame_emb: torch.Tensor, text: torch.Tensor, labels: torch.Tensor, abnormal_mask: torch.Tensor,
    k: int | None = None, tau: float = 0.07, lambda_cts: float = 0.1,
) -> torch.Tensor:
    """``L_vid = L_ali + 0.1 * L_cts``."""
    return alignment_loss(frame_emb, text, labels, k, tau) + lambda_cts * contrastive_text_loss(text, abnormal_mask)
