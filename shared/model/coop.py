"""CoOp learnable prompt context (Zhou et al., "Learning to Prompt for Vision-Language Models").

Two layouts, selectable (``CoOpConfig``):

- ``class_specific=True, position="end"`` (the issue's default): each description has its own
  16 context vectors, and the description comes after them: ``[SOS][ctx_1..ctx_16][description][EOS]``.
- ``class_specific=False, position="middle"``: one shared context, the description in the
  middle: ``[SOS][ctx_1..ctx_8][description][ctx_9..ctx_16][EOS]``.
(``position="front"`` and the other two combinations also work.)

Where the paper is silent or does not fit this project:

- Context vectors start random, N(0, 0.02) - CoOp's own choice for 16 tokens (word
  initialisation only applies to short contexts).
- CoOp appends "." to the class name; descriptions here are phrases and are used as written.
- A description longer than the text context leaves room for is truncated (CLIP's
  tokenizer truncates the same way); the small configs have a 32-token context.
- Descriptions change at run time. Class-specific contexts are stored per description text;
  a description without a learned context uses the mean of the learned ones.
- The text tower stays frozen; only the context vectors are trainable.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field
from torch import nn


class CoOpConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    n_ctx: int = Field(16, ge=1, le=64, description="learnable context tokens")
    class_specific: bool = Field(True, description="one context per description (CSC) or one shared")
    position: Literal["end", "middle", "front"] = Field(
        "end", description="where the description goes relative to the context: end = [ctx][description]"
    )
    init_std: float = Field(0.02, gt=0)


def _text_parts(clip: Any) -> Any:
    """The module holding token_embedding/positional_embedding/transformer/ln_final/text_projection."""
    return clip.text if hasattr(clip, "text") and hasattr(clip.text, "token_embedding") else clip


def encode_text_embeddings(clip: Any, x: torch.Tensor, eot_idx: torch.Tensor) -> torch.Tensor:
    """CLIP's text tower from token *embeddings* ``[N, L, W]``; pooled at ``eot_idx``; not normalised.

    Mirrors ``open_clip.CLIP.encode_text`` (argmax pooling at the end-of-text token).
    """
    tp = _text_parts(clip)
    cast = tp.transformer.get_cast_dtype()
    x = x.to(cast) + tp.positional_embedding[: x.shape[1]].to(cast)
    mask = tp.attn_mask
    if mask is not None:
        mask = mask[: x.shape[1], : x.shape[1]]
    x = tp.transformer(x, attn_mask=mask)
    x = tp.ln_final(x)
    x = x[torch.arange(x.shape[0], device=x.device), eot_idx]
    proj = tp.text_projection
    if proj is not None:
        x = proj(x) if isinstance(proj, nn.Linear) else x @ proj
    return x


class PromptLearner(nn.Module):
    def __init__(
        self, clip: Any, tokenizer: Any, config: CoOpConfig | None = None, descriptions: list[str] | None = None
    ) -> None:
        super().__init__()
        self.config = config or CoOpConfig()
        tp = _text_parts(clip)
        self._clip = [clip]  # not a submodule: the text tower is frozen and never saved with the head
        for p in tp.parameters():
            p.requires_grad_(False)
        self.tokenizer = tokenizer
        self.width = tp.token_embedding.weight.shape[1]
        self.context_length = tp.positional_embedding.shape[0]
        if self.config.n_ctx + 3 > self.context_length:
            raise ValueError(f"n_ctx={self.config.n_ctx} leaves no room in a {self.context_length}-token context")
        self.descriptions: list[str] = []
        n = self.config.n_ctx
        if self.config.class_specific:
            self.ctx = nn.Parameter(torch.empty(0, n, self.width))
        else:
            self.ctx = nn.Parameter(torch.randn(n, self.width) * self.config.init_std)
        if descriptions:
            self.bind(descriptions)

    @property
    def clip(self) -> Any:
        return self._clip[0]

    def bind(self, descriptions: list[str]) -> None:
        """Class-specific contexts for ``descriptions`` (keeps learned ones, new ones random)."""
        if not self.config.class_specific or list(descriptions) == self.descriptions:
            self.descriptions = list(descriptions)
            return
        old = {d: i for i, d in enumerate(self.descriptions)}
        new = torch.randn(len(descriptions), self.config.n_ctx, self.width) * self.config.init_std
        with torch.no_grad():
            for j, d in enumerate(descriptions):
                if d in old:
                    new[j] = self.ctx[old[d]]
        self.descriptions = list(descriptions)
        self.ctx = nn.Parameter(new.to(self.ctx.device), requires_grad=self.ctx.requires_grad)

    def _contexts(self, descriptions: list[str]) -> torch.Tensor:
        """``[K, n_ctx, W]``."""
        if not self.config.class_specific:
            return self.ctx.unsqueeze(0).expand(len(descriptions), -1, -1)
        if list(descriptions) == self.descriptions:
            return self.ctx
        idx = {d: i for i, d in enumerate(self.descriptions)}
        fallback = self.ctx.mean(dim=0) if len(self.descriptions) else torch.zeros_like(self.ctx[0:1]).sum(0)
        return torch.stack([self.ctx[idx[d]] if d in idx else fallback for d in descriptions])

    def _description_tokens(self, texts: list[str]) -> list[torch.Tensor]:
        ids = self.tokenizer(texts)
        out = []
        room = self.context_length - 2 - self.config.n_ctx
        for row in ids:
            eot = int(row.argmax())  # end-of-text has the highest id
            out.append(row[1:eot][:room])
        return out

    def forward(self, texts: list[str], descriptions: list[str] | None = None) -> torch.Tensor:
        """Text embeddings ``[K, D]`` (L2-normalised) for ``texts`` (the descriptions after templating).

        ``descriptions`` (the raw descriptions, default ``texts``) select the class-specific contexts.
        """
        descriptions = list(descriptions if descriptions is not None else texts)
        tp = _text_parts(self.clip)
        emb = tp.token_embedding
        dev = emb.weight.device
        sot_eot = self.tokenizer([""])[0]
        sot, eot = sot_eot[0].item(), sot_eot[1].item()
        ctx = self._contexts(descriptions).to(emb.weight.dtype)
        n = self.config.n_ctx
        half = n // 2
        rows, eots = [], []
        for k, tok in enumerate(self._description_tokens(texts)):
            tok = tok.to(dev)
            e_sot = emb(torch.tensor([sot], device=dev))
            e_eot = emb(torch.tensor([eot], device=dev))
            e_desc = emb(tok)
            c = ctx[k]
            if self.config.position == "end":
                parts = [e_sot, c, e_desc, e_eot]
            elif self.config.position == "front":
                parts = [e_sot, e_desc, c, e_eot]
            else:
                parts = [e_sot, c[:half], e_desc, c[half:], e_eot]
            seq = torch.cat(parts, dim=0)
            eots.append(seq.shape[0] - 1)
            pad = emb(torch.zeros(self.context_length - seq.shape[0], dtype=torch.long, device=dev))
            rows.append(torch.cat([seq, pad], dim=0))
        x = torch.stack(rows)
        feats = encode_text_embeddings(self.clip, x, torch.tensor(eots, device=dev))
        return F.normalize(feats.float(), dim=-1)
