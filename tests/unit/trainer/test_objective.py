"""Every head the issue names is trained by the objective; heads the data cannot train stay frozen."""

from __future__ import annotations

import numpy as np
import torch

from services.trainer.config import TrainConfig
from services.trainer.loop import Packed, build_model, data_flags, fit_in_process, load_checkpoint, save_checkpoint
from services.trainer.objective import HeadsObjective
from vigil.model.anomaly import AnomalyModel
from vigil.model.heads import read_heads


def _packed(d: int, n: int = 12, t: int = 8, m: int = 6, positives: bool = True) -> Packed:
    rng = np.random.default_rng(0)
    unit = lambda x: (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)  # noqa: E731
    frame = unit(rng.normal(size=(n, t, d)))
    seg = unit(frame.mean(1))
    label = np.zeros(n, np.float32)
    if positives:
        label[: n // 3] = 1
    return Packed(frame=frame, seg=seg, glob=np.repeat(unit(seg.mean(0))[None], n, 0), label=label,
                  weight=np.ones(n, np.float32), s_pred=rng.uniform(0, 1, n).astype(np.float32),
                  windows=unit(rng.normal(size=(m, 5, d))), verified=(label > 0).astype(np.float32))


def test_all_heads_learn(tmp_path):
    cfg = TrainConfig(epochs=3, batch_size=4, lr=1e-2, mode="video", coop=True, coop_n_ctx=2, dpc_min_windows=2,
                      losses={"anchor": 0.0})
    ps = AnomalyModel.create("vigil-micro").prompt_set
    model = build_model("vigil-micro", None, cfg, ps, **data_flags(_packed(64), cfg))
    heads = model.head_modules()
    # every head but "video" (the TimeSformer's temporal layers): training reads cached encoder
    # features, so that one is frozen here, and checked to stay unchanged below
    assert set(heads) == {"video", "coop", "dpc", "temporal", "scorer", "text_gate", "fusion"}
    assert not any(p.requires_grad for p in model.encoder.parameters())  # cached encoder: frozen
    video_before = {n: p.detach().clone() for n, p in heads["video"].named_parameters()}
    before = {k: {n: p.detach().clone() for n, p in m.named_parameters()} for k, m in heads.items() if k != "video"}
    hist = fit_in_process(model, ps, cfg, _packed(model.dim))
    assert all(np.isfinite(h["loss"]) for h in hist) and hist[-1]["cpc"] > 0 and hist[-1]["gate"] >= 0
    for k, params in before.items():
        changed = any(not torch.equal(p0, dict(heads[k].named_parameters())[n]) for n, p0 in params.items())
        assert changed, f"head {k} did not change"
    assert all(torch.equal(p0, dict(heads["video"].named_parameters())[n]) for n, p0 in video_before.items())
    # a checkpoint round trip restores parameters exactly; the heads file carries every head
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad])
    obj = HeadsObjective(model, ps, cfg, {})
    save_checkpoint(tmp_path, obj, opt, 7, {"loss": 1.0})
    payload, _ = read_heads(tmp_path / "heads.pt")
    assert {"coop", "dpc", "temporal", "scorer", "text_gate", "fusion"} <= set(payload["state"])
    with torch.no_grad():
        model.scorer.b.add_(1.0)
    assert load_checkpoint(tmp_path, obj, opt) == 7
    assert torch.equal(model.scorer.b, obj.trainable()["scorer.b"])
    loaded = AnomalyModel.create("vigil-micro", heads=tmp_path / "heads.pt", prompt_set=ps)
    assert torch.allclose(loaded.scorer.A, model.scorer.A) and loaded.config.mode == "video"


def test_gate_and_dpc_frozen_without_the_data_for_them():
    cfg = TrainConfig(epochs=1, batch_size=4, coop=False)  # dpc_min_windows=64 by default
    data = _packed(64, positives=False)
    flags = data_flags(data, cfg)
    assert flags == {"train_dpc": False, "train_gate": False}
    ps = AnomalyModel.create("vigil-micro").prompt_set
    model = build_model("vigil-micro", None, cfg, ps, **flags)
    assert "dpc" not in model.head_modules()  # stays the parameter-free forecaster
    g0 = [p.detach().clone() for p in model.fusion.parameters()]
    hist = fit_in_process(model, ps, cfg, data)
    assert hist[0]["gate"] == 0.0 and hist[0]["cpc"] == 0.0
    assert all(torch.equal(a, b) for a, b in zip(g0, model.fusion.parameters()))
