"""Request and response models shared by the HTTP and gRPC transports.

Requests are strict (`extra="forbid"`, no type coercion), so an unknown field or a wrong type is a
4xx that names the field. Count and size limits come from the settings (`CCSCLIP_MAX_*`) and are
checked before the items themselves (a 10,000-label request is refused without looking at the
labels); a limit violation has the error type `too_large`, which the transports report as 413 /
RESOURCE_EXHAUSTED, everything else as 400 / INVALID_ARGUMENT.

Images are bytes: raw in gRPC, base64 strings (optionally a `data:` URL) in JSON. Profiles and
galleries are names; nothing here is ever used as a path.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    StringConstraints,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import PydanticCustomError

from ccsclip.engine.sessions import ProfileInfo  # one definition: the engine's and the API's
from ccsclip.service.settings import get_settings

TOO_LARGE = "too_large"  # the pydantic error type of a limit violation
NOT_FOUND = "not_found"

_ENV = {
    "images": "CCSCLIP_MAX_IMAGES_PER_REQUEST",
    "items": "CCSCLIP_MAX_IMAGES_PER_REQUEST",
    "labels": "CCSCLIP_MAX_LABELS",
    "texts": "CCSCLIP_MAX_LABELS",
    "templates": "CCSCLIP_MAX_TEMPLATES",
}


# --------------------------------------------------------------------------- field types


def _image_bytes(value: Any) -> bytes:
    """bytes as they are (gRPC); a base64 string or base64 data URL (JSON) decoded."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if not isinstance(value, str):
        raise PydanticCustomError(
            "image_type",
            "an image must be a base64 string, got {type}",
            {"type": type(value).__name__},
        )
    text = value
    if text.startswith("data:"):
        header, _, text = text.partition(",")
        if not header.endswith(";base64"):
            raise PydanticCustomError("image_base64", "a data URL image must be ';base64' encoded")
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PydanticCustomError(
            "image_base64",
            "an image must be standard base64 (RFC 4648): {error}",
            {"error": str(exc)},
        ) from None


ImageData = Annotated[
    bytes,
    PlainValidator(_image_bytes),
    WithJsonSchema({"type": "string", "format": "byte", "description": "base64 image file"}),
]


def _count_limit(value: Any, info: ValidationInfo) -> Any:
    """Refuse an over-long list before its items are validated (cheap, and names the limit)."""
    name = info.field_name if info.field_name in _ENV else "items"  # BentoML's root: items
    settings = get_settings()
    limit = {
        "images": settings.max_images_per_request,
        "items": settings.max_images_per_request,
        "labels": settings.max_labels,
        "texts": settings.max_labels,
        "templates": settings.max_templates,
    }[name]
    if isinstance(value, (list, tuple)) and len(value) > limit:
        raise PydanticCustomError(
            TOO_LARGE,
            "{field} has {count} entries; the limit is {limit} ({env})",
            {"field": name, "count": len(value), "limit": limit, "env": _ENV[name]},
        )
    return value


def _text(value: str) -> str:
    """A label or query text: not blank, at most CCSCLIP_MAX_LABEL_CHARS characters."""
    limit = get_settings().max_label_chars
    if len(value) > limit:
        raise PydanticCustomError(
            TOO_LARGE,
            "text of {length} characters; the limit is {limit} (CCSCLIP_MAX_LABEL_CHARS)",
            {"length": len(value), "limit": limit},
        )
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty or whitespace")
    return value


def _template(value: str) -> str:
    """Exactly one `{}` (where the label goes) and no other braces, as probe.yaml templates."""
    _text(value)
    rest = value.replace("{}", "")
    if value.count("{}") != 1 or "{" in rest or "}" in rest:
        raise PydanticCustomError(
            "template", "a template must contain exactly one '{}' and no other braces"
        )
    return value


def _k_limit(value: int) -> int:
    limit = get_settings().max_k
    if value > limit:
        raise PydanticCustomError(
            TOO_LARGE,
            "{value} is above the limit {limit} (CCSCLIP_MAX_K)",
            {"value": value, "limit": limit},
        )
    return value


Text = Annotated[str, AfterValidator(_text)]
Template = Annotated[str, AfterValidator(_template)]
ProfileName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
GalleryName = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
K = Annotated[int, Field(ge=1), AfterValidator(_k_limit)]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _Response(BaseModel):
    model_config = ConfigDict(frozen=True)


# --------------------------------------------------------------------------- shared


class ModelRef(_Response):
    """The model that answered (with the profile beside it in every response)."""

    name: str
    pretrained: str | None = None
    weights_sha256: str


class ErrorInfo(_Response):
    """A 4xx body: `error` is the message; `field` names the offending request field."""

    error: str
    kind: Literal["invalid", "not_found", "too_large", "conflict", "read_only", "unavailable"]
    field: str | None = None


# --------------------------------------------------------------------------- zero-shot


class ZeroShotRequest(_Request):
    images: Annotated[list[ImageData], BeforeValidator(_count_limit), Field(min_length=1)]
    labels: Annotated[list[Text], BeforeValidator(_count_limit), Field(min_length=1)]
    templates: (
        Annotated[list[Template], BeforeValidator(_count_limit), Field(min_length=1)] | None
    ) = None
    top_k: K = 5
    profile: ProfileName | None = None

    @field_validator("labels")
    @classmethod
    def _unique(cls, labels: list[str]) -> list[str]:
        repeated = sorted(label for label, n in Counter(labels).items() if n > 1)
        if repeated:
            raise PydanticCustomError(
                "duplicate",
                "labels must be unique; repeated: {repeated}",
                {"repeated": repeated[:5]},
            )
        return labels


class LabelScore(_Response):
    label: str
    score: float  # softmax probability over the request's labels


class Classification(_Response):
    top: list[LabelScore]  # best first


class ZeroShotResponse(_Response):
    profile: str
    model: ModelRef
    results: list[Classification]  # one per image, in request order


# --------------------------------------------------------------------------- retrieval


class RetrieveRequest(_Request):
    gallery: GalleryName
    text: Text | None = None
    image: ImageData | None = None
    k: K = 10
    profile: ProfileName | None = None  # image queries: must be the gallery's profile

    @model_validator(mode="after")
    def _one_query(self) -> RetrieveRequest:
        if (self.text is None) == (self.image is None):
            raise PydanticCustomError("query", "give exactly one of 'text' and 'image'")
        return self


class GalleryHit(_Response):
    id: str
    score: float  # cosine similarity


class RetrieveResponse(_Response):
    profile: str  # the gallery's profile: its embeddings answered
    model: ModelRef
    gallery: str
    query: Literal["text", "image"]
    hits: list[GalleryHit]  # best first


# --------------------------------------------------------------------------- embeddings


class ImageItem(_Request):
    """One image to embed; it carries its own profile, so mixed batches stay correct."""

    image: ImageData
    profile: ProfileName | None = None


ImageItems = Annotated[list[ImageItem], BeforeValidator(_count_limit), Field(min_length=1)]


class EmbedImagesRequest(_Request):
    items: ImageItems


class Embedding(_Response):
    profile: str
    model: ModelRef
    values: list[float]  # unit norm
    error: ErrorInfo | None = None  # only inside a batch; never in a response a client sees

    @model_serializer(mode="wrap")
    def _drop_empty_error(self, handler: Any) -> dict[str, Any]:
        data = handler(self)
        if data.get("error") is None:
            data.pop("error", None)
        return data


class EmbedImagesResponse(_Response):
    embeddings: list[Embedding]


class EmbedTextsRequest(_Request):
    texts: Annotated[list[Text], BeforeValidator(_count_limit), Field(min_length=1)]
    profile: ProfileName | None = None  # only named in the response: the text tower is shared


class EmbedTextsResponse(_Response):
    profile: str
    model: ModelRef
    embeddings: list[Embedding]


# --------------------------------------------------------------------------- profiles, probes


class EmptyRequest(_Request):
    """No fields (an empty JSON object or body)."""


class ProfilesResponse(_Response):
    model: ModelRef
    default_profile: str
    profiles: list[ProfileInfo]
    galleries: list[str]  # names a RetrieveRequest may use
    probes: list[str]


class MaxSkew(_Response):
    attribute: str
    k: int
    mean: float
    sum: float
    random_ranking_mean: float
    # MaxSkew's null on this probe: the same ranking with the attribute shuffled within each
    # query's relevant set (ccsclip.fairness); None in results stored before it was kept
    null_mean: float | None = None


class CanaryDrift(_Response):
    """The last canary of a probe with a profile, against the stored full result."""

    images: int  # re-embedded this round
    max_abs: float  # largest |embedding now - stored| over them
    top1_changed: int  # of them, images whose best class (query) changed
    accuracy: float | None = None  # accuracy probes: on these images now ...
    reference_accuracy: float | None = None  # ... and in the stored result
    cpu_s: float  # process CPU seconds the canary took
    finished_at: float


class ProbeBudget(_Response):
    """What the canaries spent against their CPU budget (service/probes.py)."""

    cpu_budget: float | None  # share of one core; None when a fixed canary size is set
    canary_size: int | None  # the fixed size per probe and profile, when set
    canary_min: int
    rounds: int  # the rounds the figures below cover (the last ones)
    canary_cpu_s: float  # process CPU seconds of those rounds' canaries
    share_of_core: float | None  # canary_cpu_s over those rounds' wall time plus intervals
    canary_cpu_s_total: float  # since start-up
    full_cpu_s_total: float  # full results computed since start-up (0 when baked or cached)


class ProbeResult(_Response):
    profile: str
    probe: str
    kind: str  # accuracy | bias | unknown (a probe that never loaded)
    ok: bool
    error: str | None = None
    finished_at: float
    duration_s: float
    last_success_at: float | None = None
    n_images: int = 0
    accuracy: float | None = None
    chance: float | None = None
    maxskew: list[MaxSkew] = Field(default_factory=list)
    source: str | None = None  # where the full result came from: baked | cache | computed
    canary: CanaryDrift | None = None  # the last canary (drift), None before the first


class ProbesResponse(_Response):
    results: list[ProbeResult]
    interval_s: float
    runs: int  # completed probe rounds since start-up
    budget: ProbeBudget | None = None
