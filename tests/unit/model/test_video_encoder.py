"""TimeSformer video encoder: shapes, zero-init equivalence, temporal mixing, frozen tower."""

import pytest
import torch
import torch.nn.functional as F

from vigil.model.video_encoder import VideoEncoder


def _clip_frames(backbone, video):
    b, t = video.shape[:2]
    with torch.no_grad():
        return F.normalize(backbone.model.encode_image(video.reshape(b * t, *video.shape[2:])), dim=-1).reshape(b, t, -1)


def test_shapes_and_unit_norm(backbone, video):
    enc = VideoEncoder(backbone.model).eval()
    with torch.no_grad():
        frame, seg = enc(video)
    assert frame.shape == (2, 6, backbone.embed_dim)
    assert seg.shape == (2, backbone.embed_dim)
    assert torch.allclose(frame.norm(dim=-1), torch.ones(2, 6), atol=1e-5)
    assert torch.allclose(seg.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(seg, F.normalize(frame.mean(1), dim=-1))


def test_zero_init_equals_plain_clip(backbone, video):
    enc = VideoEncoder(backbone.model).eval()
    ref = _clip_frames(backbone, video)
    with torch.no_grad():
        forced, _ = enc(video, force_temporal=True)  # temporal layers really run
        skipped, _ = enc(video)  # identity shortcut
    assert (forced - ref).abs().max().item() <= 1e-5
    assert (skipped - ref).abs().max().item() <= 1e-5


def test_trained_temporal_layers_mix_frames(backbone, video):
    torch.manual_seed(1)
    enc = VideoEncoder(backbone.model).eval()
    for layer in enc.temporal:
        torch.nn.init.normal_(layer.temporal_fc.weight, std=0.2)
    assert not enc.temporal_is_identity()
    other = video.clone()
    other[:, 0] = torch.randn_like(other[:, 0])  # change frame 0 only
    with torch.no_grad():
        a, _ = enc(video)
        b, _ = enc(other)
    assert (a[:, 1:] - b[:, 1:]).abs().max() > 1e-4  # frame 1.. see frame 0 through time attention
    ref = _clip_frames(backbone, video)
    assert (a - ref).abs().max() > 1e-4
    # without temporal layers, frames are independent
    plain = VideoEncoder(backbone.model).eval()
    with torch.no_grad():
        pa, _ = plain(video)
        pb, _ = plain(other)
    assert torch.equal(pa[:, 1:], pb[:, 1:])


def test_gradients_reach_only_temporal_layers(backbone, video):
    enc = VideoEncoder(backbone.model).train()
    frame, seg = enc(video)
    (frame.sum() + seg.sum()).backward()
    assert all(p.grad is None for p in enc.visual.parameters())
    grads = {n: p.grad for n, p in enc.named_parameters() if not n.startswith("visual.")}
    assert grads and all(g is not None for g in grads.values())
    assert any(g.abs().sum() > 0 for n, g in grads.items() if "temporal_fc" in n)
    assert not enc.visual.training  # the tower stays in eval mode


def test_deterministic(backbone, video):
    enc = VideoEncoder(backbone.model).eval()
    with torch.no_grad():
        a = enc(video, force_temporal=True)
        b = enc(video, force_temporal=True)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


@pytest.mark.slow
def test_zero_init_equivalence_on_a_full_size_tower():
    """Same check on the ViT-B-32 shape (random weights; ~10 s on CPU)."""
    from vigil.model.backbones import create_backbone

    bb = create_backbone("ViT-B-32-random")
    enc = VideoEncoder(bb.model).eval()
    video = torch.randn(1, 3, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out, _ = enc(video, force_temporal=True)
    assert (out - _clip_frames(bb, video)).abs().max().item() <= 1e-5


def test_served_encoder_has_no_temporal_layers_and_the_same_outputs(backbone, video):
    """The served default (``AnomalyConfig.timesformer=False``): no temporal parameters at all,
    the very embeddings the zero-init TimeSformer gave, and a heads file with trained temporal
    layers is refused by name rather than silently ignored."""
    from vigil.model.anomaly import AnomalyConfig

    lean = VideoEncoder(backbone.model, temporal=False).eval()
    full = VideoEncoder(backbone.model).eval()
    assert not AnomalyConfig().timesformer and lean.temporal is None and lean.head_state_dict() == {}
    assert sum(p.numel() for p in full.head_state_dict().values()) > 0
    with torch.no_grad():
        (f0, s0), (f1, s1) = lean(video), full(video)
    assert torch.equal(f0, f1) and torch.equal(s0, s1)
    with torch.no_grad():
        full.temporal[0].temporal_fc.bias.add_(0.1)  # "trained"
    with pytest.raises(KeyError, match="timesformer=True"):
        lean.load_head_state_dict(full.head_state_dict())
