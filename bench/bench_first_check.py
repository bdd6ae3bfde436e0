"""Benchmark: the first `promote check` on a machine (numba compiles the metric kernels) against a later one.

A fresh machine, a fresh virtual environment and every GitHub Action run without the action's kernel cache
pay numba's compile of the fused metric kernel for each signature the check meets (bfloat16 bits, float32,
float64 inputs); afterwards numba loads it from its on-disk cache. This runs the embedded example's check
(``examples/tiny_lm/contract.yaml``, fp32 vs bf16) with ``NUMBA_CACHE_DIR`` pointing at an empty folder
(cold), then again with that folder as the first run left it (warm), ``--repeat`` times each, every run a
fresh process. Reported: wall seconds of each, the cold ÷ warm ratio, and how many compiled signatures the
cache holds.

Run: ``python bench/bench_first_check.py [--contract examples/tiny_lm/contract.yaml] [--repeat 2]``; prints
one line per run and a JSON document last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_check(contract: Path, cache: Path) -> float:
    """Wall seconds of one `promote check` in a fresh process with numba's cache at ``cache``."""
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO / "src")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "promote.cli", "check", str(contract), "--no-progress",
                           "--no-github", "--format", "json"], cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"check exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contract", type=Path, default=REPO / "examples" / "tiny_lm" / "contract.yaml")
    parser.add_argument("--repeat", type=int, default=2, help="cold and warm runs each (cold: a new empty cache)")
    args = parser.parse_args()
    cold, warm, signatures = [], [], 0
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory(prefix="promote-numba-cache-") as folder:
            cache = Path(folder)
            cold.append(run_check(args.contract, cache))
            print(f"cold {cold[-1]:.2f} s", flush=True)
            warm.append(run_check(args.contract, cache))
            print(f"warm {warm[-1]:.2f} s", flush=True)
            signatures = sum(1 for p in cache.rglob("_fused.fused_token_metrics-*.nbc"))
    print(json.dumps({"contract": str(args.contract), "cold_s": cold, "warm_s": warm,
                      "cold_over_warm": min(cold) / min(warm), "kernel_signatures_compiled": signatures,
                      "load_average": os.getloadavg()[0]}, indent=1))


if __name__ == "__main__":
    main()
