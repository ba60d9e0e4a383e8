"""Heads save/load: every head round-trips exactly; mismatches are refused."""

import numpy as np
import pytest
import torch

from vigil.model.anomaly import AnomalyModel, SegmentHistory
from vigil.model.coop import CoOpConfig
from vigil.model.heads import HeadsMismatch, load_heads, read_heads, save_heads


def _perturbed_model(**cfg):
    m = AnomalyModel.create(
        "vigil-micro", mode="video", coop=CoOpConfig(n_ctx=4).model_dump(), dpc={"hidden": 16, "context": 4}, **cfg
    )
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for mod in m.head_modules().values():
            for n, p in mod.named_parameters():
                if n.startswith("visual."):
                    continue
                p.add_(0.05 * torch.randn(p.shape, generator=g))
    return m


def _head_tensors(m):
    out = {}
    for name, mod in m.head_modules().items():
        sd = mod.head_state_dict() if name == "video" else mod.state_dict()
        out.update({f"{name}.{k}": v for k, v in sd.items()})
    return out


def test_round_trip_of_every_head(tmp_path, frames):
    m = _perturbed_model()
    assert set(m.head_modules()) == {"video", "scorer", "temporal", "text_gate", "fusion", "coop", "dpc"}
    path = tmp_path / "heads.pt"
    digest = save_heads(m, path)
    m2 = AnomalyModel.create("vigil-micro", heads=path)
    assert m2.version == f"{m.backbone.version}+heads:{digest}"
    assert m2.config.mode == "video" and m2.config.coop is not None and m2.config.dpc == {"hidden": 16, "context": 4, "horizon": 1}
    a, b = _head_tensors(m), _head_tensors(m2)
    assert a.keys() == b.keys() and len(a) > 20
    assert not any(k.startswith("video.visual.") for k in a)  # the CLIP tower is not saved
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # perturbed heads differ from a fresh model, so the comparison above is not vacuous
    fresh = _head_tensors(AnomalyModel.create("vigil-micro", mode="video", coop=CoOpConfig(n_ctx=4).model_dump(), dpc={"hidden": 16, "context": 4}))
    assert sum(not torch.equal(a[k], fresh[k]) for k in a) >= len(a) - 2
    # same outputs end to end
    e1 = m.encode(m.preprocess(frames)[None])[0]
    e2 = m2.encode(m2.preprocess(frames)[None])[0]
    assert np.array_equal(e1.frame_emb, e2.frame_emb)
    s1 = s2 = SegmentHistory()
    for _ in range(3):
        r1, s1 = m.score(e1, s1)
        r2, s2 = m2.score(e2, s2)
    assert r1.score == r2.score and r1.frame_scores == r2.frame_scores and r1.s_pred_raw == r2.s_pred_raw


def test_zero_shot_heads_round_trip_keeps_scores(tmp_path, zs_model, frames):
    path = tmp_path / "zs.pt"
    save_heads(zs_model, path)
    payload, _ = read_heads(path)
    assert "dpc" not in payload["state"] and "coop" not in payload["state"]
    m2 = AnomalyModel.create("vigil-micro", heads=path)
    e = zs_model.encode(zs_model.preprocess(frames)[None])[0]
    assert m2.score(e, None)[0].score == zs_model.score(e, None)[0].score
    # config overrides at load time (ablations)
    m3 = AnomalyModel.create("vigil-micro", heads=path, streams=("semantic",))
    assert m3.config.streams == ("semantic",)


def test_mismatched_or_foreign_files_are_refused(tmp_path, zs_model, backbone):
    path = tmp_path / "h.pt"
    save_heads(zs_model, path)
    from vigil.model.backbones import create_backbone

    other = create_backbone("vigil-micro:random:1")
    with pytest.raises(HeadsMismatch, match="trained on backbone"):
        load_heads(path, other)
    assert load_heads(path, other, strict_backbone=False).dim == 64
    bad = tmp_path / "bad.pt"
    torch.save({"hello": torch.zeros(1)}, bad)
    with pytest.raises(HeadsMismatch):
        load_heads(bad, backbone)
    with pytest.raises(FileNotFoundError):
        load_heads(tmp_path / "missing.pt", backbone)


def test_version_changes_invalidate_text_cache(tmp_path, frames):
    m = _perturbed_model()
    p1 = tmp_path / "a.pt"
    save_heads(m, p1)
    with torch.no_grad():
        m.coop.ctx.add_(0.5)
    p2 = tmp_path / "b.pt"
    save_heads(m, p2)
    m1, m2 = AnomalyModel.create("vigil-micro", heads=p1), AnomalyModel.create("vigil-micro", heads=p2)
    assert m1.version != m2.version
    assert not torch.allclose(m1.text_embeddings()["text"], m2.text_embeddings()["text"])


def test_in_process_coop_update_invalidates_cache():
    m = _perturbed_model()
    before = m.text_embeddings()["text"].clone()
    assert torch.equal(m.text_embeddings()["text"], before)
    with torch.no_grad():
        m.coop.ctx.add_(0.5)  # what an optimizer step does
    assert not torch.allclose(m.text_embeddings()["text"], before)
