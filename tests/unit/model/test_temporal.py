"""Temporal module (local transformer + GCN), top-k alignment and L_vid."""

import math

import torch
import torch.nn.functional as F

from vigil.model.temporal import (
    TemporalModule,
    alignment_loss,
    contrastive_text_loss,
    local_window_mask,
    topk_alignment_logits,
    video_loss,
)


def test_identity_at_init_and_shapes():
    torch.manual_seed(0)
    x = F.normalize(torch.randn(2, 40, 32), dim=-1)
    tm = TemporalModule(32).eval()
    with torch.no_grad():
        y = tm(x)
        y1 = tm(x[0])
    assert y.shape == x.shape and y1.shape == x[0].shape
    assert torch.allclose(y, x, atol=1e-6)


def test_local_window_mask():
    m = local_window_mask(20, 16)
    assert not m[0, 15] and m[0, 16] and m[16, 15] and not m[17, 19]


def test_local_windows_are_independent_in_the_transformer():
    torch.manual_seed(0)
    tm = TemporalModule(16).eval()
    torch.nn.init.normal_(tm.attn_out.weight, std=0.5)
    x = torch.randn(1, 32, 16)
    y = x.clone()
    y[:, 20] = torch.randn(16)  # second window
    with torch.no_grad():
        h = tm.ln1(x)
        a = tm.attn(h, h, h, attn_mask=local_window_mask(32, 16))[0]
        h2 = tm.ln1(y)
        b = tm.attn(h2, h2, h2, attn_mask=local_window_mask(32, 16))[0]
    assert torch.allclose(a[:, :16], b[:, :16], atol=1e-6) and not torch.allclose(a[:, 16:], b[:, 16:])


def test_adjacencies():
    tm = TemporalModule(8, sigma=1.0)
    x = torch.randn(1, 5, 8)
    sim, dis = tm.adjacency(x)
    assert torch.allclose(sim.sum(-1), torch.ones(1, 5), atol=1e-6)
    assert math.isclose(dis[0, 2].item(), math.exp(-2), rel_tol=1e-6) and dis[3, 3] == 1


def test_topk_alignment_and_losses():
    torch.manual_seed(0)
    f = F.normalize(torch.randn(3, 32, 8), dim=-1)
    t = F.normalize(torch.randn(4, 8), dim=-1)
    logits = topk_alignment_logits(f, t)  # k = 32 // 16 + 1 = 3
    sim = torch.einsum("btd,kd->btk", f, t)
    manual = sim.sort(dim=1, descending=True).values[:, :3].mean(1) / 0.07
    assert torch.allclose(logits, manual, atol=1e-5)
    labels = torch.tensor([0, 2, 3])
    mask = torch.tensor([False, False, True, True])
    l_ali = F.cross_entropy(manual, labels)
    assert torch.allclose(alignment_loss(f, t, labels), l_ali, atol=1e-5)
    cos = t[:2] @ t[2:].T
    l_cts = cos.clamp(min=0).mean()
    assert torch.allclose(contrastive_text_loss(t, mask), l_cts, atol=1e-6)
    assert torch.allclose(video_loss(f, t, labels, mask), l_ali + 0.1 * l_cts, atol=1e-5)


def test_video_loss_trains_the_temporal_module():
    torch.manual_seed(0)
    tm = TemporalModule(8)
    x = F.normalize(torch.randn(2, 16, 8), dim=-1)
    t = F.normalize(torch.randn(3, 8), dim=-1)
    loss = video_loss(tm(x), t, torch.tensor([0, 2]), torch.tensor([False, True, True]))
    loss.backward()
    assert tm.gcn_out.weight.grad.abs().sum() > 0 and tm.attn_out.weight.grad.abs().sum() > 0
