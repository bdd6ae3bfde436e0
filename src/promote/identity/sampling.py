"""Sampled-token rollouts: were both sides' log-probs taken under the same sampler, of the same tokens,
at the same positions?

RL rollouts give each side's log-prob of the *sampled* token only (docs/rl.md), so what makes the two
comparable is outside the numbers:

* **sampler settings** (temperature, top-p, top-k, min-p, penalties) recorded on both sides must agree:
  a trainer that recomputes at temperature 1 what the engine sampled at 0.7 compares two
  distributions, not two kernels (``invalid``). A tempered or truncated sampler is flagged (a
  ``note``): the tokens come from π_sample, a reshaped softmax, so unless both sides' log-probs are of
  that processed distribution, log w = log π_train − log π_infer is not the importance ratio
  π_train/π_sample that the RL bounds (docs/rl.md) assume. It stays a note because the comparison of
  the two kernels on the same distribution is still exact; the caveat is about reading log w as the
  off-policy correction.
* **tokens and positions**: per sample, the sampled ids equal position by position, the response
  masks equal and the responses end at the same position; any difference is ``invalid`` (a KL of 30
  that is 0.04 once the tokens are aligned is a misalignment, not a drift).

Pure functions; the declarations they compare are read and checked by ``data/sampler.py`` (records
metadata ``sampling``, ``write_rollouts(sampling=...)``). ``check`` (the registered ``CHECK``) runs them
for RL rollouts only (a side of sampled-token records, or one that declares a sampler): the settings,
the two sides' rows against each other, then each side's rows against the eval set (the engine's
sample), which is why ``kernels/records.py`` leaves other tokens in sampled-token records to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from promote.data.sampler import NEUTRAL
from promote.findings import Finding
from promote.identity.api import IdentityCheck, IdentityInputs, SideFacts

NAME = "sampling"
TRUNCATING = ("top_p", "top_k", "min_p")
PENALTIES = ("repetition_penalty", "presence_penalty", "frequency_penalty")
_SHOW = 3
Role = Literal["reference", "candidate"]


def reshapes(settings: Mapping[str, float]) -> dict[str, float]:
    """The settings that move the sampling distribution away from softmax(z): a temperature ≠ 1
    (0 = greedy), truncation, penalties."""
    return {k: v for k, v in settings.items() if k in NEUTRAL and v != NEUTRAL[k]}


def _show(settings: Mapping[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in sorted(settings.items())) or "neutral"


@dataclass(frozen=True)
class SamplerSide:
    """One side's declared sampler: ``settings`` parsed by ``parse_sampling`` (None: not recorded),
    ``declared_by`` where they were read, ``logprobs_mode`` whether its log-probs are of the raw or
    the processed distribution (``raw_*``/``processed_*``; None: not declared)."""

    role: Role
    label: str
    settings: Mapping[str, float] | None = None
    declared_by: str = ""
    logprobs_mode: str | None = None


def _differences(ref: Mapping[str, float], cand: Mapping[str, float]) -> dict[str, list[float]]:
    """Settings that differ, a missing key counting as its neutral value."""
    keys = sorted(set(ref) | set(cand))
    return {k: [ref.get(k, NEUTRAL[k]), cand.get(k, NEUTRAL[k])] for k in keys
            if ref.get(k, NEUTRAL[k]) != cand.get(k, NEUTRAL[k])}


def _reshaped_note(settings: Mapping[str, float], sides: list[SamplerSide]) -> Finding:
    kinds = [w for w, keys in (("tempered", ("temperature",)), ("truncated", TRUNCATING), ("penalised", PENALTIES))
             if any(k in settings for k in keys)]
    processed = all(str(s.logprobs_mode or "").startswith("processed_") for s in sides) and len(sides) == 2
    tail = ("both sides declare processed log-probs, so log w compares the processed distributions; check that "
            "both applied every setting" if processed else
            "the log-probs compared are of the model's softmax, so log w is not the importance ratio "
            "π_train/π_sample the RL bounds assume (the kernel comparison itself is unaffected)")
    return Finding(NAME, "note", "both", f"the rollouts were sampled by a {' and '.join(kinds)} sampler "
                   f"({_show(settings)}): {tail}", "to read log w as the off-policy correction, sample at "
                   "temperature 1 without top-p/top-k/min-p, or record both sides' log-probs of the processed "
                   "distribution (vLLM `--logprobs-mode processed_logprobs`, the trainer applying the same settings)",
                   {"settings": dict(settings), "processed": processed})


def check_sampling_settings(reference: SamplerSide, candidate: SamplerSide) -> list[Finding]:
    """Settings recorded on both sides and equal; a note for each side without them and for a tempered or
    truncated sampler; ``invalid`` when the two sides' settings differ."""
    sides = [reference, candidate]
    have = [s for s in sides if s.settings is not None]
    out: list[Finding] = []
    if not have:
        return [Finding(NAME, "note", "both", "neither side records its sampler settings (temperature, top-p, "
                        "top-k, min-p), so whether both log-probs are of the distribution the tokens were sampled "
                        "from cannot be checked", "record them: `write_rollouts(..., sampling=...)`, or the "
                        "records metadata key `sampling` (docs/identity.md)", {})]
    for side in sides:
        if side.settings is None:
            other = have[0]
            out.append(Finding(NAME, "note", side.role, f"{side.label} records no sampler settings while "
                               f"{other.label} declares {_show(other.settings or {})} ({other.declared_by}); the "
                               "two cannot be compared", f"record the {side.role}'s settings too (records "
                               "metadata `sampling`)", {other.role: dict(other.settings or {})}))
    if len(have) == 2:
        differ = _differences(reference.settings or {}, candidate.settings or {})
        if differ:
            shown = "; ".join(f"{k} {a:g} (reference) vs {b:g} (candidate)" for k, (a, b) in differ.items())
            out.append(Finding(NAME, "invalid", "both", f"the sampler settings differ: {shown}. The two sides' "
                               "log-probs are then of different distributions, whatever the kernels",
                               "recompute the trainer's log-probs with the settings the engine sampled with "
                               "(the same temperature applied to the logits), or record the settings that were "
                               "actually used", {"differ": differ, "reference": dict(reference.settings or {}),
                                                  "candidate": dict(candidate.settings or {})}))
            return out
    shape = reshapes(have[0].settings or {})
    if shape:
        out.append(_reshaped_note(shape, sides))
    return out


def _end(mask: np.ndarray) -> int:
    """One past the last scored position (0 when none): where the response's last token is predicted."""
    hits = np.flatnonzero(mask)
    return int(hits[-1]) + 1 if hits.size else 0


def _compare_one(ref: tuple[np.ndarray, np.ndarray], cand: tuple[np.ndarray, np.ndarray]) -> tuple[str, Any] | None:
    """The first way one sample's two sides differ: ``length``, ``mask`` or ``ids`` (with where), or None."""
    (ids_r, mask_r), (ids_c, mask_c) = ref, cand
    mask_r, mask_c = np.asarray(mask_r, dtype=bool), np.asarray(mask_c, dtype=bool)
    end_r, end_c = _end(mask_r), _end(mask_c)
    if end_r != end_c:
        return "length", {"reference": end_r, "candidate": end_c}
    if not np.array_equal(mask_r[:end_r], mask_c[:end_c]):
        return "mask", {"position": int(np.flatnonzero(mask_r[:end_r] != mask_c[:end_c])[0])}
    n = end_r + 1  # position t scores ids[t + 1]: the sampled tokens reach index end
    a, b = np.asarray(ids_r)[:n], np.asarray(ids_c)[:n]
    if len(a) != len(b):
        return "length", {"reference": int(len(a)) - 1, "candidate": int(len(b)) - 1}  # a row cut short
    diff = np.flatnonzero(a != b)
    if diff.size:
        at = int(diff[0])
        first = int(np.flatnonzero(mask_r)[0]) + 1 if mask_r.any() else n
        return "ids", {"position": at, "reference": int(a[at]), "candidate": int(b[at]),
                       "in": "prompt" if at < first else "response"}
    return None


_WHAT = {
    "missing": ("samples are on one side only", "record both sides from the same rollouts (the same ids)"),
    "length": ("the responses end at different positions", "dump both sides from the same rollout batch after the "
               "same EOS/max-tokens truncation; a trainer must score the engine's tokens, not re-tokenised text"),
    "mask": ("the response masks differ", "apply one response mask to both sides (tool output, padding and "
             "prompt tokens masked alike)"),
    "ids": ("the sampled token ids differ", "score the trainer on the engine's sampled token ids, aligned per "
            "position (response token j is predicted at position P + j − 1, docs/rl.md), not on re-tokenised text"),
}


def check_sampled_tokens(reference: Mapping[str, tuple[np.ndarray, np.ndarray]],
                         candidate: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> list[Finding]:
    """Per sample id, each side's (token ids, mask) in the records convention (``mask[t]``: position t
    scores ``ids[t + 1]``): one ``invalid`` finding per kind of mismatch (samples on one side only,
    responses of different length, different masks, different ids), with the count and the first
    samples; none for an aligned pair. Right padding beyond a response's end is ignored."""
    bad: dict[str, list[dict[str, Any]]] = {k: [] for k in _WHAT}
    for sample_id in sorted(set(reference) ^ set(candidate)):
        bad["missing"].append({"id": sample_id, "on": "reference" if sample_id in reference else "candidate"})
    for sample_id in reference:
        if sample_id in candidate:
            got = _compare_one(reference[sample_id], candidate[sample_id])
            if got is not None:
                bad[got[0]].append({"id": sample_id, **got[1]})
    out = []
    total = len(set(reference) | set(candidate))
    for kind, rows in bad.items():
        if rows:
            what, fix = _WHAT[kind]
            shown = ", ".join(_describe(kind, r) for r in rows[:_SHOW]) + (", …" if len(rows) > _SHOW else "")
            out.append(Finding(NAME, "invalid", "both", f"{what} in {len(rows)} of {total} samples: {shown}", fix,
                               {"kind": kind, "count": len(rows), "first": rows[:_SHOW]}))
    return out


_AGAINST = {
    "missing": "samples of the eval set have no row on this side",
    "length": "responses run past the eval set's sample (scored positions beyond its last token)",
    "ids": "token ids differ from the eval set's (the engine's sample)",
}


def check_against_evalset(rows: Mapping[str, tuple[np.ndarray, np.ndarray]], evalset: Mapping[str, np.ndarray],
                          role: Role, label: str) -> list[Finding]:
    """One side's sampled-token rows against the eval set (the engine's sampled tokens, docs/rl.md): every
    eval sample has a row, its ids up to the sample's length equal the eval set's, and no scored position
    reaches past the sample. One ``invalid`` finding per kind, naming the side."""
    bad: dict[str, list[dict[str, Any]]] = {k: [] for k in _AGAINST}
    for sample_id, want in evalset.items():
        if sample_id not in rows:
            bad["missing"].append({"id": sample_id})
            continue
        ids, mask = rows[sample_id]
        want = np.asarray(want)
        n = len(want)
        got = np.asarray(ids)[:n]
        if _end(np.asarray(mask, dtype=bool)) > n - 1 or len(got) < n:
            bad["length"].append({"id": sample_id, "sample_length": n, "row_end": _end(np.asarray(mask, dtype=bool))})
        elif not np.array_equal(got, want):
            at = int(np.flatnonzero(got != want)[0])
            bad["ids"].append({"id": sample_id, "position": at, "side": int(got[at]), "eval_set": int(want[at])})
    out = []
    for kind, found in bad.items():
        if found:
            shown = ", ".join(f"`{r['id']}`" + (f" (position {r['position']}: {r['side']} vs {r['eval_set']})"
                                                 if kind == "ids" else "") for r in found[:_SHOW])
            more = ", …" if len(found) > _SHOW else ""
            out.append(Finding(NAME, "invalid", role, f"{label}: {_AGAINST[kind]} in {len(found)} of {len(evalset)} "
                               f"samples: {shown}{more}", _WHAT[kind][1],
                               {"kind": kind, "count": len(found), "first": found[:_SHOW]}))
    return out


def record_rows(records: Any) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Sample id → (input_ids, mask) rows of a ``kernels.records.RecordSet``, views into the arrays it
    already holds (no copy), for ``check_sampled_tokens``."""
    return {sample_id: (records.shards[shard].input_ids[row], records.shards[shard].mask[row])
            for sample_id, (shard, row) in records.where.items()}


def _describe(kind: str, row: Mapping[str, Any]) -> str:
    sid = f"`{row['id']}`"
    if kind == "missing":
        return f"{sid} only on the {row['on']}"
    if kind == "length":
        return f"{sid} (last sampled token at index {row['reference']} vs {row['candidate']})"
    if kind == "mask":
        return f"{sid} (from position {row['position']})"
    return f"{sid} (position {row['position']} in the {row['in']}: token {row['reference']} vs {row['candidate']})"


def _sampler(side: SideFacts) -> SamplerSide:
    declared = side.declared
    return SamplerSide(side.role, side.label, declared.get("sampling"), str(declared.get("declared_by") or "declared"),
                       declared.get("logprobs_mode"))


def _is_rollout(side: SideFacts) -> bool:
    """Sampled-token records, or a side that declares a sampler: RL rollouts, where a sampler is involved."""
    out = side.outputs
    return (side.declared.get("records_format") == "sampled" or side.declared.get("sampling") is not None
            or (out is not None and out.is_sampled))


def check(inputs: IdentityInputs) -> list[Finding]:
    """The registered check, for RL rollouts only (a teacher-forced pair involves no sampler): the settings;
    the two sides' rows against each other; where they agree (or one side is live), each side's rows
    against the eval set (the engine's sample)."""
    sides = inputs.sides()
    if not any(_is_rollout(s) for s in sides):
        return []
    found = check_sampling_settings(*(_sampler(s) for s in sides))
    rows = {s.role: s.declared.get("sampled_rows") for s in sides}
    if rows["reference"] is not None and rows["candidate"] is not None:
        pairwise = check_sampled_tokens(rows["reference"], rows["candidate"])
        if pairwise:
            return found + pairwise
    if inputs.evalset is not None:
        want = {s.id: np.asarray(s.input_ids) for s in inputs.evalset.samples}
        for side in sides:
            if rows[side.role] is not None:
                found += check_against_evalset(rows[side.role], want, side.role, side.label)  # type: ignore[arg-type]
    return found


CHECK = IdentityCheck(NAME, check, doc=__doc__ or "")


__all__ = ["CHECK", "NAME", "SamplerSide", "check", "check_against_evalset", "check_sampled_tokens",
           "check_sampling_settings", "record_rows", "reshapes"]
