"""Request/response mapping of the serving APIs that cannot run on this machine (SGLang, TGI),
against a local HTTP server answering in their documented shapes (research/promotion-anchors.md §5);
vLLM itself is tested against the real server (tests/test_vllm_*.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from promote.kernels import openai_api as apis
from promote.kernels.http_client import Client, HttpFailure

IDS = [5, 7, 9]


def sglang_answer(ids: list[int]) -> dict:
    return {"text": "", "meta_info": {
        "input_token_logprobs": [[None, ids[0], None], [-0.5, ids[1], None], [-2.0, ids[2], None]],
        "input_top_logprobs": [None, [[-0.5, ids[1], None], [-1.5, 3, None]], [[-0.2, 4, None], [-1.0, 8, None]]],
    }}


def test_sglang_request_and_answer_through_http(httpserver):
    seen = {}

    def handler(request):
        from werkzeug import Response

        seen.update(request.get_json())
        import json

        return Response(json.dumps(sglang_answer(seen["input_ids"])), content_type="application/json")

    httpserver.expect_request("/generate", method="POST").respond_with_handler(handler)
    url = httpserver.url_for("/v1")
    body = apis.request_body("sglang", "m", IDS, 2)
    answer = Client().post(apis.endpoint("sglang", url), body)
    assert seen == {"input_ids": IDS, "sampling_params": {"max_new_tokens": 0, "temperature": 0},
                    "return_logprob": True, "logprob_start_len": 0, "top_logprobs_num": 2}
    scored = apis.parse("sglang", answer, IDS, 2)
    assert scored.target.tolist() == [-0.5, -2.0]
    assert scored.top_ids.tolist() == [[7, 3], [4, 8]]  # the actual token 9 is not in position 2's top-2
    assert scored.top_values.tolist() == [[-0.5, -1.5], [-0.2, -1.0]]


def test_sglang_token_mismatch():
    with pytest.raises(apis.ShapeError, match="token mismatch"):
        apis.parse("sglang", sglang_answer([5, 7, 10]), IDS, 2)


def test_tgi_prefill_and_request(httpserver):
    answer = {"generated_text": "x", "details": {"prefill": [{"id": 5, "text": "a", "logprob": None},
                                                            {"id": 7, "text": "b", "logprob": -0.25},
                                                            {"id": 9, "text": "c", "logprob": -1.5}],
                                                "tokens": []}}
    httpserver.expect_request("/generate", method="POST").respond_with_json(answer)
    body = apis.request_body("tgi", "m", IDS, 1, text="abc")
    assert body["parameters"]["decoder_input_details"] is True and body["inputs"] == "abc"
    got = Client().post(apis.endpoint("tgi", httpserver.url_for("/v1")), body)
    assert apis.parse("tgi", got, IDS, 1).target.tolist() == [-0.25, -1.5]
    with pytest.raises(apis.ShapeError, match="token mismatch"):
        apis.parse("tgi", got, [5, 7, 8], 1)


def test_echo_keys_must_be_token_ids():
    answer = {"choices": [{"logprobs": {"tokens": ["a", "b", "c"], "token_logprobs": [None, -1, -1],
                                        "top_logprobs": [None, {"b": -1}, {"c": -1}]}}]}
    with pytest.raises(apis.ShapeError, match="token_id:N"):
        apis.parse("openai", answer, IDS, 1)


def test_full_vocabulary_must_list_every_id():
    entry = {str(i): {"logprob": -1.0, "rank": i + 1} for i in range(10)}
    short = dict(list(entry.items())[:5])
    short["9"] = {"logprob": -1.0, "rank": 6}
    answer = {"choices": [{"prompt_logprobs": [None, entry, short]}]}
    with pytest.raises(apis.ShapeError, match="every token id"):
        apis.parse("vllm", answer, [1, 7, 9], "all")
    full = apis.parse("vllm", {"choices": [{"prompt_logprobs": [None, entry, entry]}]}, [1, 7, 9], "all")
    assert full.dense.shape == (2, 10) and np.all(full.dense == -1.0)


def test_retry_after_is_honoured_and_counted(httpserver):
    httpserver.expect_ordered_request("/x").respond_with_json({"error": {"message": "busy"}}, status=429,
                                                               headers={"Retry-After": "0"})
    httpserver.expect_ordered_request("/x").respond_with_json({"ok": 1})
    client = Client(retries=2, backoff_s=5.0)  # Retry-After 0 beats the 5 s backoff
    assert client.post(httpserver.url_for("/x"), {}) == {"ok": 1}
    assert client.retried == 1 and client.errors == {"http_429": 1}


def test_400_is_not_retried(httpserver):
    httpserver.expect_request("/x").respond_with_json({"error": {"message": "too many logprobs"}}, status=400)
    client = Client(retries=3)
    with pytest.raises(HttpFailure) as info:
        client.post(httpserver.url_for("/x"), {})
    assert info.value.status == 400 and info.value.detail == "too many logprobs" and client.retried == 0
    assert not math.isnan(client.requests) and client.requests == 1


def test_vllm_topk_answer_must_score_the_prompt_tokens():
    entry = {"3": {"logprob": -0.1, "rank": 1}, "4": {"logprob": -2.0, "rank": 2}}
    answer = {"choices": [{"prompt_logprobs": [None, entry, entry]}]}
    with pytest.raises(apis.ShapeError, match="token mismatch"):
        apis.parse("vllm", answer, [1, 7, 9], 2)
    ok = {"choices": [{"prompt_logprobs": [None, {**entry, "7": {"logprob": -3.0, "rank": 5}}, entry]}]}
    scored = apis.parse("vllm", ok, [1, 7, 4], 2)
    assert scored.target.tolist() == [-3.0, -2.0] and scored.top_ids.tolist() == [[3, 4], [3, 4]]
