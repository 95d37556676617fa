"""Galleries that grow (design §12): one backend interface, embedded exact/HNSW, and Milvus.

`base` defines `GalleryBackend` and the id/metadata/filter rules; `exact` (numpy, the reference)
and `hnsw` (usearch) are embedded backends made durable and multi-process by `local` (a snapshot
plus a write-ahead log, `wal`); `milvus` keeps galleries in a Milvus server or cluster; `store`
names and opens them. The read-only galleries of `ccsclip index` stay in `ccsclip.engine.gallery`.
"""
