"""The synthetic concept world ("model organism") and the tiny CLIP trained on it.

`world` generates labelled scenes, images and captions (numpy only); `probes` writes probe
directories, galleries and the tagged description pool. Neither imports torch.
"""
