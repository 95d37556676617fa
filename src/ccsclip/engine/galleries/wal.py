"""A write-ahead log of gallery writes: appended and fsynced before a write is acknowledged.

Record layout (little-endian): magic `CGW1`, payload length (u32), crc32 of the payload (u32),
payload. The payload is a JSON header's length (u32), the header (`seq`, `op`, `ids`,
`metadata`, `time`) and, for upserts, the float32 vectors [len(ids), E].

Readers stop at the first incomplete or corrupt record: it is either being written right now by
another process (it holds the gallery lock) or was torn by a crash. Only a process holding the
lock may cut a torn tail off (`truncate`), which it does when it opens the log for writing.
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

MAGIC = b"CGW1"
_HEAD = struct.Struct("<4sII")
_LEN = struct.Struct("<I")


@dataclass
class Record:
    seq: int
    op: Literal["upsert", "delete"]
    ids: list[str]
    metadata: list[dict[str, Any]] = field(default_factory=list)
    vectors: np.ndarray | None = None
    time: float = 0.0


def encode(record: Record) -> bytes:
    header = {
        "seq": record.seq,
        "op": record.op,
        "ids": record.ids,
        "metadata": record.metadata,
        "time": record.time or time.time(),
    }
    head = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    body = b"" if record.vectors is None else np.ascontiguousarray(record.vectors, "<f4").tobytes()
    payload = _LEN.pack(len(head)) + head + body
    return _HEAD.pack(MAGIC, len(payload), zlib.crc32(payload)) + payload


def _decode(payload: bytes, dim: int) -> Record:
    (size,) = _LEN.unpack_from(payload)
    header = json.loads(payload[4 : 4 + size].decode("utf-8"))
    body = payload[4 + size :]
    vectors = None
    if header["op"] == "upsert":
        vectors = np.frombuffer(body, dtype="<f4").reshape(len(header["ids"]), dim)
    return Record(
        seq=header["seq"],
        op=header["op"],
        ids=header["ids"],
        metadata=header.get("metadata", []),
        vectors=vectors,
        time=header.get("time", 0.0),
    )


def read(path: Path, offset: int, dim: int) -> Iterator[tuple[Record, int]]:
    """(record, offset after it) from `offset` up to the first incomplete or corrupt record."""
    try:
        handle = open(path, "rb")
    except FileNotFoundError:
        return
    with handle:
        handle.seek(offset)
        while True:
            head = handle.read(_HEAD.size)
            if len(head) < _HEAD.size:
                return
            magic, length, crc = _HEAD.unpack(head)
            if magic != MAGIC:
                return
            payload = handle.read(length)
            if len(payload) < length or zlib.crc32(payload) != crc:
                return
            offset += _HEAD.size + length
            yield _decode(payload, dim), offset


def end_of_valid(path: Path, dim: int) -> int:
    """The offset just after the last complete record (0 for a missing file)."""
    end = 0
    for _, after in read(path, 0, dim):
        end = after
    return end


def truncate(path: Path, dim: int) -> int:
    """Cut a torn tail off (caller holds the gallery lock). Returns the new size."""
    end = end_of_valid(path, dim)
    if path.exists() and path.stat().st_size != end:
        with open(path, "r+b") as handle:
            handle.truncate(end)
            os.fsync(handle.fileno())
    return end


def append(path: Path, record: Record) -> int:
    """Append and fsync (caller holds the gallery lock). Returns the file size after it."""
    data = encode(record)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def create_empty(path: Path) -> None:
    """A new, empty log, durable before it is named in CURRENT."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
