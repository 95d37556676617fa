"""Offline export (torch, open_clip): the artefacts of a serving bundle (docs/design.md §1, §7).

Every writer here produces a file the torch-free engine reads back, plus a small JSON-able dict
for the bundle's manifest that carries the file's sha256 so the engine can check it.
"""
