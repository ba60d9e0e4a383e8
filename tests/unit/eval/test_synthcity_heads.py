"""The SynthCity benchmark's semantic head in object mode: fitted on the normal period's crops,
a frame scores as its best crop, a frame without detections scores 0."""

import numpy as np
import pytest

from services.eval.synthcity import _auc, _semantic_head, normal_period_head, prompt_set_for
from vigil.model.anomaly import AnomalyModel, EncodedSegment


def _segment(rng, crops_per_frame, dim=64, t=4):
    n = sum(crops_per_frame)
    unit = lambda k: (lambda v: v / np.linalg.norm(v, axis=1, keepdims=True))(rng.standard_normal((k, dim)))  # noqa: E731
    return EncodedSegment(frame_emb=unit(t).astype(np.float32), seg_emb=unit(1)[0].astype(np.float32),
                          crop_emb=unit(n).astype(np.float32),
                          crop_frame=np.repeat(np.arange(t), crops_per_frame), crop_boxes=[(0, 0, 8, 8)] * n)


def test_object_head_is_the_best_crop_per_frame():
    model = AnomalyModel.create("vigil-micro", mode="object")
    ps = prompt_set_for("campus_walkway")
    rng = np.random.default_rng(0)
    encs = [_segment(rng, [2, 1, 3, 1]), _segment(rng, [1, 0, 2, 4]), _segment(rng, [0, 3, 1, 1])]
    scores = _semantic_head(model, encs, ps, n_normal_frames=4, on="crops")
    assert scores.shape == (12,)

    text = model.text_embeddings(ps)["text"].numpy().astype(np.float64)
    crops = np.concatenate([e.crop_emb for e in encs]).astype(np.float64)
    frame_of = np.concatenate([4 * i + e.crop_frame for i, e in enumerate(encs)])
    per_crop = normal_period_head(crops @ text.T, frame_of < 4, np.asarray(ps.abnormal_mask))
    for f in range(12):
        mine = per_crop[frame_of == f]
        assert scores[f] == pytest.approx(mine.max() if len(mine) else 0.0)
    assert scores[5] == 0.0 and scores[8] == 0.0  # nothing detected there


def test_object_head_needs_detections_in_the_normal_period():
    model = AnomalyModel.create("vigil-micro", mode="object")
    rng = np.random.default_rng(1)
    encs = [_segment(rng, [0, 0, 0, 0]), _segment(rng, [1, 1, 1, 1])]
    with pytest.raises(ValueError, match="normal period"):
        _semantic_head(model, encs, prompt_set_for("plaza"), n_normal_frames=4, on="crops")


def test_camera_bootstrap_interval():
    from services.eval.synthcity import camera_bootstrap_ci

    rng = np.random.default_rng(2)
    ys = [np.r_[np.zeros(20), np.ones(10)] for _ in range(8)]
    assert camera_bootstrap_ci(ys, [y + 0.1 * rng.random(len(y)) for y in ys]) == [1.0, 1.0]  # separable everywhere
    noise = [rng.random(len(y)) for y in ys]
    lo, hi = camera_bootstrap_ci(ys, noise)
    point = _auc(np.concatenate(ys), np.concatenate(noise))
    assert lo < point < hi and hi - lo < 0.3  # around the pooled AUC, not degenerate


@pytest.mark.parametrize("kw, word", [({"mode": "objects"}, "mode"), ({"split": "test"}, "split")])
def test_a_wrong_mode_or_split_is_named(kw, word):
    from services.eval.synthcity import run_synthcity_eval

    with pytest.raises(ValueError, match=word):
        run_synthcity_eval(backbone="vigil-micro", progress=False, **kw)
