"""BentoML entry point: `bentoml serve` (or `bentoml serve service:CCSClip`) from the project root.

The service itself lives in the package (ccsclip.service.http); settings come from `CCSCLIP_*`
environment variables (docs/service.md).
"""

from ccsclip.service.http import CCSClip

__all__ = ["CCSClip"]
