"""The appearance-memory stream: how far a crop's embedding lies from the camera's normal ones.

The memory is a bank of unit embeddings of normal crops (fitted by ``train-normal``); a
crop's raw score is the mean cosine distance to its ``k`` nearest neighbours in the bank
(the density estimate of the object-centric one-class methods, e.g. Reiss & Hoshen's
kNN on deep features).
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["knn_distance"]


def knn_distance(z: Tensor, bank: Tensor, k: int, exclude: Tensor | None = None, chunk: int = 4096) -> Tensor:
    """Mean cosine distance of each unit row of ``z`` ``[B, D]`` to its ``k`` nearest rows of
    ``bank`` ``[M, D]``; ``exclude`` (bool ``[B, M]``) hides pairs (a crop's own tube when the
    bank is scored against itself). An empty bank scores 0."""
    if len(bank) == 0:
        return torch.zeros(len(z))
    k = min(k, len(bank))
    out = []
    for i in range(0, len(z), chunk):
        sim = z[i : i + chunk] @ bank.t()
        if exclude is not None:
            sim = sim.masked_fill(exclude[i : i + chunk], -2.0)
        out.append(1.0 - sim.topk(k, dim=1).values.mean(1))
    return torch.cat(out) if out else torch.zeros(0)
