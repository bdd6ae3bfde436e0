"""Stages: each reads its contract section, runs, and returns a StageResult (DESIGN.md §6)."""
