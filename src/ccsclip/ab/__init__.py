"""The A/B judge: anytime-valid decisions between two arms on the servers' live figures.

`ccsclip ab judge` (cli.py) reads the counters (sources.py) of the arms that two label selectors
pick (selectors.py), builds a confidence sequence per arm (confseq.py) and decides per figure
(figures.py, verdict.py). docs/ab.md is the user's guide.
"""
