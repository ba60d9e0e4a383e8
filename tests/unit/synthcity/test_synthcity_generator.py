"""SynthCity: determinism, label/caption alignment, every scene and anomaly type, context rules."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from vigil.synthcity import (
    ANOMALY_TYPES,
    EVAL_SEEDS,
    PHRASES,
    SCENE_RULES,
    SCENES,
    TRAIN_SEEDS,
    SynthCamera,
    render_clip,
)

SMALL = dict(width=160, height=120, fps=5.0, warmup_s=4.0)


def test_scene_catalogue():
    assert set(SCENES) == {"street", "plaza", "campus_walkway", "parking_lot", "shop_floor", "subway_platform"}
    for t in ANOMALY_TYPES:
        assert any(t in r.anomalies for r in SCENE_RULES.values()), t
    assert SCENE_RULES["street"].cycling_normal and "cycling" not in SCENE_RULES["street"].anomalies
    assert not SCENE_RULES["campus_walkway"].cycling_normal and "cycling" in SCENE_RULES["campus_walkway"].anomalies
    assert set(TRAIN_SEEDS).isdisjoint(EVAL_SEEDS)


def test_render_clip_is_deterministic_by_seed():
    a = render_clip("plaza", 3, 40, anomalies=[("fighting", 0)], **SMALL)
    b = render_clip("plaza", 3, 40, anomalies=[("fighting", 0)], **SMALL)
    c = render_clip("plaza", 4, 40, anomalies=[("fighting", 0)], **SMALL)
    assert np.array_equal(a.frames, b.frames)
    assert np.array_equal(a.labels, b.labels) and a.types == b.types and a.captions == b.captions
    assert not np.array_equal(a.frames, c.frames)


def test_camera_stream_is_deterministic_and_endless():
    def take(seed, n=60):
        cam = SynthCamera("street", seed, width=160, height=120, fps=5.0, anomaly_rate=0.5, warmup_s=2.0)
        return list(itertools.islice(cam.frames(), n))

    x, y = take(9), take(9)
    assert all(np.array_equal(f1, f2) and i1 == i2 for (f1, i1), (f2, i2) in zip(x, y))
    assert [i.index for _, i in x] == list(range(60))
    f, info = x[0]
    assert f.shape == (120, 160, 3) and f.dtype == np.uint8
    assert isinstance(info.caption, str) and info.caption


def test_anomaly_rate_zero_is_all_normal():
    cam = SynthCamera("campus_walkway", 1, width=160, height=120, fps=5.0, anomaly_rate=0.0, warmup_s=2.0)
    infos = [i for _, i in itertools.islice(cam.frames(), 80)]
    assert all(i.label == 0 and i.anomaly_type is None for i in infos)


def test_anomaly_rate_roughly_respected():
    cam = SynthCamera("plaza", 5, width=96, height=72, fps=2.0, anomaly_rate=0.3, warmup_s=2.0)
    labels = [i.label for _, i in itertools.islice(cam.frames(), 1200)]
    assert 0.1 < np.mean(labels) < 0.6


@pytest.mark.parametrize(
    "scene,kind",
    [(s, t) for s in SCENES for t in SCENE_RULES[s].anomalies] + [(s, "cycling") for s in SCENES if SCENE_RULES[s].cycling_normal],
)
def test_every_scene_and_anomaly_renders_with_aligned_labels(scene, kind):
    clip = render_clip(scene, 21, 110, anomalies=[(kind, 2)], **SMALL)
    n = len(clip)
    assert clip.frames.shape == (n, 120, 160, 3)
    assert len(clip.types) == len(clip.captions) == len(clip.staged) == n
    staged = [i for i in range(n) if clip.staged[i] == kind]
    assert staged, f"{kind} never became visible in {scene}"
    if kind == "cycling" and SCENE_RULES[scene].cycling_normal:
        assert clip.labels.sum() == 0  # cycling is normal here: staged but not an anomaly
        return
    pos = np.flatnonzero(clip.labels)
    assert len(pos) > 0
    for i in range(n):
        assert (clip.labels[i] == 1) == (clip.types[i] is not None)
    phrases = [p.format(zone=SCENE_RULES[scene].zone_noun) for p in PHRASES[kind]]
    for i in pos:
        assert clip.types[i] == kind
        assert any(clip.captions[i].startswith(p) for p in phrases), clip.captions[i]
    # before the event begins nothing is labelled
    assert clip.labels[:2].sum() == 0


def test_cycling_is_normal_on_a_street_and_abnormal_on_a_walkway():
    street = render_clip("street", 8, 80, anomalies=[("cycling", 0)], **SMALL)
    walk = render_clip("campus_walkway", 8, 80, anomalies=[("cycling", 0)], **SMALL)
    assert "cycling" in street.staged and street.labels.sum() == 0
    assert walk.labels.sum() > 0 and {t for t in walk.types if t} == {"cycling"}


def test_scene_rules_are_enforced():
    with pytest.raises(ValueError):
        render_clip("plaza", 0, 10, anomalies=["wrong_way_vehicle"], **SMALL)
    with pytest.raises(ValueError):
        render_clip("moon_base", 0, 10)
    with pytest.raises(ValueError):
        render_clip("street", 0, 10, anomalies=["levitating"], **SMALL)


def test_night_is_darker_than_day():
    day = render_clip("street", 2, 5, night=False, **SMALL)
    night = render_clip("street", 2, 5, night=True, **SMALL)
    assert night.frames.mean() < 0.75 * day.frames.mean()


def test_perspective_people_shrink_with_depth():
    from vigil.synthcity import World

    w = World("plaza", 0, 320, 240)
    z0 = w.cam.z_near + 1
    assert w.cam.scale(z0) > 2 * w.cam.scale(2 * z0 + 1)


def test_renders_much_faster_than_real_time():
    """Sanity, not a benchmark: 320x240 at 10 fps must render well above real time."""
    cam = SynthCamera("plaza", 0, anomaly_rate=0.2, warmup_s=1.0)
    it = cam.frames()
    next(it)
    t = time.perf_counter()
    for _ in itertools.islice(it, 100):
        pass
    fps = 100 / (time.perf_counter() - t)
    assert fps > 20.0, f"{fps:.1f} frames/s"


def test_object_captions_name_the_event_agents_and_what_the_others_do():
    from vigil.synthcity import object_captions, run_world

    seen_event, seen_normal = set(), set()
    for world in run_world("campus_walkway", 11, 60, 320, 240, 4.0, [("fighting", 2)], warmup_s=4.0):
        objs = object_captions(world)
        fight = next((e for e in world.events if e.type == "fighting"), None)
        for o in objs:
            assert -40 <= o.x <= 360 and -40 <= o.y <= 240  # body centre projected near or into the image
            if o.abnormal:
                assert fight is not None and fight.active and o.caption == fight.phrase
                seen_event.add(o.caption)
            else:
                seen_normal.add(o.caption)
        if fight is not None and fight.active:  # both fighters are captioned with the event while it lasts
            assert sum(o.abnormal for o in objs) == 2
    assert len(seen_event) == 1
    assert "a student walks on the walkway" in seen_normal
    assert not any("fight" in c for c in seen_normal)
