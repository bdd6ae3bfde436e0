"""Sampled-token records (RL rollouts): which clauses can be evaluated on them, decided before any run.

A records file holding only ``target_logprobs`` (the log-prob of the sampled token; no top-k, no
logits) determines log w = log π_train(y) − log π_infer(y) and every function of it exactly, and
nothing else: KL, TV, logit oscillation, argmax agreement and entropy depend on the rest of the
distribution, which such records do not bound at all (a silent [0, ∞] would pass anything). So a
clause on them, or a slice key that needs the distribution, is a contract error (exit 2) found at
``validate`` and ``check`` time from the files' headers alone (no tensor is read), naming the clause,
the records file and the metrics that do apply.

Also here, because they follow from ``numerical.implications``: the parameter of ``pg_bias``
(A_max·G) and of ``clip_budget_used`` (the PPO/GRPO ε), and the run-level ``ess`` accepting only
``stat: mean``.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

from promote.contract.kernel_specs import resolve_path
from promote.contract.problems import LoadedDocument, Problem
from promote.vocabulary import METRICS, SAMPLED_METRICS, TASK_METRICS

DISTRIBUTION_SLICE_KEYS = ("entropy", "margin")


def _header(file: Path) -> dict[str, Any] | None:
    """The JSON header of a safetensors file (tensor names, dtypes, shapes); None when unreadable."""
    try:
        with file.open("rb") as handle:
            size = struct.unpack("<Q", handle.read(8))[0]
            if size > 100_000_000:
                return None
            return json.loads(handle.read(size))
    except (OSError, struct.error, ValueError):
        return None


def is_sampled_records(path: Path) -> bool:
    """Whether a records file (or a directory's first shard) holds sampled-token records only."""
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    header = _header(files[0]) if files and files[0].is_file() else None
    if header is None:
        return False  # unreadable files are reported by the records kernel itself, with its message
    keys = set(header) - {"__metadata__"}
    if "logits" in keys or "target_logprobs" not in keys:
        return False
    if "topk_ids" in keys:
        shape = header["topk_ids"].get("shape") or []
        return bool(shape) and shape[-1] == 0
    return "topk_logprobs" not in keys


def rl_param(metric: str, implications: dict[str, Any]) -> float | None:
    """Parameter of the RL bound metrics, from ``numerical.implications`` (None: not one of them)."""
    if metric == "pg_bias":
        return float(implications.get("advantage_max", 1.0)) * float(implications.get("score_norm", 1.0))
    if metric == "clip_budget_used":
        return float(implications.get("clip", METRICS["clip_budget_used"].param_default))
    return None


def sampled_problems(doc: LoadedDocument) -> list[Problem]:
    """Clauses and slice keys that sampled-token records cannot evaluate; ``ess`` with a stat other than mean."""
    data = doc.data
    problems: list[Problem] = []
    for section in ("numerical", "statistical"):
        for index, clause in enumerate((data.get(section) or {}).get("clauses", [])):
            metric = clause.get("metric")
            if metric == "ess" and clause.get("stat") not in (None, "mean"):
                problems.append(doc.problem((section, "clauses", index, "stat"), "`ess` is one number per run "
                                            "((Σw)² / (n·Σw²)); write `stat: mean`"))
    sampled = [role for role in ("reference", "candidate") if (data.get(role) or {}).get("kind") == "records"
               and is_sampled_records(resolve_path(doc, data[role]["path"]).resolve())]
    if not sampled:
        return problems
    which = " and ".join(f"the {role}'s `{data[role]['path']}`" for role in sampled)
    usable = ", ".join(f"`{m}`" for m in SAMPLED_METRICS)
    for section in ("numerical", "statistical"):
        for index, clause in enumerate((data.get(section) or {}).get("clauses", [])):
            metric = clause.get("metric")
            if metric in SAMPLED_METRICS or metric in TASK_METRICS or metric not in METRICS:
                continue
            problems.append(doc.problem(
                (section, "clauses", index, "metric"),
                f"clause `{clause.get('id')}`: metric `{metric}` needs the next-token distribution, but {which} "
                f"{'hold' if len(sampled) > 1 else 'holds'} sampled-token records (only `target_logprobs`, the "
                f"log-prob of the sampled token), which "
                f"determine `{metric}` not at all; bound one of {usable} instead, or record top-k or full logits"))
    for index, sdef in enumerate(data.get("slices") or []):
        by = sdef.get("by")
        keys = by if isinstance(by, list) else [by]
        for key in keys:
            if key in DISTRIBUTION_SLICE_KEYS:
                problems.append(doc.problem(("slices", index, "by"), f"slice key `{key}` reads the reference's "
                                            f"distribution, but {which} holds sampled-token records only; slice "
                                            "by tags, length, position, response_position or response_length"))
    return problems


__all__ = ["DISTRIBUTION_SLICE_KEYS", "is_sampled_records", "rl_param", "sampled_problems"]
