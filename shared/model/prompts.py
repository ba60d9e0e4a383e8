"""Prompt bank: per context (site or camera group) a set of normal and abnormal descriptions.

A :class:`PromptSet` is data (YAML in ``shared/prompts/<name>.yaml`` or a user's own file or
API payload). Its :attr:`PromptSet.version` is a content hash, so anything derived from it
(text embeddings, per-description heads) is keyed by content, never by name: editing one
description gives a new version and invalidates the cache.

The ``default`` set follows the ICPRAM 2024 tables (category descriptions of the UCF-Crime
classes plus the lists of everyday normal activities and short abnormal actions).

:class:`TextEmbeddingCache` holds encoded prompt sets keyed by
``(model version, prompt-set version)``.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PROMPTS_DIR = Path(__file__).resolve().parent.parent / "prompts"


class PromptSetError(ValueError):
    """A prompt set is missing or malformed; the message says which and why."""


class PromptSet(BaseModel):
    """Normal and abnormal descriptions of one context (site or camera group)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=64, description="identifier of the set")
    context: str = Field("default", description="site or camera group the set is meant for")
    normal: list[str] = Field(min_length=1, description="descriptions of normal activity")
    abnormal: list[str] = Field(min_length=1, description="descriptions of anomalies")
    scene: list[str] = Field(default_factory=list, description="scene descriptions used as context cues")
    # The papers score the bare description ("fighting"); a template such as
    # "a surveillance video frame of {}" is optional and part of the version hash.
    template: str = Field("{}", description="text template; {} is replaced by the description")

    @field_validator("normal", "abnormal", "scene")
    @classmethod
    def _clean(cls, v: list[str]) -> list[str]:
        out = [" ".join(s.split()) for s in v]
        if any(not s for s in out):
            raise ValueError("descriptions must not be empty")
        if len(set(out)) != len(out):
            dup = sorted({s for s in out if out.count(s) > 1})
            raise ValueError(f"duplicate descriptions: {dup}")
        return out

    @field_validator("template")
    @classmethod
    def _template(cls, v: str) -> str:
        if v.count("{}") != 1:
            raise ValueError("template must contain exactly one {} placeholder")
        return v

    @model_validator(mode="after")
    def _disjoint(self) -> PromptSet:
        both = set(self.normal) & set(self.abnormal)
        if both:
            raise ValueError(f"descriptions both normal and abnormal: {sorted(both)}")
        return self

    # -- derived
    @property
    def descriptions(self) -> list[str]:
        """Normal descriptions first, then abnormal: the column order of every score."""
        return [*self.normal, *self.abnormal]

    @property
    def abnormal_mask(self) -> np.ndarray:
        return np.array([False] * len(self.normal) + [True] * len(self.abnormal))

    @property
    def texts(self) -> list[str]:
        return [self.template.format(d) for d in self.descriptions]

    @property
    def version(self) -> str:
        """Content hash: changes whenever a description, the template or the scene list changes."""
        payload = json.dumps(
            {"normal": self.normal, "abnormal": self.abnormal, "scene": self.scene, "template": self.template},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def load_prompt_set(name: str, directory: str | Path | None = None) -> PromptSet:
    """The set ``name`` from ``directory`` (default ``shared/prompts``) or a path to a YAML file."""
    p = Path(name)
    if p.suffix in {".yaml", ".yml"} and p.is_file():
        path = p
    else:
        path = Path(directory or PROMPTS_DIR) / f"{name}.yaml"
    if not path.is_file():
        raise PromptSetError(f"no prompt set {name!r} (looked for {path}); known: {list_prompt_sets(directory)}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PromptSetError(f"prompt set file {path} is not valid YAML: {exc}") from exc
    data.setdefault("name", path.stem)
    try:
        return PromptSet(**data)
    except Exception as exc:
        raise PromptSetError(f"prompt set file {path} is invalid: {exc}") from exc


def list_prompt_sets(directory: str | Path | None = None) -> list[str]:
    return sorted(p.stem for p in Path(directory or PROMPTS_DIR).glob("*.yaml"))


def dump_prompt_set(ps: PromptSet) -> str:
    return yaml.safe_dump(ps.model_dump(), sort_keys=False, allow_unicode=True)


class TextEmbeddingCache:
    """Encoded prompt sets keyed by ``(model version, prompt-set version)``; LRU bounded.

    ``encode`` is the function that turns a prompt set into its embeddings (any object);
    it runs only on a miss. ``misses`` counts how often it ran (tests and metrics read it).
    """

    def __init__(self, max_entries: int = 64) -> None:
        self.max_entries = max_entries
        self._data: OrderedDict[tuple[str, str], object] = OrderedDict()
        self.misses = 0

    def get(self, model_version: str, ps: PromptSet, encode: Callable[[PromptSet], object]) -> object:
        key = (model_version, ps.version)
        if key in self._data:
            self._data.move_to_end(key)
            return self._data[key]
        self.misses += 1
        value = encode(ps)
        self._data[key] = value
        while len(self._data) > self.max_entries:
            self._data.popitem(last=False)
        return value

    def clear(self) -> None:
        self._data.clear()

    def __len__(self) -> int:
        return len(self._data)
