"""Request and response models shared by the HTTP and gRPC transports.

Requests are strict (`extra="forbid"`, no type coercion), so an unknown field or a wrong type is a
4xx that names the field. Count and size limits come from the settings (`CCSCLIP_MAX_*`) and are
checked before the items themselves (a 10,000-label request is refused without looking at the
labels); a limit violation has the error type `too_large`, which the transports report as 413 /
RESOURCE_EXHAUSTED, everything else as 400 / INVALID_ARGUMENT.

Images are bytes: raw in gRPC, base64 strings (optionally a `data:` URL) in JSON. Profiles and
galleries are names; nothing here is ever used as a path.

The OpenAPI document (openapi.py) is generated from these models: a constraint that a validator
function enforces is stated beside it with `Stated`, so the document says what validation does.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Callable, Mapping
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
from pydantic.json_schema import GetJsonSchemaHandler, JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

from ccsclip.engine.galleries.base import NAME_PATTERN
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


class Stated:
    """JSON-schema keywords of a constraint that a validator function enforces, added to the
    type's schema; a callable is read when the document is built (limits from the settings)."""

    def __init__(self, keywords: Mapping[str, Any] | Callable[[], Mapping[str, Any]]) -> None:
        self.keywords = keywords

    def __get_pydantic_json_schema__(
        self, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler(core_schema)
        schema.update(self.keywords() if callable(self.keywords) else self.keywords)
        return schema


def _max_items(setting: str) -> Stated:
    return Stated(lambda: {"maxItems": getattr(get_settings(), setting)})


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
    WithJsonSchema(
        {
            "type": "string",
            "format": "byte",
            "contentEncoding": "base64",
            "contentMediaType": "image/*",
            "minLength": 4,  # one byte at least: an empty file is refused
            "description": "an image file (PNG, JPEG, WEBP, GIF, BMP, TIFF), base64-encoded "
            "(a base64 `data:` URL too); CCSCLIP_MAX_IMAGE_PIXELS pixels at most",
        }
    ),
]


def count_limit(value: Any, info: ValidationInfo) -> Any:
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


# a character that is not whitespace to str.strip(), spelled out: regex engines disagree on \s
NOT_BLANK = "[^" + "".join(f"\\u{c:04x}" for c in range(0x3001) if chr(c).isspace()) + "]"


def _text_keywords() -> dict[str, Any]:
    return {"maxLength": get_settings().max_label_chars, "pattern": NOT_BLANK}


def integral(value: Any) -> Any:
    """A JSON number without a fraction (`5.0`) is the integer JSON Schema says it is."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


JsonInt = Annotated[int, BeforeValidator(integral)]
Text = Annotated[str, AfterValidator(_text), Stated(_text_keywords)]
Template = Annotated[
    str,
    AfterValidator(_template),
    Stated(
        lambda: {
            "maxLength": get_settings().max_label_chars,
            "pattern": r"^[^{}]*\{\}[^{}]*$",  # exactly one '{}', no other braces
        }
    ),
]
ProfileName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
# a gallery's name, as base.check_name accepts it (only ever looked up, never a path)
GalleryName = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=NAME_PATTERN)]
K = Annotated[
    int,
    Field(ge=1),
    BeforeValidator(integral),
    AfterValidator(_k_limit),
    Stated(lambda: {"maximum": get_settings().max_k}),
]


# "give exactly one of 'text' and 'image'" (the `_one_query` validators), as a schema states it
ONE_QUERY: dict[str, Any] = {
    "oneOf": [
        {"required": ["text"], "properties": {"text": {"type": "string"}}},
        {"required": ["image"], "properties": {"image": {"type": "string"}}},
    ]
}


class RequestModel(BaseModel):
    """Base of every request schema: strict, so unknown fields and wrong types answer 4xx."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ResponseModel(BaseModel):
    """Base of every response schema (immutable once built)."""

    model_config = ConfigDict(frozen=True)


# --------------------------------------------------------------------------- shared


class ModelRef(ResponseModel):
    """The model that answered (with the profile beside it in every response)."""

    name: str
    pretrained: str | None = None
    weights_sha256: str


class Refusal(ResponseModel):
    """The body of a call refused before it is read (gate.py): no or a wrong API key, or too
    many calls in flight."""

    error: str
    kind: Literal["unauthenticated", "permission_denied", "overloaded"]
    field: None = None


class ErrorInfo(ResponseModel):
    """A 4xx body: `error` is the message; `field` names the offending request field."""

    error: str
    kind: Literal[
        "invalid",
        "not_found",
        "too_large",
        "conflict",
        "read_only",
        "other_profile",
        "unavailable",
    ]
    field: str | None = None


# --------------------------------------------------------------------------- zero-shot


class ZeroShotRequest(RequestModel):
    images: Annotated[
        list[ImageData],
        BeforeValidator(count_limit),
        Field(min_length=1),
        _max_items("max_images_per_request"),
    ]
    labels: Annotated[
        list[Text],
        BeforeValidator(count_limit),
        Field(min_length=1),
        _max_items("max_labels"),
        Stated({"uniqueItems": True}),
    ]
    templates: (
        Annotated[
            list[Template],
            BeforeValidator(count_limit),
            Field(min_length=1),
            _max_items("max_templates"),
        ]
        | None
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


class LabelScore(ResponseModel):
    label: str
    score: float  # softmax probability over the request's labels


class Classification(ResponseModel):
    top: list[LabelScore]  # best first


class ZeroShotResponse(ResponseModel):
    profile: str
    model: ModelRef
    results: list[Classification]  # one per image, in request order


# --------------------------------------------------------------------------- retrieval


class RetrieveRequest(RequestModel):
    model_config = ConfigDict(json_schema_extra=ONE_QUERY)

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


class GalleryHit(ResponseModel):
    id: str
    score: float  # cosine similarity


class RetrieveResponse(ResponseModel):
    profile: str  # the gallery's profile: its embeddings answered
    model: ModelRef
    gallery: str
    query: Literal["text", "image"]
    hits: list[GalleryHit]  # best first


# --------------------------------------------------------------------------- embeddings


class ImageItem(RequestModel):
    """One image to embed; it carries its own profile, so mixed batches stay correct."""

    image: ImageData
    profile: ProfileName | None = None


ImageItems = Annotated[
    list[ImageItem],
    BeforeValidator(count_limit),
    Field(min_length=1),
    _max_items("max_images_per_request"),
]


class EmbedImagesRequest(RequestModel):
    items: ImageItems


class Embedding(ResponseModel):
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


class EmbedImagesResponse(ResponseModel):
    embeddings: list[Embedding]


class EmbedTextsRequest(RequestModel):
    texts: Annotated[
        list[Text], BeforeValidator(count_limit), Field(min_length=1), _max_items("max_labels")
    ]
    profile: ProfileName | None = None  # only named in the response: the text tower is shared


class EmbedTextsResponse(ResponseModel):
    profile: str
    model: ModelRef
    embeddings: list[Embedding]


# --------------------------------------------------------------------------- profiles, probes


class EmptyRequest(RequestModel):
    """No fields (an empty JSON object or body)."""


class ProfilesResponse(ResponseModel):
    model: ModelRef
    default_profile: str
    profiles: list[ProfileInfo]
    galleries: list[str]  # names a RetrieveRequest may use
    probes: list[str]


class MaxSkew(ResponseModel):
    attribute: str
    k: int
    mean: float
    sum: float
    random_ranking_mean: float
    # MaxSkew's null on this probe: the same ranking with the attribute shuffled within each
    # query's relevant set (ccsclip.fairness); None in results stored before it was kept
    null_mean: float | None = None


class CanaryDrift(ResponseModel):
    """The last canary of a probe with a profile, against the stored full result."""

    images: int  # re-embedded this round
    max_abs: float  # largest |embedding now - stored| over them
    top1_changed: int  # of them, images whose best class (query) changed
    accuracy: float | None = None  # accuracy probes: on these images now ...
    reference_accuracy: float | None = None  # ... and in the stored result
    cpu_s: float  # process CPU seconds the canary took
    finished_at: float


class ProbeBudget(ResponseModel):
    """What the canaries spent against their CPU budget (service/probes.py)."""

    cpu_budget: float | None  # share of one core; None when a fixed canary size is set
    canary_size: int | None  # the fixed size per probe and profile, when set
    canary_min: int
    rounds: int  # the rounds the figures below cover (the last ones)
    canary_cpu_s: float  # process CPU seconds of those rounds' canaries
    share_of_core: float | None  # canary_cpu_s over those rounds' wall time plus intervals
    canary_cpu_s_total: float  # since start-up
    full_cpu_s_total: float  # full results computed since start-up (0 when baked or cached)


class ProbeResult(ResponseModel):
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


class ProbesResponse(ResponseModel):
    results: list[ProbeResult]
    interval_s: float
    runs: int  # completed probe rounds since start-up
    budget: ProbeBudget | None = None
