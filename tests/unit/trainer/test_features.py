"""Encoder features: computed once per (encoder version, clip), then read from the store."""

from __future__ import annotations

import numpy as np
import torch

from services.trainer.dataset import ClipRef, put_calibration_clip
from services.trainer.features import FeatureCache, cut_segments, encoder_version


def test_cut_segments():
    f = np.zeros((20, 2, 2, 3), np.uint8)
    assert cut_segments(f, 8) == [slice(0, 8), slice(8, 16)]
    (idx,) = cut_segments(f[:5], 8)
    assert len(idx) == 8 and idx[0] == 0 and idx[-1] == 4


def test_features_cached_per_encoder_and_clip(store, micro):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (20, 48, 64, 3), dtype=np.uint8)
    labels = [0] * 10 + [1] * 10
    key = put_calibration_clip(store, "cam", "c1", frames, fps=5.0, labels=labels)
    clip = ClipRef("cal:cam:c1", "cam", (key,), "calibration", 0, "train")
    cache = FeatureCache(store, micro, 8)
    f1 = cache.get(clip)
    assert (cache.misses, cache.hits) == (1, 0)
    assert f1.frame.shape == (2, 8, micro.dim) and f1.seg.shape == (2, micro.dim) and f1.fps == 5.0
    assert f1.labels[0].tolist() == [0] * 8 and f1.labels[1].tolist() == [0, 0, 1, 1, 1, 1, 1, 1]
    n_gets = len(store.gets)
    f2 = FeatureCache(store, micro, 8).get(clip)  # a new run: read, not recomputed
    assert np.array_equal(f1.frame, f2.frame)
    assert store.gets[n_gets:] == [cache.key(clip)], "only the cached features were read, not the clip"
    # same features as encoding the stored (JPEG) frames directly
    from vigil.segments import decode_segment

    stored = decode_segment(store.objects[key]).frames
    direct = micro.encode(micro.preprocess(stored[:8])[None])[0]
    assert np.allclose(direct.frame_emb, f1.frame[0], atol=1e-5)
    # another T or a trained video head is another cache entry
    assert FeatureCache(store, micro, 4).key(clip) != cache.key(clip)
    from vigil.model.anomaly import AnomalyModel

    video = AnomalyModel.create("vigil-micro", timesformer=True)  # an encoder with TimeSformer layers
    v0 = encoder_version(video)
    assert v0 == encoder_version(micro), "zero-init temporal layers are the plain encoder"
    with torch.no_grad():
        video.encoder.time_embed[0, 0] = 0.5
    assert encoder_version(video) != v0
