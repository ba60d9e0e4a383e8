"""CoOp learnable context: layouts, text tower equivalence, gradients only to the context."""

import pytest
import torch

from vigil.model.coop import CoOpConfig, PromptLearner, encode_text_embeddings

DESC = ["fighting", "people walking a dog", "smoke"]


def test_manual_text_tower_equals_encode_text(backbone):
    tok = backbone.tokenizer(DESC)
    with torch.no_grad():
        ref = backbone.model.encode_text(tok)
        out = encode_text_embeddings(backbone.model, backbone.model.token_embedding(tok), tok.argmax(-1))
    assert torch.allclose(out, ref, atol=1e-6)


@pytest.mark.parametrize("class_specific,position", [(True, "end"), (False, "middle"), (True, "front")])
def test_layouts_shapes_and_gradients(backbone, class_specific, position):
    torch.manual_seed(0)
    pl = PromptLearner(backbone.model, backbone.tokenizer, CoOpConfig(class_specific=class_specific, position=position), DESC)
    n = pl.config.n_ctx
    assert n == 16
    assert pl.ctx.shape == ((3, n, pl.width) if class_specific else (n, pl.width))
    emb = pl(DESC)
    assert emb.shape == (3, backbone.embed_dim)
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-5)
    emb.sum().backward()
    assert pl.ctx.grad is not None and pl.ctx.grad.abs().sum() > 0
    assert all(p.grad is None for p in backbone.model.parameters())
    assert [n for n, _ in pl.named_parameters()] == ["ctx"]  # the frozen tower is not part of the head


def test_positions_differ_and_context_matters(backbone):
    torch.manual_seed(0)
    end = PromptLearner(backbone.model, backbone.tokenizer, CoOpConfig(class_specific=False, position="end"))
    mid = PromptLearner(backbone.model, backbone.tokenizer, CoOpConfig(class_specific=False, position="middle"))
    with torch.no_grad():
        mid.ctx.copy_(end.ctx)
        a, b = end(DESC), mid(DESC)
        assert not torch.allclose(a, b)
        end.ctx.add_(0.5)
        assert not torch.allclose(end(DESC), a)


def test_class_specific_contexts_are_per_description(backbone):
    torch.manual_seed(0)
    pl = PromptLearner(backbone.model, backbone.tokenizer, CoOpConfig(), DESC)
    with torch.no_grad():
        base = pl(DESC)
        pl.ctx[0].add_(1.0)  # only "fighting"'s context
        after = pl(DESC)
    assert not torch.allclose(base[0], after[0]) and torch.allclose(base[1:], after[1:])
    # an unseen description uses the mean context; bind keeps the learned ones
    with torch.no_grad():
        new = pl(["jaywalking"])
    assert new.shape == (1, backbone.embed_dim)
    ctx0 = pl.ctx[0].clone()
    pl.bind(["jaywalking", "fighting"])
    assert torch.equal(pl.ctx[1], ctx0)


def test_long_description_is_truncated(backbone):
    pl = PromptLearner(backbone.model, backbone.tokenizer, CoOpConfig(), ["word " * 40])
    with torch.no_grad():
        assert pl(["word " * 40]).shape == (1, backbone.embed_dim)


def test_context_too_long_is_refused(backbone):
    with pytest.raises(ValueError):
        PromptLearner(backbone.model, backbone.tokenizer, CoOpConfig(n_ctx=30))
