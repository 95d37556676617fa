"""Torch-free serving runtime (design §8): bundle loading, preprocessing, tokenisation, ONNX.

Nothing under this package may import torch or open_clip (a test checks `sys.modules`): the
serving image ships without them.
"""
