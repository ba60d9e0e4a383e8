"""Context gate: context vector, text gating, fusion."""

import math

import torch
import torch.nn.functional as F

from vigil.model.gate import FusionGate, TextGate, build_context, fuse, scene_cue


def test_context_layout():
    torch.manual_seed(0)
    seg = F.normalize(torch.randn(2, 8), dim=-1)
    scene = F.normalize(torch.randn(3, 8), dim=-1)
    glob = torch.randn(8)
    c = build_context(seg, scene, glob)
    assert c.shape == (2, 16)
    w = (100 * seg @ scene.T).softmax(-1)
    assert torch.allclose(c[:, :8], w @ scene, atol=1e-6) and torch.allclose(c[:, 8:], glob.expand(2, 8))
    assert torch.equal(build_context(seg, None, None), torch.zeros(2, 16))
    assert torch.equal(scene_cue(seg, torch.zeros(0, 8)), torch.zeros(2, 8))


def test_text_gate_identity_at_init_then_formula():
    torch.manual_seed(0)
    t = F.normalize(torch.randn(5, 8), dim=-1)
    c = torch.randn(2, 16)
    gate = TextGate(8)
    out = gate(t, c)
    assert out.shape == (2, 5, 8) and torch.allclose(out, t.expand(2, 5, 8), atol=1e-6)
    torch.nn.init.normal_(gate.proj.weight)
    torch.nn.init.normal_(gate.proj.bias)
    expect = F.normalize(t + F.silu(gate.proj(c[0])), dim=-1)
    assert torch.allclose(gate(t, c[0]), expect, atol=1e-6)


def test_fusion_gate_and_fuse():
    g = FusionGate(8, g0=0.7)
    assert torch.allclose(g(torch.randn(3, 16)), torch.full((3,), 0.7), atol=1e-6)
    assert math.isclose(fuse(0.8, 0.2, 0.75), 0.75 * 0.8 + 0.25 * 0.2)
    assert fuse(0.8, None, 0.3) == 0.8 and fuse(None, 0.4, None) == 0.4 and fuse(None, None, None) == 0.0
