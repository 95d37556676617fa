"""`milvus`: galleries in Milvus through pymilvus's `MilvusClient` (docs/design.md §12).

The same code talks to a Milvus cluster (`CCSCLIP_MILVUS_URI=http://milvus:19530`, token from a
Secret) and, in tests, to `milvus-lite server` on localhost. Milvus keeps the data durable and
consistent itself: collections are created with `consistency_level="Strong"`, so a search sees
every write acknowledged before it, from any process or pod (no log of ours is involved).

Every gallery is one collection `ccsclip_<uid>` with fields `id` (VARCHAR primary key), `vector`
(FLOAT_VECTOR, HNSW index, COSINE) and `metadata` (JSON). The gallery records themselves (what
`gallery.json` is for the embedded backends) live in a small registry collection
`ccsclip_galleries`, so every pod sees the same list without a shared volume. Milvus needs a
vector field in every collection; the registry's is a 2-dim placeholder. A gallery that declares
bias attributes also keeps its per-value counts in its record (`value_counts`, counts.py): each
write reads the replaced or removed items' metadata first and updates the record after it, so a
search reads them in one call at any size. Milvus has no transaction across the two collections:
two processes writing the same gallery at the same moment may lose one update of the counts (the
vectors are never affected); a record without counts (older galleries) is recounted once.

A file URI (`./galleries.db`) opens milvus-lite inside the process: fine for one process, but a
second process cannot open the same file (docs/design.md §12), so multi-worker serving needs a
server URI.

Milvus down: every call that cannot reach the server raises `UnavailableError` (the service
answers 503 / UNAVAILABLE with a retry-after); the client is connected lazily and rebuilt after
such a failure, so serving recovers by itself once the server is back, without a restart.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ccsclip.engine.galleries.base import Filter, GalleryFacts, Hit, Metadata, SearchParams
from ccsclip.engine.galleries.counts import ValueCounts
from ccsclip.engine.galleries.meta import LiveGalleryMeta
from ccsclip.errors import CcsclipError, NotFoundError, UnavailableError

REGISTRY = "ccsclip_galleries"
_PLACEHOLDER = [1.0, 0.0]
RETRY_AFTER_S = 5  # what a 503 tells the client to wait
CONNECT_TIMEOUT_S = 5.0
T = TypeVar("T")


class MilvusParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connectivity: int = Field(16, ge=4, le=64)  # HNSW M
    ef_construction: int = Field(128, ge=16, le=1024)
    ef_search: int = Field(64, ge=1, le=4096)


class MilvusUnavailable(UnavailableError):
    """The Milvus server cannot be reached or failed an operation."""

    retry_after_s = RETRY_AFTER_S


def _released(exc: Exception) -> bool:
    """A collection not loaded: what milvus-lite reports for every collection after a restart."""
    text = str(exc)
    return "released" in text or "not loaded" in text


def guarded(method: Callable[..., T]) -> Callable[..., T]:
    """Run a method that talks to Milvus; any failure of the server or the connection becomes
    MilvusUnavailable (requests are validated before they get here). A first failure is retried
    once with a new client (a channel to a restarted server may be stale), after loading the
    collections a restarted server left unloaded."""

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> T:
        conn: MilvusConnection = getattr(self, "conn", self)
        for attempt in range(2):
            try:
                return method(self, *args, **kwargs)
            except CcsclipError:
                raise
            except Exception as exc:
                conn.reset()  # the next client connects afresh (a stale channel may not)
                if attempt == 0:
                    try:
                        if _released(exc):
                            conn.load_all()
                        continue
                    except Exception:  # noqa: S110 (reported as unavailable below)
                        pass
                raise MilvusUnavailable(
                    f"the Milvus server at {conn.uri!r} cannot be used right now "
                    f"({type(exc).__name__}: {str(exc)[:200]}); retry in {RETRY_AFTER_S} s"
                ) from exc
        raise AssertionError("unreachable")

    return call


def _expr_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)  # a double-quoted string literal with escapes
    return repr(value)


def filter_expression(spec: Filter | None) -> str:
    """A validated flat filter as a Milvus boolean expression over the JSON field."""
    parts = []
    for key, values in (spec or {}).items():
        field = f'metadata["{key}"]'  # keys are identifiers (checked): no quoting issues
        if len(values) == 1:
            parts.append(f"{field} == {_expr_value(values[0])}")
        else:
            parts.append(f"{field} in [{', '.join(_expr_value(v) for v in values)}]")
    return " and ".join(parts)


class MilvusConnection:
    """One MilvusClient per process (thread-safe per pymilvus) plus the gallery registry,
    connected on first use and again after a failure."""

    def __init__(self, uri: str, token: str | None = None, db_name: str | None = None) -> None:
        self.uri = uri
        self._kwargs: dict[str, Any] = {"uri": uri, "timeout": CONNECT_TIMEOUT_S}
        if token:
            self._kwargs["token"] = token
        if db_name:
            self._kwargs["db_name"] = db_name
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                from pymilvus import MilvusClient

                try:
                    client = MilvusClient(**self._kwargs)
                    self._ensure_registry(client)
                except Exception as exc:
                    raise MilvusUnavailable(
                        f"cannot reach Milvus at {self.uri!r} ({type(exc).__name__}: "
                        f"{str(exc)[:200]}); retry in {RETRY_AFTER_S} s"
                    ) from exc
                self._client = client
            return self._client

    def reset(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:  # closing a broken connection may fail too; it is dropped anyway
                pass

    def load_all(self) -> None:
        """Load every gallery collection (and the registry) the server holds unloaded."""
        client = self.client
        for name in client.list_collections():
            if name.startswith("ccsclip_"):
                client.load_collection(name)

    @staticmethod
    def _ensure_registry(client: Any) -> None:
        from pymilvus import DataType

        if client.has_collection(REGISTRY):
            return
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("name", DataType.VARCHAR, is_primary=True, max_length=128)
        schema.add_field("record", DataType.JSON)
        schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
        index = client.prepare_index_params()
        index.add_index(field_name="placeholder", index_type="FLAT", metric_type="L2")
        client.create_collection(
            REGISTRY, schema=schema, index_params=index, consistency_level="Strong"
        )

    # ------------------------------------------------------------------ registry

    @guarded
    def records(self) -> dict[str, dict[str, Any]]:
        rows = self.client.query(REGISTRY, filter='name != ""', output_fields=["name", "record"])
        return {row["name"]: row["record"] for row in rows}

    @guarded
    def record(self, name: str) -> dict[str, Any] | None:
        rows = self.client.get(REGISTRY, ids=[name], output_fields=["record"])
        return rows[0]["record"] if rows else None

    @guarded
    def put_record(self, name: str, record: dict[str, Any]) -> None:
        row = {"name": name, "record": record, "placeholder": _PLACEHOLDER}
        self.client.upsert(REGISTRY, [row])

    @guarded
    def create(self, meta: LiveGalleryMeta) -> None:
        from pymilvus import DataType

        params = MilvusParams(**meta.params)
        collection = f"ccsclip_{meta.uid}"
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=1024)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=meta.embed_dim)
        schema.add_field("metadata", DataType.JSON)
        index = self.client.prepare_index_params()
        index.add_index(
            field_name="vector",
            index_type="HNSW",
            metric_type="COSINE",
            params={"M": params.connectivity, "efConstruction": params.ef_construction},
        )
        self.client.create_collection(
            collection, schema=schema, index_params=index, consistency_level="Strong"
        )
        record: dict[str, Any] = {"meta": meta.dump(), "last_write_at": None}
        if meta.bias_attributes:
            record["value_counts"] = ValueCounts(meta.bias_attributes).to_dict()
        self.put_record(meta.name, record)

    @guarded
    def drop(self, name: str) -> None:
        record = self.record(name)
        if record is None:
            raise NotFoundError(f"gallery: unknown gallery {name!r}")
        self.client.delete(REGISTRY, ids=[name])
        self.client.drop_collection(f"ccsclip_{record['meta']['uid']}")  # no error if gone


class MilvusGallery:
    """One Milvus-backed gallery (a `base.Gallery`, as LocalGallery is)."""

    def __init__(self, connection: MilvusConnection, meta: LiveGalleryMeta) -> None:
        self.conn = connection
        self.meta = meta
        self.params = MilvusParams(**meta.params)
        self.collection = f"ccsclip_{meta.uid}"

    @guarded
    def _alive(self) -> None:
        record = self.conn.record(self.meta.name)
        if record is None or record["meta"]["uid"] != self.meta.uid:
            raise NotFoundError(f"gallery {self.meta.name!r} was dropped")

    @guarded
    def _touch(self, out: list[Metadata] | None = None, into: Sequence[Metadata] = ()) -> None:
        """Record the write: its time, and the counts with `out` items' values taken away and
        `into` items' values added."""
        record = self.conn.record(self.meta.name)
        if record is None or record["meta"]["uid"] != self.meta.uid:
            raise NotFoundError(f"gallery {self.meta.name!r} was dropped")
        fresh = {"meta": self.meta.dump(), "last_write_at": time.time()}
        if self.meta.bias_attributes:
            counts = self._stored_counts(record)
            if counts is None:  # a record from before counts were kept: recount once
                counts = self._recount()
            else:
                counts.remove(out or [])
                counts.add(into)
            fresh["value_counts"] = counts.to_dict()
        self.conn.put_record(self.meta.name, fresh)

    def _stored_counts(self, record: dict[str, Any]) -> ValueCounts | None:
        stored = record.get("value_counts")
        attributes = self.meta.bias_attributes
        if not isinstance(stored, dict) or set(stored) != set(attributes):
            return None
        return ValueCounts.from_dict(attributes, stored)

    def _recount(self) -> ValueCounts:
        return ValueCounts.of(
            self.meta.bias_attributes, (m for _, _, batch in self.items() for m in batch)
        )

    @guarded
    def _replaced(self, ids: Sequence[str]) -> list[Metadata]:
        """Metadata of the items among `ids` that exist now (their values leave the counts)."""
        if not self.meta.bias_attributes:
            return []
        rows = self.conn.client.get(self.collection, ids=list(ids), output_fields=["metadata"])
        return [dict(row.get("metadata") or {}) for row in rows]

    @guarded
    def value_counts(self) -> dict[str, dict[str, int]]:
        """{declared attribute: {value: live items}} from the registry record (one call)."""
        record = self.conn.record(self.meta.name)
        if record is None or record["meta"]["uid"] != self.meta.uid:
            raise NotFoundError(f"gallery {self.meta.name!r} was dropped")
        counts = self._stored_counts(record)
        if counts is None and self.meta.bias_attributes:
            counts = self._recount()
            self.conn.put_record(self.meta.name, {**record, "value_counts": counts.to_dict()})
        return counts.to_dict() if counts is not None else {}

    @guarded
    def upsert(
        self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Metadata]
    ) -> tuple[int, int]:
        rows = [
            {"id": i, "vector": v.tolist(), "metadata": dict(m)}
            for i, v, m in zip(ids, vectors, metadata, strict=True)
        ]
        replaced = self._replaced(ids)
        self.conn.client.upsert(self.collection, rows)
        self._touch(replaced, metadata)
        return len(rows), self.count()

    @guarded
    def delete(self, ids: Sequence[str]) -> tuple[int, int]:
        """(ids present just before the delete, count after). Milvus has no lock of ours: two
        clients deleting the same id at the same moment may both count it."""
        present = sorted(self.contains(ids))
        if present:
            removed = self._replaced(present)
            self.conn.client.delete(self.collection, ids=present)
            self._touch(removed)
        return len(present), self.count()

    @guarded
    def contains(self, ids: Sequence[str]) -> set[str]:
        rows = self.conn.client.get(self.collection, ids=list(ids), output_fields=["id"])
        return {str(row["id"]) for row in rows}

    def items(self, batch: int = 1024) -> Iterator[tuple[list[str], np.ndarray, list[Metadata]]]:
        """Every item, `batch` at a time (ids, unit vectors, metadata), by a query iterator."""
        iterator = guarded(
            lambda _: self.conn.client.query_iterator(
                self.collection, batch_size=batch, output_fields=["id", "vector", "metadata"]
            )
        )(self)
        next_batch = guarded(lambda _: iterator.next())
        while rows := next_batch(self):
            ids = [str(r["id"]) for r in rows]
            vectors = np.asarray([r["vector"] for r in rows], dtype=np.float32)
            yield ids, vectors, [dict(r.get("metadata") or {}) for r in rows]
        iterator.close()

    @guarded
    def count(self) -> int:
        rows = self.conn.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    @guarded
    def search(
        self, query: np.ndarray, k: int, spec: Filter | None, params: SearchParams | None
    ) -> list[Hit]:
        ef = params.ef if params and params.ef else self.params.ef_search
        results = self.conn.client.search(
            self.collection,
            data=[query.astype(np.float32).tolist()],
            limit=k,
            filter=filter_expression(spec),
            search_params={"metric_type": "COSINE", "params": {"ef": max(ef, k)}},
            output_fields=["metadata"],
        )
        hits = results[0] if results else []
        return [
            Hit(str(h["id"]), float(h["distance"]), dict(h.get("entity", {}).get("metadata") or {}))
            for h in hits
        ]

    @guarded
    def info(self) -> GalleryFacts:
        record = self.conn.record(self.meta.name)
        if record is None or record["meta"]["uid"] != self.meta.uid:
            raise NotFoundError(f"gallery {self.meta.name!r} was dropped")
        return GalleryFacts(
            count=self.count(),
            last_write_at=record.get("last_write_at"),
            backend={
                "uri": self.conn.uri,
                "collection": self.collection,
                **self.params.model_dump(),
            },
        )

    def close(self) -> None:
        pass
