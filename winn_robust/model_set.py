"""The models of one evaluation, loaded, named and checked comparable: readable unique names
(CSV-header safe), the same model never twice, every checkpoint trained on the same data.
The first model is the baseline every other one is compared with."""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from winn_robust.errors import UserError
from winn_robust.model_sources import BEST, LoadedModel, Normalisation, load_model, split_spec

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+()-]")


def safe_name(text: Any) -> str:
    """Characters that would break CSV column headers (or file names) become '_'."""
    return _UNSAFE.sub("_", str(text)) or "model"


def unique(names: Sequence[str]) -> list[str]:
    """'-2', '-3', ... appended to repeats."""
    seen: Counter[str] = Counter()
    out = []
    for name in names:
        seen[name] += 1
        out.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return out


def model_names(kinds: Sequence[tuple[str, str]], paths: list[Path]) -> list[str]:
    """Readable, unique names: the method ('baseline', 'winn'), plus '-<arch>' when the
    architectures differ, plus '-<file stem>' where that still collides (e.g. two seeds).
    Characters that would break CSV column headers become '_'."""
    archs = {arch for _, arch in kinds}
    names = [safe_name(method) + (f"-{safe_name(arch)}" if len(archs) > 1 else "") for method, arch in kinds]
    counts = Counter(names)
    names = [f"{n}-{safe_name(p.stem if p.stem != 'best' else p.parent.name)}" if counts[n] > 1 else n
             for n, p in zip(names, paths)]
    return unique(names)


def check_comparable(loaded: Sequence[LoadedModel]) -> None:
    """Every checkpoint must share dataset, image shape and class count with the first one."""
    ours = [m for m in loaded if m.kind == "checkpoint"]
    if not ours:
        return
    ref = ours[0].checkpoint.data_signature
    for other in ours[1:]:
        sig = other.checkpoint.data_signature
        if sig != ref:
            raise UserError(
                f"checkpoints {ours[0].path} (dataset {ref[0]}, image shape {list(ref[1])}, {ref[2]} classes) and "
                f"{other.path} (dataset {sig[0]}, image shape {list(sig[1])}, {sig[2]} classes) were trained on different "
                "data; compare only models trained on the same dataset")


def model_file(source: str) -> str:
    """The file a NAME=SPEC source reads (a run folder means its best.pt), to catch a model given
    twice; NAME=SPEC is split by the rule `load_model` uses (`split_spec`)."""
    spec = Path(split_spec(source)[1])
    if spec.is_dir() and (spec / BEST).is_file():
        spec = spec / BEST
    return str(spec.resolve())


def loaded_names(loaded: Sequence[LoadedModel]) -> list[str]:
    """The NAME the user gave, else `model_names` for our checkpoints, else the file's stem. A
    NAME given to two models is refused (it would silently become NAME-2)."""
    given = [safe_name(m.name) for m in loaded if m.name is not None]
    twice = next((n for n in given if given.count(n) > 1), None)
    if twice is not None:
        raise UserError(f"the name {twice!r} is given to two models (NAME=SPEC); give each model its own name")
    ours = [m for m in loaded if m.kind == "checkpoint" and m.name is None]
    auto = iter(model_names([(m.checkpoint.method, m.checkpoint.arch) for m in ours],
                            [m.path for m in ours if m.path is not None])) if ours else iter(())
    names = []
    for m in loaded:
        if m.name is not None:
            names.append(safe_name(m.name))
        elif m.kind == "checkpoint":
            names.append(next(auto))
        else:
            names.append(safe_name(Path(m.source.split(":")[0]).stem))
    return unique(names)


@dataclass(frozen=True)
class ModelSet:
    """Loaded models with their report names, in the user's order (the first is the baseline)."""
    names: tuple[str, ...]
    models: tuple[LoadedModel, ...]

    @staticmethod
    def refuse_repeated(sources: Sequence[str]) -> None:
        """Before anything is loaded or written: each model once."""
        resolved = [model_file(s) for s in sources]
        repeated = [s for s, r in zip(sources, resolved) if resolved.count(r) > 1]
        if repeated:
            raise UserError(f"the same model is given twice ({repeated[0]}); give each model once")

    @classmethod
    def load(cls, sources: Sequence[str], device: torch.device, normalise: Normalisation | None = None) -> ModelSet:
        """Load every NAME=SPEC source (`refuse_repeated` first) and check they are comparable;
        `normalise` (--input-mean/--input-std) is applied to external models."""
        loaded = [load_model(s, device, normalise) for s in sources]
        check_comparable(loaded)
        return cls(tuple(loaded_names(loaded)), tuple(loaded))

    @property
    def checkpoints(self) -> list[LoadedModel]:
        """Our own checkpoints among the models (they know their data)."""
        return [m for m in self.models if m.kind == "checkpoint"]

    @property
    def networks(self) -> dict[str, torch.nn.Module]:
        return {name: m.model for name, m in zip(self.names, self.models)}

    @property
    def signature(self) -> tuple[str, tuple[int, ...], int] | None:
        """The checkpoints' (dataset, image shape, class count); None without any checkpoint."""
        ours = self.checkpoints
        return ours[0].checkpoint.data_signature if ours else None

    @property
    def notes(self) -> list[str]:
        """What loading found worth saying, and a warning when the baseline is itself a method."""
        notes = [note for m in self.models for note in m.notes]
        first = self.models[0] if self.models else None
        if first is not None and first.meta is not None and first.meta.method in ("winn", "icn"):
            notes.append(f"warning: the baseline {first.source} is a {first.meta.method} model; "
                         "correction rates and differences compare every model with it")
        return notes

    @property
    def training_seed(self) -> Any:
        """The one training seed of a seed's report (every model a checkpoint of that seed), else None."""
        seeds = {m.meta.seed for m in self.models if m.meta is not None}
        if len(seeds) == 1 and None not in seeds and len(self.checkpoints) == len(self.models):
            return seeds.pop()
        return None
