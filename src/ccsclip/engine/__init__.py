"""Torch-free serving runtime (docs/design.md §8): bundle, preprocessing, tokeniser, ONNX.

Nothing under this package may import torch or open_clip (a test checks `sys.modules`): the
serving image ships without them.
"""
