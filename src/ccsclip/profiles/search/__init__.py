"""`ccsclip search` in stages (docs/design.md §11): the head set with the best trade-off.

attribution (optional, `--attribution`): `ccsclip.profiles.attribute.reach`, which this package
imports and which never imports it; candidates: `candidates`; data: `data` (the split is
`ccsclip.profiles.split`); estimate: `direct_cache`; search: `greedy`; measure: `measure`,
`bootstrap`, `batch_metrics`, `null`; baselines: `baselines` (the paper's arms at equal size);
report: `result` (the typed `SearchResult`), `profiles` (profile YAMLs), `pareto` (pareto.json,
the plot); `run` joins them (`SearchRun`, one method per stage), `cli` is the command.
"""
