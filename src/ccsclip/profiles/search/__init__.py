"""`ccsclip search` in stages (docs/design.md §11): the head set with the best trade-off.

data and split: `data`, `split`; estimate: `direct_cache`; search: `greedy`; measure: `measure`,
`bootstrap`, `batch_metrics`; baselines: `baselines` (the paper's arms at equal size); report:
`result` (the typed `SearchResult`), `profiles` (profile YAMLs), `pareto` (pareto.json, the plot);
`run` joins them, `cli` is the command.
"""
