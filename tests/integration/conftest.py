"""The integration tier: the real embedded stack (Tansu, SeaweedFS, SQLite, Ray) on loopback."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from infra.embedded import EmbeddedStack
from vigil.config import load_settings


def pytest_collection_modifyitems(items):
    here = str(Path(__file__).parent)
    for item in items:
        if str(item.path).startswith(here):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """One embedded stack with Ray for the whole integration session."""
    state = tmp_path_factory.mktemp("vigil-state")
    base = load_settings(None, state_dir=state, model={"backbone": "vigil-micro", "torch_threads": 1},
                         kafka={"partitions": 4})
    st = EmbeddedStack(base)
    resolved = st.start()
    yield st, resolved
    st.stop()


@pytest.fixture
def moving_square_video(tmp_path):
    """A small real video file (mp4v) of a square moving across a grey background."""

    def make(name: str, n_frames: int = 200, fps: float = 10.0, size=(160, 120)):
        path = tmp_path / f"{name}.mp4"
        w, h = size
        vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
        assert vw.isOpened()
        for i in range(n_frames):
            img = np.full((h, w, 3), 90, np.uint8)
            x = (i * 3) % (w - 20)
            cv2.rectangle(img, (x, 40), (x + 20, 60), (255, 255, 255), -1)
            vw.write(img)
        vw.release()
        return path

    return make
