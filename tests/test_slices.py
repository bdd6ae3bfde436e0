"""Stage 2 end to end on the mini project: verdicts, small/masked/missing slices, task clauses, multiplicity."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from promote.cli import cli
from promote.metrics import stats
from promote.resources import load_schema

FAULTS = '''
import importlib.util
import pathlib

import torch

_spec = importlib.util.spec_from_file_location("mini_model_for_faults", pathlib.Path(__file__).with_name("model.py"))
_m = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_m)
CALLS = pathlib.Path(__file__).with_name("calls.txt")


class GroupB(_m.Mini):
    """Boost the top logit only on sequences whose first token is odd: exactly tag group=b."""

    def forward(self, ids):
        out = super().forward(ids)
        hit = (ids[:, :1] % 2 == 1).to(out.dtype)
        top = torch.zeros_like(out).scatter_(-1, out.argmax(-1, keepdim=True), 1.0)
        return out + top * hit[:, :, None]


class Flip(_m.Mini):
    """Swap the top two logits at every position of sequences whose first token is 0 mod 4."""

    def forward(self, ids):
        out = super().forward(ids)
        hit = (ids[:, 0] % 4 == 0)
        top2 = out.topk(2, dim=-1).indices
        swapped = out.clone()
        swapped.scatter_(-1, top2[..., :1], out.gather(-1, top2[..., 1:]))
        swapped.scatter_(-1, top2[..., 1:], out.gather(-1, top2[..., :1]))
        return torch.where(hit[:, None, None], swapped, out)


class Counting(_m.Mini):
    def forward(self, ids):
        with CALLS.open("a") as f:
            f.write("x")
        return super().forward(ids)


def build_group_b():
    return GroupB()


def build_flip():
    return Flip()


def build_counting():
    return Counting()
'''

KL_SLICE = {"id": "slice-kl", "metric": "kl", "stat": "mean", "max": 1e-3, "per_slice": True}


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def check(path, *extra: str):
    result = invoke("check", str(path), "--format", "json", "--all-stages", *extra)
    assert result.exit_code in (0, 1), result.output
    report = json.loads(result.stdout)
    jsonschema.validate(report, load_schema("report"))
    return result, report


def slice_results(report):
    stage = next(s for s in report["stages"] if s["name"] == "slices")
    return stage, stage["clauses"]


def contract(mini, *, clauses, slices=None, candidate="model.py:build", stat_extra=None, name="c.yaml"):
    path = mini.contract(name, extra={
        "slices": slices if slices is not None else [{"name": "g", "by": "tags.group"}],
        "statistical": {"min_samples": 5, "clauses": clauses, **(stat_extra or {})},
    })
    doc = yaml.safe_load(path.read_text())
    doc["candidate"]["model"] = candidate
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


@pytest.fixture
def faulty(mini):
    mini.write("faults.py", FAULTS)
    return mini


def test_slice_only_fault_fails_the_named_slice_and_passes_the_other(faulty):
    path = contract(faulty, clauses=[KL_SLICE], candidate="faults.py:build_group_b")
    result, report = check(path)
    stage, clauses = slice_results(report)
    by_slice = {c["slice"]: c for c in clauses}
    assert by_slice["g=b"]["status"] == "fail" and by_slice["g=a"]["status"] == "pass"
    assert by_slice["g=b"]["evidence"]["ci"][0] > 1e-3
    assert by_slice["g=b"]["evidence"]["p_fail_adjusted"] <= 0.05
    assert by_slice["g=a"]["evidence"]["samples"] == 12 and by_slice["g=a"]["evidence"]["positions"] > 0
    assert result.exit_code == 1


def test_worst_slice_gate_names_the_slice(faulty):
    clause = {"id": "worst", "metric": "kl", "stat": "max_over_slices", "max": 1e-3}
    _, report = check(contract(faulty, clauses=[clause], candidate="faults.py:build_group_b"))
    (only,) = slice_results(report)[1]
    assert only["status"] == "fail" and only["slice"] == "g=b" and "g=b" in only["message"]
    assert {e["slice"] for e in only["evidence"]["slices"]} == {"g=a", "g=b"}


def test_kernels_run_once_for_numerics_and_slices_together_or_slices_alone(faulty):
    path = contract(faulty, clauses=[KL_SLICE], candidate="faults.py:build_counting")
    doc = yaml.safe_load(path.read_text())
    doc["reference"]["model"] = "faults.py:build_counting"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    calls = faulty.root / "calls.txt"
    check(path)
    batches = 5  # 24 samples, batch size 5
    assert len(calls.read_text()) == 2 * batches  # reference and candidate, once each
    calls.unlink()
    _, report = check(path, "--stage", "slices")
    assert len(calls.read_text()) == 2 * batches
    numerics = next(s for s in report["stages"] if s["name"] == "numerics")
    assert numerics["status"] == "skipped"
    assert {c["status"] for c in slice_results(report)[1]} == {"pass"}


def test_too_small_slice_is_inconclusive_never_pass_and_reports_mde(mini):
    path = contract(mini, clauses=[KL_SLICE], stat_extra={"min_samples": 20}, candidate="model.py:build_hot")
    result, report = check(path)
    for clause in slice_results(report)[1]:
        assert clause["status"] == "inconclusive"
        assert "min_samples 20" in clause["message"]
        assert clause["evidence"]["mde"] > 0
    assert result.exit_code == 1  # inconclusive is routed like a violation by default


def test_all_positions_masked_slice_is_inconclusive(mini):
    with (mini.root / "eval.jsonl").open("a") as f:
        for i in range(3):
            f.write(json.dumps({"id": f"one{i}", "input_ids": [1], "tags": {"group": "single"}}) + "\n")
    _, report = check(contract(mini, clauses=[KL_SLICE]))
    single = next(c for c in slice_results(report)[1] if c["slice"] == "g=single")
    assert single["status"] == "inconclusive"
    assert "all positions of its 3 samples are masked" in single["message"]
    assert single["evidence"]["samples"] == 3 and single["evidence"]["positions"] == 0


def test_samples_without_the_tag_form_a_missing_slice(mini):
    lines = (mini.root / "eval.jsonl").read_text().splitlines()
    for i in range(0, 24, 4):
        record = json.loads(lines[i])
        del record["tags"]
        lines[i] = json.dumps(record)
    (mini.root / "eval.jsonl").write_text("\n".join(lines) + "\n")
    _, report = check(contract(mini, clauses=[KL_SLICE]))
    stage, clauses = slice_results(report)
    missing = next(c for c in clauses if c["slice"] == "g=(missing)")
    assert missing["evidence"]["samples"] == 6
    assert any("missing on 6 of 24 samples" in n for n in stage["notes"])


def test_hundreds_of_tag_values_are_capped_with_a_note(mini):
    lines = [json.loads(x) for x in (mini.root / "eval.jsonl").read_text().splitlines()]
    for i, record in enumerate(lines):
        record["tags"]["user"] = f"user{i}"
    (mini.root / "eval.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    path = contract(mini, clauses=[KL_SLICE], slices=[{"name": "user", "by": "tags.user", "max_values": 4}])
    stage, clauses = slice_results(check(path)[1])
    assert [c["slice"] for c in clauses][-1] == "user=(other)" and len(clauses) == 4
    assert any("24 distinct values, more than max_values 4" in n for n in stage["notes"])


@pytest.mark.parametrize("metric", ["exact_match", "reward"])
def test_task_clause_without_labels_is_exit_2_naming_the_contract_line(mini, metric):
    path = contract(mini, clauses=[KL_SLICE, {"id": "task", "metric": metric, "max_drop": 0.01}])
    line = next(i for i, x in enumerate(path.read_text().splitlines(), 1) if "id: task" in x)
    result = invoke("check", str(path))
    assert result.exit_code == 2
    assert f"{path}:{line}: clause `task` (metric `{metric}`)" in result.stderr
    assert "24 of 24 samples" in result.stderr and "Traceback" not in result.output


def _reward_data(mini, diffs):
    lines = []
    for i, d in enumerate(diffs):
        ids = [(i * 7 + t * 3) % 16 for t in range(6)]
        lines.append(json.dumps({"id": f"r{i}", "input_ids": ids, "tags": {"group": "ab"[i % 2]},
                                 "reward": {"reference": 0.5, "candidate": 0.5 + float(d)}}))
    (mini.root / "eval.jsonl").write_text("\n".join(lines) + "\n")


def test_underpowered_slice_that_a_naive_rule_passes_is_inconclusive(mini):
    import numpy as np

    diffs = np.random.default_rng(3).normal(-0.01, 0.05, size=40)
    _reward_data(mini, diffs)
    clause = {"id": "reward", "metric": "reward", "max_drop": 0.01, "test": "wilcoxon"}
    (result,) = slice_results(check(contract(mini, clauses=[clause]))[1])[1]
    assert result["evidence"]["p_difference"] > 0.05  # "no significant difference": a naive gate would pass
    assert result["status"] == "inconclusive"
    assert result["evidence"]["ci"][0] < -0.01 < result["evidence"]["ci"][1]
    assert result["evidence"]["more_samples"] > 0 and "more sequences would decide" in result["message"]
    from scipy import stats as sps

    assert result["evidence"]["p_difference"] == pytest.approx(sps.wilcoxon(diffs).pvalue, rel=1e-9)


def _labelled_by_reference(mini):
    """Samples whose label (the last token) is the reference's argmax there, so it scores 100%."""
    import importlib.util

    import torch

    spec = importlib.util.spec_from_file_location("mini_for_labels", mini.root / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with torch.no_grad():
        best = module.build()(torch.arange(16)[None])[0].argmax(-1).tolist()
    lines = []
    for i in range(24):
        ids = [(i * 7 + t * 3) % 16 for t in range(4 + i % 3)]
        ids.append(best[ids[-1]])
        lines.append(json.dumps({"id": f"s{i}", "input_ids": ids, "tags": {"group": "ab"[i % 2]},
                                 "label": ids[-1]}))
    (mini.root / "eval.jsonl").write_text("\n".join(lines) + "\n")


def test_exact_match_reports_flips_both_ways_with_mcnemar(faulty):
    _labelled_by_reference(faulty)
    clause = {"id": "em", "metric": "exact_match", "max_drop": 0.05}
    (result,) = slice_results(check(contract(faulty, clauses=[clause], candidate="faults.py:build_flip"))[1])[1]
    flips = result["evidence"]["flips"]
    b, c = flips["reference_right_candidate_wrong"], flips["reference_wrong_candidate_right"]
    assert b == 6 and c == 0  # first token 0 mod 4: i*7 ≡ 0 (mod 4) for i = 0, 4, …, 20
    assert result["evidence"]["reference"] == 1.0 and result["evidence"]["candidate"] == 18 / 24
    assert result["status"] == "fail"
    assert result["evidence"]["p_difference"] == pytest.approx(stats.mcnemar_exact(b, c))
    assert result["evidence"]["ci_method"] == "bonett-price"  # few discordant items: not a bootstrap
    assert f"flips {b} right→wrong, {c} wrong→right" in result["message"]


def test_corrections_are_applied_and_raw_and_adjusted_p_values_shown(faulty):
    slices = [{"name": "g", "by": "tags.group"}, {"name": "len", "by": "length", "quantiles": 3}]
    adjusted = {}
    for method in ("holm", "bh", "none"):
        path = contract(faulty, clauses=[KL_SLICE], slices=slices, candidate="faults.py:build_group_b",
                        stat_extra={"correction": method}, name=f"{method}.yaml")
        stage, clauses = slice_results(check(path)[1])
        assert stage["details"]["correction"] == method and stage["details"]["tests_corrected"] == 5
        adjusted[method] = [(c["evidence"]["p_fail"], c["evidence"]["p_fail_adjusted"]) for c in clauses]
    raw = [p for p, _ in adjusted["none"]]
    assert [a for _, a in adjusted["none"]] == raw
    np_holm = stats.adjust(raw, "holm")
    assert [a for _, a in adjusted["holm"]] == pytest.approx(list(np_holm))
    assert all(h >= b >= r for (r, h, b) in zip(raw, np_holm, [a for _, a in adjusted["bh"]], strict=True))


def test_bootstrap_is_seeded_and_reproducible(mini):
    first = slice_results(check(contract(mini, clauses=[KL_SLICE], candidate="model.py:build_hot"))[1])[1]
    again = slice_results(check(contract(mini, clauses=[KL_SLICE], candidate="model.py:build_hot"))[1])[1]
    assert [c["evidence"]["ci"] for c in first] == [c["evidence"]["ci"] for c in again]
    other = slice_results(check(contract(mini, clauses=[KL_SLICE], candidate="model.py:build_hot",
                                         stat_extra={"seed": 1}, name="s1.yaml"))[1])[1]
    assert [c["evidence"]["ci"] for c in other] != [c["evidence"]["ci"] for c in first]


def test_straddling_interval_is_inconclusive_with_a_sample_size_hint(mini):
    _, report = check(contract(mini, clauses=[KL_SLICE], candidate="model.py:build_hot"))
    kl = {c["slice"]: c["evidence"]["estimate"] for c in slice_results(report)[1]}
    bound = kl["g=a"]  # put the bound exactly between the interval's ends
    clause = {**KL_SLICE, "max": bound * 1.001}
    _, report = check(contract(mini, clauses=[clause], candidate="model.py:build_hot", name="edge.yaml"))
    a = next(c for c in slice_results(report)[1] if c["slice"] == "g=a")
    assert a["status"] == "inconclusive" and "straddles" in a["message"]
    assert a["evidence"]["more_samples"] > 0


def test_non_finite_logits_fail_the_slice(mini):
    _, report = check(contract(mini, clauses=[KL_SLICE], candidate="model.py:build_nan"))
    assert {c["status"] for c in slice_results(report)[1]} == {"fail"}
    assert "non-finite" in slice_results(report)[1][0]["message"]


def test_position_and_crossed_slices_with_quantile_clause(mini):
    slices = [{"name": "pos", "by": "position", "buckets": [0, 3]},
              {"name": "x", "by": ["tags.group", "entropy"], "quantiles": 2}]
    clause = {"id": "p90", "metric": "tv", "stat": "p90", "max": 0.5, "per_slice": True}
    stage, clauses = slice_results(check(contract(mini, clauses=[clause], slices=slices,
                                                  candidate="model.py:build_hot"))[1])
    labels = [c["slice"] for c in clauses]
    assert labels[:2] == ["pos=[0,3)", "pos=[3,inf)"] and all(lab.startswith("x:group=") for lab in labels[2:])
    assert {c["status"] for c in clauses} == {"pass"}
    pos = stage["details"]["families"][0]["slices"]
    assert sum(s["positions"] for s in pos) == sum(5 + i % 6 - 1 for i in range(24))
    # Every numerical metric is summarised in every slice, bounded by a clause or not.
    summary = pos[0]["metrics"]
    assert {"kl", "tv", "logit_osc", "argmax_agree", "nonfinite"} <= set(summary)
    lo, hi = summary["kl"]["ci"]
    assert lo <= summary["kl"]["mean"] <= hi and summary["kl"]["max"] >= summary["kl"]["p99"]


@pytest.mark.parametrize(("slices", "clause", "message"), [
    ([{"name": "g", "by": "tags.group", "buckets": [1, 2]}], KL_SLICE, "apply to numeric keys only"),
    ([{"name": "g", "by": "colour"}], KL_SLICE, 'must match the pattern'),
    ([{"name": "g", "by": ["tags.group", "tags.group"]}], KL_SLICE, "names the same key twice"),
    ([{"name": "g", "by": "length", "buckets": [4, 2]}], KL_SLICE, "strictly increasing"),
    ([], KL_SLICE, "defines no `slices:`"),
    ([{"name": "g", "by": "tags.group"}], {**KL_SLICE, "slices": ["nope"]}, "no slice family named `nope`"),
    ([{"name": "g", "by": "tags.group"}], {"id": "t", "metric": "accuracy", "max": 0.1}, "use `max_drop` or `margin`"),
    ([{"name": "g", "by": "tags.group"}], {"id": "t", "metric": "kl", "max_drop": 0.1}, "are for task metrics"),
    ([{"name": "g", "by": "tags.group"}], {"id": "t", "metric": "reward", "max_drop": 0.1, "test": "mcnemar"},
     "does not fit `reward`"),
])
def test_contract_problems_are_exit_2_with_the_line(mini, slices, clause, message):
    path = contract(mini, clauses=[clause], slices=slices)
    result = invoke("validate", "--no-data", str(path))
    assert result.exit_code == 2
    assert message in result.stderr and f"{path}:" in result.stderr


def test_max_statistic_is_judged_on_the_observed_value_without_a_test(faulty):
    clause = {"id": "kl-max", "metric": "kl", "stat": "max", "max": 0.05, "per_slice": True}
    _, report = check(contract(faulty, clauses=[clause], candidate="faults.py:build_group_b"))
    by_slice = {c["slice"]: c for c in slice_results(report)[1]}
    assert by_slice["g=a"]["status"] == "pass" and by_slice["g=b"]["status"] == "fail"
    assert by_slice["g=b"]["evidence"]["ci_method"] == "observed" and "p_fail" not in by_slice["g=b"]["evidence"]
    assert slice_results(report)[0]["details"]["tests_corrected"] == 0


def test_two_sided_margin_fails_a_candidate_that_is_much_better_too(mini):
    _reward_data(mini, [0.2 + 0.01 * (i % 3) for i in range(40)])
    clause = {"id": "score-eq", "metric": "reward", "margin": 0.05, "test": "paired-bootstrap"}
    (result,) = slice_results(check(contract(mini, clauses=[clause]))[1])[1]
    assert result["status"] == "fail" and result["evidence"]["ci"][0] > 0.05
    assert result["evidence"]["p_difference"] == pytest.approx(1 / 2001 * 2)  # every replicate is above 0


def test_too_few_resamples_for_the_number_of_tests_is_noted(faulty):
    path = contract(faulty, clauses=[KL_SLICE], candidate="faults.py:build_group_b",
                    slices=[{"name": "g", "by": "tags.group"}, {"name": "len", "by": "length", "quantiles": 6}],
                    stat_extra={"resamples": 99, "min_samples": 2})
    stage, _ = slice_results(check(path)[1])
    assert any("raise `statistical.resamples`" in n for n in stage["notes"])


def test_validate_accepts_a_statistical_section_without_warnings(mini):
    result = invoke("validate", str(contract(mini, clauses=[KL_SLICE])))
    assert result.exit_code == 0 and "stages: numerical, statistical" in result.stdout
    assert "not evaluated" not in result.stderr


def test_a_crashing_kernel_makes_slice_clauses_errors_and_exit_3(mini):
    path = contract(mini, clauses=[KL_SLICE], candidate="model.py:build_broken")
    result = invoke("check", str(path), "--format", "json")
    assert result.exit_code == 3 and "factory exploded" in result.stderr
    stage, clauses = slice_results(json.loads(result.stdout))
    assert stage["status"] == "error" and {c["status"] for c in clauses} == {"error"}
