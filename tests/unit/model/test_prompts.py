"""Prompt sets: defaults, validation, content versions, text-embedding cache."""

import pytest
import torch

from vigil.model.prompts import PromptSet, PromptSetError, TextEmbeddingCache, list_prompt_sets, load_prompt_set


def test_default_set_follows_icpram_tables():
    ps = load_prompt_set("default")
    assert "child abuse, elder abuse, or animal cruelty" in ps.abnormal
    assert "traffic accidents involving vehicles, pedestrians or cyclists" in ps.abnormal
    assert any("break windows, remove or damage road signs" in d for d in ps.abnormal)
    for d in ("fighting", "hit and run", "jaywalking", "smoke"):
        assert d in ps.abnormal
    for d in ("pedestrian crossings", "cashier scanning", "walk the dog"):
        assert d in ps.normal
    assert ps.scene and "a subway platform" in ps.scene
    assert ps.descriptions == ps.normal + ps.abnormal
    assert ps.abnormal_mask.sum() == len(ps.abnormal)
    assert {"default", "walkway"} <= set(list_prompt_sets())


def test_user_set_changes_meaning():
    walk = load_prompt_set("walkway")
    assert "riding a bicycle" in walk.abnormal


def test_version_is_content_hash():
    a = PromptSet(name="a", normal=["walking"], abnormal=["fighting"])
    b = PromptSet(name="b", normal=["walking"], abnormal=["fighting"])
    assert a.version == b.version  # same content, other name
    c = PromptSet(name="a", normal=["walking"], abnormal=["fighting!"])
    assert c.version != a.version
    d = PromptSet(name="a", normal=["walking"], abnormal=["fighting"], template="a photo of {}")
    assert d.version != a.version and d.texts == ["a photo of walking", "a photo of fighting"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"normal": [], "abnormal": ["x"]},
        {"normal": ["a", "a"], "abnormal": ["x"]},
        {"normal": ["a"], "abnormal": ["a"]},
        {"normal": ["a"], "abnormal": ["  "]},
        {"normal": ["a"], "abnormal": ["x"], "template": "no placeholder"},
        {"normal": ["a"], "abnormal": ["x"], "colour": "red"},
    ],
)
def test_invalid_sets_rejected(kwargs):
    with pytest.raises(ValueError):
        PromptSet(name="bad", **kwargs)


def test_missing_set_is_clear_error(tmp_path):
    with pytest.raises(PromptSetError, match="no prompt set"):
        load_prompt_set("nope", tmp_path)
    (tmp_path / "broken.yaml").write_text("normal: [a]\nabnormal: [a]\n")
    with pytest.raises(PromptSetError, match="invalid"):
        load_prompt_set("broken", tmp_path)


def test_cache_keys_on_model_and_prompt_versions():
    cache = TextEmbeddingCache(max_entries=2)
    calls = []
    enc = lambda ps: calls.append(ps.version) or ps.version  # noqa: E731
    a = PromptSet(name="a", normal=["walking"], abnormal=["fighting"])
    assert cache.get("m1", a, enc) == a.version
    cache.get("m1", a, enc)
    assert cache.misses == 1
    cache.get("m2", a, enc)  # other model version
    assert cache.misses == 2
    edited = a.model_copy(update={"abnormal": ["fighting", "smoke"]})
    cache.get("m1", edited, enc)
    assert cache.misses == 3 and len(cache) == 2  # LRU bound


def test_model_cache_invalidates_when_a_description_changes(zs_model):
    ps = PromptSet(name="t", normal=["people walking", "an empty street"], abnormal=["fighting", "smoke"])
    m = zs_model
    before = m._cache.misses
    e1 = m.text_embeddings(ps)["text"]
    e1b = m.text_embeddings(ps)["text"]
    assert m._cache.misses == before + 1 and e1 is e1b
    changed = PromptSet(name="t", normal=["people walking", "an empty street"], abnormal=["fighting", "fire"])
    e2 = m.text_embeddings(changed)["text"]
    assert m._cache.misses == before + 2
    assert torch.equal(e1[:3], e2[:3]) and not torch.allclose(e1[3], e2[3])
    # the cached value is what a fresh encoding gives
    tok = m.backbone.tokenizer(changed.texts)
    with torch.no_grad():
        ref = torch.nn.functional.normalize(m.clip.encode_text(tok), dim=-1)
    assert torch.allclose(e2, ref, atol=1e-6)
