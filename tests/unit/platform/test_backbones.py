"""The backbone factory: registry names, weight prefixes, local checkpoints, offline errors."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from vigil.model.backbones import BackboneUnavailable, create_backbone, parse_reference


def test_parse_reference_forms():
    assert parse_reference("vigil-micro").weights == "random:0"
    assert parse_reference("ViT-B-32").weights == "pretrained:laion2b_s34b_b79k"
    assert parse_reference("ViT-B-32:openai").weights == "pretrained:openai"
    spec = parse_reference("vigil-micro:file:/x/y.pt")
    assert (spec.model, spec.kind, spec.location) == ("vigil-micro", "file", "/x/y.pt")
    with pytest.raises(BackboneUnavailable, match="names no weights"):
        parse_reference("ViT-L-14")


def test_model_preprocess_tokenizer_come_together():
    bb = create_backbone("vigil-micro")
    x = bb.preprocess_frames(np.zeros((3, 90, 120, 3), np.uint8))
    assert x.shape == (3, 3, bb.image_size, bb.image_size)
    with torch.no_grad():
        assert bb.model.encode_image(x).shape == (3, bb.embed_dim)
        assert bb.model.encode_text(bb.tokenizer(["a person walking"])).shape == (1, bb.embed_dim)
    with pytest.raises(ValueError, match="uint8 frames"):
        bb.preprocess_frames(np.zeros((3, 90, 120), np.float32))


def test_random_weights_are_reproducible_by_seed():
    a, b, c = (create_backbone(r) for r in ("vigil-micro:random:1", "vigil-micro:random:1", "vigil-micro:random:2"))
    pa, pb, pc = (next(m.model.visual.parameters()) for m in (a, b, c))
    assert torch.equal(pa, pb) and not torch.equal(pa, pc)


def test_local_checkpoint_round_trip(tmp_path):
    src = create_backbone("vigil-micro:random:7")
    path = tmp_path / "micro.pt"
    torch.save(src.model.state_dict(), path)
    loaded = create_backbone(f"vigil-micro:file:{path}")
    x = src.preprocess_frames(np.random.default_rng(0).integers(0, 255, (2, 64, 64, 3), dtype=np.uint8))
    with torch.no_grad():
        assert torch.allclose(src.model.encode_image(x), loaded.model.encode_image(x))
    assert loaded.version.startswith("vigil-micro@file:") and loaded.version != src.version


def test_checkpoint_of_another_model_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"visual.proj": torch.zeros(3, 3)}, path)
    with pytest.raises(BackboneUnavailable, match="does not fit"):
        create_backbone(f"vigil-micro:file:{path}")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneUnavailable, match="cannot read checkpoint"):
        create_backbone(f"vigil-micro:file:{tmp_path / 'junk.pt'}")


def test_missing_pretrained_weights_fail_fast_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    t0 = time.monotonic()
    with pytest.raises(BackboneUnavailable) as e:
        create_backbone("ViT-B-32")
    assert time.monotonic() - t0 < 5, "must not retry downloads"
    msg = str(e.value)
    assert "ViT-B-32:laion2b_s34b_b79k" in msg and "file:" in msg and "allow_download" in msg


def test_missing_files_and_unknown_models_are_clear(tmp_path):
    with pytest.raises(BackboneUnavailable, match="does not exist"):
        create_backbone(f"vigil-micro:file:{tmp_path / 'nope.pt'}")
    with pytest.raises(BackboneUnavailable, match="unknown backbone model"):
        create_backbone("NoSuchNet:random")
