"""Do the TimeSformer's temporal layers earn their place in the served encoder?

The served encoder (``AnomalyModel.encoder``, :class:`vigil.model.video_encoder.VideoEncoder`)
has a temporal attention layer before every block of the CLIP tower; their output
projections start at zero, so untrained they are the identity and are skipped. Here they are
trained the way issue "One detector" asks: on normal clips only (UCSD Ped2 training
videos), with the seeds' self-supervised objective (DPC: a forecaster predicts the next
segment's embedding from three before it, InfoNCE over the batch), CLIP frozen, a small
learning rate from the zero start. The same forecaster is also trained on the untrained
(identity) encoder's embeddings, so the comparison is the temporal layers alone.

Measured on the Ped2 test clips (labels used only for the final numbers, never for a
choice): the pooled frame AUC of the predictive stream (segment forecast error) with and
without the trained layers, and the text-space drift (the semantic stream's score on every
test frame before and after, and its AUC).

    python benchmarks/timesformer_ablation.py --json benchmarks/timesformer_ablation.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from vigil.datasets.ucsd import read_ucsd
from vigil.model.anomaly import AnomalyModel
from vigil.model.dpc import DPCForecaster, cpc_loss, forecast_error
from vigil.model.frame_scorer import semantic_score

ROOT = Path(__file__).resolve().parents[2] / "shared/data/ucsd_ped2"
T, CONTEXT = 16, 3  # the eval's 16-frame segments at Ped2's 10 fps; three segments predict the fourth


def segments(model: AnomalyModel, clip) -> torch.Tensor:  # noqa: ANN001
    frames = clip.frames() if callable(getattr(clip, "frames", None)) else np.stack(list(clip.iter_frames()))
    n = len(frames) // T
    return torch.stack([model.preprocess(frames[i * T:(i + 1) * T]) for i in range(n)])  # [N, T, 3, S, S]


def embed(model: AnomalyModel, segs: torch.Tensor, grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.set_grad_enabled(grad):
        return model.encoder(segs, force_temporal=grad)


def train_forecaster_only(feats: list[torch.Tensor], dim: int, steps: int, seed: int) -> DPCForecaster:
    torch.manual_seed(seed)
    fc = DPCForecaster(dim, hidden=256, context=CONTEXT, horizon=1)
    opt = torch.optim.AdamW(fc.parameters(), lr=2e-3)
    windows = [(c, i) for c, f in enumerate(feats) for i in range(len(f) - CONTEXT)]
    rng = np.random.default_rng(seed)
    for _ in range(steps):
        pick = rng.choice(len(windows), size=min(32, len(windows)), replace=False)
        z = torch.stack([feats[windows[j][0]][windows[j][1]:windows[j][1] + CONTEXT + 1] for j in pick])
        loss = cpc_loss(fc(z[:, :CONTEXT]), z[:, CONTEXT:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return fc


def train_joint(model: AnomalyModel, segs: list[torch.Tensor], steps: int, lr: float, batch: int, seed: int):
    torch.manual_seed(seed)
    enc = model.encoder
    enc.train()
    fc = DPCForecaster(model.backbone.embed_dim, hidden=256, context=CONTEXT, horizon=1)
    params = [p for p in enc.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": params, "lr": lr}, {"params": fc.parameters(), "lr": 2e-3}])
    windows = [(c, i) for c, s in enumerate(segs) for i in range(len(s) - CONTEXT)]
    rng = np.random.default_rng(seed)
    losses = []
    for step in range(steps):
        pick = rng.choice(len(windows), size=batch, replace=False)
        x = torch.stack([segs[windows[j][0]][windows[j][1]:windows[j][1] + CONTEXT + 1] for j in pick])
        b = x.shape[0]
        _, seg = enc(x.reshape(b * (CONTEXT + 1), *x.shape[2:]))
        z = seg.reshape(b, CONTEXT + 1, -1)
        loss = cpc_loss(fc(z[:, :CONTEXT]), z[:, CONTEXT:])
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
        if step % 20 == 0:
            print(f"  joint step {step}: loss {np.mean(losses[-20:]):.3f}", flush=True)
    enc.eval()
    return fc, losses


def pred_scores(model: AnomalyModel, fc: DPCForecaster, test_segs: list[torch.Tensor], lengths: list[int]) -> np.ndarray:
    out = []
    for segs, n in zip(test_segs, lengths):
        _, z = embed(model, segs)
        err = np.zeros(len(segs))
        with torch.no_grad():
            for i in range(CONTEXT, len(segs)):
                err[i] = float(forecast_error(fc(z[None, i - CONTEXT:i]), z[None, i:i + 1]).mean())
        err[:CONTEXT] = err[CONTEXT] if len(segs) > CONTEXT else 0.0  # the first segments have no context
        frame = np.repeat(err, T)
        out.append(np.concatenate([frame, np.full(n - len(frame), frame[-1] if len(frame) else 0.0)]))
    return np.concatenate(out)


def sem_scores(model: AnomalyModel, test_segs: list[torch.Tensor], lengths: list[int]) -> np.ndarray:
    text = model.text_embeddings()["text"]
    mask = model.prompt_set.abnormal_mask
    out = []
    for segs, n in zip(test_segs, lengths):
        frame, _ = embed(model, segs)
        probs = torch.softmax(100.0 * frame.reshape(-1, frame.shape[-1]) @ text.t(), dim=-1)
        s = semantic_score(probs, mask).numpy()
        out.append(np.concatenate([s, np.full(n - len(s), s[-1])]))
    return np.concatenate(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", type=Path, default=ROOT)
    ap.add_argument("--backbone", default="vigil-tiny")
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fused", action="store_true", help="also the whole served detector (vigil eval ucsd) with each encoder")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    model = AnomalyModel.create(a.backbone, timesformer=True)  # the served default has none
    model.eval()
    train = read_ucsd(a.root, "training")
    test = read_ucsd(a.root, "testing")
    train_segs = [segments(model, c) for c in train]
    test_segs = [segments(model, c) for c in test]
    lengths = [len(c) for c in test]
    y = np.concatenate([c.labels for c in test])
    assert model.encoder.temporal_is_identity()
    # 1) untrained (identity) temporal layers: the served encoder today; forecaster on its features
    base_feats = [embed(model, s)[1] for s in train_segs]
    fc0 = train_forecaster_only(base_feats, model.backbone.embed_dim, steps=400, seed=a.seed)
    pred0, sem0 = pred_scores(model, fc0, test_segs, lengths), sem_scores(model, test_segs, lengths)
    # 2) temporal layers and forecaster trained jointly on normal clips only
    fc1, losses = train_joint(model, train_segs, a.steps, a.lr, a.batch, a.seed)
    assert not model.encoder.temporal_is_identity()
    pred1, sem1 = pred_scores(model, fc1, test_segs, lengths), sem_scores(model, test_segs, lengths)
    res = {
        "what": "TimeSformer temporal layers trained on Ped2 normal training clips with DPC/InfoNCE (CLIP frozen), "
                "vs the identity (untrained) layers the served encoder has; predictive-stream and semantic-stream "
                "pooled frame AUC on the Ped2 test clips",
        "command": f"python benchmarks/timesformer_ablation.py --steps {a.steps} --lr {a.lr} --batch {a.batch} --json OUT",
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "backbone": model.version, "segment_frames": T, "context_segments": CONTEXT, "steps": a.steps, "lr": a.lr,
        "batch_windows": a.batch, "final_loss": float(np.mean(losses[-20:])),
        "untrained": {"pred_auc": float(roc_auc_score(y, pred0)), "sem_auc": float(roc_auc_score(y, sem0))},
        "trained": {"pred_auc": float(roc_auc_score(y, pred1)), "sem_auc": float(roc_auc_score(y, sem1))},
        "text_drift": {"mean_abs_sem_change": float(np.mean(np.abs(sem1 - sem0))),
                       "max_abs_sem_change": float(np.max(np.abs(sem1 - sem0)))},
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if a.fused:  # the served detector end to end (offline, the same stages), zero-shot encoder with / without
        import services.eval.ucsd as ucsd

        trained_model = model
        fused = {}
        for name, zs in (("untrained", None), ("trained", trained_model)):
            make = ucsd.zero_shot_model
            if zs is not None:
                ucsd.zero_shot_model = lambda backbone, zs=zs: zs  # noqa: E731
            try:
                r = ucsd.run_ucsd_eval(a.root, None, backbone=a.backbone, seed=a.seed, progress=False)
            finally:
                ucsd.zero_shot_model = make
            fused[name] = {"auc": r["auc"], "model_version": r["model_version"]}
            print(name, fused[name], flush=True)
        res["served_detector_auc"] = fused
    print(json.dumps(res, indent=2))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
