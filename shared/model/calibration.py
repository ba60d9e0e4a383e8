"""Per-camera score calibration, fitted on the camera's normal footage.

A raw stream score ``e`` maps to ``(e - median) / (q99 - median)`` measured on normal
footage (robust to a few outliers in the "normal" period), optionally squashed to (0, 1) by
a logistic, so that ~1.0 (or 0.5 after the squash) means "as bad as the worst 1 % of normal".
Every stream of the served detector is put on this one scale before it is fused.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from torch import Tensor

__all__ = ["ScoreCalibration", "fit_calibration"]


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
