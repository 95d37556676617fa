"""Pruning profile YAML (docs/design.md §7): which heads to ablate, how, and why they were chosen.

Torch-free: the exporter and any tool can read and validate profiles without a model. Unknown
fields are rejected; heads are checked against a model spec and ablation means by hash on use.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    Field,
    SerializerFunctionWrapHandler,
    ValidationError,
    field_validator,
    model_serializer,
)

from ccsclip import __version__
from ccsclip.errors import IntegrityError, InvalidInputError, NotFoundError
from ccsclip.fileio import atomic_write_text, sha256_bytes, sha256_file
from ccsclip.headref import Head, head_label
from ccsclip.strict import Strict

SCHEMA = "ccsclip/profile/v1"
NAME_RE = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class ModelIdentity(Strict):
    """Which model an artefact belongs to (profiles, ccs.json): its weights by hash."""

    name: str
    pretrained: str | None = None
    weights_sha256: str = Field(min_length=64, max_length=64)


class ProfileAblation(Strict):
    mode: Literal["zero", "mean"]
    means: str | None = None  # path relative to the profile file
    means_sha256: str | None = None


class ProfileHead(Strict):
    layer: int = Field(ge=0)
    head: int = Field(ge=0)
    ccs: int | None = None
    concept: str | None = None

    @property
    def name(self) -> str:
        return head_label(self.layer, self.head)


class SearchProbe(Strict):
    name: str
    kind: Literal["accuracy", "bias"]
    content_sha256: str = Field(min_length=64, max_length=64)


class SearchSelection(Strict):
    """How a searched profile was found (`ccsclip search`), so it can be reproduced and judged:
    the objective and constraint, the probes by hash, the split, and its validation figures."""

    method: str
    objective: dict[str, Any]
    constraint: dict[str, Any]
    probes: list[SearchProbe]
    split: dict[str, Any]
    validation: dict[str, Any] | None = None


class ProfileSelection(Strict):
    arm: str
    seed: int | None = None
    ccs_table: str | None = None
    ccs_table_sha256: str | None = None
    thresholds: dict[str, int] | None = None
    search: SearchSelection | None = None

    @model_serializer(mode="wrap")
    def _omit_empty_search(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Profiles of the other arms serialise (and hash) exactly as before `search` existed."""
        data = handler(self)
        if data.get("search") is None:
            data.pop("search", None)
        return data


class Profile(Strict):
    schema_: Literal["ccsclip/profile/v1"] = Field(SCHEMA, alias="schema")
    name: str = Field(pattern=NAME_RE)
    model: ModelIdentity
    ablation: ProfileAblation
    heads: list[ProfileHead]
    selection: ProfileSelection
    created_by: str = f"ccsclip {__version__}"

    @field_validator("heads")
    @classmethod
    def _unique_heads(cls, heads: list[ProfileHead]) -> list[ProfileHead]:
        names = [h.name for h in heads]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"heads listed twice: {', '.join(dupes)}")
        return sorted(heads, key=lambda h: (h.layer, h.head))

    def head_pairs(self) -> list[Head]:
        return [Head(h.layer, h.head) for h in self.heads]

    def check_against(self, layers: int, heads: int, weights_sha256: str | None = None) -> None:
        """Raise if a head does not exist in the model, or the profile is for other weights."""
        bad = [h.name for h in self.heads if h.layer >= layers or h.head >= heads]
        if bad:
            raise InvalidInputError(
                f"profile {self.name!r} names heads that do not exist: {', '.join(bad)} "
                f"(the model has layers 0..{layers - 1}, heads 0..{heads - 1})"
            )
        if weights_sha256 and weights_sha256 != self.model.weights_sha256:
            raise IntegrityError(
                f"profile {self.name!r} was made for {self.model.name!r} with other weights "
                f"({self.model.weights_sha256[:12]}…): make profiles for this model"
            )

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", by_alias=True), sort_keys=False)

    @property
    def sha256(self) -> str:
        return sha256_bytes(self.to_yaml().encode())


def parse_head_names(names: list[str]) -> list[Head]:
    """'L3H7' -> Head(3, 7); bad input as the CLI's kind of error (exit 2)."""
    try:
        return [Head.parse(name) for name in names]
    except ValueError as exc:
        raise InvalidInputError(f"bad head name: {exc}") from None


def manual_profile(
    spec,
    name: str,
    heads: list[Head],
    mode: Literal["zero", "mean"] = "zero",
    means: str | None = None,
    means_sha256: str | None = None,
) -> Profile:
    """A hand-written profile for a model spec (the exporter does not need a CCS table).

    `means` is the ablation means file relative to where the profile will be written.
    """
    return Profile(
        name=name,
        model=ModelIdentity(
            name=spec.name, pretrained=spec.pretrained, weights_sha256=spec.weights_sha256
        ),
        ablation=ProfileAblation(mode=mode, means=means, means_sha256=means_sha256),
        heads=[ProfileHead(layer=layer, head=head) for layer, head in heads],
        selection=ProfileSelection(arm="baseline" if not heads else "manual"),
    )


def write_profile(path: str | Path, profile: Profile) -> Path:
    path = Path(path)
    atomic_write_text(path, profile.to_yaml())
    return path


def load_profile(path: str | Path) -> Profile:
    path = Path(path)
    if not path.is_file():
        raise NotFoundError(f"profile {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text("utf-8"))
        return Profile.model_validate(data)
    except yaml.YAMLError as exc:
        raise InvalidInputError(f"{path}: not valid YAML: {exc}") from exc
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise InvalidInputError(f"{path}: not a valid profile ({SCHEMA}): {problems}") from exc


def means_path(profile: Profile, profile_path: str | Path) -> Path | None:
    """The ablation means file of a mean-mode profile, hash-checked."""
    if profile.ablation.mode != "mean" or not profile.heads:
        return None
    if not profile.ablation.means or not profile.ablation.means_sha256:
        raise InvalidInputError(f"profile {profile.name!r} is in mean mode but names no means file")
    path = (Path(profile_path).parent / profile.ablation.means).resolve()
    if not path.is_file():
        raise NotFoundError(f"ablation means {str(path)!r} of profile {profile.name!r} are missing")
    if sha256_file(path) != profile.ablation.means_sha256:
        raise IntegrityError(
            f"ablation means {str(path)!r} do not match the sha256 in profile {profile.name!r}: "
            "the file was changed; rerun `ccsclip rank` or `ccsclip profiles`"
        )
    return path
