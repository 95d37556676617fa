"""Galleries that grow (docs/design.md §12): one backend interface, embedded exact/HNSW, and Milvus.

`base` defines `GalleryBackend` and the id/metadata/filter rules; `exact` (numpy, the reference)
and `hnsw` (usearch) are embedded backends made durable and multi-process by `local` (a snapshot
plus a write-ahead log, `wal`); `milvus` keeps galleries in a Milvus server or cluster; `store`
names and opens them (with the read-only galleries a bundle ships); `bulk` is `ccsclip index`;
`legacy` converts folders of the old index format; `check` is `ccsclip gallery check`.
"""
