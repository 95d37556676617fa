"""Normal bootstrap intervals (estimate ± 1.96 bootstrap SE), shared by the search and attribution.

Why normal and not percentile intervals: see `ccsclip.profiles.search.bootstrap`. Both stages report
with the same interval, so it lives here and neither stage imports the other for it.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict

Z95 = 1.959963984540054


class Span(BaseModel):
    """A point value with its 95% interval (what a mean of intervals keeps)."""

    model_config = ConfigDict(frozen=True)

    value: float
    low: float
    high: float


class Interval(Span):
    """A point value, its 95% interval, the half width and the bootstrap standard error."""

    half_width: float
    se: float


def interval(estimate: float, replicates: torch.Tensor | np.ndarray) -> dict[str, float]:
    """estimate ± 1.96 bootstrap standard errors (the dict form the search's tables extend)."""
    se = float(np.std(np.asarray(replicates, dtype=np.float64), ddof=1))
    half = Z95 * se
    return {
        "value": float(estimate),
        "low": float(estimate - half),
        "high": float(estimate + half),
        "half_width": half,
        "se": se,
    }
