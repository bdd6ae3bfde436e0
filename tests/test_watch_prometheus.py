"""`promote watch` with the observability stage on a real Prometheus (tests/prometheus_live.py) scraping a
canary whose error ratio jumps between windows: the watch routes its traffic back through a sink."""

from __future__ import annotations

import json
import time

import yaml
from prometheus_live import Exporter, LivePrometheus
from test_watch_loop import make_watch
from watch_sinks import FileSink

from promote.watch.audit import verify

ERRORS = ('sum(rate(serving_requests_total{{outcome="error",version="canary"}}[{w}])) / '
          'sum(rate(serving_requests_total{{version="canary"}}[{w}]))')


def test_a_canary_whose_errors_jump_is_routed_back(tmp_path):
    canary = Exporter("canary", 200, 2, 0.05)  # 1 % errors
    server = None
    try:
        server = LivePrometheus([canary])
        server.wait_ready()
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({"version": 1, "name": "live", "observability": {
            "source": {"kind": "prometheus", "url": server.url}, "clauses": [
                {"id": "errors", "query": ERRORS.format(w="4s"), "max": 0.03},
                {"id": "up", "metric": 'serving_heartbeat{version="canary"}', "max_age": "30s"}]},
            "watch": {"window": "1s", "trip_after": 1}}))

        def fault_between_windows(seconds: float) -> None:
            canary.errors = 40  # 20 % errors from now on
            time.sleep(6)  # the 4 s rate window fills with the faulted counts (1 s scrapes)

        sink = FileSink({"path": str(tmp_path / "traffic.json")}, "test")
        assert make_watch(path, [sink], windows=2, sleep=fault_between_windows).run() == 1
    finally:
        if server is not None:
            server.close()
        canary.close()
    records = verify(tmp_path / "c.yaml.watch.jsonl").records
    assert [(r["outcome"], r["decision"]["action"]) for r in records] == [("clean", "hold"), ("bad", "route_back")]
    failed = records[1]["evidence"]["notable"][0]
    assert failed["clause"] == "errors" and failed["observed"] > 0.1
    assert json.loads((tmp_path / "traffic.json").read_text()) == {"weight": 0}
