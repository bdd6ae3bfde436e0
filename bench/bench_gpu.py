"""Benchmark: issue 22 item 5 on a CUDA device, as the one prepared script a device session runs.

Issue 22 asks, on an H100/H200: the metric pass at V = 128 256 against the device-to-device copy rate
(target ≥ 70 % of it), and ``check`` of a random-weight Llama-shaped model, bf16 candidate against fp32
reference on the GPU, over the bare forwards (target ≤ 1.05×). The device machines have torch, Triton and
transformers but no network, and their time is short (15 minutes a session, start-up included), so every
part is here, bounded and selectable, and the numbers come back as one JSON file:

* ``copy``: a [P, V] float32 tensor copied on the device (CUDA events; bytes read + written per second);
* ``metrics``: promote's on-device metric pass (engine/device_scoring.py's ``DeviceLogits.columns``: the
  chunked torch ops of metrics/device.py) over fp32 reference and bf16-rounded candidate logits [P, V]
  already on the GPU; its input bytes per second over the copy's, the issue's "≥ 70 %";
* ``compiled``: the same pass with metrics/device.py's ``token_columns`` under ``torch.compile``, to see
  whether fusing it (Inductor's Triton kernels) pays before promote ships a fused CUDA kernel;
* ``check``: ``promote check --stage numerics`` of bench/random_llama.py models (fp32 `kind: torch`
  reference, `precision: bf16` candidate, both ``device: cuda``) against the bare script a user would write
  (both forwards on the GPU), each a fresh process; the vocabulary-dominated default shape and, with
  ``--check-shape llama-1b``, Llama-3.2-1B's proportions (hidden 2 048, 16 layers, MLP 8 192: the output
  layer ~21 % of the forward);
* ``tests``: the CUDA-only tests (tests/test_device_metrics.py, tests/test_rl.py), which skip without a GPU.

On the device (no network: carry the wheels promote needs that its image lacks; tools/device_wheels.sh
downloads them here into the ignored folder .device-wheels/)::

    python3 -m pip install -q --no-index --find-links .device-wheels jsonschema datasketches &&
    PYTHONPATH=src python3 bench/bench_gpu.py --out "$OUT/gpu.json"

with ``carry: [".device-wheels"]``. ``--device cpu`` runs every part here at small sizes (a dry run of the
script, not a measurement).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))
from bench_real_vocab import BARE, model_dir, workload  # noqa: E402
from random_llama import SHAPES, shape_suffix  # noqa: E402

CLAUSES = """\
numerical:
  clauses:
    - {id: kl-mean, metric: kl, stat: mean, max: 1.0}
    - {id: tv-p99, metric: tv, stat: p99, max: 0.99}
    - {id: argmax, metric: argmax_agree, stat: mean, min: 0.001}
    - {id: finite, metric: nonfinite, stat: max, max: 0}
"""


def timed(fn: Any, device: str, repeats: int) -> float:
    """Fastest of ``repeats`` calls of ``fn`` after one warm-up, in seconds (synchronised on CUDA)."""
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def logits_pair(positions: int, vocab: int, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """fp32 reference logits [1, P, V] (peaked, ~3 nats of spread) and a candidate rounded through bf16."""
    generator = torch.Generator(device=device).manual_seed(0)
    ref = torch.randn((1, positions, vocab), generator=generator, device=device, dtype=torch.float32) * 3.0
    return ref, ref.to(torch.bfloat16).to(torch.float32)


def copy_rate(positions: int, vocab: int, device: str, repeats: int) -> dict[str, float]:
    source = torch.randn((positions, vocab), device=device, dtype=torch.float32)
    target = torch.empty_like(source)
    seconds = timed(lambda: target.copy_(source), device, repeats)
    moved = 2 * source.numel() * source.element_size()  # read + written
    return {"seconds": seconds, "bytes_per_s": moved / seconds, "logits_per_s": source.numel() / seconds}


def metric_pass(positions: int, vocab: int, device: str, repeats: int, *, compiled: bool,
                chunk: int | None) -> dict[str, float]:
    from promote.engine import device_scoring
    from promote.metrics import device as device_metrics

    ref, cand = logits_pair(positions, vocab, device)
    targets = np.random.default_rng(0).integers(0, vocab, positions)
    rows, cols = np.zeros(positions, dtype=np.int64), np.arange(positions, dtype=np.int64)
    saved_backend, saved_columns = device_scoring.CPU_BACKEND, device_metrics.token_columns
    device_scoring.CPU_BACKEND = "torch"  # on `--device cpu` too: the torch ops CUDA runs, not numba
    if compiled:
        device_metrics.token_columns = torch.compile(saved_columns, dynamic=False)
    try:
        logits = device_scoring.DeviceLogits(ref, cand, rows, cols, chunk=chunk)
        start = time.perf_counter()
        columns = logits.columns(targets, 1e-3)  # the first call: warm-up, and compilation under torch.compile
        first = time.perf_counter() - start
        seconds = timed(lambda: logits.columns(targets, 1e-3), device, repeats)
        used = logits.chunk
    finally:
        device_scoring.CPU_BACKEND, device_metrics.token_columns = saved_backend, saved_columns
    agreement = {}
    if compiled:  # a faster pass counts only if it computes the same numbers as the eager torch ops
        eager = device_scoring.DeviceLogits(ref, cand, rows, cols, chunk=chunk).columns(targets, 1e-3)
        scale = np.maximum(np.abs(eager), 1e-300)
        same_nan = np.array_equal(np.isnan(columns), np.isnan(eager))
        agreement = {"same_nans": bool(same_nan),
                     "max_rel_diff_vs_eager": float(np.nanmax(np.abs(columns - eager) / scale))}
    read = 2 * ref.numel() * ref.element_size()
    return {"seconds": seconds, "first_call_s": first, "input_bytes_per_s": read / seconds,
            "positions_per_s": positions / seconds, "chunk": used, **agreement}


def run_child(args: list[str], cwd: Path, env: dict[str, str], timeout: float) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - start
    if done.returncode not in (0, 1):
        raise RuntimeError(f"{' '.join(args[:4])}…: exit {done.returncode}\n{done.stderr[-3000:]}")
    return wall, done.stdout


def check_ratio(root: Path, shape_name: str, vocab: int, positions: int, seq: int, batch: int, device: str,
                timeout: float) -> dict[str, Any]:
    """``promote check`` and the bare forwards at one shape: wall times, the pass's own seconds, ratios."""
    shape = SHAPES[shape_name]
    model = model_dir(root, vocab, shape)
    work = workload(root, vocab, positions, seq, batch, f"{shape_suffix(shape)}-{device}", device=device,
                    clauses=CLAUSES)
    env = {**os.environ, "PROMOTE_TINY_LLAMA_DIR": str(model), "PYTHONPATH": str(REPO / "src")}
    check_s, _ = run_child([sys.executable, "-m", "promote.cli", "check", "contract.yaml", "--stage", "numerics",
                            "--no-progress", "--no-github", "--output", "json=report.json"], work, env, timeout)
    bare_s, bare_out = run_child([sys.executable, "-c", BARE, str(model), "eval.jsonl", str(batch), device], work,
                                 env, timeout)
    report = json.loads((work / "report.json").read_text())
    numerics = next(stage for stage in report["stages"] if stage.get("name") == "numerics")
    forwards = json.loads(bare_out)["forward_s"]
    kernels = sum(numerics["details"]["kernel_seconds"].values())
    pass_s = float(numerics.get("duration_s") or 0.0)  # the numerics stage: the offline pass and its judging
    return {"shape": shape_name, **shape, "vocab": vocab, "positions": positions, "batch": batch,
            "verdict": report.get("verdict"), "check_s": check_s, "bare_s": bare_s, "ratio": check_s / bare_s,
            "bare_forward_s": forwards, "check_kernel_s": kernels, "check_pass_s": pass_s,
            "pass_over_bare_forwards": pass_s / forwards if pass_s else None}


def cuda_tests(timeout: float) -> dict[str, Any]:
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_device_metrics.py",
            "tests/test_rl.py", "-k", "cuda"]
    done = subprocess.run(args, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO / "src")}, capture_output=True,
                          text=True, timeout=timeout)
    return {"exit_code": done.returncode, "tail": done.stdout[-1500:] + done.stderr[-500:]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                        help="cuda (the measurement) or cpu (a dry run of every part at the small sizes you give)")
    parser.add_argument("--parts", nargs="+", default=["copy", "metrics", "compiled", "check", "tests"],
                        choices=["copy", "metrics", "compiled", "check", "tests"])
    parser.add_argument("--vocab", type=int, default=128256)
    parser.add_argument("--positions", type=int, default=8192, help="positions of the metric pass and the copy")
    parser.add_argument("--chunk", type=int, help="positions per chunk of the metric pass (default: promote's)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--check-shape", nargs="+", default=["default"], choices=sorted(SHAPES),
                        help="model shapes for the check part (default: the vocabulary-dominated one)")
    parser.add_argument("--check-positions", type=int, default=16384)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/promote-bench-gpu"))
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds for each child process")
    parser.add_argument("--out", type=Path, help="also write the JSON document here")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("bench_gpu: torch sees no CUDA device (use --device cpu for a dry run)", file=sys.stderr)
        return 2
    import numba
    import transformers

    result: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "torch": torch.__version__,
                              "numba": numba.__version__, "transformers": transformers.__version__,
                              "python": sys.version.split()[0],
                              "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                              "vocab": args.vocab, "positions": args.positions}

    def record(name: str, fn: Any) -> None:  # a part that fails is reported, the others still run
        start = time.perf_counter()
        try:
            result[name] = fn()
        except Exception as exc:  # noqa: BLE001 - a benchmark reports every failure and goes on
            result[name] = {"error": f"{type(exc).__name__}: {str(exc)[:2000]}"}
        print(f"[{time.perf_counter() - start:6.1f} s] {name}: {json.dumps(result[name])[:600]}", flush=True)
        if args.out:
            args.out.write_text(json.dumps(result, indent=1))

    if "copy" in args.parts:
        record("copy", lambda: copy_rate(args.positions, args.vocab, args.device, args.repeats))
    for name, compiled in (("metrics", False), ("compiled", True)):
        if name in args.parts:
            record(name, lambda compiled=compiled: metric_pass(args.positions, args.vocab, args.device, args.repeats,
                                                                 compiled=compiled, chunk=args.chunk))
            copy = result.get("copy", {})
            if "bytes_per_s" in copy and "input_bytes_per_s" in result[name]:
                result[name]["fraction_of_copy_rate"] = result[name]["input_bytes_per_s"] / copy["bytes_per_s"]
    if "check" in args.parts:
        for shape in args.check_shape:
            record(f"check_{shape}", lambda shape=shape: check_ratio(args.dir, shape, args.vocab, args.check_positions,
                                                                     args.seq, args.batch, args.device, args.timeout))
    if "tests" in args.parts:
        record("tests", lambda: cuda_tests(args.timeout))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
