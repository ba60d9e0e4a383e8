"""Save and load every trained head of an :class:`~vigil.model.anomaly.AnomalyModel`.

A heads file (``torch.save``, tensors only, loaded with ``weights_only=True``) holds:
the format tag, the backbone version it was trained on, the embedding size, the model's
:class:`~vigil.model.anomaly.AnomalyConfig`, the descriptions the per-description heads
(frame scorer ``A_k``/``b_k``, class-specific CoOp contexts) were bound to, and one state
dict per head: ``video`` (temporal attention layers + time embedding; never the CLIP tower),
``scorer``, ``temporal``, ``text_gate``, ``fusion``, and ``coop``/``dpc`` when present.
The model's version carries the file's digest, so text embedding caches keyed by model
version invalidate when heads change.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from vigil.model.anomaly import AnomalyModel
    from vigil.model.backbones import Backbone
    from vigil.model.prompts import PromptSet

FORMAT = "vigil-heads/1"


class HeadsMismatch(ValueError):
    """A heads file does not fit the backbone or is not a heads file."""


def _module_state(name: str, mod: torch.nn.Module) -> dict[str, torch.Tensor]:
    if name == "video":
        sd = mod.head_state_dict()  # type: ignore[operator]
    else:
        sd = mod.state_dict()
    return {k: v.detach().cpu().clone() for k, v in sd.items()}


def heads_payload(model: AnomalyModel) -> dict[str, Any]:
    dpc = model.head_modules().get("dpc")
    cfg = model.config.model_dump(mode="json")
    if dpc is not None:
        cfg["dpc"] = {"hidden": dpc.hidden, "context": dpc.context, "horizon": dpc.horizon}
    return {
        "format": FORMAT,
        "backbone": model.backbone.version,
        "embed_dim": model.dim,
        "config": cfg,
        "scorer_descriptions": list(model.scorer.descriptions),
        "coop_descriptions": list(model.coop.descriptions) if model.coop is not None else [],
        "state": {name: _module_state(name, mod) for name, mod in model.head_modules().items()},
    }


def save_heads(model: AnomalyModel, path: str | Path) -> str:
    """Write every head of ``model`` to ``path``; returns the file's digest (12 hex)."""
    buf = io.BytesIO()
    torch.save(heads_payload(model), buf)
    data = buf.getvalue()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return hashlib.sha256(data).hexdigest()[:12]


def read_heads(path: str | Path) -> tuple[dict[str, Any], str]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"heads file {path} does not exist")
    data = path.read_bytes()
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise HeadsMismatch(f"{path} is not a readable heads file: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise HeadsMismatch(f"{path} is not a {FORMAT} file")
    return payload, hashlib.sha256(data).hexdigest()[:12]


def load_heads(
    path: str | Path,
    backbone: Backbone,
    *,
    streams: tuple[str, ...] | None = None,
    prompt_set: PromptSet | None = None,
    strict_backbone: bool = True,
    **overrides: Any,
) -> AnomalyModel:
    """An :class:`AnomalyModel` on ``backbone`` with the heads of ``path``.

    Heads trained on another backbone are refused (``strict_backbone``): their weights
    only mean something in the embedding space they were trained in.
    """
    from vigil.model.anomaly import AnomalyConfig, AnomalyModel

    payload, digest = read_heads(path)
    if payload["embed_dim"] != backbone.embed_dim:
        raise HeadsMismatch(
            f"heads {path} are for {payload['embed_dim']}-d embeddings, backbone {backbone.version} gives {backbone.embed_dim}"
        )
    if strict_backbone and payload["backbone"] != backbone.version:
        raise HeadsMismatch(
            f"heads {path} were trained on backbone {payload['backbone']}, not {backbone.version}; "
            f"use the matching backbone or pass strict_backbone=False"
        )
    cfg = dict(payload["config"])
    if streams is not None:
        cfg["streams"] = tuple(streams)
    cfg.update(overrides)
    model = AnomalyModel(backbone, AnomalyConfig(**cfg), prompt_set)
    model.scorer.bind(payload["scorer_descriptions"])
    if model.coop is not None:
        model.coop.bind(payload["coop_descriptions"])
    mods = model.head_modules()
    state = payload["state"]
    if set(state) - set(mods):
        raise HeadsMismatch(f"heads {path} carry {sorted(set(state) - set(mods))}, which this config does not build")
    for name, mod in mods.items():
        if name not in state:
            continue  # e.g. a file without a trained DPC: that head stays at its initial value
        if name == "video":
            mod.load_head_state_dict(state[name])  # type: ignore[operator]
        else:
            mod.load_state_dict(state[name])
    model.heads_digest = digest
    model._cache.clear()
    return model.to(backbone.model.logit_scale.device).eval()
