"""The Serve deployments as plain classes (no Ray): live reconfigure, thresholds, object mode, config file."""

from __future__ import annotations

import inspect
import threading
import time

import numpy as np
import pytest

from services.scoring import serve_app
from services.scoring.deploy import default_score_config

Score = serve_app.Score.func_or_class
Encode = serve_app.Encode.func_or_class
Detect = serve_app.Detect.func_or_class


@pytest.fixture(scope="module")
def enc_and_score():
    enc = Encode("vigil-micro", 1)
    sc = Score("vigil-micro", torch_threads=1)
    frames = np.random.default_rng(0).integers(0, 255, (4, 48, 64, 3), dtype=np.uint8)
    (e,) = enc.model.encode_frames([frames])
    return enc, sc, e, frames


def test_reconfigure_thresholds_and_prompts_without_restart(enc_and_score):
    _enc, sc, e, _ = enc_and_score
    model_before = sc.model
    assert sc.score(e, None, "default", "cam1")["threshold"] is None
    ps = {"name": "live", "normal": ["people walking"], "abnormal": ["a car on the walkway"], "scene": ["a plaza"]}
    sc.reconfigure({"thresholds": {"default": 0.3, "cam1": 0.7}, "prompt_sets": {"live": ps}})
    assert sc.model is model_before, "thresholds and prompts must not reload the model"
    assert sc.score(e, None, None, "cam1")["threshold"] == 0.7
    assert sc.score(e, None, None, "cam2")["threshold"] == 0.3
    texts = {d["text"] for d in sc.score(e, None, "live", "cam1")["top_descriptions"]}
    assert texts <= {"people walking", "a car on the walkway"} and texts
    with pytest.raises(ValueError):
        sc.reconfigure({"thresholds": {"cam1": 1.5}})
    assert sc.score(e, None, None, "cam1")["threshold"] == 0.7, "a refused config must leave the old one"


def test_reconfigure_swaps_heads_and_keeps_scoring(enc_and_score, tmp_path):
    from vigil.model.heads import save_heads

    _enc, sc, e, _ = enc_and_score
    sc.reconfigure({})
    v0 = sc.score(e, None, None)["model_version"]
    import torch

    with torch.no_grad():
        for p in sc.model.head_modules()["fusion"].parameters():
            p.add_(0.5)
    path = tmp_path / "heads.pt"
    save_heads(sc.model, path)
    sc.model = serve_app._load_model("vigil-micro", None, None, 1)  # back to zero-shot heads
    assert sc.score(e, None, None)["model_version"] == v0
    errors, results = [], []  # (phase when the request started, version that answered it)
    phase, stop = ["before"], threading.Event()

    def hammer():
        try:
            while not stop.is_set():
                started = phase[0]
                results.append((started, sc.score(e, None, None)["model_version"]))
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    th = threading.Thread(target=hammer)
    th.start()
    while len(results) < 3:
        time.sleep(0.001)
    phase[0] = "during"
    sc.reconfigure({"heads": str(path)})  # loads and builds the new heads while requests keep coming
    phase[0] = "after"
    n_swapped = len(results)
    while len(results) < n_swapped + 3:
        time.sleep(0.001)
    stop.set()
    th.join()
    assert not errors, "requests during a heads swap must all be answered"
    v1 = sc.score(e, None, None)["model_version"]
    assert v1 != v0
    by_phase = {p: [v for q, v in results if q == p] for p in ("before", "during", "after")}
    assert by_phase["during"], "no request overlapped the swap"
    assert set(by_phase["before"]) == {v0} and set(by_phase["after"]) == {v1}
    versions = [v for _, v in results]  # old heads, then new ones: never back, never a third
    assert set(versions) == {v0, v1} and versions == sorted(versions, key=lambda v: v == v1)
    sc.reconfigure({"heads": None})  # null: back to the heads the app was built with
    assert sc.score(e, None, None)["model_version"] == v0


def test_encode_object_mode_uses_boxes_from_detect():
    enc = Encode("vigil-micro", 1, mode="object")
    frames = np.full((8, 120, 160, 3), 90, np.uint8)
    for t in range(8):
        frames[t, 40:80, 10 + 15 * t: 40 + 15 * t] = 255  # a mover
    obs, _state = Detect({"type": "motion"}).detect(frames, None, 8.0, objects=False)
    boxes = obs.boxes
    assert any(boxes) and obs.tubes is None, "the motion detector must find the mover (no tubes asked for)"
    out = enc.encode_one(frames, obs)  # what the batched method runs per segment
    assert out.crop_emb is not None and len(out.crop_emb) == sum(len(b[:20]) for b in boxes)


def test_serve_config_args_are_build_app_parameters():
    args = serve_app.default_args()
    params = inspect.signature(serve_app.build_app).parameters
    assert set(args) <= set(params), f"serve_config.yaml args unknown to build_app: {set(args) - set(params)}"
    assert args["max_ongoing_requests"] > args["max_batch_size"]
    cfg = default_score_config()
    assert set(cfg) <= {"heads", "thresholds", "prompt_sets"}


def test_code_version_is_stable_across_user_config_changes():
    v = lambda **kw: serve_app._pinned(serve_app.Score.options(**kw), "vigil-micro", None)._version  # noqa: E731
    assert v(user_config={}) == v(user_config={"thresholds": {"default": 0.2}}), \
        "a user_config change must keep the version (reconfigure, no restart)"
    other = serve_app._pinned(serve_app.Score.options(), "ViT-B-32-random", None)._version
    assert other != v(), "other constructor arguments must roll the replicas"


def test_each_stream_family_can_be_switched_off(enc_and_score):
    _enc, _sc, e, _ = enc_and_score
    assert serve_app.stream_families(None) == (serve_app.FAMILIES, ["semantic", "predictive"])
    assert serve_app.stream_families(["objects"]) == (("objects",), None)
    with pytest.raises(ValueError, match="unknown stream"):
        serve_app.stream_families(["semantic", "colour"])
    sem = Score("vigil-micro", streams=["semantic"], torch_threads=1)
    res = sem.score(e, None, None, "cam1")
    assert res["s_pred"] is None and res["s_sem"] is not None, "predictive switched off"
    no_obj = Score("vigil-micro", streams=["semantic", "predictive"], torch_threads=1)
    no_obj.normality = {"cam1": object()}  # a camera with its own version: objects still off
    assert not no_obj.has_normality("cam1")


def test_encode_runs_the_video_head_of_the_heads_it_is_given_and_drops_it_again(tmp_path):
    """The heads file carries the video head (the encoder's TimeSformer temporal layers, off in
    the served default): Encode must run it, or a trained one would be ignored while Score
    reports its version."""
    import torch

    from vigil.model.anomaly import AnomalyModel
    from vigil.model.heads import save_heads

    enc = Encode("vigil-micro", 1)
    frames = np.random.default_rng(1).integers(0, 255, (4, 48, 64, 3), dtype=np.uint8)
    zero_shot = enc.encode_one(frames).seg_emb.copy()
    trained = AnomalyModel.create("vigil-micro", timesformer=True)
    with torch.no_grad():
        moved = [p.add_(torch.randn_like(p) * 0.2) for p in trained.head_modules()["video"].parameters()
                 if p.requires_grad]
    assert moved
    path = tmp_path / "heads.pt"
    save_heads(trained, path)
    enc.reconfigure({"heads": f"file:{path}"})
    got = enc.encode_one(frames).seg_emb
    want = trained.encode_frames([frames])[0].seg_emb
    assert not np.allclose(got, zero_shot, atol=1e-4), "the video head was not loaded"
    np.testing.assert_allclose(got, want, atol=1e-5)
    enc.reconfigure({"heads": None})  # back to the heads the app was built with (none)
    np.testing.assert_allclose(enc.encode_one(frames).seg_emb, zero_shot, atol=1e-6)


def test_build_app_gives_encode_the_heads_and_store_score_serves():
    app = serve_app.build_app("vigil-micro", user_config={"heads": "s3://vigil/models/abc/heads.pt",
                                                         "object_store": {"endpoint": "minio:9000"},
                                                         "thresholds": {"default": 0.5}})
    uc = _deployment_user_configs(app)
    assert uc["Encode"]["heads"] == "s3://vigil/models/abc/heads.pt" and uc["Encode"]["object_store"]
    assert "thresholds" not in uc["Encode"] and uc["Score"]["thresholds"] == {"default": 0.5}


def _deployment_user_configs(app) -> dict:
    """Deployment name -> user_config of a bound application graph."""
    out, todo = {}, [app]
    while todo:
        dep = todo.pop()._bound_deployment
        out[dep.name] = dep.user_config
        todo.extend(a for a in dep.init_args if hasattr(a, "_bound_deployment"))
    return out
