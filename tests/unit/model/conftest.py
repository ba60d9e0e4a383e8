"""Fixtures of the model tests: the 64-d random ``vigil-micro`` backbone, one thread, offline."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def backbone():
    from vigil.model.backbones import create_backbone

    return create_backbone("vigil-micro")


@pytest.fixture(scope="session")
def zs_model(backbone):
    """Zero-shot model (initial heads), shared read-only by tests that do not modify it."""
    from vigil.model.anomaly import AnomalyModel

    return AnomalyModel(backbone)


@pytest.fixture
def video(backbone):
    g = torch.Generator().manual_seed(0)
    s = backbone.image_size
    return torch.randn(2, 6, 3, s, s, generator=g)


@pytest.fixture(scope="module")
def frames() -> np.ndarray:
    """Eight frames of a bright square moving over a still background."""
    return moving_square(t=8)


def moving_square(t: int = 8, h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """uint8 frames of a textured background with a bright square moving right."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(60, 90, size=(h, w, 3), dtype=np.uint8)
    frames = np.repeat(bg[None], t, axis=0).copy()
    for i in range(t):
        x = 10 + 8 * i
        frames[i, 30:60, x : x + 24] = (250, 40, 40)
    return frames
