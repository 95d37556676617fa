"""Transport-neutral request handling: validated request model in, response model out.

Both transports call the same `Core` methods and map the same `ServiceError` to their status
codes (HTTP 400/404/413, gRPC INVALID_ARGUMENT/NOT_FOUND/RESOURCE_EXHAUSTED). What lives here and
why:

* Profile choice: the request's `profile` field, else the `x-ccsclip-profile` header (applied to
  the payload by `apply_header_profile` before validation, so a batch item carries its profile),
  else the engine's default. Retrieval with an image query defaults to the gallery's profile.
* Image decoding with limits: only raster formats (no EPS/PDF, which would run Ghostscript); the
  pixel count is checked from the header before any pixel is decoded (decompression bombs);
  grey, palette, RGBA, CMYK and 16-bit/float images are valid and converted to 8-bit RGB. Each
  image is preprocessed as soon as it is decoded, so only one full-size image is in memory.
* What the core does not hold: galleries (service/galleries.py, which embed through the core's
  public `embed_files`) and probes (service/probes.py); the served parts (service/parts.py) hold
  all three, and the core imports neither.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError
from pydantic import ValidationError

from ccsclip.engine.engine import Engine, check_templates
from ccsclip.errors import (
    CcsclipError,
    ConflictError,
    InvalidInputError,
    NotFoundError,
    ReadOnlyError,
    UnavailableError,
)
from ccsclip.service import schemas as s
from ccsclip.service.metrics import Metrics, get_metrics
from ccsclip.service.settings import ServiceSettings
from ccsclip.service.shadow import ShadowSampler

log = logging.getLogger(__name__)

PROFILE_HEADER = "x-ccsclip-profile"
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
NO_PROFILE = "none"  # metrics label when no served profile is involved (bounded cardinality)
Kind = Literal[
    "invalid", "not_found", "too_large", "conflict", "read_only", "other_profile", "unavailable"
]
HTTP_STATUS: dict[str, int] = {
    "invalid": 400,
    "not_found": 404,
    "too_large": 413,
    "conflict": 409,  # a create that lost: the name is taken
    "read_only": 409,  # a write to a gallery served read-only (shipped in the bundle)
    "other_profile": 409,  # an image for a gallery of another profile (another space)
    "unavailable": 503,  # Milvus down: retry after `retry_after_s`
}
_FIELD = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")


class ServiceError(Exception):
    """A request the service refuses: `kind` picks the status, `field` names the culprit."""

    def __init__(
        self, kind: Kind, field: str | None, message: str, retry_after_s: int | None = None
    ) -> None:
        super().__init__(message)
        self.kind: Kind = kind
        self.field = field
        self.message = message
        self.retry_after_s = retry_after_s

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.kind]

    def info(self) -> s.ErrorInfo:
        return s.ErrorInfo(error=self.message, kind=self.kind, field=self.field)

    def prefixed(self, prefix: str) -> ServiceError:
        """The same error with its field inside `prefix` (an item of a list)."""
        if not self.field:
            return ServiceError(self.kind, prefix, f"{prefix}: {self.message}")
        field = f"{prefix}.{self.field}"
        return ServiceError(self.kind, field, self.message.replace(self.field, field, 1))

    def __repr__(self) -> str:
        return f"ServiceError({self.kind!r}, {self.field!r}, {self.message!r})"


# --------------------------------------------------------------------------- errors


def engine_error(exc: CcsclipError, default: str | None = None) -> ServiceError:
    """An engine error as a ServiceError: the kind from its class, the field from the message's
    `field: ` prefix (else `default`)."""
    match = _FIELD.match(str(exc))
    field = match.group(1) if match else default
    message = str(exc) if match or not field else f"{field}: {exc}"
    kind: Kind = "invalid"
    retry = None
    if isinstance(exc, NotFoundError):
        kind = "not_found"
    elif isinstance(exc, ReadOnlyError):
        kind = "read_only"
    elif isinstance(exc, ConflictError):
        kind = "conflict"
    elif isinstance(exc, UnavailableError):
        kind, retry = "unavailable", int(getattr(exc, "retry_after_s", 5))
    return ServiceError(kind, field, message, retry)


def field_path(loc: Sequence[Any]) -> str | None:
    """pydantic loc -> `labels[3]`, `items[0].image`; BentoML's root wrapper is dropped."""
    parts = [p for p in loc if p != "root"]
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or None


def error_from_details(details: Sequence[Mapping[str, Any]], prefix: str = "") -> ServiceError:
    """The first pydantic error (as `ValidationError.errors()` gives) as a ServiceError."""
    if not details:
        return ServiceError("invalid", None, "the request is not valid")
    first = details[0]
    field = field_path(first.get("loc", ()))
    if prefix:
        field = f"{prefix}{'.' if field and not field.startswith('[') else ''}{field or ''}"
    kind: Kind = {s.TOO_LARGE: "too_large", s.NOT_FOUND: "not_found"}.get(
        str(first.get("type")), "invalid"
    )
    message = str(first.get("msg", "invalid value"))
    if first.get("type") == "extra_forbidden":
        message = "unknown field (not part of this request)"
    if first.get("type") == "json_invalid":
        field, message = None, f"the body is not valid JSON: {message}"
    more = f" (and {len(details) - 1} more problems)" if len(details) > 1 else ""
    return ServiceError(kind, field, f"{field or 'request'}: {message}{more}")


def error_from_validation(exc: ValidationError, prefix: str = "") -> ServiceError:
    return error_from_details(exc.errors(include_url=False, include_input=False), prefix)


def validate(model: type[s.BaseModel], payload: Any) -> Any:
    """`model.model_validate(payload)` with errors as ServiceError."""
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise error_from_validation(exc) from None


def apply_header_profile(payload: Any, header: str | None) -> Any:
    """Fill `profile` from the header where the payload (object or list of items) has none."""
    if not header:
        return payload
    if isinstance(payload, dict) and payload.get("profile") is None:
        return {**payload, "profile": header}
    if isinstance(payload, list):
        return [apply_header_profile(item, header) for item in payload]
    return payload


# --------------------------------------------------------------------------- images


def _to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB: 16-bit and float images are rescaled (a plain convert would clip them)."""
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image, dtype=np.float64)
        if mode.startswith("I;16") or (mode == "I" and values.max(initial=0) > 255):
            values = values / 257.0
        elif mode == "F" and values.max(initial=0) <= 1.0:
            values = values * 255.0
        image = Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), mode="L")
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_image(data: bytes, field: str, max_pixels: int) -> Image.Image:
    """Encoded image bytes -> RGB PIL image, or ServiceError naming `field`."""
    if not data:
        raise ServiceError("invalid", field, f"{field}: the image is empty (0 bytes)")
    try:
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
    except Image.DecompressionBombError as exc:
        raise ServiceError("too_large", field, f"{field}: {exc}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise ServiceError(
            "invalid",
            field,
            f"{field}: not a readable image ({type(exc).__name__}: {exc}); accepted formats: "
            f"{', '.join(IMAGE_FORMATS)}",
        ) from None
    width, height = image.size
    if width * height > max_pixels:
        raise ServiceError(
            "too_large",
            field,
            f"{field}: {width}x{height} = {width * height} pixels; the limit is {max_pixels} "
            "(CCSCLIP_MAX_IMAGE_PIXELS)",
        )
    try:
        image.load()
        return _to_rgb(image)
    except Image.DecompressionBombError as exc:
        raise ServiceError("too_large", field, f"{field}: {exc}") from None
    except Exception as exc:  # truncated or corrupt data: PIL raises many types
        raise ServiceError(
            "invalid", field, f"{field}: the image data is corrupt or truncated ({exc})"
        ) from None


# --------------------------------------------------------------------------- the core


class Core:
    """One engine with the service's limits and metrics; handlers for the endpoints that need
    nothing else (zero-shot, embeddings)."""

    def __init__(
        self,
        engine: Engine,
        settings: ServiceSettings,
        metrics: Metrics | None = None,
    ) -> None:
        self.engine = engine
        self.settings = settings
        self.metrics = metrics or get_metrics()
        model = engine.manifest.model
        self.model = s.ModelRef(
            name=model.name, pretrained=model.pretrained, weights_sha256=model.weights_sha256
        )
        self._known = set(engine.manifest.profiles)
        self.metrics.describe_profiles(engine.profiles())
        self.shadow = ShadowSampler.for_engine(engine, self.embed_pixels, settings, self.metrics)

    @classmethod
    def load(cls, settings: ServiceSettings, metrics: Metrics | None = None) -> Core:
        """Open the bundle."""
        engine = Engine.load(
            settings.bundle,
            default_profile=settings.default_profile,
            intra_op_threads=settings.threads or None,
            text_cache_size=settings.text_cache_size,
        )
        return cls(engine, settings, metrics)

    # ------------------------------------------------------------------ helpers

    def profile(self, name: str | None, field: str = "profile") -> str:
        """The served profile for a requested name (None: the default)."""
        try:
            return self.engine.resolve_profile(name)
        except NotFoundError as exc:
            raise ServiceError("not_found", field, f"{field}: {exc}") from None

    def served_label(self, requested: Any) -> str:
        """The metrics label of a requested profile name: the default for None, a served name
        as it is, anything else `none` (bounded cardinality)."""
        if requested is None:
            return self.engine.default_profile
        return requested if isinstance(requested, str) and requested in self._known else NO_PROFILE

    def _pixels(self, data: bytes, field: str) -> np.ndarray:
        """Decode and preprocess one image -> [1, 3, S, S] float32 (the full image is dropped)."""
        image = decode_image(data, field, self.settings.max_image_pixels)
        return self.engine.preprocess([image])

    def _embed(self, pixels: np.ndarray, profile: str, endpoint: str) -> np.ndarray:
        self.metrics.observe_batch(endpoint, profile, len(pixels))
        return self.engine.embed_pixels(pixels, profile)

    def embed_pixels(self, profile: str, pixels: np.ndarray) -> np.ndarray:
        """Preprocessed pixels [N, 3, S, S] -> unit embeddings with a served profile (no request
        metrics: used by the shadow agreement, service/shadow.py)."""
        return self.engine.embed_pixels(pixels, profile)

    def pixels_of(self, files: Sequence[tuple[str, bytes]]) -> np.ndarray:
        """Preprocessed pixels of encoded images, given as (request field, bytes), decoded with
        the service's limits (errors name the field)."""
        return np.concatenate([self._pixels(data, field) for field, data in files])

    def embed_files(
        self, files: Sequence[tuple[str, bytes]], profile: str, endpoint: str
    ) -> np.ndarray:
        """Unit embeddings [N, E] of encoded images with one served profile, counted as a batch
        of `endpoint`."""
        return self._embed(self.pixels_of(files), profile, endpoint)

    def sync_cache_metrics(self) -> None:
        """Export the text-embedding cache's counters (after a call that embedded texts)."""
        self.metrics.sync_text_cache(self.engine.text_cache_info())

    # ------------------------------------------------------------------ endpoints

    def zero_shot(self, request: s.ZeroShotRequest) -> s.ZeroShotResponse:
        name = self.profile(request.profile)
        try:
            templates = None if request.templates is None else check_templates(request.templates)
        except InvalidInputError as exc:
            raise ServiceError("invalid", "templates", f"templates: {exc}") from None
        classes = self.engine.class_embeddings(request.labels, templates)
        files = [(f"images[{i}]", data) for i, data in enumerate(request.images)]
        pixels = self.pixels_of(files)
        embeddings = self._embed(pixels, name, "zero_shot")
        probabilities = self.engine.probabilities(embeddings, classes)
        self.shadow.observe(name, pixels, embeddings, classes)
        top_k = min(request.top_k, len(request.labels))
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :top_k]
        results = [
            s.Classification(
                top=[s.LabelScore(label=request.labels[j], score=float(row[j])) for j in ranks]
            )
            for row, ranks in zip(probabilities, order, strict=True)
        ]
        self.sync_cache_metrics()
        return s.ZeroShotResponse(profile=name, model=self.model, results=results)

    def embed_items(
        self, items: Sequence[s.ImageItem], endpoint: str = "embed_images"
    ) -> list[s.Embedding]:
        """Embed a batch whose items may name different profiles: one engine call per profile.

        A bad item does not fail the batch (it may hold other requests' items): its result
        carries `error` (field relative to the item) and the transport refuses its request.
        """
        results: list[s.Embedding | None] = [None] * len(items)
        groups: dict[str, list[tuple[int, np.ndarray]]] = {}
        for index, item in enumerate(items):
            try:
                name = self.profile(item.profile)
                pixels = self._pixels(item.image, "image")
            except ServiceError as exc:
                results[index] = s.Embedding(
                    profile=NO_PROFILE, model=self.model, values=[], error=exc.info()
                )
                continue
            groups.setdefault(name, []).append((index, pixels))
        for name, members in groups.items():
            pixels = np.concatenate([p for _, p in members])
            embeddings = self._embed(pixels, name, endpoint)
            self.shadow.observe(name, pixels, embeddings)
            for row, (index, _) in enumerate(members):
                values = embeddings[row].tolist()
                results[index] = s.Embedding(profile=name, model=self.model, values=values)
        return [r for r in results if r is not None]

    def embed_images(self, request: s.EmbedImagesRequest) -> s.EmbedImagesResponse:
        """All items of one request; the first failed item fails the request."""
        results = self.embed_items(request.items)
        for index, result in enumerate(results):
            if result.error is not None:
                error = result.error
                raise ServiceError(error.kind, error.field, error.error).prefixed(f"items[{index}]")
        return s.EmbedImagesResponse(embeddings=results)

    def embed_texts(self, request: s.EmbedTextsRequest) -> s.EmbedTextsResponse:
        name = self.profile(request.profile)
        embeddings = self.engine.embed_texts(request.texts)
        self.sync_cache_metrics()
        return s.EmbedTextsResponse(
            profile=name,
            model=self.model,
            embeddings=[
                s.Embedding(profile=name, model=self.model, values=row.tolist())
                for row in embeddings
            ],
        )

    def profiles_response(self, galleries: list[str], probes: list[str]) -> s.ProfilesResponse:
        """The bundle's profiles, with the names of the galleries and probes served beside."""
        return s.ProfilesResponse(
            model=self.model,
            default_profile=self.engine.default_profile,
            profiles=[s.ProfileInfo(**p.model_dump()) for p in self.engine.profiles()],
            galleries=galleries,
            probes=probes,
        )
