"""Object-centric normality model: tubes, the live segment scorer, training, resume, save/load."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vigil.model import stages
from vigil.model.normality import NormalityConfig, NormalityModel
from vigil.model.tubes import TubeConfig, square_box, tube_crops


def _scene(t=40, h=96, w=128, speed=2, seed=0):
    """Grey street with two walkers (and optionally a fast one), RGB uint8."""
    rng = np.random.default_rng(seed)
    base = rng.integers(80, 120, (h, w), dtype=np.uint8)
    frames = np.repeat(base[None], t, 0).copy()
    for i in range(t):
        for k, (x, y) in enumerate([(5, 20), (100, 60)]):
            xx = int(x + (speed if k == 0 else -speed) * i) % (w - 12)
            frames[i, y : y + 18, xx : xx + 8] = 220
    return np.repeat(frames[..., None], 3, -1)


def _write(folder: Path, frames: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:03d}.png"), f)
    return folder


def test_square_box_stays_inside():
    assert square_box((0, 0, 10, 20), 1.25, 16, 100, 80) == (0, 0, 25)
    x, y, s = square_box((90, 70, 100, 80), 2.0, 8, 100, 80)
    assert x + s <= 100 and y + s <= 80


def test_tube_crops_channels_are_past_frames():
    grey = np.stack([np.full((32, 32), v, np.uint8) for v in (0, 10, 20, 30, 40)])
    cfg = TubeConfig(size=16, channels="grey")
    out = tube_crops(grey, [4], (0, 0, 16, 16), cfg, gap=1)
    assert out.shape == (1, 16, 16, 3)
    assert out[0, 0, 0].tolist() == [20, 30, 40]  # t-2g, t-g, t
    whole = tube_crops(grey, [0], (0, 0, 32, 32), cfg, gap=2)  # clamped at the clip start
    assert whole[0, 0, 0].tolist() == [0, 0, 0]


def test_flow_channels_measure_absolute_motion_and_flip():
    from vigil.model.tubes import clip_flows

    rng = np.random.default_rng(0)
    base = cv2.GaussianBlur(rng.integers(0, 255, (80, 80), dtype=np.uint8), (5, 5), 0)
    grey = np.stack([np.roll(base, 2 * i, axis=1) for i in range(4)])  # texture moving right 2 px/frame
    flow = clip_flows(grey, gap=1)
    assert float(np.median(flow[2, 20:60, 20:60, 0])) == pytest.approx(2.0, abs=0.6)
    cfg = TubeConfig(size=32, channels="flow", flow_gain=4.0)
    small = tube_crops(grey, [2], (30, 30, 46, 46), cfg, gap=1, flow=flow)  
    big = tube_crops(grey, [2], (10, 10, 70, 70), cfg, gap=1, flow=flow)  
    fx_small = np.median(small[0, 8:24, 8:24, 1].astype(float)) - 128
    fx_big = np.median(big[0, 8:24, 8:24, 1].astype(float)) - 128
    assert fx_small == pytest.approx(8.0, abs=2.5) and fx_big == pytest.approx(8.0, abs=2.5)  # 4 levels/px
    flipped = tube_crops(grey, [2], (30, 30, 46, 46), cfg, gap=1, flow=flow, flip=True)
    assert np.median(flipped[0, 8:24, 8:24, 1].astype(float)) - 128 == pytest.approx(-fx_small, abs=2)


def test_default_flow_measures_fast_objects_where_ultrafast_falls_short():
    """A textured object on a textured background moved v px: the box speed of the default
    (medium) DIS flow is within 8 % of v up to 16 px; ultrafast reads 16 px as about 13."""
    from vigil.model.tubes import box_speed, frame_flow

    rng = np.random.default_rng(0)
    bg = cv2.GaussianBlur(rng.integers(60, 140, (120, 160), dtype=np.uint8), (7, 7), 0)
    obj = cv2.GaussianBlur(rng.integers(120, 255, (30, 14), dtype=np.uint8), (3, 3), 0)

    def speed(v, preset):
        a, b = bg.copy(), bg.copy()
        a[40:70, 30:44] = obj
        b[40:70, 30 + v : 44 + v] = obj
        return box_speed(frame_flow(a, b, preset).astype(np.float32), (30 + v, 40, 44 + v, 70))

    assert TubeConfig().flow_preset == "medium"
    for v in (2, 4, 8, 12, 16):
        assert speed(v, "medium") == pytest.approx(v, rel=0.08), v
    assert speed(16, "ultrafast") < 0.9 * 16
    with pytest.raises(ValueError, match="optical-flow preset 'slow'"):
        frame_flow(bg, bg, "slow")


def test_checkpoint_without_flow_preset_loads_as_ultrafast(tmp_path):
    """Checkpoints from before the preset was configurable were trained on ultrafast flow."""
    cfg = NormalityConfig(tube={"size": 64})
    model = NormalityModel(cfg)
    path = model.save(tmp_path / "old.pt")
    ck = torch.load(path, weights_only=False)
    del ck["extra"]["config"]["tube"]["flow_preset"]
    torch.save(ck, path)
    assert NormalityModel.load(path).config.tube.flow_preset == "ultrafast"
    assert NormalityModel.load(model.save(tmp_path / "new.pt")).config.tube.flow_preset == "medium"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from services.trainer.normality import train_normal

    root = tmp_path_factory.mktemp("normal")
    dirs = [_write(root / f"{i:02d}", _scene(seed=i)) for i in range(4)]
    cfg = {"tube": {"size": 64, "context": 2, "horizon": 2}, "hidden": 32, "memory_size": 500}
    path = train_normal(dirs, root / "model", fps=10, steps=6, batch=8, seed=0, config=cfg, progress=False)
    return root, dirs, cfg, path


def test_scorer_shapes_state_and_determinism(trained):
    _, _, _, path = trained
    model = NormalityModel.load(path)
    assert set(model.calibration) == {"pred", "mem", "motion", "attr", "place_speed", "dwell", stages.FUSED} and len(model.memory) > 0
    assert len(model.attr_bank) > 0 and model.attr_std.min() > 0
    frames = _scene(t=32, seed=9)
    runs = []
    for _ in range(2):
        det, state = stages.new_detector_state(model.config, fps=10), {}
        out = []
        for s in range(0, 32, 16):
            obs, det = stages.detect(frames[s : s + 16], det, model.config)
            res, state = stages.score(None, model, None, obs, state, fps=10, streams=("objects",))
            scores = np.asarray(res["frame_scores"])
            assert scores.shape == (16,) and np.isfinite(scores).all() and ((0 <= scores) & (scores <= 1)).all()
            out.append(scores)
        assert det.frames_seen == 32 and det.grey.shape[0] == model.config.tube.history(10)
        runs.append(np.concatenate(out))
    assert np.array_equal(runs[0], runs[1])


def test_fast_mover_scores_higher_than_normal(trained):
    _, _, _, path = trained
    model = NormalityModel.load(path)

    def mean_score(frames):
        return np.mean(stages.score_clip(None, model, frames, 10, model.config, streams=("objects",)))

    assert mean_score(_scene(t=32, speed=9, seed=5)) > mean_score(_scene(t=32, speed=2, seed=5))


def test_save_load_round_trip(trained, tmp_path):
    _, _, _, path = trained
    a = NormalityModel.load(path)
    b = NormalityModel.load(a.save(tmp_path / "again.pt"))
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items()):
        assert ka == kb and torch.equal(va, vb)
    assert a.calibration == b.calibration and a.config == b.config


def test_resume_after_crash_equals_uninterrupted(trained, tmp_path, monkeypatch):
    import services.trainer.normality as tn

    _, dirs, cfg, _ = trained
    kw = dict(fps=10, steps=4, batch=8, seed=1, config=cfg, progress=False, checkpoint_every=2)
    straight = NormalityModel.load(tn.train_normal(dirs, tmp_path / "a", **kw))

    real, calls = tn.make_tubes, {"n": 0}

    def flaky(*args, **kwargs):
        if kwargs.get("rng") is not None:
            calls["n"] += 1
            if calls["n"] == 3:
                raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(tn, "make_tubes", flaky)
    with pytest.raises(KeyboardInterrupt):
        tn.train_normal(dirs, tmp_path / "b", **kw)
    assert (tmp_path / "b" / tn.TRAIN_STATE).is_file()
    monkeypatch.setattr(tn, "make_tubes", real)
    resumed = NormalityModel.load(tn.train_normal(dirs, tmp_path / "b", **kw))
    for k, v in straight.encoder.state_dict().items():
        assert torch.allclose(v, resumed.encoder.state_dict()[k]), k


def test_config_rejects_unknown_keys():
    with pytest.raises(Exception):
        NormalityConfig(bogus=1)


def test_optical_flow_is_the_same_when_cameras_compute_it_at_once():
    """A Detect replica serves several cameras in threads: their flows must not interfere."""
    from concurrent.futures import ThreadPoolExecutor

    from vigil.model.tubes import frame_flow

    clips = [_scene(t=12, h=120, w=160, speed=2 + k, seed=k)[..., 0] for k in range(4)]
    alone = [[frame_flow(c[i], c[i + 1]) for i in range(11)] for c in clips]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda c: [frame_flow(c[i], c[i + 1]) for i in range(11)], clips * 3))
    for k, flows in enumerate(together):
        assert all(np.array_equal(a, b) for a, b in zip(alone[k % 4], flows)), f"camera {k % 4} got another flow"
