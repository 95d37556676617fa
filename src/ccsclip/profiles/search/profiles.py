"""Searched head sets as ordinary profile YAMLs (arm `search`), exportable and servable.

Every path point is written as `<name>-h<n>.yaml`; the chosen one also as `<name>.yaml` (profile
name `<name>`), the one to export and serve. `selection.search` records the objective, the
constraint, the probes by content hash, the split and the point's validation figures.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ccsclip.fileio import sha256_file
from ccsclip.models import LoadedModel
from ccsclip.profiles.schema import (
    ModelIdentity,
    Profile,
    ProfileAblation,
    ProfileHead,
    ProfileSelection,
    SearchProbe,
    SearchSelection,
    parse_head_names,
    write_profile,
)
from ccsclip.profiles.search.result import Measured, SearchResult


def _validation_summary(entry: Measured) -> dict[str, Any]:
    out: dict[str, Any] = {
        name: {k: round(float(v), 6) for k, v in stats.items() if k in ("value", "low", "high")}
        for name, stats in entry.validation.items()
    }
    out["meets_constraint"] = bool(entry.meets_constraint["validation"])
    out["accuracy_drop"] = round(float(entry.accuracy_drop["validation"]), 6)
    return out


def search_profile(
    loaded: LoadedModel, result: SearchResult, entry: Measured, name: str, out: Path
) -> Profile:
    """The profile of one searched head set, to be written into folder `out`."""
    spec = loaded.spec
    ablation, method = result.ablation, result.method
    rows = {}
    if result.table is not None:
        rows = {(r.layer, r.head): r for r in result.table.heads}
    heads = []
    for layer, head in parse_head_names(entry.heads):
        row = rows.get((layer, head))
        heads.append(
            ProfileHead(
                layer=layer,
                head=head,
                ccs=row.ccs if row else None,
                concept=row.concept if row else None,
            )
        )
    mean_mode = ablation.mode == "mean"
    table = result.ccs_table
    return Profile(
        name=name,
        model=ModelIdentity(
            name=spec.name, pretrained=spec.pretrained, weights_sha256=spec.weights_sha256
        ),
        ablation=ProfileAblation(
            mode=ablation.mode,
            means=os.path.relpath(ablation.means, out) if mean_mode else None,
            means_sha256=ablation.means_sha256 if mean_mode else None,
        ),
        heads=heads,
        selection=ProfileSelection(
            arm="search",
            seed=None,
            ccs_table=os.path.relpath(table, out) if table else None,
            ccs_table_sha256=_sha(table),
            thresholds=result.table.thresholds.model_dump() if result.table is not None else None,
            search=SearchSelection(
                method=f"{method.kind} (beam {method.beam}, verify top "
                f"{method.verify_top}), step {len(heads)}",
                objective={
                    "metric": result.objective.metric,
                    "attribute": result.objective.attribute,
                    "k": result.objective.k,
                },
                constraint={
                    "max_accuracy_drop": result.constraint.max_accuracy_drop,
                    "max_heads": result.constraint.max_heads,
                },
                probes=[
                    SearchProbe(name=p.name, kind=p.kind, content_sha256=p.content_sha256)
                    for p in result.probes
                ],
                split=result.split.to_dict(),
                validation=_validation_summary(entry),
            ),
        ),
    )


def _sha(path) -> str | None:
    return None if path is None else sha256_file(path)


def write_search_profiles(loaded: LoadedModel, result: SearchResult, out: Path) -> dict[str, str]:
    """Write every path point, and the chosen point under the plain name; {name: path}."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for entry in result.points:
        profile = search_profile(loaded, result, entry, entry.name, out)
        written[entry.name] = str(write_profile(out / f"{entry.name}.yaml", profile))
    if result.chosen is not None:
        profile = search_profile(loaded, result, result.chosen, result.name, out)
        written[result.name] = str(write_profile(out / f"{result.name}.yaml", profile))
    return written
