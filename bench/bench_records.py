"""Benchmark: `promote check` on full-vocabulary logit records (`kind: records`, fp16) at real vocabularies.

RL and serving teams dump logits as files (llama.cpp's ``--kl-divergence`` base files are 11–37 GiB): the
records path must stream them at the metric kernel's speed, with memory O(batch × V). This writes fp16
records of random logits (candidate = reference + 1e-2 noise; bench/bench_scale_out.py's generator) for
each ``--vocab`` and times ``promote check --stage numerics`` on them, each run a fresh process: wall and
CPU seconds, peak RSS (``os.wait4``; the records' memory-mapped file pages count in it), minor page faults
(fresh anonymous pages, the cost of copies), the metric kernel's own seconds from the report, positions/s.

Run: ``python bench/bench_records.py [--vocab 32000 151936] [--samples 32] [--seq 128] [--batch 4]
[--repeat 2] [--dir /tmp/promote-bench-records]``; the records are reused when present (~2.4 GB at
V = 151 936 and 4 096 positions). Prints one line per vocabulary and a JSON document last.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "bench"))
from bench_real_vocab import print_document  # noqa: E402
from bench_scale_out import generate  # noqa: E402


def run_check(work: Path) -> dict[str, float]:
    """One fresh `promote check` in ``work``: wall, CPU, peak RSS MiB, minor faults, the report's kernel seconds."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    args = [sys.executable, "-m", "promote.cli", "check", "contract.yaml", "--stage", "numerics", "--no-progress",
            "--no-github", "--output", "json=report.json"]
    start = time.perf_counter()
    with (work / ".stderr").open("w") as err:
        child = subprocess.Popen(args, cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{work}: promote check exited {os.waitstatus_to_exitcode(status)}\n"
                         f"{(work / '.stderr').read_text()[-3000:]}")
    report = json.loads((work / "report.json").read_text())
    numerics = next(stage for stage in report["stages"] if stage.get("name") == "numerics")
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "system_s": usage.ru_stime,
            "peak_rss_mib": usage.ru_maxrss / 1024, "minor_faults": usage.ru_minflt,
            "kernel_s": sum(numerics["details"]["kernel_seconds"].values()),
            "positions": numerics["details"]["positions"], "verdict": report.get("verdict")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vocab", type=int, nargs="+", default=[32000, 151936])
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seq", type=int, default=128)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each check; the fastest is kept")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/promote-bench-records"))
    args = parser.parse_args()
    rows = []
    for vocab in args.vocab:
        work = args.dir / f"v{vocab}-n{args.samples}-s{args.seq}-b{args.batch}"
        work.mkdir(parents=True, exist_ok=True)
        generate(work, args.samples, args.seq, vocab, per_file=8, batch=args.batch)
        best = min((run_check(work) for _ in range(args.repeat)), key=lambda r: r["wall_s"])
        rows.append({"vocab": vocab, "samples": args.samples, "seq": args.seq, "batch": args.batch, **best,
                     "positions_per_s": best["positions"] / best["wall_s"]})
        print(f"V={vocab:>6}  check {best['wall_s']:5.1f} s (CPU {best['cpu_s']:5.1f} s, system "
              f"{best['system_s']:4.1f} s)  kernel {best['kernel_s']:4.1f} s  "
              f"{rows[-1]['positions_per_s']:6.0f} positions/s  peak RSS {best['peak_rss_mib']:6.0f} MiB  "
              f"minor faults {best['minor_faults']:>9,}  [{best['verdict']}]", flush=True)
    print_document(rows)


if __name__ == "__main__":
    main()
