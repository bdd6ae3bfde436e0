"""`promote watch` end to end on real parts (issue 24, item 5; tests/watch_parts.py): two real vLLM
servers (reference and candidate) behind a real HAProxy, a real Prometheus scraping both.

First the stack itself: requests through HAProxy reach both servers at the canary split, and after
``set weight …/candidate 0`` on HAProxy's runtime API only the reference gets requests. Then `promote watch`
with examples/tiny_llama/watch.yaml and the haproxy sink: an honest candidate keeps its canary weight over
several windows; swapped for the wrong-rope fault, its traffic is routed back. Waits are bounded and say
what they waited for; nothing asserts a duration (bench/bench_watch.py measures them)."""

from __future__ import annotations

import json
import time
from datetime import datetime

import watch_parts as parts
from watch_parts import CANARY_WEIGHT, EXAMPLE, WatchRun, send, swap, traffic, vllm_requests, wait_until

# tests/watch_parts.py's fixtures, visible to pytest in this module
watch_candidate, honest_candidate = parts.watch_candidate, parts.honest_candidate
watch_haproxy, canary_weights, watch_prometheus = parts.watch_haproxy, parts.canary_weights, parts.watch_prometheus
watch_faulted_model = parts.watch_faulted_model


def test_haproxy_routes_to_both_then_only_the_reference_at_weight_zero(vllm_fp32, honest_candidate,
                                                                          canary_weights):
    proxy = canary_weights
    assert proxy.weight("candidate") == CANARY_WEIGHT and proxy.weight("reference") == 100 - CANARY_WEIGHT
    before = vllm_requests(honest_candidate), vllm_requests(vllm_fp32)
    served = send(proxy.url, 20)
    # Weighted round robin is deterministic: 30 % of 20 requests, give or take the cycle's phase.
    assert served["candidate"] >= 4 and served["reference"] >= 10, served
    assert set(served) == {"reference", "candidate"}, served
    # The servers' own counters agree: the candidate's vLLM counted what HAProxy says it sent it.
    assert vllm_requests(honest_candidate) - before[0] == served["candidate"]
    assert vllm_requests(vllm_fp32) - before[1] == served["reference"]

    proxy.set_weight("candidate", 0)
    assert proxy.weight("candidate") == 0
    stot = int(proxy.stats()["candidate"]["stot"])
    candidate_before = vllm_requests(honest_candidate)
    served = send(proxy.url, 12)
    assert served == {"reference": 12}, served
    assert int(proxy.stats()["candidate"]["stot"]) == stot  # HAProxy opened no session to it
    assert vllm_requests(honest_candidate) == candidate_before  # and the candidate served nothing


def test_prometheus_scrapes_both_servers_and_haproxy(watch_prometheus, canary_weights, honest_candidate):
    def versions(expr: str) -> set[str]:
        return {r["metric"].get("version", r["metric"].get("job")) for r in watch_prometheus.query(expr)}

    assert versions('up == 1') >= {"stable", "canary", "haproxy"}
    assert versions('vllm:request_success_total') >= {"stable", "canary"}
    servers = {r["metric"]["server"] for r in watch_prometheus.query(
        'haproxy_server_weight{proxy="tiny_llama"}')}
    assert servers == {"reference", "candidate"}, servers


# --- promote watch on the real stack -------------------------------------------------------------------

WINDOW = "15s"
HONEST_WINDOWS = 3


def _started(record: dict) -> float:
    return datetime.fromisoformat(record["window"]["started"].replace("Z", "+00:00")).timestamp()


def _numerics(record: dict) -> str | None:
    return record["evidence"].get("stages", {}).get("numerics", {}).get("status")


def _show(records: list[dict]) -> str:
    return "\n".join(f"window {r['window']['index']}: {r['outcome']} {r['decision']['action']} "
                     f"w={r['decision']['candidate_weight']} {json.dumps(r['evidence'].get('notable', []))[:600]}"
                     for r in records)


def test_watch_keeps_an_honest_canary_and_routes_a_faulted_one_back(vllm_fp32, honest_candidate, canary_weights,
                                                                     watch_prometheus, watch_faulted_model, tmp_path):
    """An honest candidate keeps its 30 % over several windows; restarted with a wrong rope_theta it has its
    traffic routed back by the haproxy sink — HAProxy then sends every request to the reference — and stays
    routed back while its windows fail on shadow numerics; the audit log verifies."""
    proxy, candidate = canary_weights, honest_candidate
    requests_log, log = tmp_path / "requests.jsonl", tmp_path / "audit.jsonl"
    env = {"PROMOTE_VLLM_URL": candidate.url, "PROMOTE_BASELINE_URL": vllm_fp32.url, "PROMETHEUS_URL":
           watch_prometheus.url, "PROMOTE_HAPROXY_SOCKET": str(proxy.socket), "PROMOTE_REQUEST_LOG": str(requests_log)}
    with traffic(proxy.url, requests_log) as live:
        wait_until(lambda: requests_log.exists() and len(requests_log.read_text().splitlines()) >= 8,
                   "8 served prompts in the request log", 120)
        run = WatchRun(EXAMPLE / "watch.yaml", log, env, WINDOW)
        try:
            honest = run.wait_records(lambda rs: len(rs) >= HONEST_WINDOWS, f"{HONEST_WINDOWS} windows", 900)
            assert all(r["outcome"] == "clean" for r in honest), _show(honest)
            for record in honest:
                decision = record["decision"]
                assert decision["action"] == "hold" and decision["candidate_weight"] == CANARY_WEIGHT, decision
                assert _numerics(record) == "pass", _show([record])
                (sink,) = record["sinks"]
                assert sink["sink"] == "haproxy" and sink["ok"], sink
            assert proxy.weight("candidate") == CANARY_WEIGHT and live.served["candidate"] > 0

            seen = len(run.records())
            swap(candidate, watch_faulted_model)  # the candidate restarts on its port with the wrong rope_theta
            faulted_at = time.time()
            proxy.wait_up("candidate")
            records = run.wait_records(
                lambda rs: any(_started(r) > faulted_at and _numerics(r) == "fail" for r in rs[seen:]),
                "a window of the faulted candidate failing shadow numerics", 900)
        except BaseException:
            run.stop()
            raise
        after = records[seen:]
        actions = [r["decision"]["action"] for r in after]
        assert "route_back" in actions and "restore" not in actions, _show(after)
        routed = actions.index("route_back")
        assert all(r["decision"]["candidate_weight"] == 0 and r["outcome"] == "bad" for r in after[routed:]), \
            _show(after)
        assert all(r["sinks"][0]["ok"] for r in after), [r["sinks"] for r in after]
        failing = next(r for r in after if _started(r) > faulted_at and _numerics(r) == "fail")
        notable = {n["clause"] for n in failing["evidence"]["notable"] if n["status"] == "fail"}
        assert {"drift-max", "kl-max"} <= notable, failing["evidence"]["notable"]

    # HAProxy itself (not the sink's read-back): the candidate has weight 0 and gets no request.
    assert proxy.weight("candidate") == 0 and proxy.weight("reference") == 100
    sessions = int(proxy.stats()["candidate"]["stot"])
    assert send(proxy.url, 12) == {"reference": 12}
    assert int(proxy.stats()["candidate"]["stot"]) == sessions

    # The watch keeps the state it decided: the canary weights put back behind its back (by hand here; a
    # route-back that never reached HAProxy is the same) are routed back by a later window — a hold while
    # routed back asks for weight 0 (sinks/api.py: `ok` means the read-back equals what the decision asks).
    proxy.set_weight("candidate", CANARY_WEIGHT)
    proxy.set_weight("reference", 100 - CANARY_WEIGHT)
    count = len(run.records())  # the window now running may have called its sink before the change: one more
    later = run.wait_records(lambda rs: len(rs) >= count + 2, "two more windows after the weights were changed", 600)
    last = later[-1]
    assert last["decision"]["candidate_weight"] == 0 and last["sinks"][0]["ok"], last["sinks"]
    assert last["sinks"][0]["read_back"]["weights"] == {"candidate": 0, "reference": 100}, last["sinks"]
    assert proxy.weight("candidate") == 0 and send(proxy.url, 6) == {"reference": 6}

    from promote.watch.audit import verify

    code = run.stop()
    assert code == 143, run.output_tail()  # SIGTERM: the loop ended between two whole records
    verified = verify(log)
    assert len(verified.records) >= len(records) and verified.records[: len(records)] == records
    assert {r["contract_sha256"] for r in verified.records} == {verified.records[0]["contract_sha256"]}
