"""What a logit drift implies: the bounds chain of docs/metrics.md "Implied bounds".

With δ = z_c − z_r at one position, d = ‖δ‖∞ and osc = max δ − min δ ≤ 2d:

- TV ≤ tanh(osc/4) ≤ tanh(d/2)                      (tight: two tokens, δ = (d, −d))
- KL(p‖q) ≤ osc²/8 ≤ d²/2                            (Popoviciu: Var_p(δ) ≤ osc²/4)
- |log p_i − log q_i| ≤ osc for every token i; importance weights w ∈ [e^−osc, e^osc]
- reward r ∈ [a, b]: |E_p r − E_q r| ≤ (b − a)·TV
- T positions: TV_seq ≤ min(1, Σ_t TV_t) ≤ min(1, T·tanh(osc/4)); KL_seq = Σ_t KL_t ≤ T·osc²/8
- policy gradient with |A| ≤ A_max and ‖∇log π‖ ≤ G: per-token bias ≤ A_max·G·(e^osc − 1)
  (support overlap assumed; per token, not per trajectory)
- PPO clip ε spends the budget osc ≤ log(1 + ε), i.e. d ≤ log(1 + ε)/2 (ε = 0.2 → d ≤ 0.091)

Pure functions, stdlib only (``contract/`` checks clauses with them, ``promote bounds`` prints them,
the report lays out ``implied_entries``); each is property-tested (tests/test_bounds.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


def tv_bound(osc: float) -> float:
    """Largest total variation a logit oscillation ``osc`` allows."""
    return math.tanh(osc / 4.0)


def kl_bound(osc: float) -> float:
    """Largest KL(p‖q) (nats) a logit oscillation ``osc`` allows."""
    return min(osc * osc / 8.0, osc)


def log_ratio_bound(osc: float) -> float:
    """Largest |log p_i − log q_i| over tokens: the log importance weight range is ±osc."""
    return osc


FLOAT32_EPS = 2.0**-23  # float32 machine epsilon: the spacing of float32 numbers in [1, 2)
# Machine epsilon of the number format a kernel precision computes in (mantissa bits: fp32 23, fp16 and
# tf32 10, bf16 7); `calibrate --derive` sizes a bound from bitwise-equal calibration runs with it.
PRECISION_EPS = {"fp32": FLOAT32_EPS, "tf32": 2.0**-10, "fp16": 2.0**-10, "fp16-weights": 2.0**-10,
                 "bf16": 2.0**-7, "bf16-weights": 2.0**-7}


def float_resolution(metric: str, logit_abs_max: float, eps: float = FLOAT32_EPS) -> float:
    """The smallest drift of ``metric`` float32 outputs can express, as the `max_floor_ratio` rule for
    a zero noise floor uses it (docs/metrics.md, "Noise floor").

    One float32 step at the largest reference logit Z is at most ε·Z (ε = 2⁻²³), so a logit shift of
    d = ε·Z (oscillation 2εZ) is the resolution of the outputs; the distribution metrics get the
    value that oscillation allows through the bound chain: TV tanh(2εZ/4), KL (2εZ)²/8, |log r| 2εZ.
    ``nonfinite`` has resolution 0 (one non-finite value is a fact). ``eps``: another format's epsilon
    (``PRECISION_EPS``), for outputs computed at a coarser precision.
    """
    d = eps * max(abs(logit_abs_max), 1.0)
    osc = 2.0 * d
    return {"logit_drift": d, "logit_osc": osc, "tv": tv_bound(osc), "kl": kl_bound(osc), "kl_rev": kl_bound(osc),
            "abs_log_ratio": log_ratio_bound(osc)}.get(metric, 0.0)


def osc_for_tv(tv: float) -> float:
    """Smallest oscillation that could reach total variation ``tv`` (inverse of ``tv_bound``)."""
    return math.inf if tv >= 1 else 4.0 * math.atanh(tv)


def osc_for_kl(kl: float) -> float:
    """Smallest oscillation that could reach KL ``kl`` (inverse of ``kl_bound``)."""
    return math.sqrt(8.0 * kl) if kl <= 8.0 else kl


def clip_budget(clip: float) -> float:
    """The oscillation a PPO clip ε tolerates before the ratio alone leaves [1/(1+ε), 1+ε]."""
    return math.log1p(clip)


DEFAULT_PPO_CLIP = 0.2  # the usual PPO ε, used for the report's clip budget when a contract declares none
_SCOPES = {"max": "every scored position", "p99.9": "99.9% of scored positions", "p99": "99% of scored positions"}


@dataclass(frozen=True)
class Implication:
    """One link of the chain: a quantity, its bound, the formula, and what it assumes."""

    name: str
    bound: float
    formula: str
    assumes: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["bound"] = self.bound if math.isfinite(self.bound) else None
        return out


def _exp(x: float) -> float:
    """exp that reads a huge oscillation (a broken candidate) as an infinite bound instead of raising."""
    return math.exp(x) if x < 700.0 else math.inf


def _expm1(x: float) -> float:
    return math.expm1(x) if x < 700.0 else math.inf


def implications(
    *,
    osc: float | None = None,
    drift: float | None = None,
    seq_len: int | None = None,
    reward_range: tuple[float, float] | None = None,
    clip: float | None = None,
    advantage_max: float | None = None,
    score_norm: float | None = None,
) -> list[Implication]:
    """Everything a per-position logit oscillation (or drift, osc ≤ 2·drift) implies.

    Raises:
        ValueError: neither ``osc`` nor ``drift`` given, or a negative input.
    """
    if osc is None and drift is None:
        raise ValueError("give the logit oscillation or the logit drift")
    for name, value in (("osc", osc), ("drift", drift)):
        if value is not None and (value < 0 or math.isnan(value)):
            raise ValueError(f"{name} must be a non-negative number, got {value}")
    source = "osc" if osc is not None else "2·d"
    o = osc if osc is not None else 2.0 * drift  # type: ignore[operator]
    if osc is not None and drift is not None:
        o = min(osc, 2.0 * drift)
        source = "min(osc, 2·d)"
    tv = tv_bound(o)
    out = [
        Implication("logit_osc", o, source, "per position; softmax ignores a constant shift"),
        Implication("tv", tv, f"tanh({source}/4)"),
        Implication("kl", kl_bound(o), f"({source})²/8"),
        Implication("abs_log_ratio", log_ratio_bound(o), source, "every token, sampled or not"),
        Implication("importance_weight_max", _exp(o), f"exp({source})",
                    "w = π_ref(y)/π_cand(y) ∈ [exp(−osc), exp(osc)]"),
        Implication("pg_bias_factor", _expm1(o), f"exp({source}) − 1",
                    "per-token policy-gradient bias ≤ A_max·G·factor; support overlap; per token"),
    ]
    if advantage_max is not None and score_norm is not None:
        out.append(Implication("pg_bias", advantage_max * score_norm * _expm1(o), "A_max·G·(e^osc − 1)",
                               "per token, not per trajectory"))
    if reward_range is not None:
        a, b = reward_range
        out.append(Implication("reward_drift", (b - a) * tv, f"({b:g} − {a:g})·TV", "bounded reward"))
    if seq_len is not None:
        out.append(Implication("tv_seq", min(1.0, seq_len * tv), f"min(1, {seq_len}·TV)", "subadditivity"))
        out.append(Implication("kl_seq", seq_len * kl_bound(o), f"{seq_len}·KL", "chain rule, uniform bound"))
    if clip is not None:
        budget = clip_budget(clip)
        out.append(Implication("ppo_clip_budget_osc", budget, f"log(1 + {clip:g})",
                               f"osc ≤ budget keeps every ratio inside the clip; measured {o:.4g} "
                               + ("fits" if o <= budget else "EXCEEDS it")))
        out.append(Implication("ppo_clip_budget_drift", budget / 2.0, f"log(1 + {clip:g})/2"))
    return out


def implied_entries(osc_stats: dict[str, float | None], drift_stats: dict[str, float | None], *,
                    clip: float | None = None) -> list[dict[str, Any]]:
    """The report's "bounds implied" block: the chain above, from the tightest available statistic.

    ``osc_stats``/``drift_stats`` map a statistic (``max``, ``p99.9``, ``p99``) to the measured
    logit oscillation / drift (None when absent). The oscillation is preferred (osc ≤ 2·d); from
    ``max`` a bound holds at every scored position, from ``p99`` at 99% of them. ``clip`` is the
    contract's PPO ε (``numerical.implications.clip``), else ``DEFAULT_PPO_CLIP``.
    """
    eps = DEFAULT_PPO_CLIP if clip is None else clip
    for stat, scope in _SCOPES.items():
        if osc_stats.get(stat) is not None:
            value, source, via = float(osc_stats[stat]), f"logit_osc {stat}", "osc"  # type: ignore[arg-type]
            chain = implications(osc=value, clip=eps)
        elif drift_stats.get(stat) is not None:
            value, source, via = float(drift_stats[stat]), f"logit_drift {stat}", "2·d"  # type: ignore[arg-type]
            chain = implications(drift=value, clip=eps)
        else:
            continue
        link = {x.name: x.bound for x in chain}

        def entry(quantity: str, bound: float, formula: str, *, source: str = source, value: float = value,
                  scope: str = scope) -> dict[str, Any]:
            return {"quantity": quantity, "bound": bound if math.isfinite(bound) else None, "source": source,
                    "source_value": value, "formula": formula, "scope": scope}

        out = [
            entry("tv", link["tv"], f"TV ≤ tanh({via}/4)"),
            entry("kl", link["kl"], f"KL ≤ ({via})²/8"),
            entry("abs_log_ratio", link["abs_log_ratio"], f"|log p_y − log q_y| ≤ {via}"),
            entry("importance_weight_bias", link["pg_bias_factor"],
                  f"policy-gradient bias ≤ A_max·G·(e^({via}) − 1), factor shown"),
        ]
        if stat == "max":
            out.append(entry("ppo_clip_budget_used", link["logit_osc"] / link["ppo_clip_budget_osc"],
                             f"({via}) / log(1 + ε_clip), ε_clip = {eps:g}; above 1 the drift alone can reach "
                             "the clip"))
        return out  # the tightest available statistic only: one block, not three near-duplicates
    return []


def rl_entries(abs_log_ratio_stats: dict[str, float | None], *, clip: float | None = None,
               advantage_max: float | None = None, score_norm: float | None = None) -> list[dict[str, Any]]:
    """The "bounds implied" block from the measured |log w| of the sampled tokens (RL rollouts).

    With sampled-token records there is no logit oscillation, but the chain's RL links need only
    |log w| on the tokens actually sampled: per-token policy-gradient bias ≤ A_max·G·(e^{|log w|} − 1)
    (support overlap; per token, not per trajectory) and the PPO/GRPO clip budget used,
    |log w| / log(1 + ε) (above 1 the kernel mismatch alone reaches the clip). From ``max`` these hold
    at every sampled token, from ``p99`` at 99% of them. The same functions as the logit chain.
    """
    eps = DEFAULT_PPO_CLIP if clip is None else clip
    for stat, scope in _SCOPES.items():
        value = abs_log_ratio_stats.get(stat)
        if value is None or not math.isfinite(float(value)):
            continue
        v = float(value)
        source = f"abs_log_ratio {stat}"
        scope = scope.replace("scored position", "sampled token")

        def entry(quantity: str, bound: float, formula: str, *, source: str = source, v: float = v,
                  scope: str = scope) -> dict[str, Any]:
            return {"quantity": quantity, "bound": bound if math.isfinite(bound) else None, "source": source,
                    "source_value": v, "formula": formula, "scope": scope}

        out = [
            entry("importance_weight_max", _exp(v), "w ≤ e^|log w| (and ≥ e^−|log w|)"),
            entry("importance_weight_bias", _expm1(v), "policy-gradient bias ≤ A_max·G·(e^|log w| − 1), factor shown"),
            entry("ppo_clip_budget_used", v / clip_budget(eps),
                  f"|log w| / log(1 + ε_clip), ε_clip = {eps:g}; above 1 the kernel mismatch alone reaches the clip"),
        ]
        if advantage_max is not None and score_norm is not None:
            out.append(entry("pg_bias", advantage_max * score_norm * _expm1(v),
                             f"A_max·G·(e^|log w| − 1), A_max = {advantage_max:g}, G = {score_norm:g}"))
        return out
    return []
