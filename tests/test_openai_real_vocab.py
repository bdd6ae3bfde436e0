"""Issue 22 item 4: a `top_k: all` request whose answer could exceed what promote accepts in one body is
refused before it is sent (exit 3), with the advice (top_k: N and the certified bounds), once the
probe has told the vocabulary. The server is tests/hostile_http.py answering in vLLM's shape at a real
vocabulary (128 256 ids); it logs every request, so the test sees that no eval sample reached it."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import pytest
import yaml
from hostile_http import Hostile, Request, computed
from test_vllm_kernel import check

from promote.contract.kernel_specs import OpenAIKernelSpec
from promote.data import batches, read_jsonl
from promote.errors import EvaluationError
from promote.kernels import openai_api as apis
from promote.kernels.openai_kernel import OpenAIKernel

REPO = Path(__file__).resolve().parents[1]
EVAL = REPO / "examples" / "tiny_llama" / "eval.jsonl"
VOCAB = 128256  # Llama 3's


@functools.cache
def uniform_row(vocab: int) -> dict:
    value = {"logprob": -math.log(vocab), "rank": 1}
    return {str(i): value for i in range(vocab)}


def answer(request: Request) -> dict:
    """vLLM's `prompt_logprobs` for the prompt sent: every id for -1, else the top-k plus the actual token."""
    body = json.loads(request.body)
    ids, k = body["prompt"], body["prompt_logprobs"]
    if k == -1:
        rows = [uniform_row(VOCAB)] * (len(ids) - 1)
    else:
        rows = [{str(i): {"logprob": -math.log(VOCAB), "rank": 1} for i in {*range(k), ids[t]}}
                for t in range(1, len(ids))]
    return {"choices": [{"prompt_logprobs": [None, *rows]}]}


@pytest.fixture
def server():
    with Hostile() as hostile:
        hostile.route("/v1/completions", computed(answer))
        yield hostile


def full_vocabulary_prompts(server: Hostile) -> list[int]:
    """Lengths of the `top_k: all` prompts the server received."""
    return [len(body["prompt"]) for body in (json.loads(r.body) for r in server.log if r.body)
            if body.get("prompt_logprobs") == -1]


def test_the_refusal_is_at_the_documented_cap():
    """Exactly the prompts whose cap (tokens × V × 256 B + 64 KiB) is over the limit; top-k never."""
    for vocab in (32000, VOCAB, 151936):
        fits = (apis.MAX_SCORING_ANSWER - 64 * 1024) // (vocab * apis.BYTES_PER_ENTRY)
        assert apis.max_answer_bytes(fits, apis.ALL, vocab) <= apis.MAX_SCORING_ANSWER
        assert apis.oversized_full_vocabulary(fits, apis.ALL, vocab) is None
        why = apis.oversized_full_vocabulary(fits + 1, apis.ALL, vocab)
        assert why is not None and f"at most {fits} tokens" in why and "`top_k: N`" in why
        assert apis.oversized_full_vocabulary(100_000, 100, vocab) is None
    assert apis.oversized_full_vocabulary(100_000, apis.ALL, None) is None  # before the probe: the probe's own cap


def test_top_k_all_at_a_real_vocabulary_is_refused_before_any_sample_is_sent(server, tmp_path):
    longest = max(len(s.input_ids) for s in read_jsonl(EVAL).samples)
    assert apis.oversized_full_vocabulary(longest, apis.ALL, VOCAB) is not None  # the premise of this test
    kernel = {"kind": "openai", "url": server.url("/v1"), "model": "m", "retries": 0, "concurrency": 2}
    doc = {"version": 1, "name": "real-vocab", "reference": {**kernel, "top_k": 5},
           "candidate": {**kernel, "top_k": "all"}, "data": {"path": str(EVAL)},
           "numerical": {"clauses": [{"id": "lr", "metric": "abs_log_ratio", "stat": "p99", "max": 0.1}]}}
    contract = tmp_path / "contract.yaml"
    contract.write_text(yaml.safe_dump(doc))
    result, report = check(contract, tmp_path)
    assert result.exit_code == 3, result.output
    out = " ".join(result.output.split())
    assert "candidate" in out and "was not sent to" in out and f"vocabulary of {VOCAB} ids" in out, out
    assert "`top_k: N`" in out and "certified bounds" in out and "abs_log_ratio" in out, out
    assert full_vocabulary_prompts(server) == [8], "only the probe may ask for the whole vocabulary"
    assert report is not None and report["verdict"] == "error"


def test_a_kernel_used_without_an_eval_set_refuses_per_request(server):
    """Callers that score prompts one by one (stage 3, bench/bench_client_overhead.py) never bind an
    eval set: each request is checked before it is sent."""
    spec = OpenAIKernelSpec(kind="openai", url=server.url("/v1"), model="m", top_k="all", retries=0, concurrency=1)
    samples = read_jsonl(EVAL).samples
    long = max(samples, key=lambda s: len(s.input_ids))
    with OpenAIKernel(spec, role="candidate") as kernel:
        assert kernel.vocab == VOCAB
        with pytest.raises(EvaluationError, match=f"sample `{long.id}` was not sent"):
            kernel.run(next(batches([long], 1)))
    assert full_vocabulary_prompts(server) == [8]
