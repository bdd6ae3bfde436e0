"""Benchmark: the offline pass on records of 2^30 logits per side, one process vs 2 Ray workers.

Issue 14 asks, on this 2-core machine: single process vs `--engine ray --workers 2`, the fixed
costs (``ray.init``, an actor's start), the scaling efficiency, and each worker's peak anonymous
memory, which must stay O(batch × vocab) and not grow with the eval set. Records are fp16
safetensors shards memory-mapped by ``kind: records`` (2 GiB per side on disk), so page cache is
file-backed and the anonymous peak (RssAnon, sampled from /proc every 50 ms) is what a worker owns.

Run: ``python bench/bench_scale_out.py [--samples 2048 --seq 128 --vocab 4096 --batch 16]``; the data
goes to ``--dir`` (default /tmp/promote-bench-scale, reused when present). Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def generate(root: Path, samples: int, seq: int, vocab: int, per_file: int = 128, batch: int | None = None) -> Path:
    """Eval set + reference/candidate records (fp16, candidate = reference + 1e-2 noise); the contract."""
    from promote.kernels.records import write_records

    contract = root / "contract.yaml"
    if contract.exists():
        return contract
    rng = np.random.default_rng(0)
    ids = [f"s{i:06d}" for i in range(samples)]
    input_ids = rng.integers(0, vocab, size=(samples, seq), dtype=np.int64)
    mask = np.ones((samples, seq), dtype=bool)
    with (root / "eval.jsonl").open("w") as out:
        for i, sample in enumerate(ids):
            out.write(json.dumps({"id": sample, "input_ids": input_ids[i].tolist()}) + "\n")
    for start in range(0, samples, per_file):
        end = min(start + per_file, samples)
        ref = rng.standard_normal((end - start, seq, vocab), dtype=np.float32) * 2
        cand = ref + rng.standard_normal(ref.shape, dtype=np.float32) * 1e-2
        for side, logits in (("ref", ref), ("cand", cand)):
            write_records(root / side / f"{start:07d}.safetensors", ids[start:end], input_ids[start:end],
                          mask[start:end], logits=logits.astype(np.float16))
        del ref, cand
    contract.write_text(
        "version: 1\nname: bench-scale-out\n"
        f"reference: {{kind: records, path: ref, batch_size: {batch or BATCH}}}\n"
        f"candidate: {{kind: records, path: cand, batch_size: {batch or BATCH}}}\n"
        "data: {path: eval.jsonl, task: causal-lm}\n"
        "numerical:\n  clauses:\n"
        "    - {id: kl-mean, metric: kl, stat: mean, max: 1.0}\n"
        "    - {id: osc-p99, metric: logit_osc, stat: p99, max: 10.0}\n"
        "    - {id: argmax, metric: argmax_agree, stat: mean, min: 0.5}\n")
    return contract


def _anon_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Sampler(threading.Thread):
    """Peak RssAnon per process: the given pid, or every process whose command line has ``needle``."""

    def __init__(self, pid: int | None = None, needle: str | None = None) -> None:
        super().__init__(daemon=True)
        self.pid, self.needle, self.peaks, self.stop = pid, needle, {}, threading.Event()

    def _pids(self) -> list[int]:
        if self.pid is not None:
            return [self.pid]
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if self.needle.encode() in (entry / "cmdline").read_bytes():
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found

    def run(self) -> None:
        while not self.stop.is_set():
            for pid in self._pids():
                kib = _anon_kib(pid)
                if kib is not None:
                    self.peaks[pid] = max(self.peaks.get(pid, 0), kib)
            time.sleep(0.05)


def timed_check(contract: Path, extra: list[str], env: dict[str, str], needle: str | None = None) -> dict:
    cmd = [sys.executable, "-m", "promote.cli", "check", str(contract), "--format", "json", *extra]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **env})
    main = Sampler(pid=proc.pid)
    main.start()
    workers = Sampler(needle=needle) if needle else None
    if workers:
        workers.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    for sampler in (main, workers):
        if sampler:
            sampler.stop.set()
            sampler.join()
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {err.decode()[-2000:]}")
    report = json.loads(out)
    numerics = report["stages"][0]
    return {"wall_s": round(wall, 2), "exit": proc.returncode, "positions": numerics["details"]["positions"],
            "kl_mean": numerics["clauses"][0]["observed"],
            "driver_anon_peak_mib": round(max(main.peaks.values(), default=0) / 1024, 1),
            "worker_anon_peak_mib": sorted(round(v / 1024, 1) for v in workers.peaks.values()) if workers else None,
            "report": {k: v for k, v in report.items() if k in ("stages",)}}


def fixed_costs() -> dict:
    import ray

    from promote.scale.ray_engine import ShardWorker
    from promote.stages.shards import ShardComputer

    start = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    init_s = time.perf_counter() - start
    start = time.perf_counter()
    actor = ray.remote(ShardWorker).options(num_cpus=1).remote(ShardComputer("unused", {}, []), 1)
    ray.get(actor.pid.remote())
    actor_s = time.perf_counter() - start
    ray.kill(actor)
    ray.shutdown()
    return {"ray_init_s": round(init_s, 2), "actor_start_s": round(actor_s, 2)}


BATCH = 16


def main() -> None:
    global BATCH
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--vocab", type=int, default=4096)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/promote-bench-scale"))
    args = parser.parse_args()
    BATCH = args.batch
    args.dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    contract = generate(args.dir, args.samples, args.seq, args.vocab)
    one = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
    quarter = contract.with_name("contract-quarter.yaml")  # the first quarter of the set: does memory grow?
    limited = f"task: causal-lm, limit: {args.samples // 4}}}"
    quarter.write_text(contract.read_text().replace("task: causal-lm}", limited))
    result = {
        "load_average_before": os.getloadavg(),
        "logits_per_side": args.samples * args.seq * args.vocab,
        "batch_logits": args.batch * args.seq * args.vocab,
        "batch_fp32_mib": args.batch * args.seq * args.vocab * 4 / 2**20,
        "generate_s": round(time.perf_counter() - start, 1),
        "fixed": fixed_costs(),
        "single_1_thread_quarter_set": timed_check(quarter, [], one),
        "single_1_thread": timed_check(contract, [], one),
        "single_2_threads": timed_check(contract, [], {}),
        "ray_2_workers": timed_check(contract, ["--engine", "ray", "--workers", "2"], {}, needle="ShardWorker"),
    }
    stats = [result[k]["report"]["stages"][0]["details"]["metrics"] for k in
             ("single_1_thread", "single_2_threads", "ray_2_workers")]
    result["identical_statistics"] = stats[0] == stats[1] == stats[2]
    for key in ("single_1_thread_quarter_set", "single_1_thread", "single_2_threads", "ray_2_workers"):
        result[key].pop("report")
    result["load_average_after"] = os.getloadavg()
    base, ray_s = result["single_1_thread"]["wall_s"], result["ray_2_workers"]["wall_s"]
    result["speedup_vs_1_thread"] = round(base / ray_s, 2)
    result["scaling_efficiency"] = round(base / (2 * ray_s), 2)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
