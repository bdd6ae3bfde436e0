"""Fault injectors (`inject:`): deterministic, batch invariant, located errors, and the sizes they
produce on the tiny example model (issue 13, item 1)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from promote.cli import cli
from promote.contract.fault_specs import fault_from_dict
from promote.contract.model import load_contract
from promote.data import Sample, batches
from promote.errors import UsageError
from promote.kernels import build_kernel
from promote.kernels.base import host_logits
from promote.kernels.inject import apply_output_fault, round_mantissa

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tiny_lm"


def _samples() -> tuple[Sample, ...]:
    rng = np.random.default_rng(0)
    return tuple(Sample(id=f"s{i}", input_ids=tuple(int(x) for x in rng.integers(0, 256, size=5 + 3 * i)),
                        tags={"script": "cyrillic" if i % 2 else "latin"}, line=i + 1) for i in range(4))


def test_bf16_rounding_matches_torch():
    x = np.random.default_rng(1).standard_normal(10_000).astype(np.float32) * 40
    ours = round_mantissa(x, 7)
    theirs = torch.from_numpy(x).to(torch.bfloat16).to(torch.float32).numpy()
    assert np.array_equal(ours, theirs)
    assert np.abs(ours - x).max() <= np.abs(x).max() * 2.0**-8  # the documented |Δz| ≤ |z|·2⁻⁹ (half ulp)


def test_noise_is_seeded_per_sample_and_batch_invariant_and_respects_where():
    samples = _samples()
    fault = fault_from_dict({"fault": "noise", "sigma": 0.5, "seed": 3,
                             "where": {"tags": {"script": "cyrillic"}, "positions_from": 2}})
    (whole,) = batches(samples, 4)
    z = np.zeros((*whole.input_ids.shape, 8), dtype=np.float32)
    together = apply_output_fault(fault, z, whole)
    for row, batch in enumerate(batches(samples, 1)):
        alone = apply_output_fault(fault, np.zeros((*batch.input_ids.shape, 8), dtype=np.float32), batch)
        n = batch.input_ids.shape[1]
        assert np.array_equal(alone[0], together[row, :n])  # batch composition does not change the draw
    assert not together[0].any() and not together[2].any()  # latin samples untouched
    assert not together[1, :2].any() and together[1, 2:5].std() == pytest.approx(0.5, rel=0.3)
    again = apply_output_fault(fault, z, whole)
    assert np.array_equal(again, together)
    other = apply_output_fault(fault_from_dict({"fault": "noise", "sigma": 0.5, "seed": 4,
                                                "where": {"tags": {"script": "cyrillic"}}}), z, whole)
    assert not np.array_equal(other, together)


def test_temperature_and_fp16_logits():
    (batch,) = batches(_samples()[:1], 1)
    z = np.full((1, batch.input_ids.shape[1], 3), 9.0e4, dtype=np.float32)
    assert np.allclose(apply_output_fault(fault_from_dict({"fault": "temperature", "t": 0.9}), z, batch), 1e5)
    with np.errstate(over="ignore"):
        assert np.isinf(apply_output_fault(fault_from_dict({"fault": "cast", "dtype": "fp16"}), z, batch)).all()


def _contract(tmp_path: Path, inject, *, limit: int = 24) -> Path:
    for name in ("model.py", "weights.safetensors", "eval.jsonl"):
        if not (tmp_path / name).exists():
            (tmp_path / name).symlink_to(EXAMPLE / name)
    doc = yaml.safe_load((EXAMPLE / "contract.yaml").read_text())
    doc["candidate"]["precision"] = "fp32"
    doc["candidate"]["inject"] = inject
    doc["data"]["limit"] = limit
    doc["numerical"].pop("noise_floor")
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _logits(path: Path) -> tuple[np.ndarray, np.ndarray, tuple]:
    from promote.data import load_evalset

    contract, _ = load_contract(path)
    evalset = load_evalset(contract.data)
    (batch,) = batches(evalset.samples, 32)
    outs = []
    for role in ("reference", "candidate"):
        with build_kernel(getattr(contract, role), role=role) as kernel:
            outs.append(host_logits(kernel.run(batch).logits))
    return outs[0], outs[1], batch


@pytest.mark.parametrize(("inject", "low", "high"), [
    ({"fault": "tf32"}, 1e-5, 0.2),  # TF32: logit L∞ ~1e-2 (mismatch-facts §2)
    ({"fault": "cast", "dtype": "bf16", "scope": "model"}, 1e-3, 2.0),
    ({"fault": "int8-dynamic"}, 1e-2, 5.0),
    ({"fault": "layer", "module": "blocks.0.mlp", "scale": 1.05}, 1e-3, 5.0),
])
def test_model_faults_change_logits_by_a_documented_order(tmp_path, inject, low, high):
    ref, cand, batch = _logits(_contract(tmp_path, inject))
    mask = batch.scored_mask()
    drift = np.abs(ref - cand)[mask].max()
    assert low < drift < high, drift


def test_overflow_hits_only_positions_beyond_n(tmp_path):
    _, cand, batch = _logits(_contract(tmp_path, {"fault": "overflow", "layer": "blocks.1.mlp", "longer_than": 40}))
    mask = batch.scored_mask()
    finite = np.isfinite(cand).all(axis=-1)
    long_rows = batch.lengths > 40
    assert long_rows.any() and (~long_rows).any()
    assert finite[~long_rows].all()  # short inputs are untouched, even when padded past N in the batch
    assert not finite[long_rows][mask[long_rows] & (np.arange(mask.shape[1]) >= 40)].any()


def test_bad_faults_are_exit_2_with_the_line(tmp_path):
    path = _contract(tmp_path, {"fault": "temperature"})
    result = CliRunner().invoke(cli, ["validate", str(path)])
    assert result.exit_code == 2 and "c.yaml:" in result.output and "needs `t`" in result.output
    path = _contract(tmp_path, {"fault": "layer", "module": "no.such"})
    contract, _ = load_contract(path)
    with pytest.raises(UsageError, match="no module `no.such`"):
        build_kernel(contract.candidate, role="candidate").open()


def test_an_all_nan_candidate_row_is_scored_as_non_finite_not_a_crash():
    from promote.metrics.distribution import token_metrics

    ref = np.zeros((3, 8), dtype=np.float32)
    cand = ref.copy()
    cand[1] = np.nan  # what an fp16 overflow leaves at every logit of a position
    values = token_metrics(ref, cand, np.zeros(3, dtype=np.int64))
    assert values["nonfinite"].tolist() == [0.0, 8.0, 0.0] and np.isnan(values["kl"][1])
