"""`kind: records`: round trip against a live kernel, top-k scoring with bounds, shards, and every bad
input of the issue's checklist (each: a message naming the file and what is wrong, exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from safetensors.numpy import load_file, save_file

from promote.cli import cli
from promote.contract.model import load_contract
from promote.data import batches, read_jsonl
from promote.kernels import build_kernel
from promote.kernels.base import Outputs, host_logits
from promote.kernels.records import write_records
from promote.metrics.topk import topk_of_logits


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def record(mini, out: Path, *, candidate: str = "build", k: int | None = None, samples: slice = slice(None),
           vocab_pad: int = 0) -> Path:
    """Run the mini torch kernel over the eval set and save its outputs as records."""
    contract, _ = load_contract(mini.contract("src.yaml", candidate=candidate))
    evalset = read_jsonl(contract.data.path)
    chosen = evalset.samples[samples]
    kernel = build_kernel(contract.candidate, role="candidate")
    with kernel:
        logits = [host_logits(kernel.run(b).logits) for b in batches(chosen, len(chosen))][0]
    batch = next(batches(chosen, len(chosen)))
    mask = batch.scored_mask()
    if vocab_pad:
        logits = np.concatenate([logits, np.full((*logits.shape[:2], vocab_pad), -5.0, np.float32)], axis=-1)
    ids = [s.id for s in chosen]
    if k is None:
        return write_records(out, ids, batch.input_ids, mask, logits=logits, metadata={"engine": "mini-torch"})
    targets = np.concatenate([batch.input_ids[:, 1:], np.zeros((len(ids), 1), np.int64)], axis=1)
    top_ids, top_lp, target_lp = topk_of_logits(logits, k, targets)
    return write_records(out, ids, batch.input_ids, mask, topk_ids=top_ids, topk_logprobs=top_lp.astype(np.float32),
                         target_logprobs=target_lp.astype(np.float32))


def records_contract(mini, path: str, *, reference: dict | None = None, clauses: list | None = None,
                     name: str = "rec.yaml") -> Path:
    doc = yaml.safe_load(mini.contract(name, clauses=clauses).read_text())
    doc["candidate"] = {"kind": "records", "path": path}
    if reference is not None:
        doc["reference"] = reference
    out = mini.root / name
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


def stats(report: dict) -> dict:
    return {m: s["stats"] for m, s in report["stages"][0]["details"]["metrics"].items()}


def test_full_logit_records_round_trip_equals_the_live_kernel(mini):
    record(mini, mini.root / "hot.safetensors", candidate="build_hot")
    live = invoke("check", str(mini.contract("live.yaml", candidate="build_hot")), "--format", "json")
    recorded = invoke("check", str(records_contract(mini, "hot.safetensors")), "--format", "json")
    assert live.exit_code == recorded.exit_code == 1
    live_report, rec_report = json.loads(live.stdout), json.loads(recorded.stdout)
    assert stats(live_report) == stats(rec_report)
    assert [c["status"] for c in live_report["stages"][0]["clauses"]] == \
        [c["status"] for c in rec_report["stages"][0]["clauses"]]
    fingerprint = rec_report["kernels"]["candidate"]["fingerprint"]
    assert fingerprint["format"] == "logits" and fingerprint["provenance"]["engine"] == "mini-torch"


def test_a_directory_of_shards_is_one_record_set(mini):
    shards = mini.root / "shards"
    record(mini, shards / "part-000.safetensors", candidate="build_hot", samples=slice(0, 10))
    record(mini, shards / "part-001.safetensors", candidate="build_hot", samples=slice(10, None))
    record(mini, mini.root / "whole.safetensors", candidate="build_hot")
    sharded = json.loads(invoke("check", str(records_contract(mini, "shards")), "--format", "json").stdout)
    whole = json.loads(invoke("check", str(records_contract(mini, "whole.safetensors", name="w.yaml")),
                              "--format", "json").stdout)
    assert stats(sharded) == stats(whole)


def test_topk_records_are_judged_on_certified_bounds(mini):
    record(mini, mini.root / "top.safetensors", candidate="build_hot", k=4)
    clauses = [
        {"id": "tv-max", "metric": "tv", "stat": "max", "max": 0.999},
        {"id": "kl-mean", "metric": "kl", "stat": "mean", "max": 1e-3},
        {"id": "kl-min", "metric": "kl", "stat": "mean", "min": 1e-9},
        {"id": "ratio", "metric": "abs_log_ratio", "stat": "max", "max": 100.0},
        {"id": "agree", "metric": "argmax_agree", "stat": "mean", "min": 0.5},
    ]
    result = invoke("check", str(records_contract(mini, "top.safetensors", clauses=clauses)), "--format", "json")
    report = json.loads(result.stdout)
    by_id = {c["id"]: c for c in report["stages"][0]["clauses"]}
    assert by_id["tv-max"]["status"] == "pass", by_id["tv-max"]
    assert by_id["tv-max"]["evidence"]["bounded"] is True
    assert "certified bounds" in by_id["tv-max"]["message"] and "upper bound" in by_id["tv-max"]["message"]
    # KL has no finite upper bound from top-k records: a max clause cannot be certified → fails.
    assert by_id["kl-mean"]["status"] == "fail" and by_id["kl-mean"]["observed_text"] == "inf"
    assert "not certified" in by_id["kl-mean"]["message"] or "violated" in by_id["kl-mean"]["message"]
    assert by_id["kl-min"]["status"] == "pass" and "lower bound" in by_id["kl-min"]["message"]
    assert "bounded" not in by_id["ratio"]["evidence"]  # exact from target_logprobs
    metrics = report["stages"][0]["details"]["metrics"]
    assert "kl" not in metrics and {"kl_lower", "kl_upper", "tv_lower", "tv_upper"} <= set(metrics)
    assert any("certified bounds" in note for note in report["stages"][0]["notes"])
    # The exact values of the live kernel lie inside the bounds.
    live = stats(json.loads(invoke("check", str(mini.contract("l.yaml", candidate="build_hot")),
                                   "--format", "json").stdout))
    for name in ("kl", "tv"):
        assert metrics[f"{name}_lower"]["stats"]["mean"] <= live[name]["mean"] + 1e-6
    assert live["tv"]["mean"] <= metrics["tv_upper"]["stats"]["mean"] + 1e-6
    assert metrics["kl_upper"]["stats"]["mean"] is None  # +inf, stored as null in JSON
    assert metrics["argmax_agree"]["stats"]["mean"] == live["argmax_agree"]["mean"]
    assert abs(metrics["abs_log_ratio"]["stats"]["max"] - live["abs_log_ratio"]["max"]) < 1e-5


def test_records_ids_missing_from_the_eval_set_or_the_records(mini):
    record(mini, mini.root / "part.safetensors", samples=slice(0, 20))
    result = invoke("check", str(records_contract(mini, "part.safetensors")))
    assert result.exit_code == 2
    assert "part.safetensors: no records for eval-set ids `s20`, `s21`, `s22`, `s23` (4 in all)" in result.stderr
    # Records holding ids the eval set lacks: another eval set.
    (mini.root / "eval.jsonl").write_text("\n".join((mini.root / "eval.jsonl").read_text().splitlines()[:5]) + "\n")
    record_all = invoke("check", str(records_contract(mini, "part.safetensors", name="r2.yaml")))
    assert record_all.exit_code == 2
    assert "records for ids that" in record_all.stderr and "(15 in all)" in record_all.stderr
    assert "eval.jsonl does not have: `s05`" in record_all.stderr


def test_records_whose_input_ids_differ(mini):
    path = record(mini, mini.root / "rec.safetensors")
    tensors = load_file(str(path))
    tensors["input_ids"][3, 0] += 1
    save_file(tensors, str(path), metadata={"ids": json.dumps([f"s{i:02d}" for i in range(24)])})
    result = invoke("check", str(records_contract(mini, "rec.safetensors")))
    assert result.exit_code == 2
    assert "rec.safetensors: input_ids differ from" in result.stderr and "`s03` (1 in all)" in result.stderr


def test_records_missing_mask(mini):
    path = record(mini, mini.root / "rec.safetensors")
    tensors = load_file(str(path))
    del tensors["mask"]
    save_file(tensors, str(path), metadata={"ids": json.dumps([f"s{i:02d}" for i in range(24)])})
    result = invoke("check", str(records_contract(mini, "rec.safetensors")))
    assert result.exit_code == 2
    assert "rec.safetensors: records have no `mask` tensor" in result.stderr


def test_records_without_ids_metadata_or_not_safetensors(mini):
    path = record(mini, mini.root / "rec.safetensors")
    save_file(load_file(str(path)), str(path))
    result = invoke("check", str(records_contract(mini, "rec.safetensors")))
    assert result.exit_code == 2 and "rec.safetensors: safetensors metadata has no `ids`" in result.stderr
    (mini.root / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    result = invoke("check", str(records_contract(mini, "junk.safetensors", name="j.yaml")))
    assert result.exit_code == 2 and "junk.safetensors: not a readable safetensors file" in result.stderr


def test_topk_records_with_different_k(mini):
    record(mini, mini.root / "k4.safetensors", k=4)
    record(mini, mini.root / "k3.safetensors", candidate="build_hot", k=3)
    path = records_contract(mini, "k3.safetensors", reference={"kind": "records", "path": "k4.safetensors"})
    result = invoke("check", str(path))
    assert result.exit_code == 2
    assert "top-k widths differ" in result.stderr
    assert "k4.safetensors) records K = 4" in result.stderr and "k3.safetensors) records K = 3" in result.stderr


def test_records_with_a_different_vocabulary(mini):
    record(mini, mini.root / "v20.safetensors", vocab_pad=4)
    result = invoke("check", str(records_contract(mini, "v20.safetensors")), "--format", "json")
    assert result.exit_code == 3  # the identity check: invalid, not a usage error (issue 23)
    [finding] = json.loads(result.stdout)["identity"]["findings"]
    assert finding["check"] == "vocabulary" and "vocabulary sizes differ" in finding["message"]
    assert "v20.safetensors) scores 20" in finding["message"]


def test_mask_excluding_positions_is_reported(mini):
    path = record(mini, mini.root / "rec.safetensors")
    tensors = load_file(str(path))
    tensors["mask"][:, 0] = False
    save_file(tensors, str(path), metadata={"ids": json.dumps([f"s{i:02d}" for i in range(24)])})
    report = json.loads(invoke("check", str(records_contract(mini, "rec.safetensors")), "--format", "json").stdout)
    assert report["stages"][0]["details"]["positions"] == report["data"]["positions"] - 24
    assert any("leaves out 24 positions" in note for note in report["stages"][0]["notes"])


def test_validate_reports_a_missing_records_path_with_its_line(mini):
    path = records_contract(mini, "nowhere.safetensors")
    result = invoke("validate", str(path))
    assert result.exit_code == 2
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if "nowhere" in text)
    assert f"{path}:{line}:" in result.stderr and "records `nowhere.safetensors` not found" in result.stderr


def test_noise_floor_and_localize_need_live_kernels(tmp_path):
    from promote.contract.load import ContractError
    from promote.contract.model import load_contract

    (tmp_path / "eval.jsonl").write_text('{"id": "a", "input_ids": [1, 2, 3]}\n')
    (tmp_path / "rec.safetensors").write_bytes(b"")
    (tmp_path / "model.py").write_text("def build():\n    return None\n")
    (tmp_path / "c.yaml").write_text(
        "version: 1\nname: r\n"
        "reference: {kind: records, path: rec.safetensors}\n"
        "candidate: {kind: torch, model: model.py:build}\n"
        "data: {path: eval.jsonl}\n"
        "numerical:\n  noise_floor: {perturb: [rerun]}\n  localize: true\n"
        "  clauses: [{id: k, metric: kl, stat: mean, max: 1}]\n")
    with pytest.raises(ContractError) as info:
        load_contract(tmp_path / "c.yaml")
    text = "\n".join(str(p) for p in info.value.problems)
    assert "c.yaml:7:3" in text and "`records` reference cannot be re-run" in text
    assert "c.yaml:8:3" in text and "needs two `torch` kernels" in text


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_logit_records_reach_scoring_in_their_own_dtype_and_score_as_widened_float32(tmp_path, dtype):
    """A batch of logit records is one torch tensor in the records' dtype (consecutive rows of one shard read at
    once, other batches row by row; the old path widened every batch to float32 and copied it four times):
    values as stored, and the metrics exactly those of the same values widened to float32 numpy."""
    import torch

    from promote.engine.scoring import score_outputs

    rng = np.random.default_rng(3)
    n, t, vocab = 5, 7, 300
    ids = [f"r{i}" for i in range(n)]
    input_ids = rng.integers(0, vocab, (n, t))
    mask = np.ones((n, t), dtype=bool)
    mask[:, -1] = False
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps({"id": i, "input_ids": row.tolist()}) + "\n"
                                                 for i, row in zip(ids, input_ids, strict=True)))
    stored = {}
    for side, scale in (("ref", 0.0), ("cand", 0.05)):
        base = torch.from_numpy(rng.standard_normal((n, t, vocab)).astype(np.float32) * 3)
        stored[side] = (base if side == "ref" else stored["ref"].float() + scale * base).to(getattr(torch, dtype))
    write_records(tmp_path / "ref.safetensors", ids, input_ids, mask, logits=stored["ref"])
    for part, rows in (("a", slice(0, 2)), ("b", slice(2, n))):  # the first batch spans both shards
        write_records(tmp_path / "cand" / f"{part}.safetensors", ids[rows], input_ids[rows], mask[rows],
                      logits=stored["cand"][rows])
    (tmp_path / "c.yaml").write_text(
        "version: 1\nname: r\n"
        "reference: {kind: records, path: ref.safetensors, batch_size: 3}\n"
        "candidate: {kind: records, path: cand, batch_size: 3}\n"
        "data: {path: eval.jsonl}\n"
        "numerical:\n  clauses:\n    - {id: kl, metric: kl, stat: mean, max: 1.0}\n")
    contract, _ = load_contract(tmp_path / "c.yaml")
    evalset = read_jsonl(contract.data.path)
    kernels = [build_kernel(contract.reference, role="reference"), build_kernel(contract.candidate, role="candidate")]
    for kernel in kernels:
        kernel.open()
        kernel.bind(evalset)
    try:
        scored_batches = 0
        for start, batch in zip(range(0, n, 3), batches(evalset.samples, 3), strict=True):
            outs = [kernel.run(batch) for kernel in kernels]
            for out, side in zip(outs, ("ref", "cand"), strict=True):
                assert isinstance(out.logits, torch.Tensor) and out.logits.dtype == getattr(torch, dtype)
                assert torch.equal(out.logits, stored[side][start : start + len(batch.samples)])
            scored = score_outputs(batch, *outs, tie_margin=1e-3)
            widened = [Outputs(logits=o.logits.float().numpy(), mask=o.mask) for o in outs]
            as_numpy = score_outputs(batch, *widened, tie_margin=1e-3)
            assert scored.values.keys() == as_numpy.values.keys()
            for name, values in as_numpy.values.items():
                np.testing.assert_array_equal(scored.values[name], values, err_msg=name)
            scored_batches += 1
        assert scored_batches == 2
    finally:
        for kernel in kernels:
            kernel.close()


@pytest.mark.parametrize("tokens", [9, 6])  # the records' own length (a view of the map), or shorter (a copy)
def test_a_batch_of_consecutive_records_is_a_view_that_never_writes_the_file(tmp_path, tokens):
    """Consecutive rows of one shard come straight from the memory map, contiguous (sliced to the batch's length
    when the records are longer), and a write into the batch tensor never reaches the user's file."""
    import torch
    from safetensors import safe_open

    rng = np.random.default_rng(9)
    n, recorded, vocab = 4, 9, 50
    ids = [f"v{i}" for i in range(n)]
    input_ids = rng.integers(0, vocab, (n, recorded))
    logits = torch.from_numpy(rng.standard_normal((n, recorded, vocab)).astype(np.float32)).to(torch.float16)
    path = write_records(tmp_path / "r.safetensors", ids, input_ids, np.ones((n, recorded), bool), logits=logits)
    (tmp_path / "eval.jsonl").write_text("".join(json.dumps({"id": i, "input_ids": row[:tokens].tolist()}) + "\n"
                                                 for i, row in zip(ids, input_ids, strict=True)))
    (tmp_path / "c.yaml").write_text("version: 1\nname: r\nreference: {kind: records, path: r.safetensors}\n"
                                     "candidate: {kind: records, path: r.safetensors}\ndata: {path: eval.jsonl}\n"
                                     "numerical:\n  clauses:\n    - {id: kl, metric: kl, stat: mean, max: 1.0}\n")
    contract, _ = load_contract(tmp_path / "c.yaml")
    evalset = read_jsonl(contract.data.path)
    kernel = build_kernel(contract.reference, role="reference")
    with kernel:
        kernel.bind(evalset)
        batch = next(batches(evalset.samples, n))
        got = kernel.run(batch).logits
        assert got.shape == (n, tokens, vocab) and got.is_contiguous() and torch.equal(got, logits[:, :tokens])
        got.fill_(7.0)
    with safe_open(str(path), framework="pt") as handle:
        assert torch.equal(handle.get_tensor("logits"), logits)  # the file is as written
