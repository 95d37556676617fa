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
    Profile,
    ProfileAblation,
    ProfileHead,
    ProfileModel,
    ProfileSelection,
    SearchProbe,
    SearchSelection,
    parse_head_names,
    write_profile,
)


def _validation_summary(entry: dict[str, Any]) -> dict[str, Any]:
    val = entry["validation"]
    out: dict[str, Any] = {
        name: {k: round(float(v), 6) for k, v in stats.items() if k in ("value", "low", "high")}
        for name, stats in val.items()
    }
    out["meets_constraint"] = bool(entry["meets_constraint"]["validation"])
    out["accuracy_drop"] = round(float(entry["accuracy_drop"]["validation"]), 6)
    return out


def search_profile(
    loaded: LoadedModel, run, result: dict[str, Any], entry: dict[str, Any], name: str, out: Path
) -> Profile:
    """The profile of one searched head set, to be written into folder `out`."""
    spec = loaded.spec
    options = run.options
    rows = {}
    if run.table is not None:
        rows = {(r.layer, r.head): r for r in run.table.heads}
    heads = []
    for layer, head in parse_head_names(entry["heads"]):
        row = rows.get((layer, head))
        heads.append(
            ProfileHead(
                layer=layer,
                head=head,
                ccs=row.ccs if row else None,
                concept=row.concept if row else None,
            )
        )
    mean_mode = options.mode == "mean"
    table = options.ccs_table
    return Profile(
        name=name,
        model=ProfileModel(
            name=spec.name, pretrained=spec.pretrained, weights_sha256=spec.weights_sha256
        ),
        ablation=ProfileAblation(
            mode=options.mode,
            means=os.path.relpath(options.means, out) if mean_mode else None,
            means_sha256=run.means_sha256 if mean_mode else None,
        ),
        heads=heads,
        selection=ProfileSelection(
            arm="search",
            seed=None,
            ccs_table=os.path.relpath(table, out) if table else None,
            ccs_table_sha256=_sha(table),
            thresholds=run.table.thresholds.model_dump() if run.table is not None else None,
            search=SearchSelection(
                method=f"{result['method']['kind']} (beam {options.beam}, verify top "
                f"{options.verify_top}), step {len(heads)}",
                objective={k: result["objective"][k] for k in ("metric", "attribute", "k")},
                constraint={k: result["constraint"][k] for k in ("max_accuracy_drop", "max_heads")},
                probes=[
                    SearchProbe(name=p["name"], kind=p["kind"], content_sha256=p["content_sha256"])
                    for p in result["probes"]
                ],
                split=dict(result["split"]),
                validation=_validation_summary(entry),
            ),
        ),
    )


def _sha(path) -> str | None:
    return None if path is None else sha256_file(path)


def write_search_profiles(
    loaded: LoadedModel, run, result: dict[str, Any], out: Path
) -> dict[str, str]:
    """Write every path point, and the chosen point under the plain name; {name: path}."""
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, str] = {}
    for entry in result["points"]:
        profile = search_profile(loaded, run, result, entry, entry["name"], out)
        written[entry["name"]] = str(write_profile(out / f"{entry['name']}.yaml", profile))
    chosen = result.get("chosen")
    if chosen is not None:
        name = run.options.name
        profile = search_profile(loaded, run, result, chosen, name, out)
        written[name] = str(write_profile(out / f"{name}.yaml", profile))
    return written
