"""`ccsclip rank` in stages (docs/design.md §3-§5): describe, judge, score, write profiles.

describe: `pool` (description pools), `embed` (their text embeddings), `textspan` (the top
descriptions of each head); judge: `judges/`; score: `ccs` (CCS and its null), `table`
(ccs.json); write: `arms` (profiles per arm), `pipeline` (the whole job), `stages` (timing).
"""
