"""`milvus`: galleries in Milvus through pymilvus's `MilvusClient` (design §12).

The same code talks to a Milvus cluster (`CCSCLIP_MILVUS_URI=http://milvus:19530`, token from a
Secret) and, in tests, to `milvus-lite server` on localhost. Milvus keeps the data durable and
consistent itself: collections are created with `consistency_level="Strong"`, so a search sees
every write acknowledged before it, from any process or pod (no log of ours is involved).

Every gallery is one collection `ccsclip_<uid>` with fields `id` (VARCHAR primary key), `vector`
(FLOAT_VECTOR, HNSW index, COSINE) and `metadata` (JSON). The gallery records themselves (what
`gallery.json` is for the embedded backends) live in a small registry collection
`ccsclip_galleries`, so every pod sees the same list without a shared volume. Milvus needs a
vector field in every collection; the registry's is a 2-dim placeholder.

A file URI (`./galleries.db`) opens milvus-lite inside the process: fine for one process, but a
second process cannot open the same file (design §12), so multi-worker serving needs a server URI.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ccsclip.engine.galleries.base import Filter, Hit, Metadata, SearchParams
from ccsclip.engine.galleries.meta import LiveGalleryMeta
from ccsclip.errors import CcsclipError, NotFoundError

REGISTRY = "ccsclip_galleries"
_PLACEHOLDER = [1.0, 0.0]


class MilvusParams(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    connectivity: int = Field(16, ge=4, le=64)  # HNSW M
    ef_construction: int = Field(128, ge=16, le=1024)
    ef_search: int = Field(64, ge=1, le=4096)


class MilvusUnavailable(CcsclipError):
    """The Milvus server cannot be reached or refused an operation."""


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
    """One MilvusClient per process (thread-safe per pymilvus) plus the gallery registry."""

    def __init__(self, uri: str, token: str | None = None, db_name: str | None = None) -> None:
        from pymilvus import MilvusClient

        self.uri = uri
        kwargs: dict[str, Any] = {"uri": uri, "timeout": 30}
        if token:
            kwargs["token"] = token
        if db_name:
            kwargs["db_name"] = db_name
        try:
            self.client = MilvusClient(**kwargs)
            self._ensure_registry()
        except CcsclipError:
            raise
        except Exception as exc:
            raise MilvusUnavailable(f"cannot use Milvus at {uri!r}: {exc}") from exc

    def _ensure_registry(self) -> None:
        from pymilvus import DataType

        if self.client.has_collection(REGISTRY):
            return
        schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("name", DataType.VARCHAR, is_primary=True, max_length=128)
        schema.add_field("record", DataType.JSON)
        schema.add_field("placeholder", DataType.FLOAT_VECTOR, dim=2)
        index = self.client.prepare_index_params()
        index.add_index(field_name="placeholder", index_type="FLAT", metric_type="L2")
        self.client.create_collection(
            REGISTRY, schema=schema, index_params=index, consistency_level="Strong"
        )

    # ------------------------------------------------------------------ registry

    def records(self) -> dict[str, dict[str, Any]]:
        rows = self.client.query(REGISTRY, filter='name != ""', output_fields=["name", "record"])
        return {row["name"]: row["record"] for row in rows}

    def record(self, name: str) -> dict[str, Any] | None:
        rows = self.client.get(REGISTRY, ids=[name], output_fields=["record"])
        return rows[0]["record"] if rows else None

    def put_record(self, name: str, record: dict[str, Any]) -> None:
        row = {"name": name, "record": record, "placeholder": _PLACEHOLDER}
        self.client.upsert(REGISTRY, [row])

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
        self.put_record(meta.name, {"meta": meta.dump(), "last_write_at": None})

    def drop(self, name: str) -> None:
        record = self.record(name)
        if record is None:
            raise NotFoundError(f"gallery: unknown gallery {name!r}")
        self.client.delete(REGISTRY, ids=[name])
        uid = record["meta"]["uid"]
        if self.client.has_collection(f"ccsclip_{uid}"):
            self.client.drop_collection(f"ccsclip_{uid}")


class MilvusGallery:
    """One Milvus-backed gallery; the same methods as LocalGallery."""

    def __init__(self, connection: MilvusConnection, meta: LiveGalleryMeta) -> None:
        self.conn = connection
        self.client = connection.client
        self.meta = meta
        self.params = MilvusParams(**meta.params)
        self.collection = f"ccsclip_{meta.uid}"

    def _alive(self) -> None:
        record = self.conn.record(self.meta.name)
        if record is None or record["meta"]["uid"] != self.meta.uid:
            raise NotFoundError(f"gallery {self.meta.name!r} was dropped")

    def _touch(self) -> None:
        record = {"meta": self.meta.dump(), "last_write_at": time.time()}
        self.conn.put_record(self.meta.name, record)

    def upsert(self, ids: Sequence[str], vectors: np.ndarray, metadata: Sequence[Metadata]) -> int:
        rows = [
            {"id": i, "vector": v.tolist(), "metadata": dict(m)}
            for i, v, m in zip(ids, vectors, metadata, strict=True)
        ]
        self.client.upsert(self.collection, rows)
        self._touch()
        return self.count()

    def delete(self, ids: Sequence[str]) -> tuple[int, int]:
        before = self.count()
        self.client.delete(self.collection, ids=list(ids))
        self._touch()
        after = self.count()
        return before - after, after

    def contains(self, ids: Sequence[str]) -> set[str]:
        rows = self.client.get(self.collection, ids=list(ids), output_fields=["id"])
        return {str(row["id"]) for row in rows}

    def count(self) -> int:
        rows = self.client.query(self.collection, filter="", output_fields=["count(*)"])
        return int(rows[0]["count(*)"])

    def search(
        self, query: np.ndarray, k: int, spec: Filter | None, params: SearchParams | None
    ) -> list[Hit]:
        ef = params.ef if params and params.ef else self.params.ef_search
        results = self.client.search(
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

    def info(self) -> dict[str, Any]:
        record = self.conn.record(self.meta.name)
        if record is None or record["meta"]["uid"] != self.meta.uid:
            raise NotFoundError(f"gallery {self.meta.name!r} was dropped")
        return {
            "count": self.count(),
            "last_write_at": record.get("last_write_at"),
            "seq": None,
            "generation": None,
            "details": {
                "uri": self.conn.uri,
                "collection": self.collection,
                **self.params.model_dump(),
            },
        }

    def close(self) -> None:
        pass
