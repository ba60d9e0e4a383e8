"""Prompt preview: which descriptions of an edited prompt set would fire on an event.

The API may offer a server-side preview (``POST .../prompt-sets/{name}/preview``); where it
does not, the dashboard computes it here, honestly labelled: it fetches the event's evidence
clip through its presigned URL, samples one segment's worth of frames uniformly over the
clip, and runs the semantic stream of :class:`vigil.model.AnomalyModel` (the configured
backbone with zero-shot heads, not necessarily the deployed model's trained heads) with the
edited prompt set. The semantic stream is the only part a prompt edit changes.

A description *fires* when it is abnormal, among the window's top descriptions (the same
``window_vote`` the scorer uses: most frames' argmax, then mean probability) and the
window's majority vote is abnormal.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np


class PreviewError(RuntimeError):
    """The preview cannot be computed; the message says why."""


def sample_clip(mp4: bytes, n_frames: int = 16) -> np.ndarray:
    """Decode an MP4 (PyAV) and take ``n_frames`` frames spread evenly: uint8 RGB ``[T, H, W, 3]``."""
    import av

    try:
        with av.open(io.BytesIO(mp4)) as container:
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    except (av.FFmpegError, ValueError) as exc:
        raise PreviewError(f"the evidence clip could not be decoded: {exc}") from None
    if not frames:
        raise PreviewError("the evidence clip has no frames")
    idx = np.linspace(0, len(frames) - 1, n_frames).round().astype(int)
    return np.stack([frames[i] for i in idx])


@dataclass
class Preview:
    s_sem: float
    vote_abnormal: bool
    rows: list[dict]  # description, kind, mean_prob, argmax_frames, in_top, fires


def load_model(backbone: str):  # noqa: ANN201
    from vigil.model.anomaly import AnomalyModel

    try:
        return AnomalyModel.create(backbone)
    except Exception as exc:  # noqa: BLE001 - a missing checkpoint says how to get it
        raise PreviewError(f"model {backbone!r} could not be loaded: {exc}") from None


def preview(model, frames: np.ndarray, prompt_set) -> Preview:  # noqa: ANN001
    """Semantic stream of ``model`` with ``prompt_set`` on one window of frames."""
    import torch

    from vigil.model.frame_scorer import window_vote

    enc = model.encode_frames([frames])[0]
    with torch.no_grad():
        f = torch.from_numpy(np.asarray(enc.frame_emb, np.float32))[None]
        s = torch.from_numpy(np.asarray(enc.seg_emb, np.float32))[None]
        probs = model.semantic_probs(f, s, prompt_set, None, model.text_embeddings(prompt_set))[0].cpu().numpy()
    cfg = model.config
    v = window_vote(probs, prompt_set.descriptions, prompt_set.abnormal_mask, top_k=cfg.top_k, vote=cfg.vote)
    top = {t[0] for t in v.top}
    argmax = np.bincount(probs.argmax(axis=1), minlength=probs.shape[1])
    rows = []
    for k, d in enumerate(prompt_set.descriptions):
        abnormal = bool(prompt_set.abnormal_mask[k])
        rows.append({
            "description": d, "kind": "abnormal" if abnormal else "normal", "mean_prob": float(probs[:, k].mean()),
            "argmax_frames": int(argmax[k]), "in_top": d in top, "fires": abnormal and d in top and v.abnormal,
        })
    rows.sort(key=lambda r: (-r["argmax_frames"], -r["mean_prob"]))
    return Preview(s_sem=float(v.score), vote_abnormal=bool(v.abnormal), rows=rows)
