"""How far can an object-centric semantic stream go on SynthCity? A measured ceiling for #5.

The frame-level semantic stream of ``vigil eval synthcity`` stays near 0.59 pooled AUC
(target 0.85). At 112 px a whole frame shows people a few pixels tall, so this experiment
gives the stream what the ICPRAM object-centric mode gives it: detector crops.

1. ``build``: the motion detector of object mode (``motion_gap: 0`` so that people who stop
   stay detected) runs on SynthCity training cameras (``TRAIN_SEEDS``); each box becomes a
   square crop with context and is captioned from the generator's ground truth: the event
   phrase when the box holds an agent of an active anomaly, else what its agent does.
2. ``train``: vigil-tiny fine-tuned on those crops, half of each batch abnormal, with the
   loss, optimiser and schedule of ``services.trainer.tiny_clip``.
3. ``probe``: on held-out cameras (``EVAL_SEEDS``), per anomaly type, crop AUC of
   (a) the zero-shot score with the benchmark's own prompts and (b) a supervised logistic
   probe fitted on the training crops' embeddings — an upper bound of what one crop tells
   about that type, whatever the text side does.
4. ``frames``: the benchmark protocol (``--quick`` scale) with the semantic score of a frame
   = the maximum over its crops (per-description head fitted on the normal period).

    python benchmarks/synthcity_crop_ceiling.py all --json OUT.json   # 720 training cameras, ~26 min
    python benchmarks/synthcity_crop_ceiling.py all --cameras-per-scene 40 --json OUT.json   # 240

Outputs (crops, checkpoint) go to ``--work`` (default ``/tmp/vigil-crop-ceiling``), not the repo.

The record (benchmarks/synthcity_crop_ceiling.json) was measured at its commit, fine-tuning
the frames-only vigil-tiny of then. Since then the crop data and context crops live in
``services.trainer.tiny_clip`` (vigil-tiny's stage 2) and object mode in
``vigil eval synthcity --mode object``, which this script calls.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.eval.synthcity import _auc, prompt_set_for, run_synthcity_eval  # noqa: E402
from services.trainer.tiny_clip import camera_crops, render_crop_set  # noqa: E402
from vigil.synthcity import EVAL_SEEDS, PHRASES, SCENE_RULES, SCENES  # noqa: E402

SIZE = 112  # vigil-tiny's input side


def build(work: Path, cameras_per_scene: int, n_frames: int = 160, seed: int = 0) -> dict:
    crops, caps, abns = render_crop_set(seed=seed, cameras_per_scene=cameras_per_scene, frames_per_clip=n_frames,
                                        image_size=SIZE)
    np.savez(work / "crops.npz", crops=crops, caps=np.array(caps), abn=abns)
    return {"crops": len(crops), "abnormal_share": round(float(np.mean(abns)), 3), "unique_captions": len(set(caps)),
            "cameras": cameras_per_scene * len(SCENES)}


def train(work: Path, steps: int, lr: float = 5e-4, batch: int = 64, seed: int = 0) -> dict:
    """The committed vigil-tiny fine-tuned on the crops alone, half of each batch abnormal."""
    import open_clip
    import torch

    from services.trainer.tiny_clip import MODEL, train_stage
    from vigil.model.backbones import CONFIG_DIR

    torch.set_num_threads(2)
    torch.manual_seed(seed)
    open_clip.add_model_config(CONFIG_DIR / f"{MODEL}.json")
    model = open_clip.create_model(MODEL, pretrained=None)
    sd = torch.load(ROOT / "shared/model/weights/vigil-tiny.pt", map_location="cpu")
    model.load_state_dict({k: v.float() for k, v in sd.items()})
    data = np.load(work / "crops.npz")
    crops, caps, abn = data["crops"], data["caps"], data["abn"]
    vocab = sorted(set(caps.tolist()))
    tokens = open_clip.get_tokenizer(MODEL)(vocab)
    ids = np.searchsorted(np.array(vocab), caps)
    rng = np.random.default_rng([seed, 202])
    pos, neg = np.flatnonzero(abn), np.flatnonzero(~abn)

    def crop_batch():
        idx = np.concatenate([rng.choice(pos, batch // 2, replace=False), rng.choice(neg, batch // 2, replace=False)])
        return (crops[idx][:, :, ::-1] if rng.random() < 0.5 else crops[idx]), ids[idx]  # mirrored half the time

    model.train()
    t0 = time.time()
    losses = train_stage(model, crop_batch, tokens, rng, steps=steps, lr=lr, warmup=30, weight_decay=0.1,
                         desc="train vigil-tiny on crops")
    torch.save({k: v.detach().half() if v.is_floating_point() else v for k, v in model.eval().state_dict().items()},
               work / "vigil-tiny-crops.pt")
    return {"steps": steps, "lr": lr, "batch": batch, "final_loss": round(float(np.mean(losses[-50:])), 3),
            "seconds": round(time.time() - t0, 1), "init": "shared/model/weights/vigil-tiny.pt"}


def _embed(model, crops) -> np.ndarray:
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(crops), 512):
            x = model.preprocess(np.stack(crops[i : i + 512]))
            out.append(torch.nn.functional.normalize(model.clip.encode_image(x).float(), dim=-1).numpy())
    return np.concatenate(out).astype(np.float64)


def _abnormal_mass(sims: np.ndarray, mask: np.ndarray) -> np.ndarray:
    z = sims - sims.max(1, keepdims=True)
    p = np.exp(z)
    return (p[:, mask].sum(1) / p.sum(1))


def probe(work: Path, ref: str) -> dict:
    """Per type: held-out crop AUC, zero-shot (benchmark prompts) and supervised probe."""
    from sklearn.linear_model import LogisticRegression

    from vigil.model.anomaly import AnomalyModel

    model = AnomalyModel.create(ref)
    phrase_type = {p.format(zone=r.zone_noun): k for k, ps in PHRASES.items() for r in SCENE_RULES.values() for p in ps}
    data = np.load(work / "crops.npz")
    e_train = _embed(model, list(data["crops"]))
    y_train = np.array([phrase_type.get(c, "normal") if a else "normal" for c, a in zip(data["caps"], data["abn"])])
    e_test, y_test, zs = [], [], []
    for j, scene in enumerate(SCENES):
        kinds = list(SCENE_RULES[scene].anomalies)
        ps = prompt_set_for(scene)
        text = model.text_embeddings(ps)["text"].numpy().astype(np.float64)
        for q in range(0, len(kinds), 3):
            for r in range(3):
                seed = int(EVAL_SEEDS[700 + 10 * j + r]) + q
                c, t, a = camera_crops(scene, seed, 160, [(k, 10 + 45 * i) for i, k in enumerate(kinds[q : q + 3])],
                                       image_size=SIZE, keep_normal=0.5)
                e = _embed(model, c)
                e_test.append(e)
                y_test += [phrase_type.get(cap, "normal") if ab else "normal" for cap, ab in zip(t, a)]
                zs.append(_abnormal_mass(100.0 * e @ text.T, np.asarray(ps.abnormal_mask)))
    e_test, y_test, zs = np.concatenate(e_test), np.array(y_test), np.concatenate(zs)
    normal_te, normal_tr = y_test == "normal", y_train == "normal"
    out = {"crops_test": int(len(y_test)), "zero_shot_any": _auc(~normal_te, zs)}
    clf = LogisticRegression(max_iter=2000).fit(e_train, ~normal_tr)
    out["probe_any"] = _auc(~normal_te, clf.decision_function(e_test))
    out["per_type"] = {}
    for k in sorted(set(y_test) - {"normal"}):
        te, tr = (y_test == k) | normal_te, (y_train == k) | normal_tr
        if not (y_train == k).any():
            continue
        clf = LogisticRegression(max_iter=2000).fit(e_train[tr], y_train[tr] == k)
        out["per_type"][k] = {"crops": int((y_test == k).sum()), "zero_shot": _auc(y_test[te] == k, zs[te]),
                              "probe_held_out": _auc(y_test[te] == k, clf.decision_function(e_test[te])),
                              "probe_train": _auc(y_train[tr] == k, clf.decision_function(e_train[tr]))}
    return out


def frames(ref: str) -> dict:
    """Benchmark protocol at --quick scale in object mode (a frame's semantic score = its best crop)."""
    r = run_synthcity_eval(quick=True, backbone=ref, mode="object", progress=False)
    return {"auc_semantic_object_mode": r["auc_semantic"], "frames": r["frames"],
            "per_type": {k: v["auc_semantic"] for k, v in r["per_type"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("step", choices=["build", "train", "probe", "frames", "all"])
    ap.add_argument("--work", type=Path, default=Path("/tmp/vigil-crop-ceiling"))
    ap.add_argument("--cameras-per-scene", type=int, default=120)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    ref = f"vigil-tiny:file:{args.work / 'vigil-tiny-crops.pt'}"
    record: dict = {"benchmark": "synthcity-crop-ceiling"}
    t0 = time.time()
    if args.step in ("build", "all"):
        record["data"] = build(args.work, args.cameras_per_scene)
    if args.step in ("train", "all"):
        record["training"] = train(args.work, args.steps)
    if args.step in ("probe", "all"):
        record["crop_level"] = probe(args.work, ref)
    if args.step in ("frames", "all"):
        record["frame_level_quick"] = {"crop_finetuned": frames(ref), "committed_vigil_tiny": frames("vigil-tiny")}
    record["commit"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip()
    record["seconds"] = round(time.time() - t0, 1)
    print(json.dumps(record, indent=2))
    if args.json:
        args.json.write_text(json.dumps(record, indent=2) + "\n")


if __name__ == "__main__":
    main()
