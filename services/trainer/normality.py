"""train-normal: learn a camera's normality from normal footage only.

Self-supervised DPC training (Han et al. 2019) of a from-scratch registry backbone and the
forecaster on tubes of motion crops (:mod:`vigil.model.normality`, :mod:`vigil.model.tubes`), then the camera's normal
memory and score calibration. Seeded, with a tqdm progress bar, periodic checkpoints and
resume from the last one.

Normal clips are split: every ``holdout_every``-th clip is held out of training and serves
only to calibrate the scores (a score measured on the footage the model was fitted to would
look better than the same camera's next normal hour).
"""

from __future__ import annotations

import json
from itertools import islice
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from vigil.datasets.base import Clip, image_files, video_frame_count
from vigil.model.detectors import build_detector
from vigil.model.calibration import fit_calibration
from vigil.model.attributes import ATTRIBUTES, N_ATTRIBUTES, box_attributes, clip_dwell
from vigil.model.dpc import cpc_loss, forecast_error
from vigil.model.normality import STREAMS, NormalityConfig, NormalityModel
from vigil.model.stages import segment_boxes
from vigil.model.tubes import box_context, clip_flows, crops_to_tensor, frame_flow, tube_crops, work_grey

log = logging.getLogger(__name__)

CHECKPOINT = "normality.pt"
TRAIN_STATE = "train_state.pt"


def clips_gap(clips: "NormalClips") -> tuple[int, int]:
    return clips.tube.frames(clips.fps)


@dataclass
class NormalClips:
    """Grey frames (work resolution) of normal clips, with every frame's boxes as the live scorer finds them."""

    names: list[str]
    grey: list[np.ndarray]
    boxes: list[list[list[tuple[int, int, int, int]]]]
    fps: float
    flow: list[np.ndarray] | None = None  # per clip float16 [T, h, w, 2] (flow channels only)
    dwell: list[list[list[float]]] | None = None  # per clip, frame and box: its dwell (as Detect measures it)
    tube: Any = None  # the TubeConfig the flows were computed for


def read_rgb(source: str | Path):
    """A folder of images or a video file → its uint8 RGB frames, one at a time."""
    source = Path(source)
    paths = [] if source.is_file() else image_files(source)
    return Clip(name=source.stem, source=source, frame_paths=paths).iter_frames()


def load_grey_frames(source: str | Path, work_side: int, limit: int | None = None) -> np.ndarray:
    """A folder of images or a video file → uint8 grey ``[T, h, w]`` with the longest side ≤ ``work_side``,
    converted exactly as the live scorer converts a segment (:func:`work_grey`); ``limit``: its first frames only."""
    from itertools import islice

    source = Path(source)
    if not source.is_file() and not image_files(source):
        raise ValueError(f"no images in {source}")
    out = [work_grey(rgb[None], work_side)[0] for rgb in islice(read_rgb(source), limit)]
    if not out:
        raise ValueError(f"no frames in {source}")
    return np.stack(out)


def detect_clips(cfg: NormalityConfig, greys: Sequence[np.ndarray], segment: int = 16) -> list[list[list[tuple]]]:
    """Boxes per frame of each clip, found segment by segment with one detector per clip, by the
    served Detect stage's own box finder (:func:`vigil.model.stages.segment_boxes`)."""
    out = []
    for g in greys:
        det = build_detector(cfg.detector) if cfg.mode == "objects" else None
        boxes: list = []
        for s in range(0, len(g), segment):
            boxes += segment_boxes(cfg, det, g[s : s + segment])
        out.append(boxes)
    return out


def prepare_clips(frames_dirs: Sequence[str | Path], cfg: NormalityConfig, fps: float,
                  limits: Sequence[int | None] | None = None) -> NormalClips:
    names = [Path(d).stem if Path(d).is_file() else Path(d).name for d in frames_dirs]
    limits = list(limits or [None] * len(frames_dirs))
    greys = [load_grey_frames(d, cfg.work_side, n) for d, n in zip(frames_dirs, limits)]
    flows = None
    if cfg.tube.channels == "flow":
        _, gap = cfg.tube.frames(fps)
        flows = [clip_flows(g, gap, preset=cfg.tube.flow_preset) for g in greys]
    boxes = detect_clips(cfg, greys)
    dwell = [clip_dwell(b, g.shape[2], g.shape[1], fps, cfg.dwell_s)[0] for b, g in zip(boxes, greys)]
    return NormalClips(names=names, grey=greys, boxes=boxes, fps=fps, flow=flows, tube=cfg.tube, dwell=dwell)


def tube_index(clips: NormalClips, cfg: NormalityConfig, idx: Sequence[int], horizon: int) -> np.ndarray:
    """Rows (clip, anchor frame, box number) of every box whose whole tube lies inside its clip."""
    step, gap = cfg.tube.frames(clips.fps)
    first = cfg.tube.context * step + 2 * gap
    rows = []
    for c in idx:
        n = len(clips.grey[c])
        for t in range(first, n - (horizon - 1) * step):
            rows.extend((c, t, b) for b in range(len(clips.boxes[c][t])))
    return np.asarray(rows, dtype=np.int64).reshape(-1, 3)


def make_tubes(
    clips: NormalClips,
    cfg: NormalityConfig,
    rows: np.ndarray,
    horizon: int,
    rng: np.random.Generator | None = None,
    speed: int = 1,
) -> np.ndarray:
    """uint8 ``[B, context+horizon, S, S, 3]``; with ``rng``: random flips and box jitter (training).

    ``speed`` > 1 samples the tube's frames that many times further apart: the objects move
    ``speed`` times faster than they did (a synthetic anomaly made from normal footage).
    """
    step, gap = cfg.tube.frames(clips.fps)
    step, gap = step * speed, gap * speed
    n = cfg.tube.context
    out = []
    cache: dict[tuple[int, int], np.ndarray] = {}
    for c, t, b in rows:
        flow: Any = None
        if cfg.tube.channels == "flow":
            if speed == 1:
                flow = clips.flow[c]
            else:  # flow over the longer gap, computed on demand

                def flow(tt: int, c: int = c) -> np.ndarray:
                    if (c, tt) not in cache:
                        cache[(c, tt)] = frame_flow(
                            clips.grey[c][max(tt - gap, 0)], clips.grey[c][tt], cfg.tube.flow_preset
                        )
                    return cache[(c, tt)]

        box = clips.boxes[c][t][b]
        flip = False
        if rng is not None and cfg.mode == "objects":
            x0, y0, x1, y1 = box
            jw, jh = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
            dx, dy = rng.uniform(-jw, jw), rng.uniform(-jh, jh)
            box = (int(x0 + dx), int(y0 + dy), int(x1 + dx), int(y1 + dy))
        if rng is not None:
            flip = bool(rng.random() < 0.5)
        times = [t + k * step for k in range(-n, horizon)]
        out.append(tube_crops(clips.grey[c], times, box, cfg.tube, gap, flip=flip, flow=flow))
    return np.stack(out)


def split_holdout(n: int, holdout_every: int) -> tuple[list[int], list[int]]:
    """Every ``holdout_every``-th clip (the last of each group) is held out; < 4 clips: none."""
    if holdout_every <= 1 or n < 4:
        return list(range(n)), []
    held = [i for i in range(n) if i % holdout_every == holdout_every - 1]
    return [i for i in range(n) if i not in held], held


@torch.no_grad()
def fit_memory_and_calibration(
    model: NormalityModel, clips: NormalClips, train_idx: list[int], cal_idx: list[int], rng: np.random.Generator
) -> dict[str, Any]:
    """Fill the normal memory from training clips; calibrate every stream on held-out normal clips."""
    cfg = model.config
    model.eval()
    rows = tube_index(clips, cfg, train_idx, horizon=1)
    if len(rows) > cfg.memory_size:
        rows = rows[np.sort(rng.choice(len(rows), cfg.memory_size, replace=False))]
    mem = []
    for i in range(0, len(rows), 2048):
        tubes = make_tubes(clips, cfg, rows[i : i + 2048], horizon=1)
        mem.append(model.embed(tubes[:, -1]))
    model.memory = torch.cat(mem) if mem else torch.zeros(0, model.dim)
    if clips.flow is not None:
        model.fit_attributes(_attributes(clips, rows, 1))
    same_clip = None
    if not cal_idx:  # no held-out clip: calibrate on training clips, never matching a crop's own clip
        cal_idx, same_clip = train_idx, torch.from_numpy(rows[:, 0])
    cal_rows = tube_index(clips, cfg, cal_idx, horizon=1)
    if len(cal_rows) > 20000:
        cal_rows = cal_rows[np.sort(rng.choice(len(cal_rows), 20000, replace=False))]
    raw: dict[str, list[np.ndarray]] = {"pred": [], "mem": []}
    for i in range(0, len(cal_rows), 2048):
        part = cal_rows[i : i + 2048]
        tubes = make_tubes(clips, cfg, part, horizon=1)
        b, n = tubes.shape[:2]
        z = model.embed(tubes.reshape(b * n, *tubes.shape[2:])).reshape(b, n, -1)
        raw["pred"].append(forecast_error(model.forecaster(z[:, :-1])[:, 0], z[:, -1]).numpy())
        exclude = None
        if same_clip is not None:
            exclude = torch.from_numpy(part[:, 0])[:, None] == same_clip[None, :]
        raw["mem"].append(model.memory_distance(z[:, -1], exclude=exclude).numpy())
    info = {"memory": int(len(model.memory)), "calibration_crops": int(len(cal_rows))}
    if clips.flow is not None:
        # the attribute streams learn nothing from the crops, only from the bank of training boxes: they
        # are calibrated on every normal clip (a training box never matched against its own clip's
        # boxes), so their 99th percentiles rest on all the normal footage, not on a few held-out clips
        every = sorted(set(train_idx) | set(cal_idx))
        att_rows = tube_index(clips, cfg, every, horizon=1)
        if len(att_rows) > 40000:
            att_rows = att_rows[np.sort(rng.choice(len(att_rows), 40000, replace=False))]
        bank_clip = torch.from_numpy(rows[:, 0])
        for i in range(0, len(att_rows), 2048):
            part = att_rows[i : i + 2048]
            attrs = _attributes(clips, part, 1)
            own = torch.from_numpy(part[:, 0])[:, None] == bank_clip[None, :]
            raw.setdefault("motion", []).append(attrs[:, ATTRIBUTES.index("speed")].astype(np.float64))
            raw.setdefault("attr", []).append(model.attribute_distance(attrs, exclude=own))
            raw.setdefault("place_speed", []).append(model.place_speed(attrs, exclude=own))
            raw.setdefault("dwell", []).append(attrs[:, ATTRIBUTES.index("dwell")].astype(np.float64))
        info["attribute_calibration_boxes"] = int(len(att_rows))
    model.calibration = {k: fit_calibration(np.concatenate(v)) for k, v in raw.items() if v}
    return info


def _context_of(clips: NormalClips, rows: np.ndarray) -> np.ndarray:
    out = []
    for c, t, b in rows:
        h, w = clips.grey[c].shape[1:]
        out.append(box_context([clips.boxes[c][t][b]], w, h)[0])
    return np.asarray(out, np.float32).reshape(-1, 4)


def fit_gate(
    model: NormalityModel, clips: NormalClips, idx: list[int], rng: np.random.Generator, speed: int = 3,
    max_frames: int = 300, iters: int = 300,
) -> dict[str, Any]:
    """Fit the context gate on normal tubes of held-out clips versus the same tubes sped up ``speed``×.

    Only the mixing weight ``g(c)`` (and a logistic scale/offset used while fitting) is
    learned; the streams themselves stay as calibrated. Returns the AUCs of each stream and
    of the fused score on this synthetic task (a check that needs no real anomaly).
    """
    from sklearn.metrics import roc_auc_score

    rows = tube_index(clips, model.config, idx, horizon=1)
    frames = np.unique(rows[:, :2], axis=0)
    if len(frames) > max_frames:  # whole frames, so the on-demand flows of a speed-up are shared
        keep = frames[rng.choice(len(frames), max_frames, replace=False)]
        keep_set = {tuple(x) for x in keep.tolist()}
        rows = rows[[tuple(r) in keep_set for r in rows[:, :2].tolist()]]
    if len(rows) < 10:
        return {}
    streams = [k for k in model.config.streams if k not in model.config.max_streams]  # what the gate mixes
    if len(streams) < 2:
        return {}
    active = [STREAMS.index(k) for k in streams]
    crops = bool({"pred", "mem"} & set(streams))
    cal = {}
    for sp in (1, speed):
        raws: dict[str, list] = {}
        for i in range(0, len(rows), 2048):
            part = rows[i : i + 2048]
            attrs = _attributes(clips, part, sp) if clips.flow is not None else None
            spd = None if attrs is None else attrs[:, ATTRIBUTES.index("speed")].astype(np.float64)
            tubes = make_tubes(clips, model.config, part, horizon=1, speed=sp) if crops else None
            r = model.raw_scores(tubes, spd, attrs)
            for k, v in r.items():
                raws.setdefault(k, []).append(v)
        cal[sp] = model.calibrated({k: np.concatenate(v) for k, v in raws.items()})
    ctx = torch.from_numpy(np.concatenate([_context_of(clips, rows)] * 2))
    y = torch.cat([torch.zeros(len(rows)), torch.ones(len(rows))])
    z = torch.stack(
        [torch.from_numpy(np.concatenate([cal[1][k], cal[speed][k]])).float() for k in streams], dim=1
    )
    a = torch.zeros(1, requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam(list(model.gate.parameters()) + [a, b], lr=0.02)
    model.gate.train()
    for _ in range(iters):
        fused = (model.gate(ctx, active) * z).sum(1)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(a.exp() * fused + b, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.gate.eval()
    with torch.no_grad():
        w = model.gate(ctx, active)
        fused = (w * z).sum(1).numpy()
    yn = y.numpy()
    out: dict[str, Any] = {"pseudo_speed": speed}
    for j, k in enumerate(streams):
        out[f"pseudo_auc_{k}"] = float(roc_auc_score(yn, z[:, j].numpy()))
        out[f"gate_mean_{k}"] = float(w[:, j].mean())
    out["pseudo_auc_even"] = float(roc_auc_score(yn, z.mean(1).numpy()))
    out["pseudo_auc_gate"] = float(roc_auc_score(yn, fused))
    return out


def _attributes(clips: NormalClips, rows: np.ndarray, speed: int) -> np.ndarray:
    """Attribute vectors (:func:`box_attributes`, as Detect measures them) of ``rows``, over a
    ``speed``× longer flow gap for synthetic speed-ups."""
    _, gap = clips_gap(clips)
    out = []
    cache: dict[tuple[int, int], np.ndarray] = {}
    for c, t, b in rows:
        if speed == 1:
            f = clips.flow[c][t]
        else:
            if (c, t) not in cache:
                cache[(c, t)] = frame_flow(
                    clips.grey[c][max(t - gap * speed, 0)], clips.grey[c][t], clips.tube.flow_preset
                )
            f = cache[(c, t)]
        h, w = clips.grey[c].shape[1:]
        dwell = clips.dwell[c][t][b] if clips.dwell is not None else 0.0
        out.append(box_attributes(f, clips.boxes[c][t][b], w, h, dwell))
    return np.asarray(out, np.float32).reshape(-1, N_ATTRIBUTES)


@torch.no_grad()
def served_scores(model: NormalityModel, sources: Sequence[str | Path], fps: float, zero_shot: Any = None,
                  segment_frames: int = 16, limits: Sequence[int | None] | None = None) -> tuple[list[float], list[float]]:
    """Every clip through the served stages (:mod:`vigil.model.stages`: detect → encode →
    score, one cold camera per clip): the raw object frame scores and the raw zero-shot
    segment scores they emit before calibration and the squash."""
    from itertools import islice

    from vigil.model import stages

    objects, zs = [], []
    for src, limit in zip(sources, list(limits or [None] * len(sources))):
        det_state = stages.new_detector_state(model.config, fps)
        state: dict[str, Any] = {}
        it = islice(read_rgb(src), limit)
        while seg := list(islice(it, segment_frames)):
            frames = np.stack(seg)
            obs, det_state = stages.detect(frames, det_state, model.config)
            enc = stages.encode(zero_shot, frames, obs) if zero_shot is not None else None
            res, state = stages.score(zero_shot, model, enc, obs, state, fps=fps)
            objects.extend(res["raw"]["objects"] or [])
            if res["raw"]["zero_shot"] is not None:
                zs.append(res["raw"]["zero_shot"])
    return objects, zs


def calibrate_served(model: NormalityModel, sources: Sequence[str | Path], fps: float,
                     zero_shot: Any = None, segment_frames: int = 16,
                     limits: Sequence[int | None] | None = None) -> dict[str, Any]:
    """Put the served detector's streams on its fusion scale, measured on held-out normal clips.

    Fits, on what :func:`served_scores` emits for the clips, the calibration of the smoothed
    object score (``fused``) and, with a ``zero_shot`` model, of its segment score
    (``zero_shot``, tied to that model's version): 0.5 on the fusion scale is then the 99th
    percentile of this camera's normal footage for each.
    """
    from vigil.model import stages

    objects, zs = served_scores(model, sources, fps, zero_shot, segment_frames, limits)
    model.calibration[stages.FUSED] = fit_calibration(objects)
    info: dict[str, Any] = {"served_calibration_frames": len(objects)}
    if zero_shot is not None and len(zs) >= 2:
        model.calibration[stages.ZERO_SHOT] = fit_calibration(zs)
        model.zero_shot_version = zero_shot.version
        info.update(zero_shot_version=zero_shot.version, zero_shot_calibration_segments=len(zs))
    return info


def train_normal(
    frames_dirs: Sequence[str | Path],
    out_dir: str | Path,
    *,
    fps: float = 10.0,
    steps: int = 300,
    batch: int = 64,
    lr: float = 2e-3,
    seed: int = 0,
    config: NormalityConfig | dict[str, Any] | None = None,
    holdout_every: int = 8,
    resume: bool = True,
    progress: bool = True,
    checkpoint_every: int = 200,
    threads: int | None = 1,
    zero_shot: Any = None,
    max_seconds: float | None = None,
) -> Path:
    """Train a camera's normality model on normal clips (folders of frames or video files); returns the checkpoint path.

    ``fps`` is the frame rate of the folders (tube steps are in seconds). Training state is
    saved to ``out_dir/train_state.pt`` every ``checkpoint_every`` steps and resumed from
    there when ``resume``; the final model (encoder, forecaster, memory, calibration) goes
    to ``out_dir/normality.pt``. Same inputs and seed → same model.

    ``zero_shot``: the served zero-shot model (an :class:`~vigil.model.anomaly.AnomalyModel`),
    whose segment score is calibrated on the same held-out clips so the Score stage can fuse
    it with the object score on one scale (:func:`calibrate_served`).

    ``threads``: torch intra-op threads (``None`` = torch's default). One is the default
    because on a shared small CPU several spinning intra-op threads were measured to run a
    step up to 8× slower than one thread.
    """
    from tqdm.auto import tqdm

    t_start = time.perf_counter()
    if threads:
        torch.set_num_threads(threads)
    cfg = config if isinstance(config, NormalityConfig) else NormalityConfig(**(config or {}))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    frames_dirs = [Path(d) for d in frames_dirs]
    if not frames_dirs:
        raise ValueError("train_normal needs at least one normal clip (a folder of frames or a video file)")

    limits: list[int | None] = [None] * len(frames_dirs)
    if max_seconds is not None:  # a live camera's normal period: the first max_seconds of footage, in clip order
        budget, limits, used = int(round(max_seconds * fps)), [], []
        for d in frames_dirs:
            if budget <= 0:
                break
            n = min(budget, video_frame_count(d) if d.is_file() else len(image_files(d)))
            used.append(d)
            limits.append(n)
            budget -= n
        frames_dirs = used
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    clips = prepare_clips(frames_dirs, cfg, fps, limits)
    train_idx, cal_idx = split_holdout(len(clips.grey), holdout_every)
    horizon = cfg.tube.horizon
    rows = tube_index(clips, cfg, train_idx, horizon)
    if len(rows) < 2:
        raise ValueError("too few moving objects in the normal footage to train on")

    model = NormalityModel(cfg)
    model.train()
    params = list(model.encoder.parameters()) + list(model.forecaster.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps))
    )
    start, history = 0, []
    state_path = out / TRAIN_STATE
    if resume and state_path.is_file():
        st = torch.load(state_path, map_location="cpu", weights_only=False)
        if st.get("config") == cfg.model_dump() and st.get("clips") == clips.names and st.get("seed") == seed:
            model.encoder.load_state_dict(st["encoder"])
            model.forecaster.load_state_dict(st["forecaster"])
            opt.load_state_dict(st["opt"])
            sched.load_state_dict(st["sched"])
            rng.bit_generator.state = st["rng"]
            torch.set_rng_state(st["torch_rng"])
            start, history = st["step"], st["history"]
            log.info("resumed from step %d", start)
        else:
            log.warning("ignoring %s: it belongs to another config, clip list or seed", state_path)

    def save_state(step: int) -> None:
        tmp = state_path.with_suffix(".tmp")
        torch.save(
            {
                "config": cfg.model_dump(),
                "clips": clips.names,
                "seed": seed,
                "step": step,
                "encoder": model.encoder.state_dict(),
                "forecaster": model.forecaster.state_dict(),
                "opt": opt.state_dict(),
                "sched": sched.state_dict(),
                "rng": rng.bit_generator.state,
                "torch_rng": torch.get_rng_state(),
                "history": history,
            },
            tmp,
        )
        tmp.replace(state_path)

    n_ctx = cfg.tube.context
    bar = tqdm(total=steps, initial=start, desc="train-normal", disable=not progress, dynamic_ncols=True)
    for step in range(start, steps):
        pick = rows[rng.choice(len(rows), size=min(batch, len(rows)), replace=False)]
        tubes = make_tubes(clips, cfg, pick, horizon, rng=rng)
        b, n = tubes.shape[:2]
        z = model.encoder(crops_to_tensor(tubes.reshape(b * n, *tubes.shape[2:]))).reshape(b, n, -1)
        pred = model.forecaster(z[:, :n_ctx])
        loss = cpc_loss(pred, z[:, n_ctx:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        history.append(float(loss.detach()))
        bar.update(1)
        if step % 10 == 0:
            bar.set_postfix(loss=f"{np.mean(history[-50:]):.3f}")
        if checkpoint_every and (step + 1) % checkpoint_every == 0 and step + 1 < steps:
            save_state(step + 1)
    bar.close()
    if steps > start:
        save_state(steps)

    fit_info = fit_memory_and_calibration(model, clips, train_idx, cal_idx, rng)
    if cfg.gate in ("context", "max"):  # max: the gate is fitted all the same, for the ablation's context variant
        fit_info.update(fit_gate(model, clips, cal_idx or train_idx, rng))
    cal = cal_idx or train_idx
    fit_info.update(calibrate_served(model, [frames_dirs[i] for i in cal], fps, zero_shot,
                                     limits=[limits[i] for i in cal]))
    train_seconds = time.perf_counter() - t_start
    meta = {
        "clips": clips.names,
        "train_clips": [clips.names[i] for i in train_idx],
        "calibration_clips": [clips.names[i] for i in cal_idx],
        "fps": fps,
        "train_frames": int(sum(len(g) for g in clips.grey)),
        "max_seconds": max_seconds,
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "seed": seed,
        "tubes": int(len(rows)),
        "final_loss": float(np.mean(history[-50:])) if history else None,
        "train_seconds": train_seconds,
        **fit_info,
    }
    path = model.save(out / CHECKPOINT, **meta)
    (out / "normality.json").write_text(json.dumps({**meta, "config": cfg.model_dump()}, indent=2))
    return path
