"""The training objective of the heads, on cached encoder features.

Heads trained: CoOp context, context text gate, frame scorer ``A_k``/``b_k`` (semantic
stream), the temporal module (``mode="video"``), the DPC forecaster (predictive stream) and
the fusion gate. The CLIP towers stay frozen (their features are cached).

Loss (weights in :class:`~services.trainer.config.LossWeights`):

- ``frame`` — hinge on ``s_sem`` (ICPRAM frame mode): a normal example costs
  ``(s - margin)^2`` while its ``s_sem`` exceeds ``margin``; an abnormal one (only with
  confirmed anomalies opted in) the mirror image. Weighted per segment (false positives weigh
  ``data.false_positive_weight``). *Chosen here:* a hinge, not a plain BCE towards 0: with
  normal examples only, a BCE would teach the scorer to call everything normal; a hinge stops
  once an example is under the margin. *Chosen here too:* the hinge is per frame only where an
  analyst labelled the segment (false positive or confirmed anomaly); on calibration footage,
  which is only assumed normal, it is on the segment's mean frame score, the soft form of the
  serving path's majority vote. A frame of a calibration segment that the vote already calls
  normal never raised an alarm; pushing each such frame under the margin wore down the
  descriptions through which real anomalies of that camera were found. Measured with vigil-tiny
  in ``tests/unit/trainer/test_feedback_loop.py``: a retrain on normal footage alone raised the
  held-out misses from 5 to 6 of 14 segments with the per-frame hinge (7 to 9 in another
  SynthCity draw); with this one they stay at 5 and the scores do not move.
- ``vid`` — VadCLIP's ``L_vid = L_ali + 0.1 L_cts`` (:func:`vigil.model.temporal.video_loss`,
  binary variant: top-k alignment mass of the abnormal descriptions vs the segment label).
- ``cpc`` — DPC InfoNCE (:func:`vigil.model.dpc.cpc_loss`, 2508.18463) on windows of
  consecutive segment embeddings of normal clips.
- ``gate`` — hinge on the fused score ``g s_sem + (1 - g) s_pred``, with ``s_pred`` the parent
  version's calibrated forecast error (fixed input). *Chosen here.* Trained only when the
  data holds both labels (confirmed anomalies opted in): on normal examples alone the gate
  would learn to follow whichever stream is lower and stop seeing anomalies (measured).
- DPC is trained only with ``dpc_min_windows`` windows of normal segments; otherwise the
  parent's forecaster is kept.
- ``anchor`` — ``sum ||theta - theta_parent||^2`` over the heads (L2-SP): what no example
  asks to change stays where the parent (zero-shot at first) had it. *Chosen here.*
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vigil.model.anomaly import AnomalyModel
from vigil.model.dpc import cpc_loss
from vigil.model.gate import build_context
from vigil.model.prompts import PromptSet
from vigil.model.temporal import binary_alignment_loss, contrastive_text_loss

from .config import TrainConfig


def _hinge_bce(s: torch.Tensor, y: torch.Tensor, margin: float) -> torch.Tensor:
    """Per element, a squared hinge in probability space: a normal (y=0) element pays
    ``(s - margin)^2`` while ``s > margin``, an abnormal one ``(1 - margin - s)^2`` while under
    ``1 - margin``. Its gradient fades to zero at the margin, so scores settle there instead
    of overshooting to 0 (a log loss, ``1/(1-s)`` near s = 1, drove them far past it)."""
    neg = (s - margin).clamp(min=0).pow(2)
    pos = ((1 - margin) - s).clamp(min=0).pow(2)
    return torch.where(y > 0.5, pos, neg)


class HeadsObjective(nn.Module):
    """Wraps the model so that DDP sees one ``forward`` returning the loss terms."""

    def __init__(self, model: AnomalyModel, ps: PromptSet, cfg: TrainConfig, anchor: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.model, self.ps, self.cfg = model, ps, cfg
        self.anchor = {k: v.detach().clone() for k, v in anchor.items()}
        self.register_buffer("mask", torch.as_tensor(ps.abnormal_mask, dtype=torch.float32), persistent=False)

    def trainable(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def forward(
        self, frame: torch.Tensor, seg: torch.Tensor, glob: torch.Tensor, y: torch.Tensor, w: torch.Tensor,
        s_pred: torch.Tensor, windows: torch.Tensor, verified: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        m, cfg, lw = self.model, self.cfg, self.cfg.losses
        text = {"text": m.text_features(self.ps), "scene": m._plain_text(self.ps.scene).detach()}
        probs = m.semantic_probs(frame, seg, self.ps, glob, text)  # [B, T, K]
        s = (probs * self.mask).sum(-1)  # [B, T]
        wn = w / w.sum().clamp(min=1e-6)
        out: dict[str, torch.Tensor] = {}
        per_frame = _hinge_bce(s, y[:, None].expand_as(s), cfg.margin).mean(1)
        per_segment = _hinge_bce(s.mean(1), y, cfg.margin)
        out["frame"] = ((verified * per_frame + (1 - verified) * per_segment) * wn).sum()
        frame_t = m.temporal(frame) if m.config.mode == "video" else frame
        out["vid"] = binary_alignment_loss(frame_t, text["text"], self.mask, y) + 0.1 * contrastive_text_loss(
            text["text"], self.mask
        )
        has = torch.isfinite(s_pred)
        if has.any() and any(p.requires_grad for p in m.fusion.parameters()):
            g = m.fusion(build_context(seg, text["scene"], glob))  # [B]
            fused = g * s.mean(1) + (1 - g) * torch.nan_to_num(s_pred)
            gl = _hinge_bce(fused, y, cfg.margin) * wn * has
            out["gate"] = gl.sum() / (wn * has).sum().clamp(min=1e-6)
        else:
            out["gate"] = s.sum() * 0.0
        fc = m.head_modules().get("dpc")
        if fc is not None and windows.shape[0] > 1 and any(p.requires_grad for p in fc.parameters()):
            h = fc.horizon
            out["cpc"] = cpc_loss(fc(windows[:, :-h]), windows[:, -h:])
        else:
            out["cpc"] = s.sum() * 0.0
        reg = s.sum() * 0.0
        for n, p in self.trainable().items():
            a = self.anchor.get(n)
            if a is not None and a.shape == p.shape:
                reg = reg + (p - a.to(p)).pow(2).sum()
        out["anchor"] = reg
        out["loss"] = (lw.frame * out["frame"] + lw.vid * out["vid"] + lw.gate * out["gate"] + lw.cpc * out["cpc"]
                       + lw.anchor * out["anchor"])
        return out
