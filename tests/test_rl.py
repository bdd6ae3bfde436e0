"""RL post-training (issue 16): sampled-token records, the RL metrics against float64 definitions,
the contract error for distribution metrics on such records, rollout dumps, and RolloutMonitor."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from promote.bounds import clip_budget
from promote.cli import cli
from promote.kernels.records import write_records
from promote.metrics.rl import ess, sequence_values, token_values
from promote.rl import TRL_COLUMNS, VERL_COLUMNS, RolloutMonitor, read_rollouts, rollouts_to_records

CLAUSES = """
    - {id: lr, metric: abs_log_ratio, stat: max, max: 0.1}
    - {id: k3, metric: k3, stat: mean, max: 0.1}
    - {id: k1, metric: k1, stat: mean, max: 0.1}
    - {id: chi2, metric: chi2, stat: mean, max: 0.1}
    - {id: w, metric: is_ratio, stat: min, min: 0.5}
    - {id: hi, metric: ratio_above, cap: 1.005, stat: mean, max: 0.5}
    - {id: lo, metric: ratio_below, cap: 1.005, stat: mean, max: 0.5}
    - {id: seq, metric: seq_log_ratio, stat: min, min: -100}
    - {id: geo, metric: seq_geo_ratio, stat: max, max: 2}
    - {id: mask, metric: seq_masked, cap: 1.005, stat: mean, min: 0.5}
    - {id: ess, metric: ess, stat: mean, min: 0.9}
    - {id: pg, metric: pg_bias, stat: max, max: 1}
    - {id: clip, metric: clip_budget_used, stat: max, max: 1}
"""


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def sampled_pair(root: Path, *, offset: float = 0.01, k0: bool = False, clauses: str = CLAUSES,
                 reference_logits: bool = False) -> Path:
    """Eval set of 6 ragged samples and two sampled-token record files; the engine is off by ``offset``."""
    rng = np.random.default_rng(0)
    lengths = [5, 9, 12, 7, 16, 3]
    ids = [f"s{i}" for i in range(len(lengths))]
    t = max(lengths)
    input_ids = np.zeros((len(lengths), t), np.int64)
    mask = np.zeros((len(lengths), t), bool)
    rows = []
    for i, n in enumerate(lengths):
        toks = rng.integers(0, 50, n)
        input_ids[i, :n] = toks
        mask[i, 1 : n - 1] = True  # the first position is "prompt"
        rows.append({"id": ids[i], "input_ids": toks.tolist(), "tags": {"half": "a" if i < 3 else "b"}})
    (root / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    trainer = -rng.random((len(lengths), t)) * 3
    engine = trainer + offset
    extra = {"topk_ids": np.zeros((len(lengths), t, 0), np.int64),
             "topk_logprobs": np.zeros((len(lengths), t, 0), np.float32)} if k0 else {}
    write_records(root / "trainer.safetensors", ids, input_ids, mask, target_logprobs=trainer, **extra)
    write_records(root / "engine.safetensors", ids, input_ids, mask, target_logprobs=engine, **extra)
    contract = root / "rl.yaml"
    contract.write_text(f"""version: 1
name: rl
reference: {{kind: records, path: trainer.safetensors}}
candidate: {{kind: records, path: engine.safetensors}}
data: {{path: eval.jsonl, task: causal-lm}}
numerical:
  clauses:{clauses}""")
    np.save(root / "log_ratio.npy", (trainer - engine)[mask])
    return contract


@pytest.mark.parametrize("k0", [False, True])
def test_sampled_token_records_are_scored_not_crashed(tmp_path, k0):
    # Before issue 16 both layouts died with an internal error (`zero-size array to reduction
    # operation maximum` / argmax of an empty sequence).
    result = invoke("check", str(sampled_pair(tmp_path, k0=k0)), "--format", "json")
    report = json.loads(result.stdout)
    statuses = {c["id"]: c["status"] for c in report["stages"][0]["clauses"]}
    # log w = −0.01 everywhere: w = 0.990 < 1/1.005, so every token is below the cap, none above.
    assert statuses.pop("lo") == "fail" and result.exit_code == 1
    assert set(statuses.values()) == {"pass"}, statuses
    observed = {c["id"]: c["observed"] for c in report["stages"][0]["clauses"]}
    x = -0.01
    assert observed["k3"] == pytest.approx(math.expm1(x) - x, rel=1e-9)
    assert observed["k1"] == pytest.approx(0.01, rel=1e-9)
    assert observed["chi2"] == pytest.approx(math.expm1(x) ** 2, rel=1e-9)
    assert observed["hi"] == 0 and observed["mask"] == 1.0
    assert observed["ess"] == pytest.approx(1.0)
    assert observed["clip"] == pytest.approx(0.01 / math.log(1.2), rel=1e-9)
    assert observed["pg"] == pytest.approx(math.expm1(0.01), rel=1e-9)
    assert observed["geo"] == pytest.approx(math.exp(-0.01), rel=1e-9)
    assert report["kernels"]["candidate"]["fingerprint"]["format"] == "sampled"
    implied = {e["quantity"]: e for e in report["implied"]}
    assert implied["ppo_clip_budget_used"]["bound"] == pytest.approx(0.01 / math.log(1.2), rel=1e-6)
    assert implied["importance_weight_bias"]["scope"] == "every sampled token"


@pytest.mark.parametrize("metric", ["kl", "tv", "logit_osc", "argmax_agree", "entropy_ratio", "topk_overlap"])
def test_distribution_metrics_on_sampled_records_are_a_contract_error(tmp_path, metric):
    contract = sampled_pair(tmp_path, clauses=f"\n    - {{id: bad, metric: {metric}, stat: max, max: 1}}\n")
    for command in ("validate", "check"):
        result = invoke(command, str(contract))
        assert result.exit_code == 2, (command, result.output)
        assert f"metric `{metric}` needs the next-token distribution" in result.stderr
        assert "rl.yaml:8" in result.stderr and "sampled-token records" in result.stderr
        assert "`k3`" in result.stderr  # says what does apply


def test_ess_takes_only_the_mean(tmp_path):
    clause = "\n    - {id: e, metric: ess, stat: p99, min: 1}\n"
    result = invoke("validate", str(sampled_pair(tmp_path, clauses=clause)))
    assert result.exit_code == 2 and "`ess` is one number per run" in result.stderr


def test_rl_metrics_match_float64_definitions():
    rng = np.random.default_rng(1)
    x = rng.normal(0, 0.3, 200)
    x[:3] = [0.0, 1e-9, -1e-9]
    v = token_values(x)
    w = np.exp(x)
    assert np.allclose(v["is_ratio"], w, rtol=1e-15)
    assert np.allclose(v["k1"], -x)
    assert np.all(v["k3"] >= 0) and np.allclose(v["k3"], w - 1 - x, rtol=1e-9, atol=1e-15)
    assert v["k3"][1] == pytest.approx(0.5e-18, rel=1e-6)  # no cancellation at tiny |log w|
    assert np.allclose(v["chi2"], (w - 1) ** 2, rtol=1e-9, atol=1e-18)
    rows = np.repeat(np.arange(20), 10)
    sums, last = sequence_values("seq_log_ratio", None, x, rows)
    assert np.allclose(sums, x.reshape(20, 10).sum(1)) and last.tolist() == list(range(9, 200, 10))
    geo, _ = sequence_values("seq_geo_ratio", None, x, rows)
    assert np.allclose(geo, np.exp(x.reshape(20, 10).mean(1)))
    masked, _ = sequence_values("seq_masked", 1.05, x, rows)
    assert masked.tolist() == (np.abs(x.reshape(20, 10).mean(1)) > math.log(1.05)).astype(float).tolist()
    assert ess(w.sum(), (w * w).sum(), w.size) == pytest.approx(w.sum() ** 2 / (w.size * (w * w).sum()))
    assert clip_budget(0.2) == pytest.approx(math.log(1.2))


def test_one_side_full_logits_other_sampled(mini):
    """A live (full-logits) trainer against sampled engine records: the target log-prob is taken from
    the logits; distribution metrics stay a contract error."""
    from promote.contract.model import load_contract
    from promote.data import batches, read_jsonl
    from promote.kernels import build_kernel
    from promote.kernels.base import host_logits

    contract, _ = load_contract(mini.contract("src.yaml"))
    evalset = read_jsonl(contract.data.path)
    batch = next(batches(evalset.samples, len(evalset.samples)))
    with build_kernel(contract.reference, role="reference") as kernel:
        logits = host_logits(kernel.run(batch).logits).astype(np.float64)
    lp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)
    targets = np.concatenate([batch.input_ids[:, 1:], np.zeros((len(batch.samples), 1), np.int64)], 1)
    target_lp = np.take_along_axis(lp, targets[..., None], -1)[..., 0] + 0.003
    write_records(mini.root / "engine.safetensors", batch.ids, batch.input_ids, batch.scored_mask(),
                  target_logprobs=target_lp)
    text = mini.contract("c.yaml", clauses=[{"id": "k1", "metric": "k1", "stat": "mean", "max": 1}]).read_text()
    path = mini.write("rl.yaml", text.replace("candidate:", "candidate: {kind: records, path: engine.safetensors}\n"
                                              "unused_candidate:", 1))
    import yaml

    doc = yaml.safe_load(path.read_text())
    doc.pop("unused_candidate")
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    report = json.loads(invoke("check", str(path), "--format", "json").stdout)
    clause = report["stages"][0]["clauses"][0]
    assert clause["status"] == "pass" and clause["observed"] == pytest.approx(0.003, abs=1e-5)


def _dump(path: Path, names: dict[str, str], n: int = 5) -> None:
    rng = np.random.default_rng(2)
    with path.open("w") as handle:
        for i in range(n):
            r = 3 + i
            handle.write(json.dumps({
                names.get("id", "id"): f"u{i}", names["prompt_ids"]: [1, 2, 3], names["response_ids"]: list(range(r)),
                names["response_mask"]: [1] * (r - 1) + [0],
                names["engine_logprobs"]: (-rng.random(r)).tolist(),
                names["trainer_logprobs"]: (-rng.random(r)).tolist(),
            }) + "\n")


@pytest.mark.parametrize("columns", [VERL_COLUMNS, TRL_COLUMNS])
def test_rollout_dumps_with_framework_names_convert_to_aligned_records(tmp_path, columns):
    _dump(tmp_path / "dump.jsonl", columns)
    rollouts = read_rollouts(tmp_path / "dump.jsonl", columns=columns)
    assert [len(r.response_ids) for r in rollouts] == [2, 3, 4, 5, 6]  # trailing mask-0 token dropped
    paths = rollouts_to_records(tmp_path / "dump.jsonl", tmp_path / "out", columns=columns)
    from safetensors.numpy import load_file

    trainer = load_file(str(paths["trainer"]))
    r = rollouts[1]
    # Response token j is predicted at position P + j − 1 (P = 3 prompt tokens).
    assert trainer["input_ids"][1, 3 : 3 + 3].tolist() == list(r.response_ids)
    assert trainer["mask"][1].tolist()[:6] == [False, False, True, True, True, False]
    assert trainer["target_logprobs"][1, 2:5].tolist() == list(r.trainer_logprobs)


def test_parquet_dump_and_bad_rows(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({"prompt_ids": [[5, 6]], "response_ids": [[7, 8]], "engine_logprobs": [[-0.5, -0.25]],
                      "trainer_logprobs": [[-0.5, -0.5]], "script": ["latin"]})
    pq.write_table(table, tmp_path / "d.parquet")
    (rollout,) = read_rollouts(tmp_path / "d.parquet", tag_columns=("script",))
    assert rollout.id == "row-1" and rollout.tags == {"script": "latin"} and rollout.response_mask == (True, True)
    from promote.errors import UsageError

    bad = {"prompt_ids": [1], "response_ids": [2, 3], "engine_logprobs": [-1.0], "trainer_logprobs": [-1.0, -2.0]}
    (tmp_path / "bad.jsonl").write_text(json.dumps(bad) + "\n")
    with pytest.raises(UsageError, match=r"bad.jsonl:1: per-response-token columns differ in length"):
        read_rollouts(tmp_path / "bad.jsonl")
    (tmp_path / "miss.jsonl").write_text(json.dumps({"prompt_ids": [1]}) + "\n")
    with pytest.raises(UsageError, match=r"miss.jsonl:1: rollout lacks columns `response_ids`"):
        read_rollouts(tmp_path / "miss.jsonl")


CLAUSE_DICTS = [{"id": "k3", "metric": "k3", "stat": "mean", "max": 1e-3},
                {"id": "ess", "metric": "ess", "stat": "mean", "min": 0.99},
                {"id": "seq", "metric": "seq_masked", "cap": 1.01, "stat": "mean", "max": 0.1},
                {"id": "clip", "metric": "clip_budget_used", "stat": "max", "max": 1.0}]


def test_rollout_monitor_judges_a_step_and_merges_exactly():
    torch.manual_seed(0)
    trainer = -torch.rand(8, 32, dtype=torch.float64) * 3
    engine = trainer + 1e-3 * torch.randn(8, 32, dtype=torch.float64)
    mask = torch.ones(8, 32, dtype=torch.bool)
    mask[:, 28:] = False
    one = RolloutMonitor(CLAUSE_DICTS, implications={"clip": 0.2})
    one.add(trainer, engine.float(), mask)
    verdict = one.judge()
    assert verdict.passed and verdict.tokens == 8 * 28 and verdict.sequences == 8, str(verdict)
    x = (trainer - engine.float().double())[mask].numpy()
    assert one.value("k3") == pytest.approx(float(np.mean(np.expm1(x) - x)), rel=1e-9)
    # Two ranks, merged through bytes, equal one monitor over everything.
    a, b = RolloutMonitor(CLAUSE_DICTS), RolloutMonitor(CLAUSE_DICTS)
    a.add(trainer[:3], engine.float()[:3], mask[:3], ids=[f"q{i}" for i in range(3)])
    b.add(trainer[3:], engine.float()[3:], mask[3:], ids=[f"q{i}" for i in range(3, 8)])
    merged = RolloutMonitor(CLAUSE_DICTS).load_bytes(a.to_bytes()).merge(b)
    assert [r.observed for r in merged.judge().results] == [r.observed for r in verdict.results]
    # A tempered sampler (0.97) in the engine: the sequence mask and k3 catch it.
    bad = RolloutMonitor(CLAUSE_DICTS)
    logits = torch.randn(8, 32, 50, dtype=torch.float64) * 2
    tokens = torch.distributions.Categorical(logits=logits / 0.97).sample()
    lp_train = torch.log_softmax(logits, -1).gather(2, tokens[..., None])[..., 0]
    lp_engine = torch.log_softmax(logits / 0.97, -1).gather(2, tokens[..., None])[..., 0]
    bad.add(lp_train, lp_engine, tokens=tokens)
    result = bad.judge()
    assert not result.passed and {r.id for r in result.failed} >= {"clip"}, str(result)
    bad.reset()
    assert bad.judge().results[0].status == "vacuous"


def test_rollout_monitor_rejects_distribution_metrics_and_bad_shapes():
    with pytest.raises(ValueError, match="metric `tv` needs the next-token distribution"):
        RolloutMonitor([{"id": "t", "metric": "tv", "stat": "mean", "max": 1}])
    with pytest.raises(ValueError, match="'stat' is a required property"):
        RolloutMonitor([{"id": "t", "metric": "k3", "max": 1}])
    monitor = RolloutMonitor(CLAUSE_DICTS[:1])
    with pytest.raises(ValueError, match=r"must both be \[B, T\]"):
        monitor.add(torch.zeros(2, 3), torch.zeros(2, 4))


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_rollout_monitor_takes_bf16_tensors_on_any_device(device):
    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device here; the CPU case runs everywhere")
    trainer = -torch.rand(2, 6, device=device)
    engine = (trainer + 0.01).to(torch.bfloat16)
    monitor = RolloutMonitor([{"id": "k1", "metric": "k1", "stat": "mean", "max": 1.0}])
    monitor.add(trainer, engine, torch.ones(2, 6, dtype=torch.bool, device=device))
    expected = (engine.double() - trainer.double()).mean().item()
    assert monitor.judge().passed and monitor.value("k1") == pytest.approx(expected, rel=1e-12)
