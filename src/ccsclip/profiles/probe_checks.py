"""A probe of the kind a stage expects (accuracy for a constraint, bias with the attribute for
an objective), or a clear error saying which option takes it. Shared by the search and attribution.
"""

from __future__ import annotations

from pathlib import Path

from ccsclip.errors import InvalidInputError
from ccsclip.probeset import AccuracyProbeSpec, BiasProbeSpec


def check_accuracy_spec(directory: str | Path, spec: AccuracyProbeSpec | BiasProbeSpec) -> None:
    """An accuracy probe where one is expected (the constraint), or a clear error."""
    if spec.kind != "accuracy":
        raise InvalidInputError(
            f"probe {str(directory)!r} is a bias probe (kind: bias): pass it with --bias-probe; "
            "--probe takes accuracy probes (kind: accuracy)"
        )


def check_bias_spec(
    directory: str | Path, spec: AccuracyProbeSpec | BiasProbeSpec, attribute: str
) -> None:
    """A bias probe that has `attribute` where one is expected (the objective)."""
    if spec.kind != "bias":
        raise InvalidInputError(
            f"probe {str(directory)!r} is an accuracy probe (kind: accuracy): --bias-probe needs "
            "a bias probe (kind: bias, with metadata and neutral queries); pass accuracy probes "
            "with --probe"
        )
    if attribute not in spec.attributes:
        raise InvalidInputError(
            f"bias probe {spec.name!r} has no attribute {attribute!r}: its attributes are "
            f"{', '.join(spec.attributes)} (choose one with --attribute)"
        )
