"""Encoder features of clips, computed once per (encoder version, clip) and cached in the object store.

The backbone is frozen while the heads train, so a clip's per-frame embeddings never
change for a given encoder: they are computed once, stored under
``features/<encoder version>/T<frames>/<clip digest>.npz`` and every later run (and every
Ray Train worker) reads them instead of running the backbone again. The encoder version is
the backbone's version plus a digest of the video encoder's temporal layers when they are
trained (they are part of the encoder; the heads trained here sit on top of it).
Clip objects are immutable by convention (a new recording gets a new key).
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
from dataclasses import dataclass

import numpy as np
import torch

from vigil.model.anomaly import AnomalyModel, EncodedSegment
from vigil.objectstore import ObjectMissing, ObjectStore
from vigil.segments import decode_segment

from .dataset import ClipRef

log = logging.getLogger(__name__)

FEATURES_PREFIX = "features/"


def encoder_version(model: AnomalyModel) -> str:
    v = model.backbone.version
    if not model.encoder.temporal_is_identity():
        buf = io.BytesIO()
        torch.save(model.encoder.head_state_dict(), buf)
        v += ":video:" + hashlib.sha256(buf.getvalue()).hexdigest()[:12]
    return v


@dataclass
class ClipFeatures:
    frame: np.ndarray  # float32 [S, T, D] per-frame embeddings of each segment
    seg: np.ndarray  # float32 [S, D] segment embeddings
    labels: np.ndarray  # int8 [S, T] frame labels
    fps: float

    def __len__(self) -> int:
        return len(self.seg)

    def encoded(self) -> list[EncodedSegment]:
        return [EncodedSegment(frame_emb=self.frame[i], seg_emb=self.seg[i]) for i in range(len(self))]

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        np.savez(buf, frame=self.frame, seg=self.seg, labels=self.labels, fps=np.float64(self.fps))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> ClipFeatures:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            return cls(z["frame"], z["seg"], z["labels"], float(z["fps"]))


def cut_segments(frames: np.ndarray, t: int) -> list[slice | np.ndarray]:
    """Index sets of the T-frame segments of a clip: consecutive runs of T (a remainder is dropped);
    a clip shorter than T is resampled to T frames."""
    n = len(frames)
    if n < t:
        return [np.linspace(0, n - 1, t).round().astype(int)]
    return [slice(i, i + t) for i in range(0, n - t + 1, t)]


class FeatureCache:
    def __init__(self, store: ObjectStore, model: AnomalyModel, frames_per_segment: int, batch: int = 8) -> None:
        self.store, self.model, self.t, self.batch = store, model, frames_per_segment, batch
        self.version = encoder_version(model)
        self.hits = self.misses = 0

    def key(self, clip: ClipRef) -> str:
        slug = re.sub(r"[^A-Za-z0-9_.+-]", "_", self.version)
        digest = hashlib.sha256("|".join(clip.keys).encode()).hexdigest()[:24]
        return f"{FEATURES_PREFIX}{slug}/T{self.t}/{digest}.npz"

    def get(self, clip: ClipRef) -> ClipFeatures:
        key = self.key(clip)
        try:
            feats = ClipFeatures.from_bytes(self.store.get(key))
            self.hits += 1
            return feats
        except ObjectMissing:
            pass
        feats = self.compute(clip)
        self.store.put(key, feats.to_bytes())
        self.misses += 1
        return feats

    def compute(self, clip: ClipRef) -> ClipFeatures:
        segs, labels, fps = [], [], None
        for obj in clip.keys:
            dec = decode_segment(self.store.get(obj))
            fps = fps or float(dec.meta.get("fps") or 0) or None
            lab = dec.meta.get("labels")
            lab = np.asarray(lab, np.int8) if lab is not None and len(lab) == len(dec.frames) else None
            for idx in cut_segments(dec.frames, self.t):
                segs.append(dec.frames[idx])
                labels.append(lab[idx] if lab is not None else np.full(self.t, clip.label, np.int8))
        frame_out, seg_out = [], []
        with torch.no_grad():
            for i in range(0, len(segs), self.batch):
                x = torch.stack([self.model.preprocess(s) for s in segs[i : i + self.batch]])
                for enc in self.model.encode(x):
                    frame_out.append(enc.frame_emb)
                    seg_out.append(enc.seg_emb)
        return ClipFeatures(
            np.stack(frame_out).astype(np.float32), np.stack(seg_out).astype(np.float32),
            np.stack(labels).astype(np.int8), fps or 4.0,
        )
