"""The probes of a search, loaded once: images, fixed text embeddings, labels, split indices.

Checks what a search needs beyond a valid probe folder, with errors that say how to fix the call:
the probe's kind and attribute (`ccsclip.profiles.probe_checks`), a K larger than a part of the
split.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

from ccsclip.errors import InvalidInputError
from ccsclip.models import LoadedModel
from ccsclip.probeset import AccuracyProbe, BiasProbe, load_probe
from ccsclip.profiles.probe_checks import check_accuracy_spec, check_bias_spec
from ccsclip.profiles.probe_eval import load_image_tensor
from ccsclip.profiles.search.batch_metrics import accuracy, max_skew
from ccsclip.profiles.split import Split
from ccsclip.zeroshot import class_embeddings

Part = Literal["search", "validation", "all"]


class ProbeIdentity(BaseModel):
    """Which probe a figure comes from (content hash) and how many images each part holds."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: Literal["accuracy", "bias"]
    path: str
    content_sha256: str
    images: dict[str, int]  # part -> number of images

    def to_dict(self) -> dict[str, object]:
        return self.model_dump()


@dataclass
class ProbeData:
    """One probe ready for scoring. `targets` are class labels (accuracy) or attribute value
    codes (bias); `texts` are class or query embeddings (the text tower is never pruned)."""

    name: str
    kind: Literal["accuracy", "bias"]
    path: str
    content_sha256: str
    images: torch.Tensor
    texts: torch.Tensor
    targets: torch.Tensor
    parts: dict[str, torch.Tensor]
    attribute: str | None = None
    values: tuple[str, ...] = ()
    ks: tuple[int, ...] = ()
    query_names: tuple[str, ...] = ()

    def rows(self, part: Part) -> torch.Tensor:
        return self.parts[part]

    def accuracy(self, embeddings: torch.Tensor, part: Part) -> float:
        """Top-1 accuracy of embeddings [N, E] (all images) on a part."""
        rows = self.rows(part)
        return float(accuracy(embeddings[rows], self.texts, self.targets[rows]))

    def skews(self, embeddings: torch.Tensor, part: Part, k: int) -> torch.Tensor:
        """MaxSkew@k per query [Q] on a part."""
        rows = self.rows(part)
        scores = self.texts @ embeddings[rows].T
        return max_skew(scores, self.targets[rows], len(self.values), k)

    def identity(self) -> ProbeIdentity:
        return ProbeIdentity(
            name=self.name,
            kind=self.kind,
            path=self.path,
            content_sha256=self.content_sha256,
            images={part: int(len(rows)) for part, rows in self.parts.items()},
        )


def _parts(probe, split: Split | None, minimum: int) -> dict[str, torch.Tensor]:
    items = probe.samples if isinstance(probe, AccuracyProbe) else probe.rows
    everything = torch.arange(len(items))
    if split is None:
        if len(items) < minimum:
            raise InvalidInputError(
                f"probe {probe.name!r} has {len(items)} images, needs {minimum}"
            )
        return {"all": everything}
    search, validation = split.probe_parts(probe, minimum)
    return {
        "search": torch.from_numpy(search),
        "validation": torch.from_numpy(validation),
        "all": everything,
    }


def load_accuracy_data(
    loaded: LoadedModel, directory: str | Path, split: Split | None
) -> ProbeData:
    probe = load_probe(directory)
    check_accuracy_spec(directory, probe.spec)
    texts = class_embeddings(
        loaded.model, loaded.tokenizer, probe.class_names, probe.spec.templates
    )
    return ProbeData(
        name=probe.name,
        kind="accuracy",
        path=str(directory),
        content_sha256=probe.spec.content_sha256,
        images=load_image_tensor([p for p, _ in probe.samples], loaded.preprocess),
        texts=texts,
        targets=torch.tensor([label for _, label in probe.samples]),
        parts=_parts(probe, split, 1),
    )


def load_bias_data(
    loaded: LoadedModel,
    directory: str | Path,
    split: Split | None,
    attribute: str,
    k: int,
) -> ProbeData:
    """A bias probe for `attribute` and objective K (reported with the probe's K = 10 and 20
    beside it); every one of them must fit in each part of the split."""
    probe = load_probe(directory)
    check_bias_spec(directory, probe.spec, attribute)
    column = [attrs[attribute] for _, attrs in probe.rows]
    values = tuple(sorted(set(column)))
    lookup = {value: i for i, value in enumerate(values)}
    parts = _parts(probe, split, 1)
    ks = check_k_fits(probe, parts, k)
    queries = probe.spec.queries
    texts = class_embeddings(
        loaded.model, loaded.tokenizer, [q.text for q in queries], probe.spec.templates
    )
    return ProbeData(
        name=probe.name,
        kind="bias",
        path=str(directory),
        content_sha256=probe.spec.content_sha256,
        images=load_image_tensor([p for p, _ in probe.rows], loaded.preprocess),
        texts=texts,
        targets=torch.tensor(np.array([lookup[v] for v in column])),
        parts=parts,
        attribute=attribute,
        values=values,
        ks=tuple(ks),
        query_names=tuple(q.name for q in queries),
    )


def check_k_fits(probe: BiasProbe, parts: dict[str, torch.Tensor], k: int) -> list[int]:
    """The reported Ks (objective K with the probe's 10 and 20); each must fit in every part."""
    ks = report_ks(k, probe.spec.k)
    smallest = min(len(rows) for rows in parts.values())
    too_big = [value for value in ks if value > smallest]
    if too_big:
        raise InvalidInputError(
            f"K={too_big} is larger than the {smallest} images of the smallest part of bias probe "
            f"{probe.name!r}: choose --k at most {smallest} or use a larger probe "
            "(its K = 10 and 20 are reported beside the objective's K)"
        )
    return ks


def probe_parts(probe: BiasProbe | AccuracyProbe, split: Split | None) -> dict[str, torch.Tensor]:
    return _parts(probe, split, 1)


def report_ks(objective_k: int, probe_ks: Sequence[int]) -> list[int]:
    """The objective's K with the probe's 10 and 20 beside it (when the probe lists them)."""
    return sorted({objective_k, *(k for k in (10, 20) if k in probe_ks)})
