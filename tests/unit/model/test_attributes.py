"""Object attributes, the place-relative speed stream and the reasons built from them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from vigil.model.attributes import ATTRIBUTES, N_ATTRIBUTES, box_attributes
from vigil.model.normality import NormalityConfig, NormalityModel
from vigil.model.reasons import object_reasons
from vigil.model.stages import semantic_contributed
from vigil.model.tubes import box_speed

A = {k: i for i, k in enumerate(ATTRIBUTES)}


def _flow(h: int = 100, w: int = 120, box=(20, 30, 50, 80), v=(3.0, 0.0)) -> np.ndarray:
    f = np.zeros((h, w, 2), np.float16)
    x0, y0, x1, y1 = box
    f[y0:y1, x0:x1] = v
    return f


def test_box_attributes_measure_place_size_and_velocity():
    box = (20, 30, 50, 80)
    a = box_attributes(_flow(box=box, v=(3.0, -1.0)), box, 120, 100)
    assert a.shape == (N_ATTRIBUTES,)
    assert a[A["cx"]] == pytest.approx(35 / 120) and a[A["cy"]] == pytest.approx(55 / 100)
    assert a[A["w"]] == pytest.approx(30 / 120) and a[A["h"]] == pytest.approx(50 / 100)
    assert a[A["vx"]] == pytest.approx(3.0) and a[A["vy"]] == pytest.approx(-1.0)
    assert a[A["speed"]] == pytest.approx(np.hypot(3, 1), rel=1e-3)
    hist = a[A["hist0"] : A["hist7"] + 1]
    assert hist.argmax() == int(((np.arctan2(-1, 3) + np.pi) / (2 * np.pi) * 8)) % 8 and hist.sum() > 0
    assert a[A["moving"]] == pytest.approx(1.0)
    # the speed is the one the motion stream always used
    assert a[A["speed"]] == pytest.approx(box_speed(_flow(box=box, v=(3.0, -1.0)), box), rel=1e-5)


def test_a_still_box_has_no_velocity():
    box = (20, 30, 50, 80)
    a = box_attributes(np.zeros((100, 120, 2), np.float16), box, 120, 100)
    assert not a[A["vx"] :].any() and a[A["h"]] > 0
    assert not box_attributes(None, box, 120, 100)[A["vx"] :].any()


def _bank(n: int = 400, seed: int = 0) -> np.ndarray:
    """Normal boxes in perspective: far (top of the view) people are small and slow, near ones big and fast."""
    rng = np.random.default_rng(seed)
    bank = np.zeros((n, N_ATTRIBUTES), np.float32)
    far = np.arange(n) < n // 2
    bank[:, A["cx"]] = rng.uniform(0.1, 0.9, n)
    bank[:, A["cy"]] = np.where(far, rng.uniform(0.1, 0.3, n), rng.uniform(0.7, 0.9, n))
    bank[:, A["h"]] = np.where(far, 0.05, 0.3)
    bank[:, A["w"]] = bank[:, A["h"]] / 2
    bank[:, A["speed"]] = np.where(far, rng.uniform(0.8, 1.2, n), rng.uniform(4.0, 6.0, n))
    bank[:, A["vx"]] = bank[:, A["speed"]]
    return bank


def _box(cy: float, speed: float, h: float) -> np.ndarray:
    a = np.zeros(N_ATTRIBUTES, np.float32)
    a[[A["cx"], A["cy"], A["h"], A["w"], A["speed"], A["vx"]]] = 0.5, cy, h, h / 2, speed, speed
    return a


@pytest.fixture(scope="module")
def model():
    m = NormalityModel(NormalityConfig(streams=["place_speed", "attr"], place_k=50), encoder=object(), dim=8)
    m.fit_attributes(_bank())
    return m


def test_place_speed_judges_speed_against_the_place_in_the_view(model):
    # the same 3 px per gap: fast far away (3x what people reach there), slow near the camera
    far, near = model.place_speed(np.stack([_box(0.2, 3.0, 0.05), _box(0.8, 3.0, 0.3)]))
    assert far > 2.2 and near < 0.8
    # the absolute speed (the motion stream) cannot tell them apart
    ref = model.place_reference(np.stack([_box(0.2, 3.0, 0.05)]))
    assert ref["speed_median"][0] == pytest.approx(1.0, abs=0.1) and ref["h_median"][0] == pytest.approx(0.05)


def test_attribute_density_is_far_for_an_unseen_motion(model):
    back = _box(0.8, 5.0, 0.3)
    back[A["vx"]] = -5.0  # the wrong way
    normal, wrong = model.attribute_distance(np.stack([_box(0.8, 5.0, 0.3), back]))
    assert wrong > normal + 1.0


def test_reasons_name_the_streams_that_fired_in_words(model):
    box = _box(0.2, 3.1, 0.12)
    place = {k: float(v[0]) for k, v in model.place_reference(box[None]).items()}
    reasons = object_reasons(box, {"place_speed": 2.5, "mem": 0.3}, place, {"place_speed": 0.9, "mem": 0.1})
    texts = [r["text"] for r in reasons]
    assert texts[0].startswith("moving 3.") and texts[0].endswith("× faster than objects usually move here")
    assert reasons[0]["stream"] == "place_speed" and reasons[0]["prob"] == 0.9
    assert not any("unlike" in t for t in texts), "mem did not fire: no appearance reason"
    assert texts[-1].startswith("2.4× taller than objects usually are") and reasons[-1]["stream"] == "size"
    # nothing fired: nothing to say, whatever the size
    assert object_reasons(box, {"place_speed": 0.6, "mem": 0.9}, place, {}) == []


def test_semantic_descriptions_only_when_the_semantic_stream_is_part_of_the_score():
    assert semantic_contributed(SimpleNamespace(s_sem=0.1, s_pred=0.9, gate=0.5))
    assert semantic_contributed(SimpleNamespace(s_sem=0.1, s_pred=None, gate=None))
    assert not semantic_contributed(SimpleNamespace(s_sem=0.7, s_pred=0.2, gate=0.0))  # gated out
    assert not semantic_contributed(SimpleNamespace(s_sem=None, s_pred=0.5, gate=None))  # semantic off


def test_an_event_the_object_streams_raised_shows_their_reasons_not_the_prompts():
    from vigil.model import stages

    res = SimpleNamespace(s_sem=0.9, s_pred=0.1, gate=0.5, score=0.3, frame_scores=[0.3] * 4,
                          top_descriptions=[("fire", 0.73, True)], crop_boxes=None)
    zero_shot = SimpleNamespace(version="zs", score=lambda enc, hist, ps: (res, hist))
    model = NormalityModel(NormalityConfig(streams=["place_speed"], place_k=50), encoder=object(), dim=8)
    model.fit_attributes(_bank())
    from vigil.model.calibration import ScoreCalibration

    model.calibration = {"place_speed": ScoreCalibration(median=0.5, q99=1.0, mean=0.5, std=0.2, n=100)}
    fast = _box(0.2, 4.0, 0.05)  # 4x what people reach far away
    obs = stages.Observation(boxes=[[(0, 0, 1, 1)]] * 4, tubes=None, owner=np.arange(4),
                             context=np.zeros((4, 4), np.float32),
                             attributes=np.stack([fast] * 4))
    out, _ = stages.score(zero_shot, model, SimpleNamespace(), obs, {}, fps=10)
    texts = [d["text"] for d in out["top_descriptions"]]
    assert out["s_obj"] > 0.9 and "fire" not in texts, out["top_descriptions"]
    assert texts[0].endswith("× faster than objects usually move here") and out["top_descriptions"][0]["stream"] == "place_speed"
    assert float(texts[0].split()[1].rstrip("×")) == pytest.approx(4.0, rel=0.1)  # 4 px against a median of ~1
    # a calm box: the zero-shot family carries the segment and its prompts explain it
    obs.attributes = np.stack([_box(0.2, 1.0, 0.05)] * 4)
    out, _ = stages.score(zero_shot, model, SimpleNamespace(), obs, {}, fps=10)
    assert [d["text"] for d in out["top_descriptions"]] == ["fire"] and out["top_descriptions"][0]["stream"] == "semantic"


def test_a_version_saved_before_the_attribute_streams_loads_with_them_off(tmp_path):
    import torch

    m = NormalityModel(NormalityConfig(backbone="vigil-micro"))
    path = m.save(tmp_path / "n.pt")
    ck = torch.load(path, weights_only=False)
    for k in ("attr_bank", "attr_mean", "attr_std"):
        del ck["state_dict"][k]
    w = ck["state_dict"]["gate.mlp.2.weight"]
    ck["state_dict"]["gate.mlp.2.weight"], ck["state_dict"]["gate.mlp.2.bias"] = w[:3], ck["state_dict"]["gate.mlp.2.bias"][:3]
    torch.save(ck, path)
    old = NormalityModel.load(path)
    assert len(old.attr_bank) == 0 and old.gate.mlp[-1].out_features == 3
    assert old.place_speed(_box(0.5, 2.0, 0.1)[None])[0] == pytest.approx(2.0 / 0.5)


def test_dwell_grows_for_an_object_that_stays_and_not_for_one_that_passes():
    from vigil.model.attributes import clip_dwell, dwell_seconds

    fps, w, h = 10.0, 160, 120
    stay = [[(20, 20, 40, 60)] for _ in range(100)]  # 10 s in one place
    walk = [[(x, 20, x + 20, 60)] for x in range(0, 140, 1)][:100]  # 1 px a frame: the same cells for ~0.8 s
    d_stay, occ = clip_dwell(stay, w, h, fps, dwell_s=5.0)
    d_walk, _ = clip_dwell(walk, w, h, fps, dwell_s=5.0)
    assert d_stay[0][0] == 0.0 and d_stay[-1][0] == pytest.approx(1 - np.exp(-99 / 50), abs=0.02)
    assert max(d[0] for d in d_walk) < 0.3 * d_stay[-1][0]
    assert dwell_seconds(d_stay[-1][0], 5.0) == pytest.approx(9.9, abs=0.3)
    # carried across segments: two halves with the map in between give the same dwell
    first, mid = clip_dwell(stay[:50], w, h, fps, 5.0)
    second, _ = clip_dwell(stay[50:], w, h, fps, 5.0, occ=mid)
    assert [d[0] for d in first + second] == pytest.approx([d[0] for d in d_stay])


def test_detect_carries_dwell_across_segments():
    from vigil.model import stages

    geometry = NormalityConfig(tube={"size": 32, "context": 2, "horizon": 1})
    rng = np.random.default_rng(0)
    frames = np.full((48, 120, 160, 3), 90, np.uint8) + rng.integers(0, 4, (48, 120, 160, 3), dtype=np.uint8)
    for t in range(16, 48):  # after an empty segment, a bright object arrives and moves in place: a person who stays
        x = 60 + 5 * (t % 3)
        frames[t, 40:90, x : x + 20] = 230
    state, dwell = None, []
    for s in range(0, 48, 16):
        obs, state = stages.detect(frames[s : s + 16], state, geometry, fps=10)
        a = obs.attributes[:, ATTRIBUTES.index("dwell")]
        dwell.append(a.max() if len(a) else 0.0)
    assert state.occupancy is not None and dwell[0] == 0 and dwell[2] > dwell[1] > 0
