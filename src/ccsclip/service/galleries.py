"""The gallery API's logic, shared by both transports: create, upsert, delete, drop, info, list,
search (routes `/v1/galleries/*`, RPCs `CreateGallery` ... `SearchGallery`), and `/v1/retrieve`
(RPC `Retrieve`), kept as a thin alias of search: the same gallery, the same hits, without
metadata, filter or search effort.

Every search, whatever route it came by, runs through `GalleryService.search`: a hook that must
see all gallery traffic belongs there, once.

Images are decoded with the service's limits and embedded with the GALLERY's profile (an image
tower pruned differently lives in another space, docs/design.md §8): an upsert or image search
naming another profile is refused. Embedding happens before the gallery is locked, so writers only
queue for the log append. Engine errors become ServiceErrors naming the field.
"""

from __future__ import annotations

import logging
from typing import Any

from ccsclip.engine.engine import Engine
from ccsclip.engine.galleries.base import SearchParams
from ccsclip.engine.galleries.milvus import MilvusConnection
from ccsclip.engine.galleries.protocol import Gallery
from ccsclip.engine.galleries.store import GalleryStore
from ccsclip.errors import CcsclipError, UnavailableError
from ccsclip.service import gallery_schemas as g
from ccsclip.service import schemas as s
from ccsclip.service.core import Core, ServiceError, engine_error
from ccsclip.service.live_bias import LiveBias
from ccsclip.service.settings import ServiceSettings

log = logging.getLogger(__name__)


def open_store(settings: ServiceSettings, engine: Engine) -> GalleryStore:
    """The writable root, Milvus, and the galleries shipped read-only (CCSCLIP_GALLERIES)."""
    milvus = None
    if settings.milvus_uri:
        token = settings.milvus_token.get_secret_value() if settings.milvus_token else None
        milvus = MilvusConnection(settings.milvus_uri, token, settings.milvus_db)
    return GalleryStore(
        engine,
        settings.gallery_root,
        milvus,
        threads=1,
        compact_bytes=settings.gallery_compact_bytes,
        shipped=settings.gallery_dirs(),
    )


class GalleryService:
    """Handlers for the gallery endpoints over one Core (engine, limits, metrics)."""

    def __init__(self, core: Core, store: GalleryStore | None = None) -> None:
        self.core = core
        self.store = store or open_store(core.settings, core.engine)
        self.live_bias = LiveBias(core.metrics)

    def profile_label(self, payload: dict[str, Any]) -> str | None:
        """The profile a gallery request is served by, if its gallery is open here (metrics):
        never opens the store for a label."""
        gallery = self.store.cached(str(payload.get("gallery")))
        return None if gallery is None else gallery.meta.profile.name

    def names(self) -> list[str]:
        """Every gallery's name; with Milvus down, those that do not need it."""
        try:
            return self.store.names()
        except UnavailableError:
            return sorted(set(self.store.shipped) | set(self.store.names_in_root()))

    def warm(self) -> list[str]:
        """Open every gallery now (snapshot load, log replay), not on its first request."""
        opened = []
        try:
            names = self.store.names()
        except UnavailableError as exc:  # Milvus down: serve the rest, retry on each request
            log.warning("galleries not listed yet: %s", exc)
            return opened
        for name in names:
            try:
                self.store.get(name)
                opened.append(name)
            except CcsclipError as exc:
                log.error("gallery %r is not served: %s", name, exc)
        return opened

    def _gallery(self, name: str, field: str = "gallery") -> Gallery:
        try:
            return self.store.get(name, field)
        except CcsclipError as exc:
            raise engine_error(exc, field) from None

    def _info(self, gallery: Gallery) -> g.GalleryInfo:
        meta = gallery.meta
        try:
            facts = gallery.info()
        except CcsclipError as exc:
            raise engine_error(exc, "gallery") from None
        return g.GalleryInfo(
            gallery=meta.name,
            backend=meta.backend,
            profile=meta.profile.name,
            profile_sha256=meta.profile.sha256,
            model=self.core.model,
            params=meta.params,
            count=facts.count,
            created_at=meta.created_at,
            last_write_at=facts.last_write_at,
            bias_attributes=list(meta.bias_attributes),
            details=facts.details(),
        )

    def _check_profile(self, gallery: Gallery, profile: str | None) -> str:
        """The gallery's profile; a different requested one is refused (another space)."""
        own = gallery.meta.profile.name
        if profile is not None:
            self.core.profile(profile)  # an unknown name is a 404
            if profile != own:
                raise ServiceError(
                    "other_profile",
                    "profile",
                    f"profile: gallery {gallery.meta.name!r} holds embeddings of profile "
                    f"{own!r}; an image embedded with {profile!r} is not comparable. Omit the "
                    "profile (and the x-ccsclip-profile header)",
                )
        return self.core.profile(own, "gallery")

    # ------------------------------------------------------------------ endpoints

    def create(self, request: g.GalleryCreateRequest) -> g.GalleryInfo:
        profile = self.core.profile(request.profile)
        try:
            gallery = self.store.create(
                request.gallery,
                profile,
                request.backend,
                request.params,
                bias_attributes=request.bias_attributes,
            )
        except CcsclipError as exc:
            raise engine_error(exc, "gallery") from None
        log.info("created gallery %r (%s, profile %s)", request.gallery, request.backend, profile)
        return self._info(gallery)

    def upsert(self, request: g.GalleryUpsertRequest) -> g.GalleryWriteResponse:
        gallery = self._gallery(request.gallery)
        profile = self._check_profile(gallery, request.profile)
        files = [(f"items[{i}].image", item.image) for i, item in enumerate(request.items)]
        vectors = self.core.embed_files(files, profile, "galleries_upsert")
        ids = [item.id for item in request.items]
        metadata = [item.metadata or {} for item in request.items]
        try:
            changed, count = gallery.upsert(ids, vectors, metadata)
        except CcsclipError as exc:
            raise engine_error(exc, "gallery") from None
        return g.GalleryWriteResponse(gallery=request.gallery, changed=changed, count=count)

    def delete(self, request: g.GalleryDeleteRequest) -> g.GalleryWriteResponse:
        gallery = self._gallery(request.gallery)
        try:
            removed, count = gallery.delete(request.ids)
        except CcsclipError as exc:
            raise engine_error(exc, "gallery") from None
        return g.GalleryWriteResponse(gallery=request.gallery, changed=removed, count=count)

    def drop(self, request: g.GalleryNameRequest) -> g.GalleryDropResponse:
        try:
            self.store.drop(request.gallery)
        except CcsclipError as exc:
            raise engine_error(exc, "gallery") from None
        log.info("dropped gallery %r", request.gallery)
        return g.GalleryDropResponse(gallery=request.gallery, dropped=True)

    def info(self, request: g.GalleryNameRequest) -> g.GalleryInfo:
        return self._info(self._gallery(request.gallery))

    def list(self, request: g.GalleryListRequest | None = None) -> g.GalleryListResponse:
        out = []
        for name in self.store.names():
            try:
                out.append(self._info(self.store.get(name)))
            except (CcsclipError, ServiceError) as exc:  # dropped meanwhile, or not servable
                log.warning("gallery %r not listed: %s", name, exc)
        return g.GalleryListResponse(galleries=out)

    def search(self, request: g.GallerySearchRequest) -> g.GallerySearchResponse:
        gallery = self._gallery(request.gallery)
        if request.text is not None:
            if request.profile is not None:
                self.core.profile(request.profile)
            query = self.core.engine.embed_texts([request.text])[0]
            kind = "text"
        else:
            profile = self._check_profile(gallery, request.profile)
            assert request.image is not None
            query = self.core.embed_files([("image", request.image)], profile, "galleries_search")[
                0
            ]
            kind = "image"
        try:
            hits = gallery.search(query, request.k, request.filter, SearchParams(ef=request.ef))
        except CcsclipError as exc:
            raise engine_error(exc, "gallery") from None
        self.core.sync_cache_metrics()
        self.live_bias.observe_search(gallery, hits, request.filter)
        return g.GallerySearchResponse(
            gallery=request.gallery,
            backend=gallery.meta.backend,
            profile=gallery.meta.profile.name,
            model=self.core.model,
            query=kind,  # type: ignore[arg-type]
            hits=[g.GallerySearchHit(id=h.id, score=h.score, metadata=h.metadata) for h in hits],
        )

    def retrieve(self, request: s.RetrieveRequest) -> s.RetrieveResponse:
        """`/v1/retrieve`: gallery search by another name (already validated: no re-check)."""
        found = self.search(
            g.GallerySearchRequest.model_construct(
                gallery=request.gallery,
                text=request.text,
                image=request.image,
                k=request.k,
                filter=None,
                ef=None,
                profile=request.profile,
            )
        )
        return s.RetrieveResponse(
            profile=found.profile,
            model=found.model,
            gallery=found.gallery,
            query=found.query,
            hits=[s.GalleryHit(id=h.id, score=h.score) for h in found.hits],
        )

    def close(self) -> None:
        self.store.close()
