"""Offline analysis: description pools, TextSpan, concept judges, CCS scoring and head profiles."""
