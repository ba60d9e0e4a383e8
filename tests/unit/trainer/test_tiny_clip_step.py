"""The contrastive step that trains vigil-tiny learns image-caption pairings; its schedule."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.trainer.tiny_clip import clip_optimizer, clip_step, cosine_lr


@pytest.fixture(scope="module")
def micro():
    import open_clip

    from vigil.model.backbones import CONFIG_DIR

    open_clip.add_model_config(CONFIG_DIR / "vigil-micro.json")
    torch.manual_seed(0)
    return open_clip.create_model("vigil-micro", pretrained=None), open_clip.get_tokenizer("vigil-micro")


def test_cosine_schedule_warms_up_then_decays_to_zero():
    lrs = [cosine_lr(s, 100, 10, 1e-3) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:])) and lrs[-1] < 1e-6


def test_step_learns_the_pairing_when_images_share_captions(micro):
    model, tok = micro
    model.train()
    rng = np.random.default_rng(0)
    # 8 images, two captions; images 0-3 are bright, 4-7 dark, so the pairing is learnable
    x = torch.from_numpy(rng.normal(0, 0.1, (8, 3, 64, 64)).astype(np.float32))
    x[:4] += 1.0
    ids = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    tokens = tok(["a bright empty plaza", "a dark street at night"])[torch.from_numpy(ids)]
    opt = clip_optimizer(model, 3e-3, 0.0)
    losses = [clip_step(model, opt, x, tokens, ids)[0] for _ in range(40)]
    # four images share each caption, so the best possible loss is log(4) (each row's target
    # is uniform over four identical columns); chance (no pairing learnt) is about log(8)
    assert losses[0] > np.log(4) + 0.3
    assert losses[-1] < np.log(4) + 0.05
    assert np.isfinite(losses).all()
