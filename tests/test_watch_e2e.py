"""`promote watch` end to end on real parts (issue 24, item 5; tests/watch_parts.py): two real vLLM
servers (reference and candidate) behind a real HAProxy, a real Prometheus scraping both.

First the stack itself: requests through HAProxy reach both servers at the canary split, and after
``set weight …/candidate 0`` on HAProxy's runtime API only the reference gets requests."""

from __future__ import annotations

import watch_parts as parts
from watch_parts import CANARY_WEIGHT, send, vllm_requests

# tests/watch_parts.py's fixtures, visible to pytest in this module
watch_candidate, honest_candidate = parts.watch_candidate, parts.honest_candidate
watch_haproxy, canary_weights, watch_prometheus = parts.watch_haproxy, parts.canary_weights, parts.watch_prometheus


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
