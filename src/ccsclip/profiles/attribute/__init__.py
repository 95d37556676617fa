"""Bias attribution: which components (heads, MLPs, embeddings) carry a bias probe's gaps.

`parts` splits each image embedding into per-component parts, `gaps` splits each query's
attribute gap into the same parts and turns them into shares, `run` puts one probe through both
with bootstrap intervals into a typed `AttributionResult` (`result`), `report` writes
attribution.json/png and prints the table; `reach` summarises several probes for the search's
attribution stage; `cli` is `ccsclip attribute`. This package never imports the search.
Definitions: docs/attribution.md.
"""
