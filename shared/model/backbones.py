"""Backbones as data: one registry, one factory.

A backbone reference is ``NAME`` or ``NAME:WEIGHTS``:

- ``NAME`` is an entry of ``registry.json`` (which names a model and its weights), an
  open_clip model name (``ViT-B-32``) or a config in ``configs/`` (``vigil-micro``).
- ``WEIGHTS`` (overrides the registry's) is an open_clip pretrained tag
  (``laion2b_s34b_b79k``), ``pretrained:TAG``, ``file:PATH`` (a state dict saved by
  ``torch.save``), ``package:FILE`` (shipped in ``shared/model/weights``) or
  ``random[:SEED]``.

:func:`create_backbone` returns the model, its frame preprocessing and its tokenizer
together so they can never be mismatched. Nothing downloads unless ``allow_download``:
a pretrained tag missing from the local cache is an immediate :class:`BackboneUnavailable`
that says how to supply it (instead of a minute of hub retries).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np

HERE = Path(__file__).parent
CONFIG_DIR = HERE / "configs"
WEIGHTS_DIR = HERE / "weights"


class BackboneUnavailable(RuntimeError):
    """The named backbone or its weights cannot be loaded here; the message says what to do."""


@dataclass(frozen=True)
class BackboneSpec:
    name: str  # the reference as the user wrote it
    model: str  # open_clip model name or configs/ name
    weights: str  # random:SEED | pretrained:TAG | file:PATH | package:FILE

    @property
    def kind(self) -> str:
        return self.weights.split(":", 1)[0]

    @property
    def location(self) -> str:
        return self.weights.split(":", 1)[1] if ":" in self.weights else ""


@cache
def registry() -> dict[str, dict[str, str]]:
    data = json.loads((HERE / "registry.json").read_text())
    return {k: v for k, v in data.items() if not k.startswith("_")}


def _normalise_weights(w: str) -> str:
    if w == "random":
        return "random:0"
    if w.split(":", 1)[0] in {"random", "pretrained", "file", "package"}:
        return w
    return f"pretrained:{w}"  # a bare open_clip tag


def parse_reference(ref: str) -> BackboneSpec:
    """``NAME[:WEIGHTS]`` → :class:`BackboneSpec` (the one place weight prefixes are parsed)."""
    if not ref or not ref.strip():
        raise BackboneUnavailable("empty backbone name; set model.backbone, e.g. vigil-micro or ViT-B-32")
    name, _, weights = ref.strip().partition(":")
    entry = registry().get(name)
    model = entry["model"] if entry else name
    if not weights:
        if entry is None:
            weights = "random:0" if _is_local_config(name) else ""
            if not weights:
                raise BackboneUnavailable(
                    f"backbone {ref!r} names no weights; write {name}:<pretrained tag>, {name}:file:/path.pt "
                    f"or {name}:random (known names: {', '.join(sorted(registry()))})"
                )
        else:
            weights = entry["weights"]
    return BackboneSpec(name=ref.strip(), model=model, weights=_normalise_weights(weights))


def _is_local_config(model: str) -> bool:
    return (CONFIG_DIR / f"{model}.json").is_file()


def _open_clip():
    import open_clip  # 6-8 s import: only when a model is really built

    return open_clip


def _check_model_known(model: str) -> None:
    if _is_local_config(model):
        return
    if model not in _open_clip().list_models():
        raise BackboneUnavailable(
            f"unknown backbone model {model!r}: not in shared/model/configs/ nor open_clip.list_models() "
            f"(registry names: {', '.join(sorted(registry()))})"
        )


def _resolve_pretrained_file(model: str, tag: str, allow_download: bool) -> str:
    """Local path of an open_clip pretrained checkpoint, without touching the network unless allowed."""
    open_clip = _open_clip()
    cfg = open_clip.get_pretrained_cfg(model, tag)
    if not cfg:
        tags = [t for m, t in open_clip.list_pretrained() if m == model]
        raise BackboneUnavailable(f"{model} has no pretrained tag {tag!r}; known tags: {tags}")
    if allow_download:
        return open_clip.download_pretrained(cfg)
    hub_id = cfg.get("hf_hub", "")
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo_id = "/".join(hub_id.strip("/").split("/")[:2])
        for fname in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
            hit = try_to_load_from_cache(repo_id, fname)
            if isinstance(hit, str) and os.path.exists(hit):
                return hit
    url = cfg.get("url", "")
    if url:
        cached = Path(os.environ.get("OPEN_CLIP_CACHE", Path.home() / ".cache" / "clip")) / Path(url).name
        if cached.is_file():
            return str(cached)
    raise BackboneUnavailable(
        f"pretrained weights {model}:{tag} are not in the local cache and downloads are off. "
        f"Either copy a checkpoint here and use model.backbone='{model}:file:/path/to/open_clip_model.safetensors', "
        f"or fill the Hugging Face cache on a machine with internet "
        f"(python -c \"import open_clip; open_clip.create_model_and_transforms('{model}', pretrained='{tag}')\") "
        f"and copy ~/.cache/huggingface here, or set model.allow_download=true where the hub is reachable."
    )


@dataclass
class Backbone:
    """A CLIP model with the preprocessing and tokenizer that belong to it."""

    spec: BackboneSpec
    model: Any  # open_clip.CLIP
    tokenizer: Callable[..., Any]
    image_size: int
    embed_dim: int
    mean: np.ndarray
    std: np.ndarray
    version: str

    def preprocess_frames(self, frames: np.ndarray):
        """uint8 RGB frames ``[T, H, W, 3]`` → float tensor ``[T, 3, S, S]``.

        The whole frame is resized to S×S (no centre crop): in surveillance an anomaly at
        the edge of the view matters as much as one in the middle.
        """
        import torch

        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames [T,H,W,3], got {frames.dtype} {frames.shape}")
        s = self.image_size
        out = np.empty((frames.shape[0], s, s, 3), dtype=np.float32)
        for i, f in enumerate(frames):
            out[i] = cv2.resize(f, (s, s), interpolation=cv2.INTER_AREA)
        out = (out / 255.0 - self.mean) / self.std
        return torch.from_numpy(out.transpose(0, 3, 1, 2).copy())


def create_backbone(ref: str, *, allow_download: bool = False, device: str = "cpu") -> Backbone:
    """Build the backbone named by ``ref`` (see module doc) in eval mode."""
    import torch

    spec = parse_reference(ref)
    _check_model_known(spec.model)
    open_clip = _open_clip()
    if _is_local_config(spec.model):
        open_clip.add_model_config(CONFIG_DIR / f"{spec.model}.json")

    state_dict = None
    digest = spec.location
    if spec.kind == "random":
        seed = int(spec.location or 0)
    else:
        seed = 0
        if spec.kind == "pretrained":
            path = Path(_resolve_pretrained_file(spec.model, spec.location, allow_download))
        elif spec.kind == "package":
            path = WEIGHTS_DIR / spec.location
            if not path.is_file():
                raise BackboneUnavailable(
                    f"backbone {spec.name!r} needs {path}, which this checkout lacks; "
                    f"build it with `vigil train-tiny` or choose model.backbone=vigil-micro"
                )
        else:
            path = Path(spec.location).expanduser()
            if not path.is_file():
                raise BackboneUnavailable(f"checkpoint file {path} for backbone {spec.name!r} does not exist")
        digest, state_dict = _load_state_dict(path)

    torch.manual_seed(seed)  # random weights are reproducible by seed
    model = open_clip.create_model(spec.model, pretrained=None, device=device)
    if state_dict is not None:
        try:
            missing, unexpected = model.load_state_dict(state_dict, strict=False)
        except RuntimeError as exc:  # shape mismatches
            raise BackboneUnavailable(f"checkpoint for {spec.name!r} does not fit model {spec.model}: {exc}") from None
        bad = [k for k in missing if not k.endswith("attn_mask")]
        if bad or unexpected:
            raise BackboneUnavailable(
                f"checkpoint for {spec.name!r} does not fit model {spec.model}: "
                f"missing {bad[:5]}, unexpected {list(unexpected)[:5]}"
            )
    model.eval()
    visual = model.visual
    size = visual.image_size
    image_size = size[0] if isinstance(size, (tuple, list)) else int(size)
    mean = np.asarray(getattr(visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN, dtype=np.float32)
    std = np.asarray(getattr(visual, "image_std", None) or open_clip.OPENAI_DATASET_STD, dtype=np.float32)
    embed_dim = int(model.text_projection.shape[1]) if hasattr(model, "text_projection") else int(visual.output_dim)
    return Backbone(
        spec=spec,
        model=model,
        tokenizer=open_clip.get_tokenizer(spec.model),
        image_size=image_size,
        embed_dim=embed_dim,
        mean=mean,
        std=std,
        version=f"{spec.model}@{spec.kind}:{digest}",
    )


def _load_state_dict(path: Path) -> tuple[str, dict[str, Any]]:
    """(content digest, state dict) from one read of the file."""
    import io

    import torch

    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()[:12]
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load

            sd = load(raw)
        else:
            sd = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated or foreign file
        raise BackboneUnavailable(f"cannot read checkpoint {path}: {exc}") from exc
    if isinstance(sd, dict) and "state_dict" in sd:
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise BackboneUnavailable(f"checkpoint {path} holds no state dict")
    return digest, {k.removeprefix("module."): v for k, v in sd.items()}
