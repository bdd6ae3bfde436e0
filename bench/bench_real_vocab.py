"""Benchmark: `promote check` at real vocabularies against the two bare forwards a user would write.

Issue 22 asks, on this 2-core machine, for Llama-shaped models with random weights at V = 32 000,
128 256 and 151 936 (bench/random_llama.py: hidden 64, two layers, so the forward is cheap and the
vocabulary dominates): `check` wall time ÷ two bare forwards (target ≤ 1.15×), positions/s, and peak
RSS at two or three eval-set sizes, which must stay flat in the eval-set size (O(batch × V)).

Each measurement is a fresh process, as a user runs it, whose peak RSS is the kernel's own account
(``os.wait4``'s ``ru_maxrss``):

* **check**: ``python -m promote.cli check contract.yaml --stage numerics`` (fp32 `kind: torch`
  reference, `precision: bf16` candidate — autocast, as the shipped examples do — the same
  ``batch_size``; eight numerics clauses, no noise floor, so each kernel runs once per batch);
* **bare**: the script a user would write: import torch and transformers, load the model twice
  (fp32, and the same weights under ``torch.autocast(bfloat16)``), run both forwards over the same
  batches in ``torch.inference_mode()`` and keep nothing.

Reported per (V, positions): both wall times, their ratio, the bare forwards' own seconds (without
imports and model loading), check positions/s, both peak RSS. Models, eval sets and contracts go to
``--dir`` (default /tmp/promote-bench-real-vocab, reused when present).

``--split`` profiles one more check (cProfile) and reports the offline pass's seconds split into the forwards,
the scoring and the one-off identity gate: the pass less the gate over the forwards is the marginal ratio
without the start-up and loading costs, which move by a second or more between processes.

Run: ``python bench/bench_real_vocab.py [--vocab 32000 128256 151936] [--positions 2048 8192]
[--seq 128] [--batch 4] [--hidden 64] [--layers 2] [--intermediate 128] [--heads 2] [--shape default|real|llama-1b]
[--repeat 1] [--threads N] [--split]``; prints one line per run and a JSON document last.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))
from random_llama import SHAPE_DEFAULTS, add_shape_arguments, build, shape_from, shape_suffix  # noqa: E402

MODEL_PY = REPO / "examples" / "tiny_llama" / "model.py"  # build(): LlamaForCausalLM from $PROMOTE_TINY_LLAMA_DIR

CLAUSES = """\
numerical:
  clauses:
    - {id: kl-mean, metric: kl, stat: mean, max: 1.0}
    - {id: kl-p99, metric: kl, stat: p99, max: 1.0}
    - {id: tv-p99, metric: tv, stat: p99, max: 0.99}
    - {id: osc-p99, metric: logit_osc, stat: p99, max: 100.0}
    - {id: log-ratio-p99, metric: abs_log_ratio, stat: p99, max: 10.0}
    - {id: argmax, metric: argmax_agree, stat: mean, min: 0.001}
    - {id: entropy, metric: entropy_ratio, stat: mean, max: 10.0}
    - {id: finite, metric: nonfinite, stat: max, max: 0}
"""

# The bare forwards: what a user writes to compare the two kernels by hand, minus the comparison. Arguments:
# model folder, eval set, batch size and, optionally, the device (default cpu; bench_gpu.py passes cuda).
BARE = """\
import json, sys, time
import torch
from transformers import LlamaForCausalLM
folder, evalset, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
device = sys.argv[4] if len(sys.argv) > 4 else "cpu"
rows = [json.loads(line)["input_ids"] for line in open(evalset)]
ref = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
cand = LlamaForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device).eval()
sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
sync()
start, cpu = time.perf_counter(), time.process_time()
with torch.inference_mode():
    for i in range(0, len(rows), batch):
        ids = torch.tensor(rows[i:i + batch], device=device)
        ref(input_ids=ids, use_cache=False).logits
        with torch.autocast(device, dtype=torch.bfloat16):
            cand(input_ids=ids, use_cache=False).logits
sync()
print(json.dumps({"forward_s": time.perf_counter() - start, "forward_cpu_s": time.process_time() - cpu}))
"""


def model_dir(root: Path, vocab: int, shape: dict[str, int]) -> Path:
    """The seeded random-weight Llama at ``vocab`` and ``shape`` (built once, then reused)."""
    folder = root / f"llama-v{vocab}{shape_suffix(shape)}"
    if not (folder / "model.safetensors").exists():
        build(folder, vocab, **shape)
    return folder


def workload(root: Path, vocab: int, positions: int, seq: int, batch: int, suffix: str = "", *,
             device: str = "cpu", clauses: str = CLAUSES) -> Path:
    """A folder with eval.jsonl (positions // seq samples of seq random ids in [0, V)) and contract.yaml: the fp32
    reference and `precision: bf16` candidate, both `kind: torch` on ``device``, judged by ``clauses``."""
    work = root / f"v{vocab}-p{positions}-s{seq}-b{batch}{suffix}"
    work.mkdir(parents=True, exist_ok=True)
    samples = max(1, positions // seq)
    ids = np.random.default_rng(vocab + positions).integers(0, vocab, size=(samples, seq))
    with (work / "eval.jsonl").open("w") as out:
        for i, row in enumerate(ids):
            out.write(json.dumps({"id": f"s{i:05d}", "input_ids": row.tolist()}) + "\n")
    placed = "" if device == "cpu" else f", device: {device}"
    kernel = f"{{kind: torch, model: {MODEL_PY}:build, batch_size: {batch}{placed}, precision: %s}}"
    (work / "contract.yaml").write_text(
        f"version: 1\nname: bench-real-vocab-{vocab}\n"
        f"reference: {kernel % 'fp32'}\ncandidate: {kernel % 'bf16'}\n"
        "data: {path: eval.jsonl, task: causal-lm}\n" + clauses)
    return work


def run_child(args: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds (user + system), peak RSS MiB from wait4's ru_maxrss, stdout) of one
    child; exits on a failure. CPU seconds move less than wall time on a machine shared with others."""
    out_path = cwd / ".stdout"
    err_path = cwd / ".stderr"
    start = time.perf_counter()
    with out_path.open("w") as out, err_path.open("w") as err:
        child = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(args)}: exit {child.returncode}\n{err_path.read_text()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, out_path.read_text()


# Inside one check: the offline pass, the two kernels' forwards in it, the scoring, and the identity gate that runs
# once inside the pass (file suffix, function name; cumulative seconds from cProfile, which costs nothing in the
# torch and numba calls that take the time).
SPLIT = {"pass": ("engine/passes.py", "kernel_pass"), "forwards": ("kernels/base.py", "run"),
         "scoring": ("engine/scoring.py", "score_outputs"), "identity": ("stages/identity_gate.py", "before")}


def profile_split(work: Path, env: dict[str, str]) -> dict[str, float]:
    """One more check under cProfile: seconds of SPLIT's parts, and the pass (less the one-off identity gate)
    over the forwards inside it: the marginal cost per batch, free of start-up and loading, which vary by a
    second or more between processes on a shared machine."""
    profile = work / "check.prof"
    profile.unlink(missing_ok=True)  # never read an earlier run's profile
    # cProfile writes its file when the module returns: the normal exit, not promote's exit without teardown
    run_child([sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "promote.cli", "check", "contract.yaml",
               "--stage", "numerics", "--no-progress", "--no-github", "--output", "json=report.json"], work,
              {**env, "PROMOTE_FULL_EXIT": "1"})
    if not profile.exists():
        raise SystemExit(f"{work}: the profiled check wrote no {profile.name}")
    stats = pstats.Stats(str(profile)).stats  # (file, line, function) -> (calls, primitive, own s, cumulative s, _)
    split = {key: sum(row[3] for (file, _, function), row in stats.items()
                      if file.endswith(suffix) and function == name)
             for key, (suffix, name) in SPLIT.items()}
    split["pass_over_forwards"] = (split["pass"] - split["identity"]) / split["forwards"]
    return {f"split_{key}": value for key, value in split.items()}


def measure(root: Path, vocab: int, positions: int, seq: int, batch: int, repeat: int, threads: int | None,
            split: bool = False, shape: dict[str, int] | None = None) -> dict:
    shape = {**SHAPE_DEFAULTS, **(shape or {})}
    folder = model_dir(root, vocab, shape)
    work = workload(root, vocab, positions, seq, batch, shape_suffix(shape))
    env = {**os.environ, "PROMOTE_TINY_LLAMA_DIR": str(folder), "PYTHONPATH": str(REPO / "src")}
    env.pop("PROMOTE_FLOOR_CACHE", None)
    if threads:  # torch (OpenMP/MKL) and numba alike: on a shared machine one thread each spins on nothing
        env.update({name: str(threads) for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS")})
    checks, bares = [], []
    load = os.getloadavg()[0]
    for _ in range(repeat):
        checks.append(run_child([sys.executable, "-m", "promote.cli", "check", "contract.yaml", "--stage",
                                 "numerics", "--no-progress", "--no-github", "--output", "json=report.json"],
                                work, env))
        bares.append(run_child([sys.executable, "-c", BARE, str(folder), "eval.jsonl", str(batch)], work, env))
    parts = profile_split(work, env) if split else {}
    check_s, check_cpu, check_rss, _ = min(checks)
    bare_s, bare_cpu, bare_rss, bare_out = min(bares)
    report = json.loads((work / "report.json").read_text())
    numerics = next(stage for stage in report["stages"] if stage.get("name") == "numerics")
    scored = positions // seq * (seq - 1)  # teacher-forced: each sample predicts seq - 1 next tokens
    return {"vocab": vocab, **shape, "positions": positions // seq * seq, "scored_positions": scored,
            "seq": seq,
            "batch": batch, "verdict": report.get("verdict"), "check_s": check_s, "bare_s": bare_s,
            "ratio": check_s / bare_s, "check_cpu_s": check_cpu, "bare_cpu_s": bare_cpu,
            "cpu_ratio": check_cpu / bare_cpu, "bare_forward_s": json.loads(bare_out)["forward_s"],
            "bare_forward_cpu_s": json.loads(bare_out)["forward_cpu_s"], "load_before": load,
            "load_after": os.getloadavg()[0],
            "positions_per_s": scored / check_s,
            "check_kernel_s": sum(numerics["details"]["kernel_seconds"].values()),
            "check_rss_mib": check_rss, "bare_rss_mib": bare_rss,
            "logits_per_batch_side_mib": batch * seq * vocab * 4 / 2**20, "threads": threads, **parts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, nargs="+", default=[32000, 128256, 151936])
    parser.add_argument("--positions", type=int, nargs="+", default=[2048, 8192],
                        help="eval-set sizes in tokens (samples × seq)")
    parser.add_argument("--seq", type=int, default=128)
    add_shape_arguments(parser)  # default hidden 64, 2 layers: the vocabulary dominates
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each command; the fastest is kept")
    parser.add_argument("--threads", type=int, help="threads of torch and numba in both commands (default: theirs)")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/promote-bench-real-vocab"))
    parser.add_argument("--split", action="store_true",
                        help="also profile one check: its pass, forwards and scoring seconds (the marginal ratio)")
    args = parser.parse_args()
    rows = []
    for vocab in args.vocab:
        mine = []
        for positions in args.positions:
            r = measure(args.dir, vocab, positions, args.seq, args.batch, args.repeat, args.threads, args.split,
                        shape_from(args))
            rows.append(r)
            mine.append(r)
            print(f"V={vocab:>6} positions={r['positions']:>6}  check {r['check_s']:6.1f}s  bare {r['bare_s']:6.1f}s "
                  f"(forwards {r['bare_forward_s']:5.1f}s)  ratio {r['ratio']:.2f}x (CPU {r['cpu_ratio']:.2f}x)  "
                  f"{r['positions_per_s']:7.0f} positions/s  peak RSS check {r['check_rss_mib']:6.0f} MiB, "
                  f"bare {r['bare_rss_mib']:6.0f} MiB  [{r['verdict']}; load {r['load_before']:.1f}"
                  f"→{r['load_after']:.1f}]",
                  flush=True)
            if args.split:
                print(f"    inside check: pass {r['split_pass']:.2f}s = forwards {r['split_forwards']:.2f}s + scoring "
                      f"{r['split_scoring']:.2f}s + identity {r['split_identity']:.2f}s + rest; pass less identity "
                      f"÷ forwards = {r['split_pass_over_forwards']:.2f}x", flush=True)
        if len(mine) > 1:  # the fixed costs (imports, loading, the report) cancel in the difference
            first, last = mine[0], mine[-1]
            for unit, check, bare in (("wall", "check_s", "bare_forward_s"),
                                      ("cpu", "check_cpu_s", "bare_forward_cpu_s")):
                last[f"marginal_{unit}_ratio"] = (last[check] - first[check]) / (last[bare] - first[bare])
            print(f"V={vocab:>6} marginal, {first['positions']} → {last['positions']} positions: check's extra "
                  f"seconds ÷ the bare forwards' extra seconds = {last['marginal_wall_ratio']:.2f}x wall, "
                  f"{last['marginal_cpu_ratio']:.2f}x CPU", flush=True)
    print_document(rows)


def print_document(rows: list[dict]) -> None:
    """The runs as one JSON document, with the commit, the Python and the CPU count they were measured on."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            check=False).stdout.strip()
    print(json.dumps({"commit": commit, "python": sys.version.split()[0], "cpus": os.cpu_count(), "runs": rows},
                     indent=1))


if __name__ == "__main__":
    main()
