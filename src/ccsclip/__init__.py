"""ccsclip: rank CLIP attention heads by Concept Consistency Score, prune them, export and serve."""

__version__ = "0.1.0"
