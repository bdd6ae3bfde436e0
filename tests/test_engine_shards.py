"""The pass engine's consumers merge: shards of the example eval set, run apart and merged from
their serialised bytes in any order, give the report of one pass (docs/architecture.md, issue 10)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from promote.contract.model import load_contract
from promote.data import load_evalset
from promote.engine.accumulate import NumericsAccumulator
from promote.engine.passes import kernel_pass
from promote.kernels import build_kernel
from promote.metrics.summary import MetricSummary
from promote.stages.numerics.judge import prepare, stage_result
from promote.stages.slices.data import SliceCollector
from promote.state import ExactSum, StateError
from promote.vocabulary import METRIC_NAMES

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_lm" / "contract.yaml"
KEYS = {"entropy", "margin", "token_frequency", "position"}


def _consumers(spec, evalset):
    acc, floor = prepare(spec)
    return acc, floor, SliceCollector(evalset, set(METRIC_NAMES), set(KEYS), True)


def _dump(acc, floor, collector):
    return acc.to_bytes(), {k: a.to_bytes() for k, a in floor.accumulators.items()}, collector.to_bytes()


def _load(spec, evalset, blobs):
    acc, floor, collector = _consumers(spec, evalset)
    acc.load_bytes(blobs[0])
    for kind, blob in blobs[1].items():
        floor.accumulators[kind].load_bytes(blob)
    collector.load_bytes(blobs[2])
    return acc, floor, collector


def _comparable(result):
    data = result.to_dict()
    data.pop("duration_s")
    return data


@pytest.fixture(scope="module")
def runs():
    contract, _ = load_contract(str(EXAMPLE))
    evalset = load_evalset(contract.data)
    spec = contract.numerical
    assert spec.noise_floor is not None  # the floor's own pass is part of what must merge
    reference = build_kernel(contract.reference, role="reference")
    candidate = build_kernel(contract.candidate, role="candidate")
    size = min(contract.reference.batch_size, contract.candidate.batch_size)
    cuts = [0, 3 * size, 6 * size, len(evalset.samples)]  # shards cut at batch boundaries
    assert cuts[-1] > cuts[-2]
    with reference, candidate:
        whole = _consumers(spec, evalset)
        kernel_pass(evalset, reference, candidate, [whole[0], whole[2]], tie_margin=spec.tie_margin,
                    floors=whole[1].floors())
        shards = []
        for start, end in zip(cuts, cuts[1:], strict=False):
            part = _consumers(spec, evalset)
            kernel_pass(evalset, reference, candidate, [part[0], part[2]], tie_margin=spec.tie_margin,
                        floors=part[1].floors(), samples=evalset.samples[start:end])
            shards.append(_dump(*part))
    return spec, evalset, whole, shards


@pytest.mark.parametrize("order", [(0, 1, 2), (2, 0, 1)])
def test_three_shards_merged_from_bytes_equal_one_pass(runs, order):
    spec, evalset, (acc, floor, collector), shards = runs
    merged = _consumers(spec, evalset)
    for index in order:
        part = _load(spec, evalset, shards[index])
        for mine, theirs in zip(merged, part, strict=True):
            mine.merge(theirs)
    one = stage_result(spec, acc, 0.0, floor=floor)
    got = stage_result(spec, merged[0], 0.0, floor=merged[1])
    assert _comparable(got) == _comparable(one)  # every clause, statistic, worst position and floor: same bits
    for name, summary in acc.summaries.items():
        other = merged[0].summaries[name]
        assert (other.count, other.nonfinite, other.maximum, other.minimum) == \
            (summary.count, summary.nonfinite, summary.maximum, summary.minimum)
        assert other.total == summary.total and not summary.sketched
    assert merged[0].positions == acc.positions == evalset.positions
    whole_table, table = collector.finish(), merged[2].finish()
    for name in ("seq", "col", "target", "ref_correct", "cand_correct"):
        assert np.array_equal(getattr(table, name), getattr(whole_table, name)), name
    for group in ("values", "keys"):
        for name, column in getattr(whole_table, group).items():
            assert np.array_equal(getattr(table, group)[name], column, equal_nan=True), name


def test_sketched_quantiles_merge_within_their_band_and_exact_stats_bit_for_bit():
    rng = np.random.default_rng(3)
    parts = [rng.lognormal(size=n) for n in (30_000, 20_000, 25_000)]

    def summary(values, tag):
        s = MetricSummary("kl", exact_limit=5_000)
        s.update(values, [f"{tag}{i // 50}" for i in range(values.size)], np.arange(values.size) % 50,
                 np.zeros(values.size, dtype=int))
        return s

    one = MetricSummary("kl", exact_limit=5_000)
    for i, values in enumerate(parts):
        one.update_from(summary(values, f"s{i}-"))
    blobs = [summary(values, f"s{i}-").to_bytes() for i, values in enumerate(parts)]
    for order in ((0, 1, 2), (1, 2, 0)):
        merged = MetricSummary("kl", exact_limit=5_000)
        for index in order:
            merged.update_from(MetricSummary("kl").load_bytes(blobs[index]))
        assert merged.sketched
        assert (merged.count, merged.total, merged.maximum, merged.minimum) == \
            (one.count, one.total, one.maximum, one.minimum)
        assert [(p.sample_id, p.position) for p in merged.worst] == [(p.sample_id, p.position) for p in one.worst]
        exact = float(np.percentile(np.concatenate(parts), 99, method="higher"))
        low, _, high = merged.band("p99")
        assert low * (1 - 1e-6) <= exact <= high * (1 + 1e-6)


def test_exact_sum_is_order_independent_where_plain_addition_is_not():
    values = [1e16, 1.0, -1e16, 1.0, 3.14, -2.5e-8] * 50
    forward, backward = ExactSum(values), ExactSum(reversed(values))
    assert forward.value == backward.value == math.fsum(values)
    halves = ExactSum(values[:7]).merge(ExactSum(values[7:]))
    assert halves.value == math.fsum(values)
    assert sum(values) != math.fsum(values)  # the naive running sum would have differed


def test_state_bytes_are_versioned_and_typed():
    acc = NumericsAccumulator(("kl",))
    blob = acc.to_bytes()
    with pytest.raises(StateError, match="expected `metric_summary`"):
        MetricSummary("kl").load_bytes(blob)
    with pytest.raises(StateError, match="version 99"):
        NumericsAccumulator(("kl",)).load_bytes(blob.replace(f'"version":{acc.VERSION}'.encode(), b'"version":99'))
    with pytest.raises(StateError, match="bad magic"):
        NumericsAccumulator(("kl",)).load_bytes(b"\x80\x04pickle")
    assert b"pickle" not in blob and blob.startswith(b"PROMOTE-STATE")
    summary = MetricSummary("kl")
    summary.update(np.array([0.5, 2.0]), ["a", "b"], np.array([0, 1]), np.array([3, 4]))
    copy = MetricSummary.from_bytes(summary.to_bytes(), "kl")
    assert (copy.count, copy.total, copy.stat("p50"), copy.worst) == (2, 2.5, 2.0, summary.worst)
    copy.reset()
    assert copy.count == 0 and math.isnan(copy.stat("mean")) and copy.worst == []


def test_tensor_accumulators_of_shards_merge_into_the_one_pass_report():
    from dataclasses import replace

    from promote.engine.passes import tensor_pass
    from promote.stages.numerics.tensor_accumulate import TensorAccumulator
    from promote.stages.numerics.tensors import judge

    contract, _ = load_contract(str(EXAMPLE.parents[1] / "tiny_mlp" / "contract.yaml"))
    evalset = load_evalset(contract.data)
    reference = build_kernel(contract.reference, role="reference")
    candidate = build_kernel(contract.candidate, role="candidate")

    def run(samples):
        acc = TensorAccumulator()
        tensor_pass(replace(evalset, samples=tuple(samples)), reference, candidate,
                    lambda batch, ref, cand: acc.update(batch.ids, ref, cand))
        return acc

    size = min(contract.reference.batch_size, contract.candidate.batch_size)
    with reference, candidate:
        whole = run(evalset.samples)
        blobs = [run(evalset.samples[a:b]).to_bytes() for a, b in ((0, size), (size, 3 * size),
                                                                   (3 * size, len(evalset.samples)))]
    for order in ((0, 1, 2), (2, 1, 0)):
        merged = TensorAccumulator()
        for index in order:
            merged.merge(TensorAccumulator().load_bytes(blobs[index]))
        assert merged.samples == whole.samples == len(evalset.samples)
        assert {p: a.to_dict() for p, a in merged.outputs.items()} == {p: a.to_dict() for p, a in whole.outputs.items()}
        for clause in contract.numerical.clauses:
            got = [c.to_dict() for c in judge(clause, merged)]
            assert got == [c.to_dict() for c in judge(clause, whole)], clause.id


def test_the_noise_floor_rides_on_the_one_offline_pass(mini):
    """The engine has no separate floor pass: the offline pass (``stages/offline.run_pass``, what
    `promote check` runs) feeds each floor from the reference's batch-N outputs of the main pass
    (``kernel_pass(..., floors=...)``). Its states equal the reference scored against its perturbed
    self as an ordinary pair, batch by batch, over every scored position."""
    from promote.data import batches
    from promote.engine.passes import perturbed_logits
    from promote.engine.scoring import score_batch
    from promote.stages.context import StageContext
    from promote.stages.numerics.noise_floor import FLOOR_METRICS
    from promote.stages.offline import implementation, run_pass

    perturb = ["rerun", "batch_size", "odd_batch"]
    contract, _ = load_contract(mini.contract(candidate="build_hot", numerical={"noise_floor": {"perturb": perturb}}))
    spec = contract.numerical
    ctx = StageContext(contract, frozenset({"numerics"}))
    try:
        fed = run_pass(ctx, ["numerics"], {"numerics": implementation("numerics").consumers(ctx)}).consumers
    finally:
        ctx.close()
    floors = {key.removeprefix("floor/"): c.consumer for key, c in fed["numerics"].items() if key.startswith("floor/")}
    assert set(floors) == set(perturb)
    evalset = load_evalset(contract.data)
    size = min(contract.reference.batch_size, contract.candidate.batch_size)
    expected = {kind: NumericsAccumulator(FLOOR_METRICS) for kind in perturb}
    with build_kernel(contract.reference, role="reference") as reference:
        reference.bind(evalset)
        for batch in batches(evalset.samples, size):
            base = reference.run(batch).logits
            for kind, acc in expected.items():
                other = perturbed_logits(reference, batch, kind, odd_batch_size=spec.noise_floor.odd_batch_size)
                acc.update(score_batch(batch, base, other, tie_margin=spec.tie_margin, mask=batch.scored_mask()))
    for kind in perturb:
        assert floors[kind].positions == evalset.positions, kind
        assert floors[kind].to_bytes() == expected[kind].to_bytes(), kind
