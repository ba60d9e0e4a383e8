"""AnomalyModel end to end: interface, streams, state, determinism, gradients, object mode."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vigil.model.anomaly import AnomalyModel, SegmentHistory, EncodedSegment, SegmentResult
from vigil.model.prompts import PromptSet, load_prompt_set


def test_create_preprocess_encode_score(frames):
    m = AnomalyModel.create("vigil-micro")
    assert m.version.startswith("vigil-micro@random:0") and m.version.endswith("+heads:zs")
    assert m.image_size == 64
    x = m.preprocess(frames)
    assert x.shape == (8, 3, 64, 64) and x.dtype == torch.float32
    encs = m.encode(torch.stack([x, x.flip(0)]))
    assert len(encs) == 2 and isinstance(encs[0], EncodedSegment)
    e = encs[0]
    assert e.frame_emb.shape == (8, 64) and e.seg_emb.shape == (64,) and e.frame_emb.dtype == np.float32
    assert np.allclose(np.linalg.norm(e.frame_emb, axis=1), 1, atol=1e-5)
    res, state = m.score(e, SegmentHistory())
    assert isinstance(res, SegmentResult)
    assert 0.0 <= res.score <= 1.0 and len(res.frame_scores) == 8
    assert res.s_pred is None and res.gate is None  # no history yet: semantic stream alone
    assert res.score == pytest.approx(res.s_sem)
    ps = load_prompt_set("default")
    assert len(res.top_descriptions) == 3
    for text, prob, abnormal in res.top_descriptions:
        assert text in ps.descriptions and 0 <= prob <= 1 and abnormal == (text in ps.abnormal)
    assert len(state.history) == 1 and state.n_segments == 1 and state.global_emb is not None


def test_semantic_score_matches_plain_clip_at_init(zs_model, frames):
    """Zero-shot: s_sem of each frame = abnormal mass of softmax(100 * cos(frame, text))."""
    m = zs_model
    e = m.encode(m.preprocess(frames)[None])[0]
    res, _ = m.score(e, None)
    ps = m.prompt_set
    with torch.no_grad():
        img = torch.nn.functional.normalize(m.clip.encode_image(m.preprocess(frames)), dim=-1)
        txt = torch.nn.functional.normalize(m.clip.encode_text(m.backbone.tokenizer(ps.texts)), dim=-1)
    p = (100 * img @ txt.T).softmax(-1).numpy()
    assert np.allclose(res.frame_scores, p[:, ps.abnormal_mask].sum(1), atol=1e-5)


def test_state_json_round_trip_and_history(zs_model, frames):
    m = zs_model
    e = m.encode(m.preprocess(frames)[None])[0]
    state = None
    for _ in range(m.config.history + 3):
        _, state = m.score(e, state)
    assert len(state.history) == m.config.history
    again = SegmentHistory.from_dict(json.loads(json.dumps(state.to_dict())))
    assert again == state
    assert np.allclose(state.global_emb, e.seg_emb, atol=1e-6)  # running mean of identical segments


def test_predictive_stream_calibrates_then_scores(backbone, frames):
    m = AnomalyModel(backbone, prompt_set=None)
    m.config.calib_segments = 4
    rng = np.random.default_rng(0)
    base = m.encode(m.preprocess(frames)[None])[0].seg_emb

    def seg(noise):
        v = base + noise * rng.standard_normal(base.shape).astype(np.float32)
        v /= np.linalg.norm(v)
        return EncodedSegment(frame_emb=np.tile(v, (4, 1)), seg_emb=v)

    state = SegmentHistory()
    _, state = m.score(seg(0.05), state)  # no history
    results = []
    for _ in range(4):
        r, state = m.score(seg(0.05), state)
        results.append(r)
    assert all(r.s_pred is None for r in results[:3]) and results[3].s_pred is not None
    assert {"median", "q99", "mean", "std", "n"} <= set(state.pred_calib)
    assert state.pred_calib["model"] == m.version
    stale = SegmentHistory.from_dict({**state.to_dict(), "pred_calib": {**state.pred_calib, "model": "other"}})
    r, restarted = m.score(seg(0.05), stale)  # calibration of other heads is not reused
    assert r.s_pred is None and restarted.pred_calib["warmup"] and "median" not in restarted.pred_calib
    normal, _ = m.score(seg(0.05), state)
    odd, _ = m.score(seg(5.0), state)  # far from the camera's recent embeddings
    assert odd.s_pred_raw > normal.s_pred_raw and odd.s_pred > normal.s_pred
    assert odd.gate == pytest.approx(0.5)
    assert odd.score == pytest.approx(0.5 * odd.s_sem + 0.5 * odd.s_pred)


@pytest.mark.parametrize("streams", [("semantic",), ("predictive",)])
def test_streams_can_be_switched_off(backbone, frames, streams):
    m = AnomalyModel.create("vigil-micro", streams=streams, calib_segments=2)
    e = m.encode(m.preprocess(frames)[None])[0]
    state = None
    for _ in range(4):
        r, state = m.score(e, state)
    if streams == ("semantic",):
        assert r.s_pred is None and r.s_sem is not None and r.score == pytest.approx(r.s_sem)
    else:
        assert r.s_sem is None and r.frame_scores == [] and r.s_pred is not None and r.score == pytest.approx(r.s_pred)


def test_deterministic(frames):
    a = AnomalyModel.create("vigil-micro", mode="video")
    b = AnomalyModel.create("vigil-micro", mode="video")
    ea = a.encode(a.preprocess(frames)[None])[0]
    eb = b.encode(b.preprocess(frames)[None])[0]
    assert np.array_equal(ea.frame_emb, eb.frame_emb) and np.array_equal(ea.seg_emb, eb.seg_emb)
    ra, sa = a.score(ea, None)
    rb, sb = b.score(eb, None)
    assert ra.score == rb.score and ra.frame_scores == rb.frame_scores and sa == sb


def test_set_prompts_and_per_call_prompt_set(zs_model, frames):
    m = zs_model
    e = m.encode(m.preprocess(frames)[None])[0]
    walk = load_prompt_set("walkway")
    r_walk, _ = m.score(e, None, walk)
    assert all(t in walk.descriptions for t, _, _ in r_walk.top_descriptions)
    old = m.prompt_set
    try:
        m.set_prompts(walk)
        r2, _ = m.score(e, None)
        assert r2.score == r_walk.score
    finally:
        m.set_prompts(old)


def test_gradients_reach_only_trainable_heads(backbone):
    from vigil.model.coop import CoOpConfig
    from vigil.model.temporal import video_loss

    m = AnomalyModel.create("vigil-micro", mode="video", coop=CoOpConfig(n_ctx=4).model_dump(), dpc={"hidden": 16, "context": 4},
                           timesformer=True)  # the TimeSformer layers too, though off in the served default
    ps = PromptSet(name="t", normal=["people walking", "empty street"], abnormal=["fighting", "fire"], scene=["a street"])
    with pytest.raises(ValueError, match="bind_prompts"):
        m.forward_train(torch.zeros(1, 2, 3, 64, 64), ps)
    m.bind_prompts(ps)
    m.train()
    # make every zero-initialised residual non-zero so that gradients flow through all heads
    with torch.no_grad():
        for mod in (m.text_gate.proj, m.temporal.attn_out, m.temporal.mlp[2], m.temporal.gcn_out):
            mod.weight.normal_(std=0.05)
        for layer in m.encoder.temporal:
            layer.temporal_fc.weight.normal_(std=0.05)
    video = torch.randn(2, 4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    out = m.forward_train(video, ps, global_emb=torch.randn(64))
    assert out["probs"].shape == (2, 4, 4) and out["s_sem"].shape == (2, 4) and out["text"].shape == (4, 64)
    loss = video_loss(out["frame"], out["text"], torch.tensor([0, 2]), torch.as_tensor(ps.abnormal_mask))
    loss = loss + torch.nn.functional.binary_cross_entropy(out["s_sem"].clamp(1e-6, 1 - 1e-6), torch.ones(2, 4))
    # the predictive head on the segment embeddings
    seg = out["seg"]
    pred = m.forecaster(torch.stack([seg, seg], dim=1))
    loss = loss + (1 - (pred[:, 0] * seg.detach()).sum(-1)).mean()
    loss.backward()
    frozen = list(m.clip.parameters())
    assert all(not p.requires_grad and p.grad is None for p in frozen)
    frozen_ids = {id(p) for p in frozen}
    named = {n: p for n, p in m.named_parameters() if id(p) not in frozen_ids}
    heads = {"encoder.temporal", "encoder.time_embed", "scorer.", "temporal.", "text_gate.", "coop.", "forecaster."}
    assert all(any(n.startswith(h) for h in heads | {"fusion."}) for n in named), sorted(named)
    for prefix in heads:
        ps_ = [p for n, p in named.items() if n.startswith(prefix)]
        assert ps_ and any(p.grad is not None and p.grad.abs().sum() > 0 for p in ps_), prefix
    assert not m.clip.training
    # fusion gate is trained on fused scores
    g = m.fusion(torch.randn(3, 128))
    g.sum().backward()
    assert m.fusion.mlp[2].weight.grad is not None


def test_object_mode_frame_score_is_max_over_crops(frames):
    m = AnomalyModel.create("vigil-micro", mode="object", detector={"type": "motion"})
    encs = m.encode_frames([frames])
    e = encs[0]
    assert e.crop_emb is not None and len(e.crop_emb) > 0 and e.crop_emb.shape[1] == 64
    assert len(e.crop_frame) == len(e.crop_emb) == len(e.crop_boxes)
    assert np.bincount(e.crop_frame).max() <= m.config.max_crops
    res, _ = m.score(e, None)
    # recompute: per frame, the max crop s_sem (frames without crops keep the whole frame)
    ps = m.prompt_set
    text = m.text_embeddings(ps)["text"]
    with torch.no_grad():
        p_crop = m.scorer(torch.from_numpy(e.crop_emb), text, ps.descriptions).numpy()
        p_frame = m.scorer(torch.from_numpy(e.frame_emb), text, ps.descriptions).numpy()
    s_crop = p_crop[:, ps.abnormal_mask].sum(1)
    expect = p_frame[:, ps.abnormal_mask].sum(1)
    for t in range(len(expect)):
        sel = s_crop[e.crop_frame == t]
        if len(sel):
            expect[t] = sel.max()
    assert np.allclose(res.frame_scores, expect, atol=1e-5)
    assert any(b for b in res.crop_boxes)


def test_object_mode_embeds_a_square_context_crop_and_reports_the_detector_box(frames):
    from vigil.model.detectors import build_detector, context_box

    m = AnomalyModel.create("vigil-micro", mode="object", crop_context=0.5)
    e = m.encode_frames([frames])[0]
    boxes = build_detector(m.config.detector).detect(frames)  # a fresh detector, as encode_frames uses
    assert [tuple(b) for t in range(len(frames)) for b in boxes[t]] == [tuple(b) for b in e.crop_boxes]
    n, t, box = 0, int(e.crop_frame[0]), e.crop_boxes[0]
    x0, y0, x1, y1 = context_box(box, frames.shape[2], frames.shape[1], 0.5)
    assert x1 - x0 == y1 - y0 > box[2] - box[0]
    with torch.no_grad():
        ref = F.normalize(m.clip.encode_image(m.preprocess(np.ascontiguousarray(frames[t:t + 1, y0:y1, x0:x1]))).float(), dim=-1)
    assert np.allclose(e.crop_emb[n], ref[0].numpy(), atol=1e-5)


def test_object_mode_without_detections_uses_whole_frames(zs_model):
    m = AnomalyModel.create("vigil-micro", mode="object")
    still = np.full((4, 64, 64, 3), 80, np.uint8)
    e = m.encode_frames([still])[0]
    assert len(e.crop_emb) == 0
    res, _ = m.score(e, None)
    ref, _ = zs_model.score(zs_model.encode(zs_model.preprocess(still)[None])[0], None)
    assert np.allclose(res.frame_scores, ref.frame_scores, atol=1e-6)


def test_calibrate_on_normal_segments_and_fixed_gate(backbone, frames):
    m = AnomalyModel.create("vigil-micro", fusion_gate=False, g0=0.8)
    base = m.encode(m.preprocess(frames)[None])[0].seg_emb
    rng = np.random.default_rng(1)

    def seg(noise):
        v = base + noise * rng.standard_normal(base.shape).astype(np.float32)
        v /= np.linalg.norm(v)
        return EncodedSegment(frame_emb=np.tile(v, (4, 1)), seg_emb=v)

    with pytest.raises(ValueError):
        m.calibrate([seg(0.05)])
    state = m.calibrate([seg(0.05) for _ in range(10)])
    assert state.pred_calib["n"] == 9 and state.pred_calib["model"] == m.version and state.n_segments == 10
    r, _ = m.score(seg(0.05), state)  # calibrated at once: no warm-up
    assert r.s_pred is not None and r.gate == 0.8
    assert r.score == pytest.approx(0.8 * r.s_sem + 0.2 * r.s_pred)
