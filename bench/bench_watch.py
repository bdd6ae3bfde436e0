"""Benchmark: `promote watch` on the real stack — the cost of one window, and the time from a fault to the
candidate's traffic routed back.

The stack is the end-to-end test's (tests/watch_parts.py): two vLLM servers of the tiny Llama (reference
and candidate, fp32), HAProxy in front of both (candidate at 30 %), Prometheus scraping both, live traffic
through HAProxy (one request a second, logged to the request log watch tails), and `promote watch
examples/tiny_llama/watch.yaml` with the haproxy sink as a real process. After ``--honest`` windows the
candidate is restarted on its port with the wrong rope_theta (examples/tiny_llama/faults.py).

Measured:
- per window: its wall time as the audit record gives it (``window.seconds``: evaluation, sinks, record)
  and the CPU seconds the watch process spent on it (``/proc/PID/stat`` utime+stime between records),
  plus the CPU both vLLM servers spent meanwhile (the live traffic's share included; their CPU per second
  under the traffic alone is measured for QUIET_S seconds before watch starts);
- the fault: ``fault → routed back`` from the moment the honest candidate is stopped to the first read
  of candidate weight 0 on HAProxy's runtime API (polled every 0.2 s, independently of the sink);
  ``faulted server up → failing window`` from the moment the faulted server answers a request to the end
  of the first window that fails shadow numerics on it (the fault itself caught, not the outage).

    python bench/bench_watch.py [--window 15s] [--honest 4] [--json out.json]

Needs the vLLM venv (tools/vllm_env.sh), haproxy and prometheus; takes ~6-10 min on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

TICK = os.sysconf("SC_CLK_TCK")
QUIET_S = 20.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (its threads included), seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


class WeightWatcher:
    """Polls the candidate's HAProxy weight; remembers when it first read 0 after ``arm()``."""

    def __init__(self, proxy) -> None:  # noqa: ANN001 - watch_parts.Haproxy
        self.proxy, self.armed_at, self.zero_at = proxy, None, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def arm(self) -> None:
        self.armed_at = time.time()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            if self.armed_at is not None and self.zero_at is None and self.proxy.weight("candidate") == 0:
                self.zero_at = time.time()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def stamp(record: dict, key: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(record["window"][key].replace("Z", "+00:00")).timestamp()


def timeline(record: dict, fault_at: float) -> str:
    """One line per window: start relative to the fault, duration, outcome, action, stages, first problem."""
    evidence = record["evidence"]
    stages = " ".join(f"{k}={v['status']}" for k, v in evidence.get("stages", {}).items())
    problem = evidence.get("error") or next((f"{n['stage']}/{n['clause']}: {n.get('message', n['status'])}"
                                            for n in evidence.get("notable", [])), "")
    return (f"window {record['window']['index']} start {stamp(record, 'started') - fault_at:+.1f}s "
            f"took {record['window']['seconds']}s {record['outcome']} {record['decision']['action']} "
            f"w={record['decision']['candidate_weight']} {stages} {str(problem)[:400]}")


def summary(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2),
            "max": round(max(values), 2), "n": len(values)} if values else {}


def run(window: str, honest: int, work: Path) -> dict:
    import watch_parts as wp
    from conftest import VllmServer

    reference = VllmServer(wp.EXAMPLE / "model", {"dtype": "float32"})
    candidate = VllmServer(wp.EXAMPLE / "model", {"dtype": "float32"})
    closers: list = []
    try:
        for server in (reference, candidate):
            server.start()
            closers.append(server.stop)
            server.ensure()
        proxy = wp.Haproxy(reference.port, candidate.port)
        closers.append(proxy.close)
        proxy.wait_up("reference", "candidate")
        prometheus = wp.prometheus_for(reference, candidate, proxy)
        closers.append(prometheus.close)
        requests_log = work / "requests.jsonl"
        live = wp.Traffic(proxy.url, requests_log)
        closers.append(live.close)
        wp.wait_until(lambda: requests_log.exists() and len(requests_log.read_text().splitlines()) >= 8,
                      "8 served prompts", 120)
        # The servers' CPU under the live traffic alone, to tell the watch's share from the traffic's.
        quiet = cpu_seconds(reference.pid) + cpu_seconds(candidate.pid)
        time.sleep(QUIET_S)
        traffic_cpu_per_s = (cpu_seconds(reference.pid) + cpu_seconds(candidate.pid) - quiet) / QUIET_S
        env = {"PROMOTE_VLLM_URL": candidate.url, "PROMOTE_BASELINE_URL": reference.url, "PROMETHEUS_URL":
               prometheus.url, "PROMOTE_HAPROXY_SOCKET": str(proxy.socket), "PROMOTE_REQUEST_LOG": str(requests_log)}
        watch = wp.WatchRun(wp.EXAMPLE / "watch.yaml", work / "audit.jsonl", env, window)
        closers.append(watch.stop)
        weights = WeightWatcher(proxy)
        closers.append(weights.close)

        cpu: list[dict] = []
        seen = 0

        def sample(records: list[dict]) -> None:
            nonlocal seen
            while seen < len(records):
                cpu.append({"watch": cpu_seconds(watch.pid), "servers": cpu_seconds(reference.pid)
                            + cpu_seconds(candidate.pid)})
                seen += 1

        baseline = {"watch": cpu_seconds(watch.pid), "servers": cpu_seconds(reference.pid) + cpu_seconds(candidate.pid)}
        watch.wait_records(lambda rs: sample(rs) or len(rs) >= honest, f"{honest} honest windows", 1200)
        weights.arm()
        fault_at = time.time()
        wp.swap(candidate, wp.faulted_model(work))
        up_at = time.time()
        records = watch.wait_records(
            lambda rs: any(stamp(r, "started") > up_at and r["evidence"].get("stages", {}).get("numerics", {})
                           .get("status") == "fail" for r in rs), "a failing window of the faulted candidate", 1200)
        honest_records = records[:honest]
        marks = [baseline, *cpu[:honest]]
        per_window_cpu = [marks[i + 1]["watch"] - marks[i]["watch"] for i in range(honest)]
        per_window_servers = [marks[i + 1]["servers"] - marks[i]["servers"] for i in range(honest)]
        failing = next(r for r in records if stamp(r, "started") > up_at
                       and r["evidence"]["stages"]["numerics"]["status"] == "fail")
        route_back = next((r for r in records if r["decision"]["action"] == "route_back"), None)
        return {
            "window": window,
            "honest_outcomes": [r["outcome"] for r in honest_records],
            "window_wall_s_first": honest_records[0]["window"]["seconds"],
            "window_wall_s_later": summary([r["window"]["seconds"] for r in honest_records[1:]]),
            "window_watch_cpu_s_first": round(per_window_cpu[0], 2),
            "window_watch_cpu_s_later": summary(per_window_cpu[1:]),
            "window_servers_cpu_s": summary(per_window_servers[1:]),
            "servers_cpu_s_per_s_traffic_only": round(traffic_cpu_per_s, 3),
            "stage_seconds_later": {stage: summary([r["evidence"]["stages"][stage]["duration_s"]
                                                    for r in honest_records[1:]])
                                    for stage in honest_records[-1]["evidence"].get("stages", {})},
            "candidate_restart_s": round(up_at - fault_at, 1),
            "fault_to_routed_back_s": round(weights.zero_at - fault_at, 1) if weights.zero_at else None,
            "route_back_reason": route_back["decision"]["reason"][:300] if route_back else None,
            "faulted_up_to_failing_window_end_s": round(stamp(failing, "ended") - up_at, 1),
            "failing_window_notable": [n["clause"] for n in failing["evidence"]["notable"] if n["status"] == "fail"],
            "traffic": dict(live.served), "traffic_failed": live.failed,
            "timeline": [timeline(r, fault_at) for r in records],
        }
    finally:
        for close in reversed(closers):
            try:
                close()
            except Exception as exc:  # noqa: BLE001 - stop everything else regardless
                print(f"bench: cleanup: {exc}", file=sys.stderr)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", default="15s")
    parser.add_argument("--honest", type=int, default=4, help="honest windows before the fault (>= 2)")
    parser.add_argument("--json", type=Path, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="promote-bench-watch-") as work:
        result = run(args.window, max(2, args.honest), Path(work))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
