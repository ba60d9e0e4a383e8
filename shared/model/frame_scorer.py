"""Frame scorer (ICPRAM 2024): ``W(f, t_k) = f^T A_k t_k / m + b_k``, softmax over all descriptions.

``A_k`` is diagonal (a learned per-dimension weight vector per description), initialised to
the identity, ``b_k`` to zero and ``m = 0.01``; at initialisation the scorer is therefore
CLIP's zero-shot softmax with logit scale ``1/m = 100`` (tested).

``s_sem`` of a frame is the summed probability of the abnormal descriptions.

Where the paper is silent:

- Descriptions are user data and change; ``A_k``/``b_k`` are stored per description *text*
  (:attr:`FrameScorer.descriptions`). A description the scorer was not trained on gets the
  initial values (identity, zero), i.e. plain zero-shot CLIP for that column.
- Majority voting over the frames of a window: each frame votes "abnormal" when its
  ``s_sem > 0.5``; the window's label is the majority (ties count as normal). To keep a
  continuous score for ROC/AP and thresholds, the window score is the mean ``s_sem`` of the
  frames on the majority side, so it is above 0.5 exactly when the vote says abnormal.
  ``vote="mean"`` gives the plain mean instead.
- Top descriptions of a window: ranked by how many frames picked them as their argmax
  (ties by mean probability); the probability shown is the mean over the window's frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

M_DEFAULT = 0.01


class FrameScorer(nn.Module):
    def __init__(self, dim: int, descriptions: list[str] | None = None, m: float = M_DEFAULT) -> None:
        super().__init__()
        self.dim = dim
        self.m = m
        self.descriptions: list[str] = []
        self.A = nn.Parameter(torch.ones(0, dim))
        self.b = nn.Parameter(torch.zeros(0))
        if descriptions:
            self.bind(descriptions)

    def bind(self, descriptions: list[str]) -> None:
        """(Re)size the per-description parameters for ``descriptions``, keeping learned ones."""
        if list(descriptions) == self.descriptions:
            return
        old = {d: i for i, d in enumerate(self.descriptions)}
        a = torch.ones(len(descriptions), self.dim)
        b = torch.zeros(len(descriptions))
        with torch.no_grad():
            for j, d in enumerate(descriptions):
                if d in old:
                    a[j] = self.A[old[d]]
                    b[j] = self.b[old[d]]
        self.descriptions = list(descriptions)
        self.A = nn.Parameter(a.to(self.A.device), requires_grad=self.A.requires_grad)
        self.b = nn.Parameter(b.to(self.b.device), requires_grad=self.b.requires_grad)

    def params_for(self, descriptions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``A`` ``[K, D]`` and ``b`` ``[K]`` for ``descriptions``; unknown ones at their initial values."""
        if list(descriptions) == self.descriptions:
            return self.A, self.b
        idx = {d: i for i, d in enumerate(self.descriptions)}
        rows_a, rows_b = [], []
        for d in descriptions:
            if d in idx:
                rows_a.append(self.A[idx[d]])
                rows_b.append(self.b[idx[d]])
            else:
                rows_a.append(torch.ones(self.dim, device=self.A.device, dtype=self.A.dtype))
                rows_b.append(torch.zeros((), device=self.b.device, dtype=self.b.dtype))
        return torch.stack(rows_a), torch.stack(rows_b)

    def logits(self, f: torch.Tensor, t: torch.Tensor, descriptions: list[str] | None = None) -> torch.Tensor:
        """``f`` ``[..., D]`` (L2-normalised), ``t`` ``[K, D]`` or ``[..., K, D]`` → ``[..., K]``."""
        a, b = self.params_for(descriptions if descriptions is not None else self.descriptions)
        if a.shape[0] != t.shape[-2]:
            raise ValueError(f"{t.shape[-2]} text embeddings but {a.shape[0]} descriptions")
        at = a * t  # [..., K, D]: diagonal A_k applied to t_k
        return torch.einsum("...d,...kd->...k", f, at) / self.m + b

    def forward(
        self, f: torch.Tensor, t: torch.Tensor, descriptions: list[str] | None = None
    ) -> torch.Tensor:
        """Softmax probabilities over all descriptions, ``[..., K]``."""
        return self.logits(f, t, descriptions).softmax(dim=-1)


def semantic_score(probs: torch.Tensor, abnormal_mask: torch.Tensor | np.ndarray) -> torch.Tensor:
    """``s_sem`` = summed probability of the abnormal descriptions, ``[...]``."""
    mask = torch.as_tensor(abnormal_mask, dtype=probs.dtype, device=probs.device)
    return (probs * mask).sum(dim=-1)


@dataclass
class WindowVote:
    score: float  # window s_sem (see module doc)
    abnormal: bool  # majority vote
    frame_scores: list[float]
    top: list[tuple[str, float, bool]]  # (description, mean prob, abnormal)


def window_vote(
    probs: np.ndarray,
    descriptions: list[str],
    abnormal_mask: np.ndarray,
    *,
    top_k: int = 3,
    vote: Literal["majority", "mean"] = "majority",
) -> WindowVote:
    """Majority vote over the frames of one window; ``probs`` ``[T, K]``."""
    probs = np.asarray(probs, dtype=np.float64)
    mask = np.asarray(abnormal_mask, dtype=bool)
    frame_scores = probs[:, mask].sum(axis=1)
    votes = frame_scores > 0.5
    abnormal = bool(votes.sum() * 2 > len(votes))
    if vote == "mean":
        score = float(frame_scores.mean())
    else:
        side = frame_scores[votes] if abnormal else frame_scores[~votes]
        score = float(side.mean())
    mean_p = probs.mean(axis=0)
    counts = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
    order = sorted(range(len(descriptions)), key=lambda k: (-counts[k], -mean_p[k]))
    top = [(descriptions[k], float(mean_p[k]), bool(mask[k])) for k in order[:top_k]]
    return WindowVote(score=score, abnormal=abnormal, frame_scores=[float(x) for x in frame_scores], top=top)
