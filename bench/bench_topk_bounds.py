"""How tight are the certified KL/TV bounds from a served model's top-k, on a trained model?

A remote server at a real vocabulary cannot send every log-prob (`top_k: all` is ~60 bytes per
vocabulary entry per position of JSON), so the `openai` kernel asks for `top_k: K` and promote gets the
exact log-ratio metrics plus certified [lower, upper] bounds on KL, reverse KL, TV and logit
oscillation (metrics/topk.py, docs/records.md). How useful the bounds are depends on how peaked the
distributions are: on a trained model most of the mass sits in a few ids.

This measures it on the shipped example Llama (examples/tiny_llama: trained, V = 512, 32 samples, 1 120 positions):
fp32 torch reference against three candidates — `bf16` autocast (honest), ``rms_norm_eps`` × 10 and
``rope_theta`` 10000 → 500 (faults the vLLM examples block) — and, for K = 5, 20, 100, the statistic of
the lower and upper bounds next to the exact full-vocabulary value, in the two set-ups a remote check
has:

* ``local-ref``: the reference runs locally (full logits, a *complete* side), the candidate is served
  (top-K): TV and reverse KL KL(q‖p) get finite upper bounds; KL(p‖q) has none (an unrecorded candidate
  probability may be arbitrarily small).
* ``both-served``: both kernels are served (top-K each): TV bounded; both KL upper bounds infinite.

Scored through promote's own path (``engine.scoring.score_outputs``) with the rounding the `openai`
kernel declares for a served answer (float32 log-probs, ``mass_tol`` = 1e-4 × (K + 16)).

Run: ``python bench/bench_topk_bounds.py [--k 5 20 100] [--json OUT]`` (1–2 min on 2 busy cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from promote.data import batches, read_jsonl
from promote.engine.scoring import score_outputs
from promote.kernels.base import Outputs
from promote.metrics.topk import topk_of_logits

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "tiny_llama"
METRICS = ("tv", "kl", "kl_rev", "logit_osc")
EXACT = ("abs_log_ratio", "argmax_agree")
STATS = {"mean": np.mean, "p99": lambda v: np.quantile(v, 0.99, method="inverted_cdf"), "max": np.max}


def served_mass_tol(k: int) -> float:
    """What kernels/openai_kernel.py declares for a top-K answer's rounding of Σ exp(top-K)."""
    return 1e-4 * (k + 16)


def load(folder: Path, **config: float) -> torch.nn.Module:
    from transformers import LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    return LlamaForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **config).eval()


def candidates(tmp: Path) -> dict[str, tuple[torch.nn.Module, bool]]:
    """name → (model, runs under bf16 autocast)."""
    sys.path.insert(0, str(EXAMPLE))
    from faults import wrong_rope

    return {"bf16": (load(EXAMPLE / "model"), True),
            "rms_norm_eps x10": (load(EXAMPLE / "model", rms_norm_eps=1e-5), False),
            "rope_theta 500": (load(wrong_rope(tmp / "rope")), False)}


def logits_of(model: torch.nn.Module, ids: np.ndarray, bf16: bool) -> np.ndarray:
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model(input_ids=torch.from_numpy(ids), use_cache=False).logits.float().numpy()


def served(logits: np.ndarray, input_ids: np.ndarray, k: int) -> Outputs:
    """A top-K answer as the `openai` kernel builds it: float32 log-probs, its declared rounding."""
    targets = np.concatenate([input_ids[:, 1:], np.zeros_like(input_ids[:, :1])], axis=1)
    ids, values, target = topk_of_logits(logits, k, targets)
    return Outputs(topk_ids=ids, topk_logprobs=values.astype(np.float32), target_logprobs=target.astype(np.float32),
                   mass_tol=served_mass_tol(k))


def collect(model_ref: torch.nn.Module, cand: tuple[torch.nn.Module, bool], ks: list[int]) -> dict:
    """Per-position values over the eval set: exact (both full), and per set-up and K the bounds."""
    evalset = read_jsonl(EXAMPLE / "eval.jsonl")
    out: dict[str, list[np.ndarray]] = {}
    for batch in batches(evalset.samples, 16):
        ref, cnd = logits_of(model_ref, batch.input_ids, False), logits_of(cand[0], batch.input_ids, cand[1])
        runs = {"exact": (Outputs(logits=ref), Outputs(logits=cnd))}
        for k in ks:
            runs[f"local-ref/{k}"] = (Outputs(logits=ref), served(cnd, batch.input_ids, k))
            runs[f"both-served/{k}"] = (served(ref, batch.input_ids, k), served(cnd, batch.input_ids, k))
        for name, (r, c) in runs.items():
            for metric, values in score_outputs(batch, r, c, tie_margin=1e-3).values.items():
                out.setdefault(f"{name}:{metric}", []).append(values)
    return {key: np.concatenate(parts) for key, parts in out.items()}


def table(values: dict[str, np.ndarray], ks: list[int]) -> list[dict]:
    rows = []
    for metric in METRICS:
        for stat, fn in STATS.items():
            row = {"metric": metric, "stat": stat, "exact": float(fn(values[f"exact:{metric}"]))}
            for setup in ("local-ref", "both-served"):
                for k in ks:
                    lo, hi = values[f"{setup}/{k}:{metric}_lower"], values[f"{setup}/{k}:{metric}_upper"]
                    row[f"{setup}/{k}"] = [float(fn(lo)), float(fn(hi))]
            rows.append(row)
    for metric in EXACT:
        for stat in ("mean", "max") if metric == "abs_log_ratio" else ("mean",):
            exact = float(STATS[stat](values[f"exact:{metric}"]))
            row = {"metric": metric, "stat": stat, "exact": exact}
            for setup in ("local-ref", "both-served"):
                for k in ks:
                    got = float(STATS[stat](values[f"{setup}/{k}:{metric}"]))
                    row[f"{setup}/{k}"] = [got, got]
            rows.append(row)
    return rows


def fmt(x: float) -> str:
    return "∞" if x == float("inf") else f"{x:.2g}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[5, 20, 100])
    parser.add_argument("--json", type=Path, help="also write every number here")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        reference = load(EXAMPLE / "model")
        for name, cand in candidates(Path(tmp)).items():
            result[name] = table(collect(reference, cand, args.k), args.k)
            print(f"\n## fp32 reference vs {name}: exact, then [lower, upper] of the statistic per set-up/K")
            for row in result[name]:
                cells = "  ".join(f"{key} [{fmt(v[0])}, {fmt(v[1])}]" for key, v in row.items()
                                  if isinstance(v, list))
                print(f"{row['metric']:>13} {row['stat']:>4}  exact {fmt(row['exact']):>7}  {cells}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
