"""The offline stage (docs/design.md §1, §2): rank heads by CCS, search head sets, write profiles.

`rank/` describes heads (pool, embed, TextSpan), judges them, scores CCS and writes profiles;
`search/` finds the head set with the best accuracy-bias trade-off. Shared by both: the profile
schema (`schema.py`) and the evaluation of a soft-pruned model (`probe_eval.py`, `evaluate.py`).
"""
