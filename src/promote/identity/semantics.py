"""Value semantics: are both sides' numbers raw logits, log-probs, or *processed* log-probs — and may
the contract's metrics compare them as they are?

A side's values are told apart two ways, and both are used:

* **declared**: what a records file says it holds (metadata ``logprobs_mode``), in vLLM's words:
  ``raw_logits``, ``raw_logprobs`` (the default), ``processed_logits``, ``processed_logprobs`` (after
  the sampler's temperature and penalties); a kernel promote runs itself (capability ``rerun``: torch,
  onnx, a server asked at temperature 0 without penalties) gives the model's own values, never processed;
* **observed** from the values: log-probs over the whole vocabulary have logsumexp 0 at every
  position, raw logits almost never do; a top-k side's probabilities cannot sum past 1 (the mass
  bound), nor can one exceed 1. The ``openai`` kernel's probe answer is observed the same way.

Raw logits against log-probs is one distribution in two coordinates: every metric of p and q (KL,
TV, log-ratio, argmax) and ``logit_osc`` (δ = z_c − z_r up to a constant per position) are the same
either way. ``logit_drift`` = max |δ| is not: across spaces it measures the raw side's log-normaliser,
not a drift, so a contract that gates on it with the sides in different spaces is ``invalid``.
Normalising both sides instead would silently turn a clause written on logits into one on log-probs
(and drop the constant offset a logit drift is meant to catch), so promote refuses and names the fix.
Processed values (tempered, penalised) against raw ones describe different distributions by
construction: ``invalid`` whatever the metrics.

Pure functions of small inputs (``ValueSide``), so the tests and a plug-in feed them from arrays
alike; ``check`` (the registered ``CHECK``) builds them from ``IdentityInputs``: the declarations and the
probe batch's outputs, and adds the temperature signature (a note) where both sides give the whole
vocabulary.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from promote.contract.kinds import RERUN
from promote.data import Batch
from promote.data.sampler import MODES
from promote.findings import Finding
from promote.identity.api import IdentityCheck, IdentityInputs, SideFacts
from promote.kernels.base import Outputs, host_logits
from promote.kernels.records import DTYPE_EPS

NAME = "value_semantics"
Space = Literal["logits", "logprobs"]
Role = Literal["reference", "candidate"]
#: Metrics that read the values' additive offset, so both sides must be in one space.
OFFSET_METRICS = ("logit_drift",)
#: logsumexp within this of 0 counts as normalised at float32/float64 (wider for bf16/fp16: ``lse_tolerance``).
LSE_TOL = 1e-3


def mode_space(mode: str) -> Space:
    """``logits`` or ``logprobs``: the coordinates a declared mode's values are in."""
    return "logits" if mode.endswith("_logits") else "logprobs"


def is_processed(mode: str | None) -> bool:
    """True for vLLM's ``processed_*`` modes: values after temperature and penalties."""
    return bool(mode) and str(mode).startswith("processed_")


def lse_tolerance(eps: float) -> float:
    """How far logsumexp of a row of log-probs may sit from 0 through rounding in a dtype of machine
    epsilon ``eps``: each p_i is off by up to a relative ~eps·|log p_i|, so the sum by eps times the
    entropy (≤ ~16 nats at any real vocabulary)."""
    return max(LSE_TOL, 16.0 * eps)


@dataclass(frozen=True)
class Observation:
    """What a side's values show: ``space`` (None: the values cannot tell) and the evidence behind it."""

    space: Space | None
    how: str  # one line for a message: what was measured
    evidence: dict[str, Any] = field(default_factory=dict)


def positions(values: np.ndarray, mask: np.ndarray | None = None, limit: int | None = None) -> np.ndarray:
    """Rows [n, V] of ``values`` [..., V] at the scored positions (``mask`` [...]), as float64; at most
    ``limit`` of them, spread evenly, and only those copied (a probe batch at V = 151 936 is gigabytes)."""
    vocab = int(values.shape[-1])
    flat = values.reshape(-1, vocab)  # a torch tensor (any device or dtype) stays where it is
    index = (np.arange(int(flat.shape[0])) if mask is None
             else np.flatnonzero(np.asarray(mask, dtype=bool).reshape(-1)))
    if limit is not None and len(index) > limit:
        index = index[np.linspace(0, len(index) - 1, limit).round().astype(np.int64)]
    if isinstance(flat, np.ndarray):
        return flat[index].astype(np.float64)
    import torch

    return host_logits(flat[torch.from_numpy(index)]).astype(np.float64)


#: Positions of a full-vocabulary probe measured (each a row of V float64s).
DENSE_POSITIONS = 32


def observe_dense(values: np.ndarray, *, mask: np.ndarray | None = None, tol: float = LSE_TOL,
                  limit: int | None = DENSE_POSITIONS) -> Observation:
    """Full-vocabulary rows [..., V]: log-probs when logsumexp is within ``tol`` of 0 at every measured
    scored position (``mask`` [...]; at most ``limit``, spread evenly), raw logits otherwise. Rows of −inf
    are skipped: nothing was computed there."""
    rows = positions(values, mask, limit)
    top = rows.max(axis=1, initial=-np.inf) if rows.size else np.zeros(0)
    rows = rows[np.isfinite(top)]
    if not len(rows):
        return Observation(None, "no finite scored position to measure")
    peak = rows.max(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", over="ignore"):  # in place: rows is a copy, and V × 32 float64s
        rows -= peak
        np.exp(rows, out=rows)
        lse = np.log(np.nansum(rows, axis=1)) + peak[:, 0]
    off = np.abs(lse)
    worst = int(np.nanargmax(off)) if np.isfinite(off).any() else 0
    evidence = {"positions": int(len(rows)), "logsumexp_min": float(np.nanmin(lse)),
                "logsumexp_max": float(np.nanmax(lse)), "tolerance": tol}
    if bool(np.all(off <= tol)):
        return Observation("logprobs", f"logsumexp over the vocabulary is 0 (within {tol:g}) at all {len(rows)} "
                           "positions measured", evidence)
    return Observation("logits", f"logsumexp over the vocabulary is {float(lse[worst]):.4g}, not 0, at one of "
                       f"{len(rows)} positions measured (range {evidence['logsumexp_min']:.4g} … "
                       f"{evidence['logsumexp_max']:.4g})", evidence)


def observe_topk(topk_values: np.ndarray, *, mask: np.ndarray | None = None, mass_tol: float = 1e-4) -> Observation:
    """Top-k rows [..., K]: the mass bound Σ exp ≤ 1 (and each value ≤ 0) must hold for log-probs; a
    violation proves the values are not log-probs. Holding it proves nothing (logits can be negative),
    so the space stays None then: the declaration decides."""
    rows = positions(topk_values, mask)
    if not rows.size:
        return Observation(None, "no scored top-k position to measure")
    with np.errstate(over="ignore", invalid="ignore"):
        mass = np.nansum(np.exp(np.where(np.isnan(rows), -np.inf, rows)), axis=1)
    worst = int(np.argmax(mass))
    evidence = {"positions": int(len(rows)), "mass_max": float(mass[worst]), "value_max": float(np.nanmax(rows)),
                "tolerance": mass_tol}
    if float(mass[worst]) > 1.0 + mass_tol:
        return Observation("logits", f"the top-{rows.shape[1]} probabilities sum to {float(mass[worst]):.4g} > 1 at "
                           f"one of {len(rows)} positions (largest value {evidence['value_max']:.4g}): these are "
                           "not log-probabilities", evidence)
    return Observation(None, f"the top-{rows.shape[1]} mass stays ≤ 1 at all {len(rows)} positions (consistent "
                       "with log-probs; raw logits cannot be ruled out from a top-k)", evidence)


@dataclass(frozen=True)
class ValueSide:
    """One side's value semantics as far as they are known before the run.

    ``format``: ``logits`` (full vocabulary), ``topk`` or ``sampled`` (the sampled token's log-prob
    only). ``declared``: one of ``MODES`` or None, with ``declared_by`` naming where it was read
    (``metadata `logprobs_mode` of runs/x.safetensors``). ``observed``: from the values (None: not
    measured). ``label``: how messages name the side (``candidate (records runs/x.safetensors)``).
    ``live``: a kernel promote runs itself (torch, onnx, a server asked at temperature 0 without
    penalties): its values are the model's own, never a sampler's processed ones.
    """

    role: Role
    label: str
    format: Literal["logits", "topk", "sampled"] = "logits"
    declared: str | None = None
    declared_by: str = ""
    observed: Observation | None = None
    live: bool = False

    @property
    def space(self) -> Space | None:
        """The values' space: observed where the values prove it, else declared; top-k and sampled
        records are log-probs by their format."""
        if self.observed is not None and self.observed.space is not None:
            return self.observed.space
        if self.declared in MODES:
            return mode_space(str(self.declared))
        return "logprobs" if self.format in ("topk", "sampled") else None


def _declared_vs_observed(side: ValueSide) -> list[Finding]:
    """A declaration the values contradict: something in the recording pipeline is not what it says."""
    out: list[Finding] = []
    seen = side.observed.space if side.observed is not None else None
    if side.declared is not None and side.declared not in MODES:
        return [Finding(NAME, "invalid", side.role, f"{side.label} declares `{side.declared}` ({side.declared_by}), "
                        "which is no value mode", f"declare one of {', '.join(MODES)} (vLLM's `--logprobs-mode`)",
                        {"declared": side.declared, "declared_by": side.declared_by})]
    if side.format == "topk" and ((side.declared and mode_space(side.declared) == "logits") or seen == "logits"):
        what = side.observed.how if seen == "logits" and side.observed else f"it declares `{side.declared}`"
        out.append(Finding(NAME, "invalid", side.role, f"{side.label} gives top-k raw logits ({what}); a top-k "
                           "cannot be normalised without the rest of the vocabulary, so no metric of it is defined",
                           "record top-k log-probs (vLLM `--logprobs-mode raw_logprobs`), or the whole vocabulary "
                           "(`top_k: all` / full `logits` records)",
                           {"format": side.format, "declared": side.declared, **_obs(side)}))
    elif side.declared in MODES and seen is not None and mode_space(side.declared) != seen:
        assert side.observed is not None
        out.append(Finding(NAME, "invalid", side.role, f"{side.label} declares `{side.declared}` "
                           f"({side.declared_by}) but its values are {_name(seen)}: {side.observed.how}",
                           f"correct the declaration to what the engine wrote, or re-record with vLLM "
                           f"`--logprobs-mode {side.declared}`", {"declared": side.declared, **_obs(side)}))
    return out


def _obs(side: ValueSide) -> dict[str, Any]:
    if side.observed is None:
        return {}
    return {"observed": side.observed.space, "observed_by": side.observed.how, **side.observed.evidence}


def _name(space: Space | None) -> str:
    return {"logits": "raw logits", "logprobs": "log-probs", None: "of unknown space"}[space]


def _processed(ref: ValueSide, cand: ValueSide) -> list[Finding]:
    """Processed against raw: different distributions by construction (``invalid``). Both processed, or
    processed against a side that declares nothing: a note (the settings, or the other side's mode,
    decide, and neither is known here)."""
    flags = {s.role: is_processed(s.declared) for s in (ref, cand)}
    modes = {"reference": ref.declared, "candidate": cand.declared}
    if flags["reference"] and flags["candidate"]:
        return [Finding(NAME, "note", "both", "both sides give processed values (after the sampler's temperature "
                        f"and penalties: {ref.declared} / {cand.declared}); they compare only if both used the same "
                        "sampling settings", "record raw values (`--logprobs-mode raw_logprobs`) to compare the "
                        "models rather than the samplers", modes)]
    out = []
    for side, other in ((ref, cand), (cand, ref)):
        if not flags[side.role]:
            continue
        raw = "raw_logits" if mode_space(str(side.declared)) == "logits" else "raw_logprobs"
        if other.declared not in MODES and not other.live:
            out.append(Finding(NAME, "note", other.role, f"{side.label} gives processed values (`{side.declared}`, "
                               f"{side.declared_by}) and {other.label} declares no value mode: if its values are "
                               "raw, the two are of different distributions", f"declare the {other.role}'s mode "
                               f"(records metadata `logprobs_mode`), or re-record the {side.role} with vLLM "
                               f"`--logprobs-mode {raw}`", modes))
            continue
        out.append(Finding(NAME, "invalid", side.role, f"{side.label} gives processed values (`{side.declared}`, "
                           f"{side.declared_by}: after temperature and penalties) while {other.label} gives raw ones "
                           f"({f'`{other.declared}`' if other.declared else 'the model’s own outputs'}): they are "
                           "values of different "
                           "distributions, so every metric would measure the sampler, not the kernel",
                           f"re-record the {side.role} with vLLM "
                           f"`--logprobs-mode {raw}` (or process both sides with the same sampling settings)", modes))
    return out


def _spaces(ref: ValueSide, cand: ValueSide, metrics: set[str]) -> list[Finding]:
    """Raw logits against log-probs: fine for distribution metrics, invalid for ``logit_drift``."""
    if ref.format != "logits" or cand.format != "logits":
        return []  # from a top-k, drift is only bounded via logit_osc (offset-free): no offset compared
    spaces = {"reference": ref.space, "candidate": cand.space}
    if None in spaces.values() or spaces["reference"] == spaces["candidate"]:
        return []
    evidence = {"reference": spaces["reference"], "candidate": spaces["candidate"], **{
        f"{s.role}_observed_by": s.observed.how for s in (ref, cand) if s.observed is not None}}
    where = f"the reference gives {_name(ref.space)}, the candidate {_name(cand.space)}"
    drift = sorted(metrics & set(OFFSET_METRICS))
    if drift:
        logits_side = ref if ref.space == "logits" else cand
        return [Finding(NAME, "invalid", "both", f"{where}, and the contract gates on {', '.join(drift)}: max |z_c − "
                        "z_r| across the two spaces measures the raw side's log-normaliser (logsumexp), not a drift",
                        f"put both sides in one space: record the {logits_side.role} as log-probs (vLLM "
                        "`--logprobs-mode raw_logprobs`) or the other side as raw logits (`raw_logits`, full "
                        "`logits` records); or gate on `logit_osc`, which ignores the per-position offset",
                        {**evidence, "metrics": drift})]
    return [Finding(NAME, "note", "both", f"{where}: the same distributions in two coordinates, so KL, TV, the "
                    "log-ratio metrics and logit_osc are unaffected (logit_drift would not be)",
                    "none needed; record both sides in one space to gate on logit_drift", evidence)]


def check_value_semantics(reference: ValueSide, candidate: ValueSide, metrics: Iterable[str] = ()) -> list[Finding]:
    """Every value-semantics finding for one pair: each side's declaration against its values, processed
    against raw, and raw logits against log-probs when ``metrics`` (the contract's clause metrics)
    read the offset. An honest pair (same space and mode, declarations matching values) gives none."""
    findings = [*_declared_vs_observed(reference), *_declared_vs_observed(candidate)]
    findings += _processed(reference, candidate)
    findings += _spaces(reference, candidate, set(metrics))
    return findings


def temperature_hint(reference: np.ndarray, candidate: np.ndarray, *, mask: np.ndarray | None = None,
                     deviation: float = 0.05, share: float = 0.9, fit: float = 0.9,
                     limit: int | None = DENSE_POSITIONS) -> Finding | None:
    """A note when the candidate's full-vocabulary values look like the reference's scaled by one factor
    (log q ≈ a·log p + c per position, a ≠ 1 at ``share`` of the positions): the signature of a temperature.

    A note, never ``invalid``: a kernel bug that scales its logits (a wrong norm weight) looks the same,
    and the metrics must still fail it; the note points at the sampler first. Slopes are fitted per
    position with weights p (the reference's probabilities), so the tail of the vocabulary cannot
    dominate; the scaled reference must explain ``fit`` of the candidate's variation (median over
    positions), so unrelated values are no temperature.
    """
    ref, cand = positions(reference, mask, limit), positions(candidate, mask, limit)
    finite = np.isfinite(ref)
    live = (finite == np.isfinite(cand)).all(axis=1) & finite.any(axis=1)  # −inf on both: a vocabulary mask
    ref, cand, finite = ref[live], cand[live], finite[live]  # copies: worked on in place below
    if len(ref) < 4:
        return None
    # Each step in place or as one weighted sum: at V = 151 936 the straightforward version (a dozen
    # [n, V] float64 temporaries) cost 0.6 s of every check; this costs a third of that.
    ref[~finite] = 0.0
    cand[~finite] = 0.0
    p = np.subtract(ref, ref.max(axis=1, where=finite, initial=-np.inf, keepdims=True))
    np.exp(p, out=p)
    p *= finite
    p /= p.sum(axis=1, keepdims=True)
    ref -= np.einsum("ij,ij->i", p, ref)[:, None]  # x: centred under p
    cand -= np.einsum("ij,ij->i", p, cand)[:, None]  # y
    weighted_x = p * ref
    var, cov = np.einsum("ij,ij->i", weighted_x, ref), np.einsum("ij,ij->i", weighted_x, cand)
    var_y = np.einsum("ij,ij,ij->i", p, cand, cand)
    ok = (var > 1e-12) & (var_y > 1e-12)
    slope = cov[ok] / var[ok]
    # Share of the candidate's variation the scaled reference explains (weighted R² = 1 − E_p[(y − a·x)²] /
    # E_p[y²] = cov² / (var·var_y)): near 1 for a temperature, near 0 for unrelated logits (whose fitted
    # slope is also far from 1).
    explained = cov[ok] * slope / var_y[ok]
    if len(slope) < 4 or float(np.median(explained)) < fit:
        return None
    median = float(np.median(slope))
    same_side = float(np.mean(np.sign(slope - 1.0) == np.sign(median - 1.0)))
    if abs(median - 1.0) <= deviation or same_side < share:
        return None
    return Finding(NAME, "note", "candidate", f"the candidate's values look temperature-scaled: log q ≈ "
                   f"{median:.3g}·log p + c (temperature ≈ {1.0 / median:.3g}) at {same_side:.0%} of {len(slope)} "
                   "positions", "if the candidate applies a sampler temperature (vLLM `processed_logprobs`), record "
                   "raw values; otherwise this is the kernel's own scaling and the metrics judge it",
                   {"slope_median": median, "temperature": 1.0 / median, "positions": int(len(slope)),
                    "share": same_side, "explained": float(np.median(explained))})


def _probe_mask(probe: Batch, outputs: Outputs) -> np.ndarray:
    """The probe positions this side scored."""
    mask = probe.scored_mask()
    return mask if outputs.mask is None else mask & outputs.mask


def _value_side(side: SideFacts, probe: Batch | None) -> ValueSide:
    """A side as ``check_value_semantics`` reads it: what it declares (records metadata ``logprobs_mode``,
    parsed by the records reader) and what its probe outputs show."""
    declared, out = side.declared, side.outputs
    fmt = declared.get("records_format") or ("logits" if out is None or out.logits is not None
                                             else "sampled" if out.is_sampled else "topk")
    observed = None
    if out is not None and probe is not None:
        if out.logits is not None:
            fp32 = DTYPE_EPS["F32"]
            eps = max((DTYPE_EPS.get(str(d), fp32) for d in declared.get("dtype") or ()), default=fp32)
            observed = observe_dense(out.logits, mask=_probe_mask(probe, out), tol=lse_tolerance(eps))
        elif not out.is_sampled and out.topk_logprobs is not None:
            observed = observe_topk(out.topk_logprobs, mask=_probe_mask(probe, out), mass_tol=out.mass_tol or 1e-4)
    mode = declared.get("logprobs_mode")
    return ValueSide(side.role, side.label, fmt, None if mode is None else str(mode),  # type: ignore[arg-type]
                     str(declared.get("declared_by") or "declared"), observed, live=RERUN in side.capabilities)


def check(inputs: IdentityInputs) -> list[Finding]:
    """The registered check: both sides' value semantics, and the temperature signature on a probe where
    both sides give the whole vocabulary."""
    found = check_value_semantics(*(_value_side(s, inputs.probe) for s in inputs.sides()), inputs.metrics)
    ref, cand = inputs.reference.outputs, inputs.candidate.outputs
    if (inputs.probe is not None and ref is not None and cand is not None and ref.logits is not None
            and cand.logits is not None and ref.logits.shape == cand.logits.shape):
        hint = temperature_hint(ref.logits, cand.logits, mask=_probe_mask(inputs.probe, ref)
                                & _probe_mask(inputs.probe, cand))
        found += [hint] if hint is not None else []
    return found


CHECK = IdentityCheck(NAME, check, doc=__doc__ or "")


__all__ = ["CHECK", "MODES", "NAME", "OFFSET_METRICS", "Observation", "ValueSide", "check", "check_value_semantics",
           "is_processed", "lse_tolerance", "mode_space", "observe_dense", "observe_topk", "positions",
           "temperature_hint"]
