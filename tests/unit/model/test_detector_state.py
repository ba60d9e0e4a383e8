"""What a camera's detector state carries between segments (it travels to Detect and back each time)."""

from __future__ import annotations

import pickle

import numpy as np

from services.scoring.serve_app import geometry_config
from vigil.model import stages


def _clip(t: int = 32, h: int = 120, w: int = 160) -> np.ndarray:
    rng = np.random.default_rng(0)
    frames = np.repeat(rng.integers(60, 120, (1, h, w, 3), dtype=np.uint8), t, axis=0)
    for k in range(t):  # one walker crossing the view
        x = 5 + 4 * k
        frames[k, 40:80, x:x + 14] = 230
    return frames


def test_a_zero_shot_cameras_state_is_its_background_only_and_gives_the_same_boxes():
    geometry = geometry_config()
    frames = _clip()
    lean = full = None
    for s in range(0, 32, 16):
        obs_lean, lean = stages.detect(frames[s:s + 16], lean, geometry, fps=4.0, tubes=False)
        obs_full, full = stages.detect(frames[s:s + 16], full, geometry, fps=4.0, tubes=True)
        assert obs_lean.boxes == obs_full.boxes
    assert any(obs_lean.boxes)
    assert lean.grey is None and lean.flow is None and lean.detector is not None and lean.frames_seen == 32
    assert full.grey is not None and len(full.grey) == geometry.tube.history(4.0)
    assert len(pickle.dumps(lean)) < len(pickle.dumps(full)) - full.grey.nbytes // 2


def test_the_first_segment_with_tubes_after_zero_shot_ones_starts_them_cold():
    geometry = geometry_config()
    frames = _clip()
    _obs, state = stages.detect(frames[:16], None, geometry, fps=4.0, tubes=False)
    obs, state = stages.detect(frames[16:], state, geometry, fps=4.0, tubes=True)
    assert obs.attributes is not None and len(obs.attributes) == len(obs.owner)
    assert len(state.grey) == geometry.tube.history(4.0)
