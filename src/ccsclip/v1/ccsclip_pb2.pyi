from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ModelRef(_message.Message):
    __slots__ = ("name", "pretrained", "weights_sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    PRETRAINED_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    pretrained: str
    weights_sha256: str
    def __init__(self, name: _Optional[str] = ..., pretrained: _Optional[str] = ..., weights_sha256: _Optional[str] = ...) -> None: ...

class ZeroShotRequest(_message.Message):
    __slots__ = ("images", "labels", "templates", "top_k", "profile")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    TEMPLATES_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedScalarFieldContainer[bytes]
    labels: _containers.RepeatedScalarFieldContainer[str]
    templates: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    profile: str
    def __init__(self, images: _Optional[_Iterable[bytes]] = ..., labels: _Optional[_Iterable[str]] = ..., templates: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., profile: _Optional[str] = ...) -> None: ...

class LabelScore(_message.Message):
    __slots__ = ("label", "score")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    label: str
    score: float
    def __init__(self, label: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class Classification(_message.Message):
    __slots__ = ("top",)
    TOP_FIELD_NUMBER: _ClassVar[int]
    top: _containers.RepeatedCompositeFieldContainer[LabelScore]
    def __init__(self, top: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ...) -> None: ...

class ZeroShotResponse(_message.Message):
    __slots__ = ("profile", "model", "results")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    profile: str
    model: ModelRef
    results: _containers.RepeatedCompositeFieldContainer[Classification]
    def __init__(self, profile: _Optional[str] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., results: _Optional[_Iterable[_Union[Classification, _Mapping]]] = ...) -> None: ...

class RetrieveRequest(_message.Message):
    __slots__ = ("gallery", "text", "image", "k", "profile")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    text: str
    image: bytes
    k: int
    profile: str
    def __init__(self, gallery: _Optional[str] = ..., text: _Optional[str] = ..., image: _Optional[bytes] = ..., k: _Optional[int] = ..., profile: _Optional[str] = ...) -> None: ...

class GalleryHit(_message.Message):
    __slots__ = ("id", "score")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ...) -> None: ...

class RetrieveResponse(_message.Message):
    __slots__ = ("profile", "model", "gallery", "query", "hits")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    profile: str
    model: ModelRef
    gallery: str
    query: str
    hits: _containers.RepeatedCompositeFieldContainer[GalleryHit]
    def __init__(self, profile: _Optional[str] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., gallery: _Optional[str] = ..., query: _Optional[str] = ..., hits: _Optional[_Iterable[_Union[GalleryHit, _Mapping]]] = ...) -> None: ...

class ImageItem(_message.Message):
    __slots__ = ("image", "profile")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    image: bytes
    profile: str
    def __init__(self, image: _Optional[bytes] = ..., profile: _Optional[str] = ...) -> None: ...

class EmbedImagesRequest(_message.Message):
    __slots__ = ("items",)
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    items: _containers.RepeatedCompositeFieldContainer[ImageItem]
    def __init__(self, items: _Optional[_Iterable[_Union[ImageItem, _Mapping]]] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("profile", "model", "values")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    profile: str
    model: ModelRef
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, profile: _Optional[str] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class EmbedImagesResponse(_message.Message):
    __slots__ = ("embeddings",)
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    def __init__(self, embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ...) -> None: ...

class EmbedTextsRequest(_message.Message):
    __slots__ = ("texts", "profile")
    TEXTS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    texts: _containers.RepeatedScalarFieldContainer[str]
    profile: str
    def __init__(self, texts: _Optional[_Iterable[str]] = ..., profile: _Optional[str] = ...) -> None: ...

class EmbedTextsResponse(_message.Message):
    __slots__ = ("profile", "model", "embeddings")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    profile: str
    model: ModelRef
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    def __init__(self, profile: _Optional[str] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ...) -> None: ...

class ListProfilesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ProfileInfo(_message.Message):
    __slots__ = ("name", "available", "reason", "default", "arm", "mode", "heads_removed", "flops_per_image", "parameters", "parity_max_abs", "precision", "quantize", "accuracy_delta", "base_profile", "file", "sha256")
    NAME_FIELD_NUMBER: _ClassVar[int]
    AVAILABLE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_FIELD_NUMBER: _ClassVar[int]
    ARM_FIELD_NUMBER: _ClassVar[int]
    MODE_FIELD_NUMBER: _ClassVar[int]
    HEADS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    FLOPS_PER_IMAGE_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    PARITY_MAX_ABS_FIELD_NUMBER: _ClassVar[int]
    PRECISION_FIELD_NUMBER: _ClassVar[int]
    QUANTIZE_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_DELTA_FIELD_NUMBER: _ClassVar[int]
    BASE_PROFILE_FIELD_NUMBER: _ClassVar[int]
    FILE_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    name: str
    available: bool
    reason: str
    default: bool
    arm: str
    mode: str
    heads_removed: _containers.RepeatedScalarFieldContainer[str]
    flops_per_image: int
    parameters: int
    parity_max_abs: float
    precision: str
    quantize: str
    accuracy_delta: float
    base_profile: str
    file: str
    sha256: str
    def __init__(self, name: _Optional[str] = ..., available: _Optional[bool] = ..., reason: _Optional[str] = ..., default: _Optional[bool] = ..., arm: _Optional[str] = ..., mode: _Optional[str] = ..., heads_removed: _Optional[_Iterable[str]] = ..., flops_per_image: _Optional[int] = ..., parameters: _Optional[int] = ..., parity_max_abs: _Optional[float] = ..., precision: _Optional[str] = ..., quantize: _Optional[str] = ..., accuracy_delta: _Optional[float] = ..., base_profile: _Optional[str] = ..., file: _Optional[str] = ..., sha256: _Optional[str] = ...) -> None: ...

class ListProfilesResponse(_message.Message):
    __slots__ = ("model", "default_profile", "profiles", "galleries", "probes")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_PROFILE_FIELD_NUMBER: _ClassVar[int]
    PROFILES_FIELD_NUMBER: _ClassVar[int]
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    PROBES_FIELD_NUMBER: _ClassVar[int]
    model: ModelRef
    default_profile: str
    profiles: _containers.RepeatedCompositeFieldContainer[ProfileInfo]
    galleries: _containers.RepeatedScalarFieldContainer[str]
    probes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, model: _Optional[_Union[ModelRef, _Mapping]] = ..., default_profile: _Optional[str] = ..., profiles: _Optional[_Iterable[_Union[ProfileInfo, _Mapping]]] = ..., galleries: _Optional[_Iterable[str]] = ..., probes: _Optional[_Iterable[str]] = ...) -> None: ...

class GetProbeResultsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class MaxSkew(_message.Message):
    __slots__ = ("attribute", "k", "mean", "sum", "random_ranking_mean", "null_mean")
    ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    SUM_FIELD_NUMBER: _ClassVar[int]
    RANDOM_RANKING_MEAN_FIELD_NUMBER: _ClassVar[int]
    NULL_MEAN_FIELD_NUMBER: _ClassVar[int]
    attribute: str
    k: int
    mean: float
    sum: float
    random_ranking_mean: float
    null_mean: float
    def __init__(self, attribute: _Optional[str] = ..., k: _Optional[int] = ..., mean: _Optional[float] = ..., sum: _Optional[float] = ..., random_ranking_mean: _Optional[float] = ..., null_mean: _Optional[float] = ...) -> None: ...

class CanaryDrift(_message.Message):
    __slots__ = ("images", "max_abs", "top1_changed", "accuracy", "reference_accuracy", "cpu_s", "finished_at")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_ABS_FIELD_NUMBER: _ClassVar[int]
    TOP1_CHANGED_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    CPU_S_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    images: int
    max_abs: float
    top1_changed: int
    accuracy: float
    reference_accuracy: float
    cpu_s: float
    finished_at: float
    def __init__(self, images: _Optional[int] = ..., max_abs: _Optional[float] = ..., top1_changed: _Optional[int] = ..., accuracy: _Optional[float] = ..., reference_accuracy: _Optional[float] = ..., cpu_s: _Optional[float] = ..., finished_at: _Optional[float] = ...) -> None: ...

class ProbeBudget(_message.Message):
    __slots__ = ("cpu_budget", "canary_size", "canary_min", "rounds", "canary_cpu_s", "share_of_core", "canary_cpu_s_total", "full_cpu_s_total")
    CPU_BUDGET_FIELD_NUMBER: _ClassVar[int]
    CANARY_SIZE_FIELD_NUMBER: _ClassVar[int]
    CANARY_MIN_FIELD_NUMBER: _ClassVar[int]
    ROUNDS_FIELD_NUMBER: _ClassVar[int]
    CANARY_CPU_S_FIELD_NUMBER: _ClassVar[int]
    SHARE_OF_CORE_FIELD_NUMBER: _ClassVar[int]
    CANARY_CPU_S_TOTAL_FIELD_NUMBER: _ClassVar[int]
    FULL_CPU_S_TOTAL_FIELD_NUMBER: _ClassVar[int]
    cpu_budget: float
    canary_size: int
    canary_min: int
    rounds: int
    canary_cpu_s: float
    share_of_core: float
    canary_cpu_s_total: float
    full_cpu_s_total: float
    def __init__(self, cpu_budget: _Optional[float] = ..., canary_size: _Optional[int] = ..., canary_min: _Optional[int] = ..., rounds: _Optional[int] = ..., canary_cpu_s: _Optional[float] = ..., share_of_core: _Optional[float] = ..., canary_cpu_s_total: _Optional[float] = ..., full_cpu_s_total: _Optional[float] = ...) -> None: ...

class ProbeResult(_message.Message):
    __slots__ = ("profile", "probe", "kind", "ok", "error", "finished_at", "duration_s", "n_images", "accuracy", "chance", "maxskew", "last_success_at", "source", "canary")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    PROBE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    DURATION_S_FIELD_NUMBER: _ClassVar[int]
    N_IMAGES_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    CHANCE_FIELD_NUMBER: _ClassVar[int]
    MAXSKEW_FIELD_NUMBER: _ClassVar[int]
    LAST_SUCCESS_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CANARY_FIELD_NUMBER: _ClassVar[int]
    profile: str
    probe: str
    kind: str
    ok: bool
    error: str
    finished_at: float
    duration_s: float
    n_images: int
    accuracy: float
    chance: float
    maxskew: _containers.RepeatedCompositeFieldContainer[MaxSkew]
    last_success_at: float
    source: str
    canary: CanaryDrift
    def __init__(self, profile: _Optional[str] = ..., probe: _Optional[str] = ..., kind: _Optional[str] = ..., ok: _Optional[bool] = ..., error: _Optional[str] = ..., finished_at: _Optional[float] = ..., duration_s: _Optional[float] = ..., n_images: _Optional[int] = ..., accuracy: _Optional[float] = ..., chance: _Optional[float] = ..., maxskew: _Optional[_Iterable[_Union[MaxSkew, _Mapping]]] = ..., last_success_at: _Optional[float] = ..., source: _Optional[str] = ..., canary: _Optional[_Union[CanaryDrift, _Mapping]] = ...) -> None: ...

class GetProbeResultsResponse(_message.Message):
    __slots__ = ("results", "interval_s", "runs", "budget")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    BUDGET_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ProbeResult]
    interval_s: float
    runs: int
    budget: ProbeBudget
    def __init__(self, results: _Optional[_Iterable[_Union[ProbeResult, _Mapping]]] = ..., interval_s: _Optional[float] = ..., runs: _Optional[int] = ..., budget: _Optional[_Union[ProbeBudget, _Mapping]] = ...) -> None: ...

class CreateGalleryRequest(_message.Message):
    __slots__ = ("gallery", "profile", "backend", "params", "bias_attributes")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    BIAS_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    profile: str
    backend: str
    params: _struct_pb2.Struct
    bias_attributes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, gallery: _Optional[str] = ..., profile: _Optional[str] = ..., backend: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., bias_attributes: _Optional[_Iterable[str]] = ...) -> None: ...

class GalleryItem(_message.Message):
    __slots__ = ("id", "image", "metadata")
    ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    image: bytes
    metadata: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., image: _Optional[bytes] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class UpsertItemsRequest(_message.Message):
    __slots__ = ("gallery", "items", "profile")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    items: _containers.RepeatedCompositeFieldContainer[GalleryItem]
    profile: str
    def __init__(self, gallery: _Optional[str] = ..., items: _Optional[_Iterable[_Union[GalleryItem, _Mapping]]] = ..., profile: _Optional[str] = ...) -> None: ...

class DeleteItemsRequest(_message.Message):
    __slots__ = ("gallery", "ids")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    IDS_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, gallery: _Optional[str] = ..., ids: _Optional[_Iterable[str]] = ...) -> None: ...

class GalleryWriteResponse(_message.Message):
    __slots__ = ("gallery", "changed", "count")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    CHANGED_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    changed: int
    count: int
    def __init__(self, gallery: _Optional[str] = ..., changed: _Optional[int] = ..., count: _Optional[int] = ...) -> None: ...

class DropGalleryRequest(_message.Message):
    __slots__ = ("gallery",)
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    def __init__(self, gallery: _Optional[str] = ...) -> None: ...

class DropGalleryResponse(_message.Message):
    __slots__ = ("gallery", "dropped")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    DROPPED_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    dropped: bool
    def __init__(self, gallery: _Optional[str] = ..., dropped: _Optional[bool] = ...) -> None: ...

class GalleryInfoRequest(_message.Message):
    __slots__ = ("gallery",)
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    def __init__(self, gallery: _Optional[str] = ...) -> None: ...

class GalleryInfoResponse(_message.Message):
    __slots__ = ("gallery", "backend", "profile", "profile_sha256", "model", "params", "count", "created_at", "last_write_at", "details", "bias_attributes")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    PROFILE_SHA256_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    COUNT_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    LAST_WRITE_AT_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    BIAS_ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    backend: str
    profile: str
    profile_sha256: str
    model: ModelRef
    params: _struct_pb2.Struct
    count: int
    created_at: float
    last_write_at: float
    details: _struct_pb2.Struct
    bias_attributes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, gallery: _Optional[str] = ..., backend: _Optional[str] = ..., profile: _Optional[str] = ..., profile_sha256: _Optional[str] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., count: _Optional[int] = ..., created_at: _Optional[float] = ..., last_write_at: _Optional[float] = ..., details: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., bias_attributes: _Optional[_Iterable[str]] = ...) -> None: ...

class ListGalleriesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListGalleriesResponse(_message.Message):
    __slots__ = ("galleries",)
    GALLERIES_FIELD_NUMBER: _ClassVar[int]
    galleries: _containers.RepeatedCompositeFieldContainer[GalleryInfoResponse]
    def __init__(self, galleries: _Optional[_Iterable[_Union[GalleryInfoResponse, _Mapping]]] = ...) -> None: ...

class SearchGalleryRequest(_message.Message):
    __slots__ = ("gallery", "text", "image", "k", "filter", "ef", "profile")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    EF_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    text: str
    image: bytes
    k: int
    filter: _struct_pb2.Struct
    ef: int
    profile: str
    def __init__(self, gallery: _Optional[str] = ..., text: _Optional[str] = ..., image: _Optional[bytes] = ..., k: _Optional[int] = ..., filter: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., ef: _Optional[int] = ..., profile: _Optional[str] = ...) -> None: ...

class SearchGalleryHit(_message.Message):
    __slots__ = ("id", "score", "metadata")
    ID_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    id: str
    score: float
    metadata: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., score: _Optional[float] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class SearchGalleryResponse(_message.Message):
    __slots__ = ("gallery", "backend", "profile", "model", "query", "hits")
    GALLERY_FIELD_NUMBER: _ClassVar[int]
    BACKEND_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    QUERY_FIELD_NUMBER: _ClassVar[int]
    HITS_FIELD_NUMBER: _ClassVar[int]
    gallery: str
    backend: str
    profile: str
    model: ModelRef
    query: str
    hits: _containers.RepeatedCompositeFieldContainer[SearchGalleryHit]
    def __init__(self, gallery: _Optional[str] = ..., backend: _Optional[str] = ..., profile: _Optional[str] = ..., model: _Optional[_Union[ModelRef, _Mapping]] = ..., query: _Optional[str] = ..., hits: _Optional[_Iterable[_Union[SearchGalleryHit, _Mapping]]] = ...) -> None: ...
