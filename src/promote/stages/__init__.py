"""Stages: each reads its contract section, runs, and returns a StageResult (docs/architecture.md)."""
