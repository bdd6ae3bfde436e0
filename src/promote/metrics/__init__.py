"""Metrics: per-position values (distribution.py), streaming summaries (summary.py)."""
