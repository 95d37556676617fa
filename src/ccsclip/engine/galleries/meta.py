"""gallery.json of a gallery: which backend, its settings, and the embedding space it holds.

A gallery is bound to a model (weights sha256), a profile and the sha256 of that profile's ONNX
file (docs/design.md §8): an image tower pruned differently embeds into another space, so its
vectors
must never be mixed in. `uid` tells a gallery apart from a later one created under the same name
after a drop. The model is open for new optional fields (a stream may add e.g. the attributes
its searches are watched for); `extra="forbid"` keeps typos out, so add fields here.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ccsclip.engine.embedding_model import EmbeddingModel
from ccsclip.engine.galleries.base import NAME_PATTERN
from ccsclip.errors import IntegrityError, InvalidInputError, NotFoundError

LIVE_SCHEMA = "ccsclip/live-gallery/v1"
Backend = Literal["exact", "hnsw", "milvus"]
BACKENDS: tuple[str, ...] = ("exact", "hnsw", "milvus")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class GalleryModel(_Strict):
    name: str
    weights_sha256: str


class GalleryProfile(_Strict):
    name: str
    sha256: str  # of the profile's image-<profile>.onnx


class LiveGalleryMeta(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    schema_: Literal["ccsclip/live-gallery/v1"] = Field(LIVE_SCHEMA, alias="schema")
    name: str = Field(pattern=NAME_PATTERN)
    uid: str
    created_at: float
    backend: Backend
    params: dict[str, Any] = Field(default_factory=dict)
    model: GalleryModel
    profile: GalleryProfile
    embed_dim: int = Field(ge=1)
    bundle_manifest_sha256: str
    # metadata keys whose distribution in search results is measured (service/live_bias.py)
    bias_attributes: list[str] = Field(default_factory=list)

    def dump(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, mode="json")


def new_meta(
    engine: EmbeddingModel,
    name: str,
    profile: str | None,
    backend: str,
    params: dict[str, Any],
    bias_attributes: list[str] | None = None,
) -> LiveGalleryMeta:
    """The gallery.json of a new gallery, bound to the engine's model and `profile`."""
    if backend not in BACKENDS:
        raise InvalidInputError(f"backend: {backend!r} is not one of {list(BACKENDS)}")
    resolved = engine.resolve_profile(profile)
    model = engine.manifest.model
    return LiveGalleryMeta(
        name=name,
        uid=uuid.uuid4().hex,
        created_at=time.time(),
        backend=backend,  # type: ignore[arg-type]
        params=params,
        model=GalleryModel(name=model.name, weights_sha256=model.weights_sha256),
        profile=GalleryProfile(name=resolved, sha256=engine.profile_entry(resolved).sha256),
        embed_dim=engine.embed_dim,
        bundle_manifest_sha256=engine.manifest_sha256,
        bias_attributes=list(bias_attributes or []),
    )


def check_binding(meta: LiveGalleryMeta, engine: EmbeddingModel) -> None:
    """The engine serves this gallery's model and profile (same ONNX file), or it cannot be used."""
    model = engine.manifest.model
    if meta.model.weights_sha256 != model.weights_sha256 or meta.embed_dim != engine.embed_dim:
        raise IntegrityError(
            f"gallery {meta.name!r} holds embeddings of model {meta.model.name!r} (weights "
            f"{meta.model.weights_sha256[:12]}…), not the served {model.name!r}; rebuild it"
        )
    try:
        entry = engine.profile_entry(meta.profile.name)
        engine.resolve_profile(meta.profile.name)
    except NotFoundError as exc:
        raise NotFoundError(
            f"gallery {meta.name!r} was built with profile {meta.profile.name!r}, which is not "
            f"served: {exc}"
        ) from exc
    if entry.sha256 != meta.profile.sha256:
        raise IntegrityError(
            f"gallery {meta.name!r} was built with another file for profile "
            f"{meta.profile.name!r} (onnx {meta.profile.sha256[:12]}…, served "
            f"{entry.sha256[:12]}…); its embeddings are not comparable, rebuild it"
        )
