"""stages/tensors.py with in-memory kernels: key-by-key comparison, broken and vacuous outputs."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest

from promote.contract.numerical import NumericalClause, NumericalSpec, TensorOptions
from promote.data import read_jsonl
from promote.kernels.base import Kernel, Outputs
from promote.stages.numerics.tensors import run_tensors


class FakeKernel(Kernel):
    """Returns ``fn(x, ids)`` for the batch's input ``x``: name → array (and optional source dtypes)."""

    kind = "fake"

    def __init__(self, fn, *, role="candidate", batch_size=4, dtypes=None):
        super().__init__(SimpleNamespace(batch_size=batch_size), role=role)
        self.fn = fn
        self.dtypes = dtypes or {}

    def _open_impl(self):
        pass

    def _run_impl(self, batch):
        return Outputs(named=self.fn(batch.inputs["x"].astype(np.float64), batch.ids), dtypes=dict(self.dtypes))


def model(x, ids=()):
    return {"scores": (x * 2.0).astype(np.float32), "embedding": np.tanh(x[:, :3]).astype(np.float32)}


def clause(cid, metric, stat, *, max=None, min=None, severity="fail", **options):  # noqa: A002
    return NumericalClause(id=cid, metric=metric, stat=stat, max=max, min=min, severity=severity, description=None,
                           line=None, tensor=TensorOptions(**options))


@pytest.fixture
def evalset(tmp_path):
    rng = np.random.default_rng(0)
    lines = [json.dumps({"id": f"s{i}", "inputs": {"x": rng.normal(size=5).round(3).tolist()}}) for i in range(10)]
    (tmp_path / "eval.jsonl").write_text("\n".join(lines) + "\n")
    return read_jsonl(tmp_path / "eval.jsonl", task="tensor")


def run(evalset, cand_fn, clauses, *, ref_fn=model, batch_size=4, **kw):
    ref = FakeKernel(ref_fn, role="reference", batch_size=batch_size)
    cand = FakeKernel(cand_fn, batch_size=batch_size, **kw)
    with ref, cand:
        return run_tensors(NumericalSpec(clauses=tuple(clauses)), evalset, ref, cand)


def by_output(result):
    return {(c.id, c.slice): c for c in result.clauses}


def test_identical_outputs_pass_with_infinite_sqnr(evalset):
    result = run(evalset, model, [clause("sqnr", "sqnr", "min", min=60), clause("abs", "abs", "max", max=0),
                                  clause("cos", "cosine", "min", min=1.0)])
    assert result.status == "pass"
    sqnr = by_output(result)[("sqnr", "output=scores")]
    assert sqnr.observed == math.inf and "inf" in sqnr.message
    assert {c.slice for c in result.clauses} == {"output=scores", "output=embedding"}  # one result per output
    assert result.details["outputs"]["scores"]["samples"] == 10


def test_drift_fails_the_clause_and_names_the_worst_element(evalset):
    def drifted(x, ids):
        out = model(x, ids)
        if "s3" in ids:
            out["scores"][ids.index("s3"), 1] += 0.5
        return out

    result = run(evalset, drifted, [clause("abs", "abs", "max", max=0.1, output="scores")])
    (only,) = result.clauses
    assert only.status == "fail" and only.observed == pytest.approx(0.5, rel=1e-6)
    assert only.evidence["worst_elements"][0] == {"value": pytest.approx(0.5, rel=1e-6), "sample_id": "s3",
                                                  "index": [1]}
    assert "worst at sample s3 [1]" in only.message


def test_missing_key_fails_and_lists_what_the_candidate_has(evalset):
    result = run(evalset, lambda x, ids: {"scores": model(x, ids)["scores"]}, [clause("abs", "abs", "max", max=1)])
    results = by_output(result)
    assert results[("abs", "output=scores")].status == "pass"
    missing = results[("abs", "output=embedding")]
    assert missing.status == "fail"
    assert "`embedding` is missing from the candidate's outputs (10 samples" in missing.message
    assert "candidate outputs: `scores`" in missing.message
    assert "outputs only the reference returned: embedding" in result.notes


def test_extra_candidate_key_fails_too(evalset):
    result = run(evalset, lambda x, ids: {**model(x, ids), "debug": x.astype(np.float32)},
                 [clause("abs", "abs", "max", max=1)])
    assert by_output(result)[("abs", "output=debug")].status == "fail"
    assert "missing from the reference's outputs" in by_output(result)[("abs", "output=debug")].message


def test_shape_mismatch_fails_with_both_shapes(evalset):
    result = run(evalset, lambda x, ids: {**model(x, ids), "embedding": np.tanh(x[:, :4]).astype(np.float32)},
                 [clause("cos", "cosine", "min", min=0.9, output="embedding")])
    (only,) = result.clauses
    assert only.status == "fail"
    assert "shapes differ: reference [4, 3], candidate [4, 4]" in only.message


def test_dtype_kind_mismatch_fails_but_float_widths_may_differ(evalset):
    result = run(evalset, lambda x, ids: {**model(x, ids), "scores": (x * 2).astype(np.int64)},
                 [clause("abs", "abs", "max", max=10, output="scores")])
    assert result.clauses[0].status == "fail"
    assert "dtypes differ in kind: reference float32, candidate int64" in result.clauses[0].message
    half = run(evalset, lambda x, ids: {k: v.astype(np.float16) for k, v in model(x, ids).items()},
               [clause("abs", "abs", "max", max=0.01, output="scores")])
    assert half.clauses[0].status == "pass"
    assert half.clauses[0].evidence["dtypes"] == {"reference": ["float32"], "candidate": ["float16"]}


@pytest.mark.parametrize("value,needle", [(0.0, "all zeros"), (0.25, "constant"), (None, "tiny")])
def test_vacuous_outputs_are_never_a_pass(evalset, value, needle):
    def const(x, ids):
        if value is None:  # varying, but tiny
            return {"y": (x * 1e-14).astype(np.float64)}
        return {"y": np.full((x.shape[0], 3), value, dtype=np.float32)}

    result = run(evalset, const, [clause("abs", "abs", "max", max=1), clause("fin", "nonfinite", "sum", max=0)],
                 ref_fn=const)
    assert [c.status for c in result.clauses] == ["vacuous", "vacuous"]
    assert needle in result.clauses[0].message
    if value is None:  # a lower threshold makes the same outputs comparable
        lower = run(evalset, const, [clause("abs", "abs", "max", max=1, vacuous_below=1e-20)], ref_fn=const)
        assert lower.clauses[0].status == "pass"


def test_nan_is_counted_and_fails_unless_the_clause_skips_it(evalset):
    def broken(x, ids):
        out = model(x, ids)
        if "s2" in ids:
            out["scores"][ids.index("s2"), 0] = np.nan
        return out

    clauses = [clause("fin", "nonfinite", "sum", max=0, output="scores"),
               clause("abs", "abs", "max", max=1, output="scores"),
               clause("abs-skip", "abs", "max", max=1, output="scores", on_nonfinite="skip"),
               clause("abs-masks", "abs", "max", max=1, output="scores", on_nonfinite="skip-matching")]
    result = {c.id: c for c in run(evalset, broken, clauses).clauses}
    assert result["fin"].status == "fail" and result["fin"].observed == 1
    assert result["abs"].status == "fail" and "1 non-finite elements" in result["abs"].message
    assert "first at sample s2 element 0: reference" in result["abs"].message
    assert result["abs-skip"].status == "pass"  # judged on the finite pairs only
    assert result["abs-masks"].status == "fail"  # a NaN is not a matching mask


def test_matching_infinities_are_masks_only_when_allowed(evalset):
    def masked(x, ids):
        out = model(x, ids)
        out["scores"][:, 0] = -np.inf
        return out

    clauses = [clause("abs", "abs", "max", max=1e-9), clause("abs-masks", "abs", "max", max=1e-9,
                                                              on_nonfinite="skip-matching")]
    result = {c.id: c for c in run(evalset, masked, clauses, ref_fn=masked).clauses if c.slice == "output=scores"}
    assert result["abs"].status == "fail"
    assert result["abs-masks"].status == "pass"
    assert result["abs-masks"].evidence["matching_nonfinite"] == 10


def test_no_outputs_in_common_is_an_error(evalset):
    result = run(evalset, lambda x, ids: {"other": x}, [clause("abs", "abs", "max", max=1)])
    assert [c.status for c in result.clauses] == ["error"]
    assert "no output in common: reference `scores`, `embedding`, candidate `other`" in result.clauses[0].message


def test_a_glob_that_selects_nothing_is_an_error(evalset):
    result = run(evalset, model, [clause("abs", "abs", "max", max=1, output="hidden_states[*]")])
    assert result.clauses[0].status == "error"
    assert "selects none of the outputs (`scores`, `embedding`)" in result.clauses[0].message


def test_rel_floor_warning_and_explicit_floor(evalset):
    def with_zero(x, ids=()):
        out = model(x, ids)
        out["scores"][:, 0] = 0.0
        return out

    def cand(x, ids):
        out = with_zero(x)
        out["scores"] = out["scores"] + np.float32(1e-3)
        return out

    result = run(evalset, cand, [clause("rel", "rel", "max", max=1e9, output="scores"),
                                 clause("rel-floor", "rel", "max", max=0.5, output="scores", rel_floor=0.01)],
                 ref_fn=with_zero)
    default, floored = result.clauses
    assert default.evidence["rel_floor_hits"] == 10 and "warning: 10 of 50 elements had |r| below the floor" in \
        default.message
    row_max = np.abs(with_zero(evalset_x(evalset))["scores"]).max(axis=1)
    assert default.observed == pytest.approx((1e-3 / (1e-6 * row_max)).max(), rel=1e-6)  # floor = 1e-6·max|r_row|
    assert floored.status == "pass" and floored.observed == pytest.approx(0.1, rel=1e-3)


def evalset_x(evalset):
    return np.stack([s.inputs["x"] for s in evalset.samples]).astype(np.float64)


def test_ulp_is_in_the_reference_dtype(evalset):
    """A bf16 reference (widened to float32 on the way, its dtype recorded) is measured in bf16 ulps."""
    def ref_fn(x, ids):
        return {"y": np.array([[1.0, 2.0]] * x.shape[0], np.float32)}

    def cand_fn(x, ids):
        return {"y": ref_fn(x, ids)["y"] + np.float32(2**-7)}

    spec = NumericalSpec(clauses=(clause("ulp", "ulp", "max", max=1),))
    for ref_dtype, want in (("bfloat16", 1.0), ("float32", 2.0**16)):  # bf16 ulp at 1 is 2^-7, fp32's 2^-23
        ref = FakeKernel(ref_fn, role="reference", dtypes={"y": ref_dtype})
        cand = FakeKernel(cand_fn)
        with ref, cand:
            result = run_tensors(spec, evalset, ref, cand)
        assert result.clauses[0].observed == want


def test_batch_size_does_not_change_any_statistic(evalset):
    def noisy(x, ids):
        out = model(x, ids)
        return {k: v + np.float32(1e-4) * np.sin(v * 7) for k, v in out.items()}

    clauses = [clause("rel", "rel", "p90", max=1), clause("cos", "cosine", "min", min=0.5)]
    one = run(evalset, noisy, clauses, batch_size=1)
    four = run(evalset, noisy, clauses, batch_size=4)
    for path in ("scores", "embedding"):
        a, b = one.details["outputs"][path]["metrics"], four.details["outputs"][path]["metrics"]
        for metric in ("abs", "rel", "ulp", "cosine", "sqnr"):
            assert a[metric]["stats"] == pytest.approx(b[metric]["stats"], rel=1e-12), (path, metric)


def test_cosine_near_one_is_shown_with_enough_digits(evalset):
    def tilted(x, ids):
        out = model(x, ids)
        out["embedding"][:, 0] += np.float32(1e-3)
        return out

    result = run(evalset, tilted, [clause("cos", "cosine", "min", min=0.99999999, output="embedding")])
    (only,) = result.clauses
    assert only.status == "fail" and only.observed < 0.99999999
    assert "required ≥ 0.99999999" in only.message and f"= {only.observed:.10g} (1 − cosine = " in only.message
