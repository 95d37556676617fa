"""Request and response models of the gallery API (`/v1/galleries/*`, the gallery RPCs).

Shared by both transports like `schemas.py`: strict requests whose errors name the field
(`items[2].id`, `filter.colour`, `k`). Gallery names are checked against a strict pattern (no
'/', '.', spaces) and only ever looked up in the configured store, never used as a path.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ccsclip.engine.galleries.base import (
    KEY_PATTERN,
    MAX_ID_CHARS,
    NAME_PATTERN,
    check_filter,
    check_id,
    check_metadata,
)
from ccsclip.errors import InvalidInputError
from ccsclip.service.schemas import (
    TOO_LARGE,
    ImageData,
    K,
    ModelRef,
    ProfileName,
    Text,
    _count_limit,
    _Request,
    _Response,
)
from ccsclip.service.settings import get_settings

BackendName = Literal["exact", "hnsw", "milvus"]
LiveGalleryName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=NAME_PATTERN)
]


def _checked(check: Any) -> Any:
    """A base.check_* function as a pydantic validator (its message names the key)."""

    def run(value: Any) -> Any:
        try:
            return check(value, "value")
        except InvalidInputError as exc:
            message = str(exc).removeprefix("value: ").removeprefix("value.")
            raise PydanticCustomError("invalid", "{message}", {"message": message}) from None

    return run


def _ef_limit(value: int) -> int:
    limit = get_settings().gallery_max_ef
    if value > limit:
        raise PydanticCustomError(
            TOO_LARGE,
            "{value} is above the limit {limit} (CCSCLIP_GALLERY_MAX_EF)",
            {"value": value, "limit": limit},
        )
    return value


def _ids_limit(value: Any) -> Any:
    limit = get_settings().gallery_max_ids
    if isinstance(value, list) and len(value) > limit:
        raise PydanticCustomError(
            TOO_LARGE,
            "ids has {count} entries; the limit is {limit} (CCSCLIP_GALLERY_MAX_IDS)",
            {"count": len(value), "limit": limit},
        )
    return value


ItemId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=MAX_ID_CHARS),
    AfterValidator(_checked(check_id)),
]
MetadataIn = Annotated[dict[str, Any] | None, AfterValidator(_checked(check_metadata))]
FilterIn = Annotated[dict[str, Any] | None, AfterValidator(_checked(check_filter))]
Ef = Annotated[int, Field(ge=1), AfterValidator(_ef_limit)]


def _unique_ids(ids: list[str], what: str) -> None:
    repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
    if repeated:
        raise PydanticCustomError(
            "duplicate",
            "{what} must be unique within a request; repeated: {repeated}",
            {"what": what, "repeated": repeated[:5]},
        )


# --------------------------------------------------------------------------- requests


BiasAttributes = Annotated[
    list[Annotated[str, StringConstraints(pattern=KEY_PATTERN)]] | None,
    Field(max_length=8),
]


class GalleryCreateRequest(_Request):
    gallery: LiveGalleryName
    profile: ProfileName | None = None  # the image tower its items are embedded with
    backend: BackendName = "hnsw"
    # hnsw/milvus: connectivity, ef_construction, ef_search; hnsw also dtype ("f32" | "f16")
    params: dict[str, int | str] | None = None
    # metadata keys whose distribution in search results is measured (live_bias.py)
    bias_attributes: BiasAttributes = None


class GalleryItem(_Request):
    id: ItemId
    image: ImageData
    metadata: MetadataIn = None


class GalleryUpsertRequest(_Request):
    gallery: LiveGalleryName
    items: Annotated[list[GalleryItem], BeforeValidator(_count_limit), Field(min_length=1)]
    profile: ProfileName | None = None  # if given, must be the gallery's profile

    @field_validator("items")
    @classmethod
    def _unique(cls, items: list[GalleryItem]) -> list[GalleryItem]:
        _unique_ids([item.id for item in items], "item ids")
        return items


class GalleryDeleteRequest(_Request):
    gallery: LiveGalleryName
    ids: Annotated[list[ItemId], BeforeValidator(_ids_limit), Field(min_length=1)]


class GalleryNameRequest(_Request):
    """For info and drop."""

    gallery: LiveGalleryName


class GalleryListRequest(_Request):
    """No fields."""


class GallerySearchRequest(_Request):
    gallery: LiveGalleryName
    text: Text | None = None
    image: ImageData | None = None
    k: K = 10
    filter: FilterIn = None  # {"key": value} or {"key": [values]}, keys ANDed
    ef: Ef | None = None  # search effort (hnsw, milvus); unset: the gallery's ef_search
    profile: ProfileName | None = None  # image queries: must be the gallery's profile

    @model_validator(mode="after")
    def _one_query(self) -> GallerySearchRequest:
        if (self.text is None) == (self.image is None):
            raise PydanticCustomError("query", "give exactly one of 'text' and 'image'")
        return self


# --------------------------------------------------------------------------- responses


class GalleryInfo(_Response):
    gallery: str
    backend: BackendName
    profile: str
    profile_sha256: str
    model: ModelRef
    params: dict[str, Any]
    count: int
    created_at: float
    last_write_at: float | None = None  # unix time of the last write (None: never written)
    details: dict[str, Any] = Field(default_factory=dict)  # backend facts (memory, uri)
    bias_attributes: list[str] = Field(default_factory=list)  # declared at create (live bias)


class GalleryListResponse(_Response):
    galleries: list[GalleryInfo]


class GalleryWriteResponse(_Response):
    gallery: str
    changed: int  # items upserted, or removed by a delete
    count: int  # items in the gallery after the write


class GalleryDropResponse(_Response):
    gallery: str
    dropped: bool


class GallerySearchHit(_Response):
    id: str
    score: float  # cosine similarity
    metadata: dict[str, Any] = Field(default_factory=dict)


class GallerySearchResponse(_Response):
    gallery: str
    backend: str
    profile: str
    model: ModelRef
    query: Literal["text", "image"]
    hits: list[GallerySearchHit]  # best first
