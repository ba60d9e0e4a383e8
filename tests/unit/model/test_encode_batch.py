"""Encode batches for real: one forward pass over every segment of a batch, and a segment's
embedding and score do not depend on what shares its batch (replays give the same events)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.scoring.serve_app import geometry_config
from vigil.model import stages
from vigil.model.anomaly import AnomalyModel, resolve_runtime

TOL = 1e-4  # the stated tolerance: float rounding of a larger matmul, nothing else


def _segments(seed: int, n: int, t: int = 8, h: int = 48, w: int = 64) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    out = []
    for _ in range(n):
        seg = np.repeat(base[None], t, axis=0).copy()
        for k in range(t):  # a bright block that moves: the motion detector finds a box
            x = 4 + 3 * k
            seg[k, 10:26, x:x + 12] = 255
        out.append(seg)
        base = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    return out


@pytest.fixture(scope="module")
def frame_model():
    torch.set_num_threads(1)
    return AnomalyModel.create("vigil-micro")


@pytest.fixture(scope="module")
def object_model():
    return AnomalyModel.create("vigil-micro", mode="object")


def test_batch_is_one_forward_and_matches_alone(frame_model, monkeypatch):
    segs = _segments(0, 4) + [_segments(1, 1, t=6)[0]]  # a camera with another frame count shares the batch
    alone = [stages.encode(frame_model, s, None) for s in segs]
    calls = []
    real = frame_model.encode
    monkeypatch.setattr(frame_model, "encode", lambda batch: calls.append(batch.shape) or real(batch))
    batched = stages.encode_batch(frame_model, [(s, None) for s in segs])
    assert [c[:2] for c in calls] == [(4, 8), (1, 6)], "one forward per frame count, all segments of it together"
    for a, b in zip(alone, batched):
        assert b.frame_emb.shape == a.frame_emb.shape
        assert np.abs(a.frame_emb - b.frame_emb).max() <= TOL
        assert np.abs(a.seg_emb - b.seg_emb).max() <= TOL


def test_object_mode_crops_of_the_batch_in_one_pass(object_model):
    geometry = geometry_config()
    segs = _segments(2, 3)
    items = [(s, stages.detect(s, None, geometry, fps=4.0, tubes=False)[0]) for s in segs]
    assert any(any(fb) for _, o in items for fb in o.boxes), "the moving block must give boxes"
    alone = [stages.encode(object_model, s, o) for s, o in items]
    batched = stages.encode_batch(object_model, items)
    for a, b in zip(alone, batched):
        assert a.crop_boxes == b.crop_boxes and np.array_equal(a.crop_frame, b.crop_frame)
        assert a.crop_emb.shape == b.crop_emb.shape and len(a.crop_emb)
        assert np.abs(a.crop_emb - b.crop_emb).max() <= TOL


def test_a_cameras_scores_do_not_depend_on_its_batch(frame_model):
    """One camera's segments scored alone, then each in a batch with other cameras' segments:
    the same scores within the tolerance, and the same thresholded decisions."""
    geometry = geometry_config()
    cam = _segments(3, 6)
    others = _segments(4, 18)

    def run(batched: bool) -> list[float]:
        det = state = None
        scores = []
        for i, seg in enumerate(cam):
            obs, det = stages.detect(seg, det, geometry, fps=4.0, tubes=False)
            if batched:
                mates = [(o, None) for o in others[3 * i:3 * i + 3]]
                enc = stages.encode_batch(frame_model, [*mates[:1], (seg, obs), *mates[1:]])[1]
            else:
                enc = stages.encode(frame_model, seg, obs)
            res, state = stages.score(frame_model, None, enc, obs, state, fps=4.0)
            scores.append(res["score"])
        return scores

    alone, together = np.asarray(run(False)), np.asarray(run(True))
    assert np.abs(alone - together).max() <= TOL
    assert np.array_equal(alone > 0.5, together > 0.5)


def test_runtime_resolution_and_bad_values():
    assert resolve_runtime("auto", "auto") == (("cuda", "fp16") if torch.cuda.is_available() else ("cpu", "fp32"))
    assert resolve_runtime("cpu", "bf16") == ("cpu", "bf16")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="sees no GPU"):
            resolve_runtime("cuda", "auto")


def test_bf16_autocast_on_cpu_runs_and_stays_near_fp32(frame_model):
    seg = _segments(5, 1)[0]
    ref = stages.encode(frame_model, seg, None).frame_emb
    try:
        frame_model.set_runtime("bf16")
        low = stages.encode(frame_model, seg, None).frame_emb
    finally:
        frame_model.set_runtime("fp32")
    assert low.dtype == np.float32
    cos = (ref * low).sum(-1)  # both L2-normalised
    assert cos.min() > 0.98, "bf16 embeddings must stay close to fp32's"
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        frame_model.set_runtime("fp16")
    with pytest.raises(ValueError, match="precision 'fp8'"):
        frame_model.set_runtime("fp8")
