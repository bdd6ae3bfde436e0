"""Helpers of the scale-out tests: small variants of the shipped example contracts, and reports
compared field by field with only what legitimately differs between runs taken out."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_lm"


def example_variant(tmp: Path, source: str = "contract.yaml", *, limit: int = 64, candidate: str | None = None,
                    localize: bool = False, name: str | None = None) -> Path:
    """The example contract ``source`` on its first ``limit`` samples, its files addressed absolutely."""
    doc = yaml.safe_load((EXAMPLE / source).read_text())
    for role in ("reference", "candidate"):
        doc[role]["model"] = f"{EXAMPLE / 'model.py'}:build"
        doc[role]["weights"] = str(EXAMPLE / "weights.safetensors")
    if candidate:
        doc["candidate"]["model"] = candidate
    doc["data"] = {"path": str(EXAMPLE / "eval.jsonl"), "task": "causal-lm", "limit": limit}
    if localize:
        doc["numerical"]["localize"] = {"max_samples": 8}
    path = tmp / (name or f"{Path(source).stem}-{limit}.yaml")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def comparable(report) -> dict:  # noqa: ANN001 - a Report
    """The report as JSON without wall-clock times, the command line, the commit, thread counts (an
    actor runs 1 torch thread) and whether the noise floor was cached: the equality of every statistic
    is what is being tested."""
    data = json.loads(json.dumps(report.to_dict()))
    for key in ("started_at", "finished_at", "duration_s", "command", "commit"):
        data.pop(key, None)
    for stage in data["stages"]:
        stage.pop("duration_s", None)
        stage.get("details", {}).pop("kernel_seconds", None)
        # Whether the floor came from the in-process cache (docs/metrics.md) is provenance, not a statistic.
        (stage.get("details", {}).get("noise_floor") or {}).pop("cached", None)
    for role in data["kernels"].values():
        (role.get("fingerprint") or {}).pop("threads", None)
    return data
