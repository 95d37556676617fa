"""Probe import (docs/design.md §7): sealed probes from the datasets researchers already have.

Sources: a class-folder tree (`folder`), clip-benchmark's dataset builders over data on disk
(`benchmark`), a CSV/Parquet table of images and attributes such as FairFace's (`table`), and a
Hugging Face `datasets` dataset saved to disk (`hf`). Each builds a draft that `write` turns
into a probe folder atomically, in the format `ccsclip probe seal` writes.
"""
