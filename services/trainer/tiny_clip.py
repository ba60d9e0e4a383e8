"""Train vigil-tiny: a small open_clip CLIP, contrastively, on SynthCity frames and captions.

Reproduce the committed checkpoint (CPU, 2 threads)::

    HF_HUB_OFFLINE=1 python -m services.trainer.tiny_clip --out shared/model/weights/vigil-tiny.pt --seed 0

(the defaults of :func:`train_tiny_clip` are the recorded settings; ``TRAINED_WITH`` below).

Data: frames of SynthCity cameras whose seeds come from ``vigil.synthcity.TRAIN_SEEDS``
only (the benchmark uses ``EVAL_SEEDS``: held-out layouts and cameras), every scene, day
and night, with staged anomalies in about half of the frames. Each frame is paired with its
caption or a shorter view of it (the event sentence alone, or the scene and what the
normal crowd does), so that short text prompts land where full captions do.

Loss: symmetric InfoNCE with a learned temperature; captions that are identical within a
batch count as positives of each other (soft targets), since many normal frames share one.
Two stages, both from TRAIN_SEEDS:

1. *frames*: whole frames with their captions (``steps``), from scratch.
2. *crops* (``crop_steps``): object mode shows the model detector crops, and at 112 px a
   whole frame shows a person a few pixels tall, so the model continues on square context
   crops (:func:`vigil.model.detectors.context_box`) of the motion detector's boxes
   (``CROP_DETECTOR``, the one ``vigil eval synthcity --mode object`` uses), each captioned
   from the generator's ground truth (:func:`vigil.synthcity.object_captions`): the event
   phrase when the crop holds an agent of an active anomaly, else what its agent does.
   Batches are half abnormal crops, half normal crops and whole frames, so frame mode keeps
   what stage 1 taught it.

The checkpoint is the state dict in float16 (``create_backbone`` upcasts on load).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

MODEL = "vigil-tiny"
# people who stop (loitering, fallen, waiting) must stay detected, so no frame-difference gate
CROP_DETECTOR = {"type": "motion", "motion_gap": 0}
TRAINED_WITH = {
    "command": "HF_HUB_OFFLINE=1 python -m services.trainer.tiny_clip --out shared/model/weights/vigil-tiny.pt --seed 0",
    "seed": 0,
}


def _views(caption: str) -> list[str]:
    """The caption and shorter views of it (event sentence alone; scene + normal activity)."""
    parts = [p.strip() for p in caption.split(". ") if p.strip()]
    views = [caption]
    if len(parts) > 1:
        views += parts[:-1]  # the event sentences
    body = parts[-1]
    views.append(body)
    scene, _, rest = body.partition(", ")
    if rest:
        views.append(rest)
    return list(dict.fromkeys(v.rstrip(".") for v in views))


def clip_optimizer(model, lr: float, weight_decay: float):
    """AdamW as open_clip trains: no weight decay on gains, biases, embeddings and the temperature."""
    import torch

    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "embedding" in name or "logit_scale" in name else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                             lr=lr, betas=(0.9, 0.98), eps=1e-6)


def cosine_lr(step: int, steps: int, warmup: int, lr: float) -> float:
    """Linear warm-up, then cosine decay to 0."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return float(lr * 0.5 * (1 + np.cos(np.pi * t)))


def clip_step(model, opt, images, tokens, text_ids: np.ndarray) -> tuple[float, float]:
    """One optimiser step of symmetric InfoNCE; samples with the same text id are positives of
    each other (soft targets), since many images share one caption. Returns (loss, temperature)."""
    import torch
    import torch.nn.functional as F

    img_f, txt_f, scale = model(images, tokens)[:3]
    logits = scale * img_f @ txt_f.t()
    same = torch.from_numpy((text_ids[:, None] == text_ids[None, :]).astype(np.float32))
    target = same / same.sum(1, keepdim=True)
    loss = 0.5 * (-(target * F.log_softmax(logits, 1)).sum(1).mean() - (target * F.log_softmax(logits.t(), 1)).sum(1).mean())
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    with torch.no_grad():
        model.logit_scale.clamp_(0, np.log(100))
    return float(loss.detach()), float(scale.detach())


def train_stage(model, batch, tokens, rng: np.random.Generator, *, steps: int, lr: float, warmup: int,
                weight_decay: float, desc: str = "train vigil-tiny", progress: bool = True) -> list[float]:
    """``steps`` optimiser steps on ``batch()`` → (uint8 pixels ``[B, S, S, 3]``, text ids into
    ``tokens``), with brightness/contrast jitter, a fresh optimiser and a warm-up + cosine
    schedule. Returns the loss of every step."""
    import open_clip
    import torch
    from tqdm import tqdm

    mean = torch.tensor(open_clip.OPENAI_DATASET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(open_clip.OPENAI_DATASET_STD).view(1, 3, 1, 1)
    opt = clip_optimizer(model, lr, weight_decay)
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress)
    for step in bar:
        pixels, tid = batch()
        x = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float().div_(255.0)
        if rng.random() < 0.5:  # brightness / contrast jitter
            x = (x * float(rng.uniform(0.75, 1.2)) + float(rng.uniform(-0.06, 0.06))).clamp_(0, 1)
        for g in opt.param_groups:
            g["lr"] = cosine_lr(step, steps, warmup, lr)
        loss, scale = clip_step(model, opt, (x - mean) / std, tokens[torch.from_numpy(tid)], tid)
        losses.append(loss)
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}", T=f"{scale:.1f}")
    return losses


def render_training_set(*, seed: int, cameras_per_scene: int, frames_per_clip: int, stride: int, image_size: int,
                        width: int = 320, height: int = 240, progress: bool = True):
    """Frames (uint8 ``[N, S, S, 3]``, already resized like ``Backbone.preprocess_frames``),
    caption views per frame, scene names and camera seeds — all from TRAIN_SEEDS."""
    from tqdm import tqdm

    from vigil.synthcity import SCENE_RULES, SCENES, TRAIN_SEEDS, render_clip

    rng = np.random.default_rng([seed, 101])
    jobs = []
    for scene in SCENES:
        rule = SCENE_RULES[scene]
        for _ in range(cameras_per_scene):
            cam_seed = int(TRAIN_SEEDS[int(rng.integers(len(TRAIN_SEEDS)))])
            k = int(rng.integers(1, 4))
            types = list(rng.choice(rule.anomalies + ("cycling",), size=k, replace=False))
            starts = sorted(int(s) for s in rng.integers(0, max(1, frames_per_clip - 60), size=k))
            jobs.append((scene, cam_seed, list(zip(types, starts))))
    images, views, scenes, seeds = [], [], [], []
    for scene, cam_seed, anomalies in tqdm(jobs, desc="render SynthCity", disable=not progress):
        clip = render_clip(scene, cam_seed, frames_per_clip, width, height, anomalies=anomalies)
        for i in range(stride // 2, frames_per_clip, stride):
            images.append(cv2.resize(clip.frames[i], (image_size, image_size), interpolation=cv2.INTER_AREA))
            views.append(_views(clip.captions[i]))
            scenes.append(scene)
            seeds.append(cam_seed)
    return np.stack(images), views, scenes, seeds


def crop_caption(box, objects, zone: str) -> tuple[str | None, bool]:
    """(caption, abnormal) of a detector box from the agents whose body centre it holds: an
    abnormal agent's phrase wins; four or more agents are a group; no agent, no caption."""
    x0, y0, x1, y1 = box
    inside = [o for o in objects if x0 <= o.x <= x1 and y0 - 4 <= o.y <= y1 + 4]
    if not inside:
        return None, False
    for o in inside:
        if o.abnormal:
            return o.caption, True
    if len(inside) >= 4:
        return f"several people walk on the {zone}", False
    return inside[0].caption, False


def camera_crops(scene: str, seed: int, n_frames: int, anomalies, *, image_size: int, keep_normal: float = 0.35,
                 stride: int = 2, segment: int = 8, fps: float = 4.0, width: int = 320, height: int = 240):
    """Captioned context crops of one camera's detector boxes, as object mode cuts them:
    every abnormal crop of every ``stride``-th frame, a ``keep_normal`` share of the normal ones.
    The detector sees the frames segment by segment, as in the live path."""
    from vigil.model.detectors import build_detector, context_box
    from vigil.synthcity import object_captions, run_world

    det, keep = build_detector(CROP_DETECTOR), np.random.default_rng([seed, 5])
    frames, objects, crops, caps, abnormal = [], [], [], [], []
    for i, world in enumerate(run_world(scene, seed, n_frames, width, height, fps, anomalies)):
        frames.append(world.render())
        objects.append(object_captions(world))
        if len(frames) < segment:
            continue
        for t, boxes in enumerate(det.detect(np.stack(frames))):
            if (i - segment + 1 + t) % stride:
                continue
            for b in boxes:
                cap, abn = crop_caption(b, objects[t], world.rule.zone_noun)
                if cap is None or (not abn and keep.random() > keep_normal):
                    continue
                x0, y0, x1, y1 = context_box(b, width, height)
                crops.append(cv2.resize(frames[t][y0:y1, x0:x1], (image_size, image_size), interpolation=cv2.INTER_AREA))
                caps.append(cap)
                abnormal.append(abn)
        frames, objects = [], []
    return crops, caps, abnormal


def render_crop_set(*, seed: int, cameras_per_scene: int, frames_per_clip: int, image_size: int, progress: bool = True):
    """Crops (uint8 ``[N, S, S, 3]``), captions and abnormal flags of ``cameras_per_scene``
    TRAIN_SEEDS cameras per scene, each with 2–3 staged anomalies (cycling everywhere)."""
    from tqdm import tqdm

    from vigil.synthcity import SCENE_RULES, SCENES, TRAIN_SEEDS

    rng = np.random.default_rng([seed, 303])
    jobs = []
    for scene in SCENES:
        kinds = list(SCENE_RULES[scene].anomalies) + ["cycling"]
        for _ in range(cameras_per_scene):
            cam_seed = int(TRAIN_SEEDS[int(rng.integers(len(TRAIN_SEEDS)))])
            k = int(rng.integers(2, 4))
            types = list(rng.choice(kinds, size=k, replace=False))
            starts = sorted(int(s) for s in rng.integers(8, frames_per_clip - 40, size=k))
            jobs.append((scene, cam_seed, list(zip(types, starts))))
    crops, caps, abnormal = [], [], []
    for scene, cam_seed, anomalies in tqdm(jobs, desc="render SynthCity crops", disable=not progress):
        c, t, a = camera_crops(scene, cam_seed, frames_per_clip, anomalies, image_size=image_size)
        crops += c
        caps += t
        abnormal += a
    return np.stack(crops), caps, np.asarray(abnormal, bool)


def train_tiny_clip(
    out: Path,
    *,
    seed: int = 0,
    steps: int = 300,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    warmup: int = 40,
    cameras_per_scene: int = 30,
    frames_per_clip: int = 150,
    stride: int = 3,
    crop_steps: int = 3000,
    crop_lr: float = 5e-4,
    crop_warmup: int = 30,
    crop_cameras_per_scene: int = 120,
    crop_frames_per_clip: int = 160,
    crop_share: float = 0.75,
    threads: int = 2,
    progress: bool = True,
) -> dict:
    """Train vigil-tiny from scratch (stage 1, whole frames), continue on detector crops
    (stage 2, ``crop_steps``; 0 skips it) and write its float16 state dict to ``out``.

    Deterministic for a given ``seed`` and thread count on CPU. Returns a summary
    (steps, final losses, seconds, checkpoint size, data size).
    """
    import open_clip
    import torch

    from vigil.model.backbones import CONFIG_DIR

    torch.set_num_threads(threads)
    t0 = time.time()
    cfg_path = CONFIG_DIR / f"{MODEL}.json"
    cfg = json.loads(cfg_path.read_text())
    open_clip.add_model_config(cfg_path)
    size = int(cfg["vision_cfg"]["image_size"])
    images, views, _scenes, _seeds = render_training_set(
        seed=seed, cameras_per_scene=cameras_per_scene, frames_per_clip=frames_per_clip, stride=stride,
        image_size=size, progress=progress)
    crops, crop_caps, crop_abnormal = (np.zeros((0, size, size, 3), np.uint8), [], np.zeros(0, bool))
    if crop_steps:
        crops, crop_caps, crop_abnormal = render_crop_set(
            seed=seed, cameras_per_scene=crop_cameras_per_scene, frames_per_clip=crop_frames_per_clip,
            image_size=size, progress=progress)
    t_data = time.time() - t0
    tokenizer = open_clip.get_tokenizer(MODEL)
    vocab = sorted({v for vs in views for v in vs} | set(crop_caps))
    index = {v: i for i, v in enumerate(vocab)}
    tokens = tokenizer(vocab)
    view_ids = [[index[v] for v in vs] for vs in views]
    crop_ids = np.asarray([index[c] for c in crop_caps], np.int64)

    torch.manual_seed(seed)
    model = open_clip.create_model(MODEL, pretrained=None)
    model.train()
    rng = np.random.default_rng([seed, 202])

    def frame_batch(k: int) -> tuple[np.ndarray, np.ndarray]:
        idx = rng.choice(len(images), size=k, replace=False)
        return images[idx], np.array([view_ids[i][int(rng.integers(len(view_ids[i])))] for i in idx])

    def run_stage(name: str, n_steps: int, stage_lr: float, stage_warmup: int, batch) -> list[float]:
        return train_stage(model, batch, tokens, rng, steps=n_steps, lr=stage_lr, warmup=stage_warmup,
                           weight_decay=weight_decay, desc=f"train vigil-tiny ({name})", progress=progress)

    losses = run_stage("frames", steps, lr, warmup, lambda: frame_batch(batch_size))
    crop_losses: list[float] = []
    if crop_steps:
        pos, neg = np.flatnonzero(crop_abnormal), np.flatnonzero(~crop_abnormal)
        n_crops = int(round(batch_size * crop_share)) // 2 * 2

        def crop_batch() -> tuple[np.ndarray, np.ndarray]:
            idx = np.concatenate([rng.choice(pos, n_crops // 2, replace=False), rng.choice(neg, n_crops // 2, replace=False)])
            pixels = crops[idx]
            if rng.random() < 0.5:  # mirror: no anomaly here depends on left or right
                pixels = pixels[:, :, ::-1]
            f_pixels, f_ids = frame_batch(batch_size - n_crops)
            return np.concatenate([pixels, f_pixels]), np.concatenate([crop_ids[idx], f_ids])

        crop_losses = run_stage("crops", crop_steps, crop_lr, crop_warmup, crop_batch)
    model.eval()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to(torch.float16) if v.is_floating_point() else v for k, v in model.state_dict().items()}
    torch.save(sd, out)
    summary = {
        "model": MODEL, "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr,
        "frames": int(len(images)), "unique_texts": len(vocab), "final_loss": float(np.mean(losses[-20:])),
        "crop_steps": crop_steps, "crop_lr": crop_lr, "crops": int(len(crops)),
        "crops_abnormal_share": round(float(crop_abnormal.mean()), 3) if len(crops) else None,
        "final_crop_loss": float(np.mean(crop_losses[-50:])) if crop_losses else None,
        "seconds_total": round(time.time() - t0, 1), "seconds_data": round(t_data, 1),
        "checkpoint_bytes": out.stat().st_size,
    }
    log.info("vigil-tiny trained: %s", summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=Path("shared/model/weights/vigil-tiny.pt"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--cameras-per-scene", type=int, default=30)
    ap.add_argument("--crop-steps", type=int, default=3000, help="stage 2 on detector crops; 0 skips it")
    ap.add_argument("--crop-cameras-per-scene", type=int, default=120)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    s = train_tiny_clip(args.out, seed=args.seed, steps=args.steps, batch_size=args.batch_size,
                        cameras_per_scene=args.cameras_per_scene, crop_steps=args.crop_steps,
                        crop_cameras_per_scene=args.crop_cameras_per_scene)
    print(json.dumps(s, indent=2))


if __name__ == "__main__":
    main()
