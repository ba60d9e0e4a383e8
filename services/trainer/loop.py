"""The Ray Train loop: plain PyTorch; the Ray calls are marked ``# Ray``.

Each worker reads the packed training data (cached features, labels, weights, DPC
windows) from the object store, builds the model from the parent version's heads, wraps
:class:`~services.trainer.objective.HeadsObjective` with ``prepare_model`` (DDP; gloo on
CPU), shards the data with ``prepare_data_loader``, and reports once per epoch with a
checkpoint (heads file + optimizer state) that Ray Train persists to the object store.
After a worker dies, Ray Train restarts the group and the loop resumes from the last
checkpoint (``ray.train.get_checkpoint``).

:func:`fit_in_process` runs the same epochs without Ray (one process, same objective):
for quick experiments and unit tests.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from vigil.model.anomaly import AnomalyModel
from vigil.model.coop import CoOpConfig
from vigil.model.prompts import PromptSet

from .config import TrainConfig
from .objective import HeadsObjective

log = logging.getLogger(__name__)

HEADS_FILE = "heads.pt"
STATE_FILE = "train_state.pt"


# ---------------------------------------------------------------- packed data


@dataclass
class Packed:
    frame: np.ndarray  # [N, T, D]
    seg: np.ndarray  # [N, D]
    glob: np.ndarray  # [N, D] camera context embedding (mean of its training normal segments)
    label: np.ndarray  # [N] 0/1
    weight: np.ndarray  # [N]
    s_pred: np.ndarray  # [N] parent's calibrated s_pred (nan: none)
    windows: np.ndarray  # [M, L, D] consecutive segment embeddings of normal clips (DPC)
    verified: np.ndarray  # [N] 1: an analyst labelled the segment (feedback); 0: footage assumed normal

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, **self.__dict__)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> Packed:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(**{k: z[k] for k in cls.__dataclass_fields__})


# ---------------------------------------------------------------- model


def data_flags(data: Packed, cfg: TrainConfig) -> dict[str, bool]:
    """Which heads the data can train: DPC needs ``dpc_min_windows`` windows of normal segments;
    the fusion gate needs both labels (with normal examples only it would learn to follow
    whichever stream is lower and stop seeing anomalies)."""
    y = data.label
    return {"train_dpc": len(data.windows) >= cfg.dpc_min_windows,
            "train_gate": bool((y > 0.5).any() and (y < 0.5).any())}


def build_model(backbone: str, parent_heads: str | Path | None, cfg: TrainConfig, ps: PromptSet, *,
                train_dpc: bool = True, train_gate: bool = True) -> AnomalyModel:
    """The parent version (or zero-shot) with every head the config asks to train, bound to ``ps``.

    Heads the data cannot train (see :func:`data_flags`) keep the parent's weights, frozen;
    without a parent DPC and ``train_dpc`` off, the forecaster stays the parameter-free one.
    """
    kw: dict[str, Any] = {"mode": cfg.mode, "prompt_set": ps}
    parent_cfg: dict[str, Any] = {}
    if parent_heads:
        from vigil.model.heads import read_heads

        parent_cfg = read_heads(parent_heads)[0]["config"]
    if cfg.coop and not parent_cfg.get("coop"):
        kw["coop"] = CoOpConfig(n_ctx=cfg.coop_n_ctx)
    if train_dpc and not parent_cfg.get("dpc"):
        kw["dpc"] = {"hidden": cfg.dpc_hidden, "context": cfg.dpc_context, "horizon": cfg.dpc_horizon}
    torch.manual_seed(cfg.seed)  # fresh heads (CoOp, DPC) start identical on every rank
    model = AnomalyModel.create(backbone, heads=parent_heads, **kw)
    model.bind_prompts(ps)
    frozen = [model.encoder]  # the video encoder's temporal layers belong to the cached encoder
    if not train_dpc and "dpc" in model.head_modules():
        frozen.append(model.head_modules()["dpc"])
    if not train_gate:
        frozen.append(model.fusion)
    for mod in frozen:
        for p in mod.parameters():
            p.requires_grad_(False)
    return model


def _loaders(data: Packed, cfg: TrainConfig, seed: int) -> tuple[DataLoader, DataLoader]:
    t = torch.from_numpy
    seg_ds = TensorDataset(t(data.frame), t(data.seg), t(data.glob), t(data.label).float(), t(data.weight).float(),
                           t(data.s_pred).float(), t(data.verified).float())
    g = torch.Generator().manual_seed(seed)
    segs = DataLoader(seg_ds, batch_size=cfg.batch_size, shuffle=True, generator=g, drop_last=False)
    win = data.windows if len(data.windows) else np.zeros((0, 2, data.seg.shape[1]), np.float32)
    n_steps = max(1, -(-len(seg_ds) // cfg.batch_size))
    wbs = max(2, -(-len(win) // n_steps)) if len(win) else 1
    wins = DataLoader(TensorDataset(t(win)), batch_size=wbs, shuffle=True, generator=g, drop_last=False)
    return segs, wins


def run_epoch(objective: torch.nn.Module, opt: torch.optim.Optimizer, segs: DataLoader, wins: DataLoader) -> dict[str, float]:
    """One pass over the segment batches, a DPC window batch beside each; mean of every loss term."""
    objective.train()
    sums: dict[str, float] = {}
    n = 0
    win_iter = iter(wins)
    for frame, seg, glob, y, w, s_pred, verified in segs:
        try:
            (windows,) = next(win_iter)
        except StopIteration:
            win_iter = iter(wins)
            (windows,) = next(win_iter, (torch.zeros(0, 2, seg.shape[1]),))
        out = objective(frame, seg, glob, y, w, s_pred, windows, verified)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        for k, v in out.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        n += 1
    return {k: v / max(n, 1) for k, v in sums.items()}


def _optimizer(objective: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in objective.parameters() if p.requires_grad]
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _inner(objective: torch.nn.Module) -> HeadsObjective:
    return getattr(objective, "module", objective)


def save_checkpoint(directory: Path, objective: torch.nn.Module, opt: torch.optim.Optimizer, epoch: int,
                    metrics: dict[str, float]) -> None:
    from vigil.model.heads import save_heads

    inner = _inner(objective)
    save_heads(inner.model, directory / HEADS_FILE)
    torch.save({"epoch": epoch, "metrics": metrics, "optimizer": opt.state_dict(),
                "params": {k: v.detach().cpu() for k, v in inner.trainable().items()}}, directory / STATE_FILE)


def load_checkpoint(directory: Path, objective: torch.nn.Module, opt: torch.optim.Optimizer) -> int:
    """Restore parameters and optimizer; returns the epoch the checkpoint finished."""
    st = torch.load(directory / STATE_FILE, map_location="cpu", weights_only=False)
    params = _inner(objective).trainable()
    with torch.no_grad():
        for k, v in st["params"].items():
            params[k].copy_(v)
    opt.load_state_dict(st["optimizer"])
    return int(st["epoch"])


# ---------------------------------------------------------------- the Ray Train worker loop


def train_loop_per_worker(config: dict[str, Any]) -> None:
    import ray.train
    import ray.train.torch

    from vigil.config import S3Settings
    from vigil.model.prompts import PromptSet
    from vigil.objectstore import ObjectStore

    cfg = TrainConfig.model_validate(config["train"])
    torch.set_num_threads(cfg.scaling.torch_threads)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ctx = ray.train.get_context()  # Ray
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    store = ObjectStore(S3Settings.in_worker(config["s3"]))
    data = Packed.from_bytes(store.get(config["data_key"]))
    ps = PromptSet.model_validate(config["prompt_set"])
    work = Path(tempfile.mkdtemp(prefix="vigil-train-"))
    parent = None
    if config.get("parent_heads_key"):
        parent = work / "parent_heads.pt"
        parent.write_bytes(store.get(config["parent_heads_key"]))
    model = build_model(config["backbone"], parent, cfg, ps, **data_flags(data, cfg))
    anchor = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    objective = HeadsObjective(model, ps, cfg, anchor)
    objective = ray.train.torch.prepare_model(  # Ray: DDP (find_unused: a batch may not touch every head)
        objective, parallel_strategy_kwargs={"find_unused_parameters": True}
    )
    opt = _optimizer(objective, cfg)
    start = 0
    ckpt = ray.train.get_checkpoint()  # Ray: set after a restart
    if ckpt is not None:
        with ckpt.as_directory() as d:
            start = load_checkpoint(Path(d), objective, opt) + 1
        log.info("rank %d resumes at epoch %d", rank, start)
    segs, wins = _loaders(data, cfg, cfg.seed)
    segs = ray.train.torch.prepare_data_loader(segs, move_to_device=False)  # Ray: DistributedSampler
    wins = ray.train.torch.prepare_data_loader(wins, move_to_device=False)  # Ray
    fail_at = config.get("fail_at_epoch")  # tests: this rank is SIGKILLed once, on a fresh start
    for epoch in range(start, cfg.epochs):
        for dl in (segs, wins):
            sampler = getattr(dl, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
        if fail_at is not None and epoch == fail_at and start == 0 and rank == world - 1:
            os.kill(os.getpid(), signal.SIGKILL)
        t0 = time.monotonic()
        metrics = run_epoch(objective, opt, segs, wins)
        metrics.update(epoch=epoch, epochs=cfg.epochs, resumed_from=start, epoch_s=time.monotonic() - t0)
        with tempfile.TemporaryDirectory() as d:
            checkpoint = None
            if rank == 0:
                save_checkpoint(Path(d), objective, opt, epoch, metrics)
                checkpoint = ray.train.Checkpoint.from_directory(d)
            ray.train.report(metrics, checkpoint=checkpoint)  # Ray: once per epoch


# ---------------------------------------------------------------- without Ray


def fit_in_process(model: AnomalyModel, ps: PromptSet, cfg: TrainConfig, data: Packed,
                   on_epoch: Callable[[dict[str, float]], None] | None = None) -> list[dict[str, float]]:
    """The same epochs in this process (no DDP); ``model`` is trained in place."""
    anchor = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    objective = HeadsObjective(model, ps, cfg, anchor)
    opt = _optimizer(objective, cfg)
    segs, wins = _loaders(data, cfg, cfg.seed)
    history = []
    for epoch in range(cfg.epochs):
        m = run_epoch(objective, opt, segs, wins)
        m["epoch"] = epoch
        history.append(m)
        if on_epoch:
            on_epoch(m)
    model.eval()
    model._cache.clear()
    return history
