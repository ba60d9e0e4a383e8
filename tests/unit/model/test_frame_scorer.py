"""Frame scorer W(f, t_k) = f^T A_k t_k / m + b_k, s_sem, majority vote."""

import numpy as np
import torch
import torch.nn.functional as F

from vigil.model.frame_scorer import FrameScorer, semantic_score, window_vote
from vigil.model.prompts import load_prompt_set


def test_init_equals_clip_softmax_with_logit_scale_100(backbone, video):
    ps = load_prompt_set("default")
    clip = backbone.model
    with torch.no_grad():
        img = F.normalize(clip.encode_image(video[0]), dim=-1)
        txt = F.normalize(clip.encode_text(backbone.tokenizer(ps.texts)), dim=-1)
        ref = (100.0 * img @ txt.T).softmax(dim=-1)
        sc = FrameScorer(backbone.embed_dim, ps.descriptions)
        out = sc(img, txt)
    assert out.shape == (video.shape[1], len(ps.descriptions))
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(sc.A, torch.ones_like(sc.A)) and torch.count_nonzero(sc.b) == 0 and sc.m == 0.01


def test_formula_with_trained_parameters():
    torch.manual_seed(0)
    sc = FrameScorer(8, ["a", "b", "c"])
    with torch.no_grad():
        sc.A.uniform_(0.5, 1.5)
        sc.b.normal_()
    f, t = F.normalize(torch.randn(4, 8), dim=-1), F.normalize(torch.randn(3, 8), dim=-1)
    manual = torch.stack([(f * sc.A[k] * t[k]).sum(-1) / 0.01 + sc.b[k] for k in range(3)], dim=-1)
    assert torch.allclose(sc.logits(f, t), manual, atol=1e-4)
    assert torch.allclose(sc(f, t), manual.softmax(-1), atol=1e-6)


def test_unknown_descriptions_fall_back_to_init_and_bind_keeps_learned():
    sc = FrameScorer(4, ["a", "b"])
    with torch.no_grad():
        sc.A[1] = 2.0
        sc.b[1] = 3.0
    a, b = sc.params_for(["new", "b"])
    assert torch.equal(a[0], torch.ones(4)) and b[0] == 0 and torch.equal(a[1], torch.full((4,), 2.0)) and b[1] == 3
    sc.bind(["b", "c"])
    assert sc.descriptions == ["b", "c"] and sc.b[0] == 3 and sc.b[1] == 0


def test_semantic_score_sums_abnormal_probabilities():
    p = torch.tensor([[0.1, 0.2, 0.3, 0.4]])
    assert torch.allclose(semantic_score(p, np.array([False, False, True, True])), torch.tensor([0.7]))


def test_window_majority_vote():
    desc = ["walk", "talk", "fight", "smoke"]
    mask = np.array([False, False, True, True])
    probs = np.array(
        [
            [0.1, 0.1, 0.7, 0.1],  # abnormal 0.8
            [0.1, 0.1, 0.6, 0.2],  # abnormal 0.8
            [0.6, 0.2, 0.1, 0.1],  # normal (0.2)
            [0.0, 0.1, 0.3, 0.6],  # abnormal 0.9
        ]
    )
    v = window_vote(probs, desc, mask, top_k=2)
    assert v.abnormal
    assert np.isclose(v.score, (0.8 + 0.8 + 0.9) / 3)
    assert np.allclose(v.frame_scores, [0.8, 0.8, 0.2, 0.9])
    assert [d for d, _, _ in v.top] == ["fight", "smoke"] and v.top[0][2] is True
    assert np.isclose(v.top[0][1], probs[:, 2].mean())
    assert np.isclose(window_vote(probs, desc, mask, vote="mean").score, np.mean([0.8, 0.8, 0.2, 0.9]))
    # one abnormal frame out of four does not make the window abnormal
    v2 = window_vote(probs[[0, 2, 2, 2]], desc, mask)
    assert not v2.abnormal and v2.score < 0.5
